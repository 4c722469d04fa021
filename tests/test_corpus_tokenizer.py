"""Byte-level BPE tokenizer: trains on tiny text, reloads with AutoTokenizer, gives offsets and MLM masks."""

import torch
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

from mambacode.corpus import train_tokenizer

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "def mul(a, b):\n    return a * b\n",
    "Return the sum of two numbers.",
    "function add(a, b) { return a + b; }",
] * 20


def test_train_save_load_offsets_and_mlm(tmp_path):
    tok = train_tokenizer(TEXTS, vocab_size=300, output_dir=str(tmp_path / "tok"))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert loaded.is_fast
    for name in ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token", "cls_token", "sep_token"):
        assert getattr(loaded, name) == getattr(tok, name)
    assert [loaded.bos_token, loaded.eos_token, loaded.pad_token, loaded.unk_token, loaded.mask_token] == [
        "<s>", "</s>", "<pad>", "<unk>", "<mask>"]

    code = "def add(x, y):\n    return x + y"
    enc = loaded(code, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    assert ids[0] == loaded.bos_token_id and ids[-1] == loaded.eos_token_id
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)
    # every non-special sub-word maps back to text it covers; `return` is found as one piece
    pieces = [code[s:e] for s, e in offsets[1:-1]]
    assert "return" in pieces and "add" in pieces
    assert loaded.decode(ids, skip_special_tokens=True) == code  # byte-level: lossless

    collator = DataCollatorForLanguageModeling(loaded, mlm_probability=0.5)
    torch.manual_seed(0)
    batch = collator([loaded(t) for t in TEXTS[:4]])
    assert batch["input_ids"].shape == batch["labels"].shape
    assert (batch["input_ids"] == loaded.mask_token_id).any()


def test_unseen_bytes_are_never_unknown():
    tok = train_tokenizer(TEXTS, vocab_size=300)
    ids = tok("naïve → λx: ∞")["input_ids"]
    assert tok.unk_token_id not in ids
