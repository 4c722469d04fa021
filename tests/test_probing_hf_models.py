"""scripts/probe.py on saved tiny random transformers encoders (MambaModel, Mamba2Model, BertModel) with a tiny
fast tokenizer built offline; hidden-state indices mean the same thing for every model (0 = embeddings)."""

import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SRC = '''
def f(a, b):
    x = a + b
    y = x * 2
    for i in range(y):
        x += i
    return x


def g(items):
    total = 0
    for it in items:
        if it > 0:
            total = total + it
    return total
'''


def _script():
    spec = importlib.util.spec_from_file_location("probe_script", os.path.join(ROOT, "scripts", "probe.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _models(vocab_size):
    from transformers import BertConfig, BertModel, Mamba2Config, Mamba2Model, MambaConfig, MambaModel

    torch.manual_seed(0)
    return {
        "mamba": MambaModel(MambaConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, state_size=4,
                                        expand=2, conv_kernel=3, time_step_rank=4)),
        "mamba2": Mamba2Model(Mamba2Config(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, state_size=4,
                                           expand=1, conv_kernel=3, head_dim=4, num_heads=4, n_groups=1,
                                           chunk_size=4)),
        "bert": BertModel(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=256)),
    }


def test_probe_script_reads_transformers_encoders(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths = []
    for name, model in _models(len(tokenizer)).items():
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        paths.append(str(tmp_path / name))
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text(SRC)
    out = tmp_path / "out"
    args = [a for p in paths for a in ("--model_name_or_path", p)]
    res = _script().main(args + ["--language", "python", "--source_dir", str(src), "--output_dir", str(out),
                                 "--pairs_per_class", "6", "--layers", "0", "2", "--probes", "linear"])
    report = json.load(open(out / "probe_report.json"))
    assert report["models"] == paths
    for p in paths:
        assert res["extraction"][p]["n_hidden_states"] == 3  # embeddings + 2 blocks, for every model
        for task in report["tasks"]:
            for layer in ("0", "2"):
                r = report["results"][p][task][layer]
                assert 0 <= r["linear"]["accuracy"] <= 1 and r["n_test"] > 0


def test_mamba_hidden_states_are_embeddings_first(tokenizer):
    """transformers' MambaModel lists (block 1, ..., block N, final norm); the probe loader lines it up with the
    others: index 0 = the embedding output, index i = block i's output."""
    from mambacode.probing.runner import EmbeddingsFirst

    model = _models(len(tokenizer))["mamba"].eval()
    ids = torch.randint(0, len(tokenizer), (2, 7))
    with torch.no_grad():
        raw = model(input_ids=ids, output_hidden_states=True).hidden_states
        wrapped = EmbeddingsFirst(model)(input_ids=ids, attention_mask=torch.ones_like(ids)).hidden_states
        blocks, x = [], model.embeddings(ids)
        for layer in model.layers:
            x = layer(x)
            blocks.append(x)
    assert len(wrapped) == 3
    torch.testing.assert_close(wrapped[0], model.embeddings(ids))
    for i in (1, 2):
        torch.testing.assert_close(wrapped[i], blocks[i - 1])
        torch.testing.assert_close(raw[i - 1], blocks[i - 1])
    with pytest.raises(AssertionError):
        torch.testing.assert_close(raw[0], model.embeddings(ids))
