"""Collators, label alignment, data validation, model cards and the push_to_hub folder checks."""

import os
import subprocess
import sys

import datasets
import pytest
import torch

from mambacode.training.collators import (DataCollatorForMaskedLM, DataCollatorForRetrieval,
                                          DataCollatorForTypeInference, MaskingEpochCallback, align_word_labels,
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
    t = DataCollatorForTypeInference(pad)([{"input_ids": [0, 4, 2], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100]},
                                          {"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [-100, -100]}])
    assert t["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    assert t["input_ids"].dtype == torch.long


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
    from mambacode.training.model_card import write_model_card

    cfg = MambaCodeConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, intermediate_size=64, hf_conv=True)
    path = write_model_card(str(tmp_path), cfg, "retrieval", model_name="tiny: \"quoted\" name",
                            metrics={"test_mrr": 0.4321, "retrieval_adv_mrr": 0.25}, dataset="retrieval",
                            training={"learning_rate": 1e-3}, probe_summary="| a | b |", num_parameters=1234)
    card = ModelCard.load(path)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "feature-extraction"
    assert "custom_code" in card.data.tags
    results = card.data.eval_results
    assert {r.metric_type: r.metric_value for r in results} == {"test_mrr": 0.4321, "retrieval_adv_mrr": 0.25}
    text = open(path).read()
    assert "## Architecture" in text and "`s4d`" in text and "1,234" in text and "trust_remote_code=True" in text
    assert "| a | b |" in text


def test_push_to_hub_checks_folder_and_fails_clearly_offline(tmp_path):
    script = os.path.join(ROOT, "scripts", "push_to_hub.py")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    empty = subprocess.run([sys.executable, script, str(tmp_path), "--repo_id", "me/x"], env=env,
                           capture_output=True, text=True)
    assert empty.returncode == 2
    assert "config.json is missing" in empty.stderr and "README.md" in empty.stderr
    # a complete folder: passes the checks, then the upload fails clearly (offline)
    from mambacode import MambaCodeConfig, MambaCodeForRetrieval
    from mambacode.corpus import train_tokenizer
    from mambacode.training.model_card import write_model_card

    tok = train_tokenizer(["def f(x): return x"] * 5, vocab_size=270, min_frequency=1)
    cfg = MambaCodeConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                          state_size=8)
    MambaCodeForRetrieval(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    write_model_card(str(tmp_path), cfg, "retrieval")
    dry = subprocess.run([sys.executable, script, str(tmp_path), "--repo_id", "me/x", "--dry_run"], env=env,
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    push = subprocess.run([sys.executable, script, str(tmp_path), "--repo_id", "me/x"], env=env,
                          capture_output=True, text=True)
    assert push.returncode == 3
    assert "offline" in push.stderr.lower()


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
