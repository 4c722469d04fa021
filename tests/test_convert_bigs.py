"""`mambacode convert bigs`: a BiGS checkpoint converted exactly, against the BiGS PyTorch implementation's outputs.

The reference is `tests/fixtures/bigs-tiny/` (its README): a random-weight BiGSForMaskedLM and the float64
outputs of BiGS's own code (every hidden state, MLM logits, every S4D kernel) for two unpadded inputs.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from mambacode import MambaCodeConfig, MambaCodeForMaskedLM
from mambacode.cli import main as cli_main
from mambacode.convert import ConversionError, convert_bigs

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bigs-tiny")
CHECKPOINT = os.path.join(FIXTURE, "checkpoint")
LENGTHS = (24, 40)


@pytest.fixture(scope="module")
def expected():
    return load_file(os.path.join(FIXTURE, "expected.safetensors"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    dst = str(tmp_path_factory.mktemp("bigs") / "converted")
    convert_bigs(CHECKPOINT, dst)
    return dst


def _load(path, dtype):
    return MambaCodeForMaskedLM.from_pretrained(path).to(dtype).eval()


def _use_fft(model):
    for layer in model.mambacode.layers:
        layer.mixer.ssm.direct_max_length = {"float32": 0, "autocast": 0}


@pytest.mark.parametrize("path", ["direct", "fft"])
def test_float64_matches_bigs_reference(converted, expected, path):
    """Embeddings, every layer's hidden states and the MLM logits within 1e-9 of BiGS's float64 outputs, on both
    of MambaCode's convolution paths (the direct Toeplitz product and the FFT)."""
    model = _load(converted, torch.float64)
    if path == "fft":
        _use_fft(model)
    for L in LENGTHS:
        with torch.no_grad():
            out = model(expected[f"input_ids_{L}"], output_hidden_states=True)
        assert len(out.hidden_states) == 3
        for i, h in enumerate(out.hidden_states):
            torch.testing.assert_close(h, expected[f"hidden_states_{L}_{i}"], atol=1e-9, rtol=0)
        torch.testing.assert_close(out.logits, expected[f"logits_{L}"], atol=1e-9, rtol=0)


def test_float32_within_the_fixture_bounds(converted, expected):
    model = _load(converted, torch.float32)
    for L in LENGTHS:
        with torch.no_grad():
            out = model(expected[f"input_ids_{L}"], output_hidden_states=True)
        for i, h in enumerate(out.hidden_states):
            torch.testing.assert_close(h.double(), expected[f"hidden_states_{L}_{i}"], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.logits.double(), expected[f"logits_{L}"], atol=1e-4, rtol=0)


def test_kernels_match_bigs(converted, expected):
    """Every S4D kernel: the model's own (float32, 1e-6, tight enough to see a missing Re(A) clamp) and the
    spectral analysis' float64 kernels (1e-9), which also pin the direction order (fs4 forward, bs4 backward)."""
    from mambacode.spectral.kernels import s4d_layer_kernels

    model = _load(converted, torch.float32)
    for L in LENGTHS:
        for i, layer in enumerate(model.mambacode.layers):
            k32 = layer.mixer.ssm.kernel.materialize(L)
            k64 = s4d_layer_kernels(layer.mixer.ssm, L)
            for d, name in enumerate(("fs4", "bs4")):
                ref = expected[f"kernel_{L}_layer{i}_{name}"][0]
                torch.testing.assert_close(k32[d, 0].double(), ref, atol=1e-6, rtol=0)
                torch.testing.assert_close(torch.from_numpy(k64[d, 0]), ref, atol=1e-9, rtol=0)


def test_padded_batch_gives_each_sequence_its_unpadded_bigs_output(converted, expected):
    """BiGS does not mask padding; MambaCode does: in a right-padded batch each row equals BiGS's unpadded output."""
    model = _load(converted, torch.float64)
    short, long = expected["input_ids_24"][0], expected["input_ids_40"][1]
    ids = torch.zeros(2, 40, dtype=torch.long)
    ids[0, :24], ids[1] = short, long
    mask = torch.zeros(2, 40, dtype=torch.long)
    mask[0, :24], mask[1] = 1, 1
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[-1][0, :24], expected["hidden_states_24_2"][0], atol=1e-9, rtol=0)
    torch.testing.assert_close(out.logits[0, :24], expected["logits_24"][0], atol=1e-9, rtol=0)
    torch.testing.assert_close(out.logits[1], expected["logits_40"][1], atol=1e-9, rtol=0)


def test_token_types_against_a_hand_computed_embedding(converted):
    """h0 = LN(E_word[ids] + E_type[types] + E_pos[0..L-1]) in float64 from the raw BiGS tensors."""
    raw = {k: v.double() for k, v in load_file(os.path.join(CHECKPOINT, "model.safetensors")).items()}
    ids = torch.tensor([[5, 17, 99, 3, 42, 8]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1]])
    e = "bigs.embeddings."
    x = raw[e + "word_embeddings.weight"][ids] + raw[e + "token_type_embeddings.weight"][types] \
        + raw[e + "position_embeddings.weight"][:6]
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    h0 = (x - mu) / torch.sqrt(var + 1e-12) * raw[e + "LayerNorm.weight"] + raw[e + "LayerNorm.bias"]
    model = _load(converted, torch.float64)
    with torch.no_grad():
        out = model(ids, token_type_ids=types, output_hidden_states=True)
    torch.testing.assert_close(out.hidden_states[0], h0, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="token_type_ids holds ids in \\[0, 2\\]"):
        model(ids, token_type_ids=types * 2)


def test_models_without_token_types_refuse_nonzero_ones(tiny):
    model = MambaCodeForMaskedLM(tiny()).eval()
    ids = torch.tensor([[5, 6, 7]])
    plain = model(ids).logits
    torch.testing.assert_close(model(ids, token_type_ids=torch.zeros_like(ids)).logits, plain, atol=0, rtol=0)
    with pytest.raises(ValueError, match="no token-type embeddings"):
        model(ids, token_type_ids=torch.ones_like(ids))


def test_default_config_is_unchanged():
    """The new fields' defaults are MambaCode's architecture: no position/type tables, a final LayerNorm."""
    c = MambaCodeConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, intermediate_size=32, state_size=4)
    assert (c.s4d_conjugate_pairs, c.position_embedding_type, c.type_vocab_size, c.embedding_layer_norm,
            c.final_layer_norm) == (True, None, 0, False, True)
    keys = set(MambaCodeForMaskedLM(c).state_dict())
    assert not any(k.startswith(("mambacode.position_embeddings", "mambacode.token_type_embeddings",
                                 "mambacode.embeddings_norm")) for k in keys)
    assert "mambacode.norm_f.weight" in keys
    with pytest.raises(ValueError, match="position_embedding_type"):
        MambaCodeConfig(position_embedding_type="rotary")
    with pytest.raises(ValueError, match="type_vocab_size"):
        MambaCodeConfig(type_vocab_size=-1)
    # an odd state size is fine without conjugate pairs (BiGS's num_ssm is the number of complex modes)
    MambaCodeConfig(state_size=7, s4d_conjugate_pairs=False)
    with pytest.raises(ValueError, match="state_size"):
        MambaCodeConfig(state_size=7)


def test_round_trip_and_auto_classes(converted, expected, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(converted).double().eval()
    assert type(model).__name__ == "MambaCodeForMaskedLM"
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForMaskedLM.from_pretrained(tmp_path / "again").double().eval()
    ids = expected["input_ids_40"]
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, atol=0, rtol=0)
        # AutoModel is the retrieval model: its token states are the encoder's (BiGS's last hidden state)
        enc = AutoModel.from_pretrained(converted).double().eval()
        torch.testing.assert_close(enc(ids).last_hidden_state, expected["hidden_states_40_2"], atol=1e-9, rtol=0)


def test_remote_code_loads_without_mambacode(converted, expected, tmp_path):
    """The converted folder carries the model files: transformers alone loads it (trust_remote_code)."""
    code = f"""
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM
m = AutoModelForMaskedLM.from_pretrained({converted!r}, trust_remote_code=True).double().eval()
assert 'mambacode' not in sys.modules, 'the package was imported'
e = load_file({os.path.join(FIXTURE, 'expected.safetensors')!r})
with torch.no_grad():
    d = (m(e['input_ids_24']).logits - e['logits_24']).abs().max().item()
print(d)
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-9


def test_pytorch_model_bin_is_read_with_weights_only(tmp_path, expected):
    src = tmp_path / "bin"
    src.mkdir()
    shutil.copy(os.path.join(CHECKPOINT, "config.json"), src)
    torch.save(load_file(os.path.join(CHECKPOINT, "model.safetensors")), src / "pytorch_model.bin")
    convert_bigs(str(src), str(tmp_path / "out"))
    model = _load(str(tmp_path / "out"), torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input_ids_24"]).logits, expected["logits_24"], atol=1e-9, rtol=0)
    # a pickle that needs more than tensors is refused by weights_only, with the file named
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(os.path.join(CHECKPOINT, "config.json"), bad)
    torch.save({"x": torch.zeros(1), "obj": ConversionError("not a tensor")}, bad / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="pytorch_model.bin: cannot read the weights"):
        convert_bigs(str(bad), str(tmp_path / "out2"))


def _variant(tmp_path, config_change=None, drop=None, name="variant"):
    src = tmp_path / name
    src.mkdir()
    config = json.load(open(os.path.join(CHECKPOINT, "config.json")))
    config.update(config_change or {})
    json.dump(config, open(src / "config.json", "w"))
    weights = load_file(os.path.join(CHECKPOINT, "model.safetensors"))
    for key in drop or ():
        weights.pop(key)
    save_file(weights, str(src / "model.safetensors"))
    return str(src)


def test_refusals_name_the_problem(tmp_path, capsys):
    not_bigs = _variant(tmp_path, {"model_type": "bert"}, name="bert")
    with pytest.raises(ConversionError, match="model_type='bert' is not a BiGS checkpoint"):
        convert_bigs(not_bigs, str(tmp_path / "o1"))
    shapes = _variant(tmp_path, {"hidden_size": 48}, name="shapes")
    with pytest.raises(ConversionError, match="the config and the weights disagree: .* is \\(101, 32\\), expected "
                                              "\\(101, 48\\)"):
        convert_bigs(shapes, str(tmp_path / "o2"))
    missing = _variant(tmp_path, drop=["bigs.encoder.layer.1.bs4.kernel.C"], name="missing")
    with pytest.raises(ConversionError, match="1 tensors are missing .*layer.1.bs4.kernel.C"):
        convert_bigs(missing, str(tmp_path / "o3"))
    tanh = _variant(tmp_path, {"hidden_act": "gelu_new"}, name="tanh")
    with pytest.raises(ConversionError, match="hidden_act='gelu_new' is not supported exactly"):
        convert_bigs(tanh, str(tmp_path / "o4"))
    with pytest.raises(ConversionError, match="no such folder"):
        convert_bigs(str(tmp_path / "nowhere"), str(tmp_path / "o5"))
    with pytest.raises(ConversionError, match="may not be, contain or lie inside"):
        convert_bigs(not_bigs.replace("bert", "shapes"), str(tmp_path / "shapes" / "out"))
    for d in ("o1", "o2", "o3", "o4", "o5"):  # nothing half-written was left behind
        assert not (tmp_path / d).exists()
    # the command: one line on stderr, exit 2; an existing output is kept unless --overwrite
    assert cli_main(["convert", "bigs", missing, str(tmp_path / "o6")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mambacode convert: error:") and "\n" not in err
    assert cli_main(["convert", "bigs", CHECKPOINT, str(tmp_path / "o7")]) == 0
    assert cli_main(["convert", "bigs", CHECKPOINT, str(tmp_path / "o7")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["convert", "bigs", CHECKPOINT, str(tmp_path / "o7"), "--overwrite"]) == 0


def _char_tokenizer():
    """A character-level fast tokenizer with 99 ids (the fixture's vocabulary has 101), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(33, 127)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


PROBE_SRC = '''
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


def test_converted_folder_runs_the_probe_and_spectrum_commands(tmp_path, monkeypatch):
    """Tokenizer files in the BiGS folder are copied; the converted folder goes through scripts/probe.py's
    runner and the spectrum CLI unchanged."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "bigs"
    shutil.copytree(CHECKPOINT, src)
    _char_tokenizer().save_pretrained(src)
    dst = tmp_path / "converted"
    convert_bigs(str(src), str(dst))
    assert (dst / "tokenizer.json").exists() and "tokenizer.json" in (dst / "README.md").read_text()

    import importlib.util

    from mambacode.spectral.cli import main as spectrum_main

    spec = importlib.util.spec_from_file_location(
        "probe_script", os.path.join(os.path.dirname(FIXTURE), "..", "..", "scripts", "probe.py"))
    probe_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe_script)
    code = tmp_path / "src"
    code.mkdir()
    (code / "m.py").write_text(PROBE_SRC)
    out = tmp_path / "probe"
    probe_script.main(["--model_name_or_path", str(dst), "--language", "python", "--source_dir", str(code),
                       "--output_dir", str(out), "--pairs_per_class", "8", "--layers", "0", "2",
                       "--max_length", "64"])
    report = json.load(open(out / "probe_report.json"))
    for task in report["tasks"]:
        for layer in ("0", "2"):
            r = report["results"][str(dst)][task][layer]
            assert 0 <= r["directprobe"]["accuracy"] <= 1 and "selectivity" in r["linear"]
    spectrum_main(["--model_name_or_path", str(dst), "--output_dir", str(tmp_path / "spec"), "--length", "512",
                   "--no_figures", "true"])
    spectrum = json.load(open(tmp_path / "spec" / "spectrum_report.json"))
    assert len([k for k in spectrum["kernels"] if k["kind"] == "s4d"]) == 4
