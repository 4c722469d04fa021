"""`encode`'s batching (token budget, ids tokenized once and padded by hand) and the layer's inference path
(activations computed in place without autograd), against independent references: each text embedded alone
through the model's forward, the tokenizer's own padding, and a forward with autograd on."""

import pytest
import torch

from mambacode import MambaCodeForRetrieval
from mambacode.modeling.modeling_mambacode import _padded, length_batches

TEXTS = ["def add(a, b):\n    return a + b", "x = 1", "", "for i in range(10): print(i)\n" * 7, "class A: pass",
         "def f(): return '\u00e9'", "print(i)" * 12]


@pytest.mark.parametrize("batch_size,max_tokens", [(32, None), (3, None), (32, 40), (2, 64), (32, 1)])
def test_length_batches_cover_every_text_once_within_the_limits(batch_size, max_tokens):
    torch.manual_seed(0)
    lengths = [0, 5] + torch.randint(0, 50, (40,)).tolist() + [5]
    batches = length_batches(lengths, batch_size, max_tokens)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == [i for i, n in enumerate(lengths) if n > 0]  # each non-empty text once
    seen = [lengths[i] for i in flat]
    assert seen == sorted(seen, reverse=True)  # longest first
    assert flat.index(1) < flat.index(len(lengths) - 1)  # ties in input order
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= batch_size
        if max_tokens is not None and len(b) > 1:
            assert len(b) * longest <= max_tokens
    for b, nxt in zip(batches, batches[1:]):  # a batch stops early only at a limit
        limit = batch_size if max_tokens is None else min(batch_size, max(1, max_tokens // lengths[b[0]]))
        assert len(b) == limit


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_equals_the_tokenizers_padding(side, tokenizer):
    tokenizer.padding_side = side
    try:
        texts = [t for t in TEXTS if t]
        ref = tokenizer(texts, padding=True, return_tensors="pt")
        ids, mask = _padded(tokenizer(texts)["input_ids"], tokenizer.pad_token_id, side == "left")
        assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"])
    finally:
        tokenizer.padding_side = "right"


def test_encode_with_a_token_budget_equals_each_text_alone(tiny, tokenizer):
    torch.manual_seed(0)
    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer))).eval()
    got = model.encode(TEXTS, tokenizer, batch_size=4, max_tokens=60)
    assert got.shape == (len(TEXTS), 32)
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:
            assert torch.equal(got[i], torch.zeros(32))
            continue
        with torch.enable_grad():  # the autograd path of the layer (no in-place activations)
            ref = model(input_ids=ids).embeddings[0].detach()
        torch.testing.assert_close(got[i], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_tokens=0"):
        model.encode(TEXTS, tokenizer, max_tokens=0)


@pytest.mark.parametrize("merge", ["mul", "add"])
def test_inference_forward_equals_the_autograd_forward_bit_for_bit(merge, tiny):
    """Without autograd the layer computes GELUs and the merge in place: the same float operations, so the
    same bits, in float32 and under bf16 autocast, with padding."""
    torch.manual_seed(0)
    model = MambaCodeForRetrieval(tiny(direction_merge=merge, hf_conv=True)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("short_conv.scale"):
                p.normal_(0, 0.5)
    ids = torch.randint(5, 100, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            with torch.no_grad():
                fast = model(input_ids=ids, attention_mask=mask).last_hidden_state
            ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.detach()
        assert torch.equal(fast, ref)


def test_index_in_bf16_stays_within_cosine_bounds_of_float32_and_keeps_a_float32_fingerprint(tmp_path, tiny,
                                                                                          tokenizer):
    """`build_index(precision="bf16")` (what `mambacode index` picks on CPUs with native bf16): every vector within
    cosine 0.999 of the float32 index's, the same float32 fingerprint (so search and re-indexing accept it), and the
    precision recorded in the manifest; `index_precision` resolves "auto" and refuses unknown names."""
    import json
    import os

    import numpy as np

    from mambacode.search import build_index, CodeIndex
    from mambacode.search.index import index_precision

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("def add(a, b):\n    return a + b\n\n\ndef loop(n):\n    for i in range(n):\n"
                              "        print(i * i)\n    return n\n\n\nclass A:\n    def m(self):\n        return 1\n")
    torch.manual_seed(0)
    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    indexes = {}
    for precision in ("float32", "bf16"):
        out = str(tmp_path / precision)
        build_index(str(src), out, str(tmp_path / "model"), progress=False, precision=precision)
        with open(os.path.join(out, "manifest.json")) as fh:
            assert json.load(fh)["precision"] == precision
        indexes[precision] = CodeIndex.load(out)
    a, b = indexes["float32"], indexes["bf16"]
    assert a.manifest["model_fingerprint"] == b.manifest["model_fingerprint"]
    va, vb = a.vectors().astype(np.float64), b.vectors().astype(np.float64)
    cos = (va * vb).sum(1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    assert len(cos) == 3 and cos.min() > 0.999 and not np.array_equal(va, vb)
    assert index_precision(model, "auto") in ("float32", "bf16")
    with pytest.raises(ValueError, match="precision='fp8'"):
        index_precision(model, "fp8")
