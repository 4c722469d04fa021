"""Hugging Face integration of the retrieval model: sentence-transformers out of the box, eval loss and
retrieval metrics in `Trainer`, the feature-extraction pipeline, tuple outputs, LoRA through AutoPeftModel,
the tokenizer without remote code, and the one embedding loop."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mambacode import (
    SENTENCE_TRANSFORMERS_TAGS,
    MambaCodeForMaskedLM,
    MambaCodeForRetrieval,
    MambaCodeForSequenceClassification,
    MambaCodeForTokenClassification,
    MambaCodeModel,
)

TEXTS = ["def add(a, b): return a + b", "x", "for i in range(10): print(i)", "class A: pass",
         "def add(a, b):\n    return a + b\n" * 3]


def _saved(tmp_path, tokenizer, tiny, name="model", **overrides):
    """A randomly initialised retrieval model saved with its tokenizer (as the training scripts save it)."""
    config = tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, initializer_range=0.3,
                  **overrides)
    model = MambaCodeForRetrieval(config).eval()
    folder = tmp_path / name
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def _naive_embedding(model, tokenizer, text, pooling):
    """Pool one unpadded text by hand in float64 and L2-normalise it: the reference for both encoders."""
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        h = model.mambacode(ids["input_ids"], ids["attention_mask"]).last_hidden_state[0].double()
    v = {"mean": h.mean(0), "cls": h[0], "max": h.max(0).values}[pooling]
    return v / v.norm()


# ------------------------------------------------------------------------------ sentence-transformers
def test_saved_folder_has_the_sentence_transformers_files(tmp_path, tokenizer, tiny):
    _, folder = _saved(tmp_path, tokenizer, tiny, pooling="cls", max_position_embeddings=300)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 300
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32
    assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_cls_token"]
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    assert "sentence-transformers" in SENTENCE_TRANSFORMERS_TAGS


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_sentence_transformer_encode_equals_model_encode(tmp_path, tokenizer, tiny, pooling):
    from sentence_transformers import SentenceTransformer

    model, folder = _saved(tmp_path, tokenizer, tiny, pooling=pooling)
    ours = model.encode(TEXTS, tokenizer, batch_size=2)
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    theirs = st.encode(TEXTS, batch_size=2, convert_to_tensor=True).cpu()
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    for i, text in enumerate(TEXTS):  # both against a hand-pooled float64 reference
        torch.testing.assert_close(ours[i].double(), _naive_embedding(model, tokenizer, text, pooling),
                                   atol=1e-5, rtol=0)
    assert st.similarity_fn_name == "cosine"
    assert st.max_seq_length == model.config.max_position_embeddings


def test_sentence_transformers_trainer_trains_it(tmp_path, tokenizer, tiny):
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    _, folder = _saved(tmp_path, tokenizer, tiny)
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    before = {n: p.detach().clone() for n, p in st.named_parameters()}
    pairs = Dataset.from_dict({"anchor": ["sum two numbers", "loop ten times", "empty class", "add values"] * 2,
                               "positive": TEXTS[:4] * 2})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3,
                                                per_device_train_batch_size=4, learning_rate=1e-2,
                                                report_to="none", use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=pairs,
                                         loss=MultipleNegativesRankingLoss(st))
    result = trainer.train()
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    changed = [n for n, p in st.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("layers.0" in n for n in changed) and any("embeddings" in n for n in changed)
