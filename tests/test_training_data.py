"""Collators, label alignment, data validation, model cards and the push_to_hub folder checks."""

import os
import subprocess
import sys

import datasets
import pytest
import torch

from mambacode.training.collators import (DataCollatorForMaskedLM, DataCollatorForRetrieval,
                                          MaskingEpochCallback, align_word_labels,
                                          group_texts, tokenize_and_align_labels)
from mambacode.training.validation import DataValidationError, check_tokenizer_matches_model, require_columns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from mambacode.corpus import train_tokenizer

    texts = ["def add(a, b):\n    return a + b\n", "x: int = parse_value(text)", "name = str(value)"] * 20
    return train_tokenizer(texts, vocab_size=300, min_frequency=1)


def test_align_word_labels_by_hand():
    # words:      0    0    1     2    2    2   (None = special token)
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    labels = [5, -1, 7]  # word 1 is unannotated
    assert align_word_labels(word_ids, labels) == [-100, 5, -100, -100, 7, -100, -100, -100]


def test_tokenize_and_align_labels_first_subword(tokenizer):
    ex = {"tokens": [["parse_value", "(", "text", ")"]], "labels": [[3, -1, 4, -1]]}
    enc = tokenize_and_align_labels(ex, tokenizer, "tokens", "labels", max_length=64)
    word_ids = tokenizer(ex["tokens"][0], is_split_into_words=True).word_ids()
    labels = enc["labels"][0]
    assert len(labels) == len(enc["input_ids"][0]) == len(word_ids)
    firsts = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}
    assert labels[firsts[0]] == 3 and labels[firsts[2]] == 4
    assert sorted(l for l in labels if l != -100) == [3, 4]


def test_collators_pad_each_side(tokenizer):
    pad = tokenizer.pad_token_id
    feats = [{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "code_input_ids": [0, 9, 9, 9, 9, 2],
              "code_attention_mask": [1] * 6},
             {"input_ids": [0, 2], "attention_mask": [1, 1], "code_input_ids": [0, 2], "code_attention_mask": [1, 1]}]
    b = DataCollatorForRetrieval(pad)(feats)
    assert b["input_ids"].shape == (2, 3) and b["code_input_ids"].shape == (2, 6)
    assert b["input_ids"][1].tolist() == [0, 2, pad] and b["attention_mask"][1].tolist() == [1, 1, 0]


def test_type_inference_batches_pad_labels_with_ignore_index(tokenizer):
    """The type-inference collator (transformers' DataCollatorForTokenClassification) against a hand-padded
    batch: ids right-padded with the pad id, attention 0, labels -100, int64."""
    from transformers import DataCollatorForTokenClassification

    pad = tokenizer.pad_token_id
    t = DataCollatorForTokenClassification(tokenizer)([
        {"input_ids": [0, 4, 2], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100]},
        {"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [-100, -100]}])
    assert t["input_ids"].tolist() == [[0, 4, 2], [0, 2, pad]]
    assert t["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert t["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    assert {t[k].dtype for k in t} == {torch.long}


def test_group_texts_keeps_the_tail():
    out = group_texts({"input_ids": [[1, 2, 3], [4, 5, 6, 7]], "attention_mask": [[1] * 3, [1] * 4]}, block_size=3)
    assert out["input_ids"] == [[1, 2, 3], [4, 5, 6], [7]]


def test_require_columns_names_the_missing_ones():
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"query": ["a"], "text": ["b"]})})
    with pytest.raises(DataValidationError, match=r"\['code'\]") as info:
        require_columns(dd, ["query", "code"], where="corpus/retrieval")
    assert "'train'" in str(info.value) and "corpus/retrieval" in str(info.value)
    require_columns(dd["train"], ["query"])  # a plain Dataset works too


def test_vocab_mismatch_refused(tokenizer):
    from mambacode import MambaCodeConfig

    good = MambaCodeConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                           pad_token_id=tokenizer.pad_token_id)
    check_tokenizer_matches_model(tokenizer, good)
    bad = MambaCodeConfig(vocab_size=len(tokenizer) + 100, hidden_size=32, num_hidden_layers=1,
                          intermediate_size=64, pad_token_id=tokenizer.pad_token_id)
    with pytest.raises(DataValidationError, match=f"tokenizer has {len(tokenizer)} tokens"):
        check_tokenizer_matches_model(tokenizer, bad)


def test_model_card_is_hub_format(tmp_path):
    from huggingface_hub import ModelCard

    from mambacode import MambaCodeConfig
    from mambacode.training.model_card import Evaluation, write_model_card

    cfg = MambaCodeConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, intermediate_size=64, hf_conv=True)
    base = tmp_path / "pretrained"  # a local folder: never a base_model on the Hub
    base.mkdir()
    evaluations = [Evaluation("retrieval", "validation", {"eval_loss": 1.5}),
                   Evaluation("retrieval", "test", {"mrr": 0.4321, "recall@1": 0.25, "ndcg@10": 0.5,
                                                    "num_queries": 8, "pool_size": 8}),
                   Evaluation("retrieval_adv", "test", {"mrr": 0.25})]
    path = write_model_card(str(tmp_path), cfg, "retrieval", model_name="tiny: \"quoted\" name",
                            evaluations=evaluations, dataset="retrieval", base_model=str(base),
                            training={"learning_rate": 1e-3}, probe_summary="| a | b |", num_parameters=1234)
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "feature-extraction"
    assert data["tags"] == ["code", "mambacode", "state-space-model", "retrieval", "custom_code",
                            "sentence-transformers"]
    assert "base_model" not in data and "datasets" not in data  # local path / local dataset: no Hub ids
    index = data["model-index"]
    assert len(index) == 1 and index[0]["name"] == 'tiny: "quoted" name'
    got = [(r["dataset"]["type"], r["dataset"]["split"], [(m["type"], m["value"]) for m in r["metrics"]])
           for r in index[0]["results"]]
    assert got == [("retrieval", "validation", [("loss", 1.5)]),
                   ("retrieval", "test", [("mrr", 0.4321), ("recall_at_1", 0.25), ("ndcg_at_10", 0.5)]),
                   ("retrieval_adv", "test", [("mrr", 0.25)])]
    assert all(r["task"]["type"] == "feature-extraction" for r in index[0]["results"])
    text = open(path).read()
    assert "## Architecture" in text and "`s4d`" in text and "1,234" in text and "trust_remote_code=True" in text
    assert "| a | b |" in text and "SentenceTransformer(" in text


def test_model_card_metadata_of_hub_ids_and_f1(tmp_path):
    from huggingface_hub import ModelCard
    from transformers import RoFormerConfig

    from mambacode.training.model_card import Evaluation, write_model_card

    cfg = RoFormerConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=64)
    metrics = {"loss": 0.9, "accuracy": 0.8, "micro_f1": 0.7, "macro_f1": 0.6, "num_tokens": 50, "runtime": 1.0}
    path = write_model_card(str(tmp_path), cfg, "token_classification", model_name="types",
                            evaluations=[Evaluation("someone/typed-code", "test", metrics)],
                            base_model="someone/rocoder-base")
    data = ModelCard.load(path).data.to_dict()
    assert data["base_model"] == "someone/rocoder-base" and data["datasets"] == ["someone/typed-code"]
    assert "custom_code" not in data["tags"] and "sentence-transformers" not in data["tags"]
    (result,) = data["model-index"][0]["results"]
    assert result["dataset"] == {"name": "someone/typed-code", "type": "someone/typed-code", "split": "test"}
    assert [(m["type"], m.get("config"), m["value"]) for m in result["metrics"]] == [
        ("loss", None, 0.9), ("accuracy", None, 0.8), ("f1", "micro", 0.7), ("f1", "macro", 0.6)]
    with pytest.raises(ValueError, match="split prefix"):
        Evaluation("retrieval", "test", {"test_mrr": 0.5})


def _retrieval_folder(folder):
    from mambacode import MambaCodeConfig, MambaCodeForRetrieval
    from mambacode.corpus import train_tokenizer
    from mambacode.training.model_card import write_model_card

    tok = train_tokenizer(["def f(x): return x"] * 5, vocab_size=270, min_frequency=1)
    cfg = MambaCodeConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                          state_size=8)
    MambaCodeForRetrieval(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    write_model_card(str(folder), cfg, "retrieval")


def test_push_to_hub_checks_folder_and_fails_clearly_offline(tmp_path):
    script = os.path.join(ROOT, "scripts", "push_to_hub.py")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    empty = subprocess.run([sys.executable, script, "--model_name_or_path", str(tmp_path), "--repo_id", "me/x"],
                           env=env, capture_output=True, text=True)
    assert empty.returncode == 2
    assert "config.json is missing" in empty.stderr and "README.md" in empty.stderr
    # a complete folder: passes the checks, then the upload fails with one line (offline)
    _retrieval_folder(tmp_path)
    dry = subprocess.run([sys.executable, script, "--model_name_or_path", str(tmp_path), "--repo_id", "me/x",
                          "--dry_run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    push = subprocess.run([sys.executable, script, "--model_name_or_path", str(tmp_path), "--repo_id", "me/x"],
                          env=env, capture_output=True, text=True)
    assert push.returncode == 3
    assert push.stderr.strip().count("\n") == 0 and "offline" in push.stderr.lower()
    assert "Traceback" not in push.stderr


def test_push_to_hub_uploads_the_folder_with_our_card(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    _retrieval_folder(tmp_path)
    (tmp_path / "checkpoint-2").mkdir()
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private")))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        calls.append(("upload_folder", repo_id, folder_path, ignore_patterns))
        return None

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    card_before = open(tmp_path / "README.md").read()
    script = _load_script("push_to_hub")
    assert script.main(["--model_name_or_path", str(tmp_path), "--repo_id", "me/x", "--private"]) == 0
    assert calls[0] == ("create_repo", "me/x", True)
    _, repo, folder, ignore = calls[1]
    assert (repo, folder) == ("me/x", str(tmp_path)) and "checkpoint-*" in ignore
    assert open(os.path.join(folder, "README.md")).read() == card_before


def _load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mlm_feature(tokenizer, index, n, rng):
    ids = [tokenizer.bos_token_id] + [int(x) for x in rng.integers(10, len(tokenizer), n - 2)] + [tokenizer.eos_token_id]
    return {"input_ids": ids, "attention_mask": [1] * n, "special_tokens_mask": [1] + [0] * (n - 2) + [1],
            "example_index": index}


def test_masked_lm_collator_masks_by_seed_epoch_and_example_only(tokenizer):
    import numpy as np

    rng = np.random.default_rng(0)
    a, b, c = (_mlm_feature(tokenizer, i, n, rng) for i, n in ((7, 40), (8, 25), (9, 60)))
    collate = DataCollatorForMaskedLM(tokenizer, seed=3)
    alone = collate([dict(a)])
    together = collate([dict(c), dict(a), dict(b)])  # other partners, more padding
    assert torch.equal(together["input_ids"][1, :40], alone["input_ids"][0])
    assert torch.equal(together["labels"][1, :40], alone["labels"][0])
    assert (together["labels"][1, 40:] == -100).all() and (together["input_ids"][1, 40:] == tokenizer.pad_token_id).all()
    collate.epoch = 1
    assert not torch.equal(collate([dict(a)])["labels"], alone["labels"])  # new masks each epoch
    assert not torch.equal(DataCollatorForMaskedLM(tokenizer, seed=4)([dict(a)])["labels"], alone["labels"])
    with pytest.raises(ValueError, match="example_index"):
        collate([{k: v for k, v in a.items() if k != "example_index"}])


def test_masked_lm_collator_rates_and_labels(tokenizer):
    import numpy as np

    rng = np.random.default_rng(1)
    features = [_mlm_feature(tokenizer, i, 500, rng) for i in range(80)]  # 39,840 maskable tokens
    original = torch.tensor([f["input_ids"] for f in features])
    batch = DataCollatorForMaskedLM(tokenizer, mlm_probability=0.15)([dict(f) for f in features])
    labels, inputs = batch["labels"], batch["input_ids"]
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # special tokens are never masked
    assert torch.equal(labels[chosen], original[chosen])  # labels are the original tokens
    assert torch.equal(inputs[~chosen], original[~chosen])  # nothing else changes
    n = int(chosen.sum())
    assert abs(n / (80 * 498) - 0.15) < 0.01  # binomial sd ~0.0018
    to_mask = int((inputs[chosen] == tokenizer.mask_token_id).sum())
    kept = int((inputs[chosen] == original[chosen]).sum())
    assert abs(to_mask / n - 0.8) < 0.03 and abs(kept / n - 0.1) < 0.03  # and ~10% random tokens


def test_masking_epoch_callback_follows_the_trainer_epoch(tokenizer):
    from types import SimpleNamespace

    collate = DataCollatorForMaskedLM(tokenizer)
    cb = MaskingEpochCallback(collate)
    for epoch, expected in ((0.0, 0), (1.5, 1), (2.9999999999, 3), (3.0, 3)):  # 1.5: resumed inside epoch 1
        cb.on_epoch_begin(None, SimpleNamespace(epoch=epoch), None)
        assert collate.epoch == expected
    cb.on_train_end(None, SimpleNamespace(epoch=3.0), None)
    assert collate.epoch == 0
