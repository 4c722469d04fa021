"""Bad model inputs: one clear ValueError each at the public entry points, for every mixer and the hf_conv
path; `encode` edge cases (empty list, lone surrogates, empty tokenizations, bad max_length)."""

import pytest
import torch

from mambacode import (
    MambaCodeForMaskedLM,
    MambaCodeForRetrieval,
    MambaCodeForSequenceClassification,
    MambaCodeForTokenClassification,
    MambaCodeModel,
)

VARIANTS = [("s4d", {}), ("mamba2", {}), ("s4d", {"hf_conv": True}), ("mamba2", {"hf_conv": True})]
HEADS = [MambaCodeModel, MambaCodeForMaskedLM, MambaCodeForRetrieval, MambaCodeForTokenClassification,
         MambaCodeForSequenceClassification]
IDS = torch.randint(3, 100, (2, 7))
ONES = torch.ones(2, 7, dtype=torch.long)

# (description, input_ids, attention_mask, the message's key words)
BAD = [
    ("empty batch", torch.zeros(0, 7, dtype=torch.long), None, "empty batch"),
    ("zero length", torch.zeros(2, 0, dtype=torch.long), None, "length 0"),
    ("id above the vocabulary", torch.tensor([[3, 4, 100]]), None, r"ids in \[3, 100\].*100 entries"),
    ("negative id", torch.tensor([[3, -1, 5]]), None, r"ids in \[-1, 5\]"),
    ("float ids", IDS.float(), None, "dtype torch.float32"),
    ("bool ids", IDS > 50, None, "dtype torch.bool"),
    ("1-D ids", IDS[0], None, r"shape \(batch, length\)"),
    ("mask of shape (L,)", IDS, ONES[0], r"attention_mask has shape \(7,\)"),
    ("mask of another length", IDS, ONES[:, :5], r"attention_mask has shape \(2, 5\)"),
    ("mask with NaN", IDS, torch.where(ONES.bool(), 1.0, 0.0).index_fill(1, torch.tensor([3]), float("nan")),
     "other than 0 and 1"),
    ("mask with 2", IDS, ONES * 2, "other than 0 and 1"),
    ("mask with 0.5", IDS, ONES * 0.5, "other than 0 and 1"),
]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v[0] + ("+hf" if v[1] else ""))
def models(request, tiny):
    mixer, extra = request.param
    config = tiny(mixer, num_labels=3, **extra)
    return [cls(config).eval() for cls in HEADS]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_inputs_raise_one_clear_error_at_every_head(models, case):
    _, ids, mask, match = case
    for model in models:
        with pytest.raises(ValueError, match=match):
            model(input_ids=ids, attention_mask=mask)
    retrieval = models[2]
    with pytest.raises(ValueError, match=match):  # the code side of the bi-encoder is checked the same way
        retrieval(input_ids=IDS[:1], code_input_ids=ids, code_attention_mask=mask)


def test_valid_edge_inputs_still_work(models):
    for model in models:
        with torch.no_grad():
            model(input_ids=IDS[:1, :1])  # one token
            model(input_ids=IDS.int(), attention_mask=ONES.bool())  # int32 ids, bool mask
            model(input_ids=torch.tensor([[0, 99]]), attention_mask=torch.tensor([[1.0, 0.0]]))  # bounds, float mask


def test_inputs_embeds_and_pairing_are_checked(tiny):
    model = MambaCodeForRetrieval(tiny()).eval()
    with pytest.raises(ValueError, match="exactly one"):
        model.mambacode(input_ids=IDS, inputs_embeds=torch.randn(2, 7, 32))
    with pytest.raises(ValueError, match="hidden_size=32"):
        model.mambacode(inputs_embeds=torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match="empty batch"):
        model.mambacode(inputs_embeds=torch.randn(0, 7, 32))
    with pytest.raises(ValueError, match="pairs query i with code i"):
        model(input_ids=IDS, code_input_ids=IDS[:1])


def test_the_checks_do_not_change_results(tiny):
    """Padding detection moved into the validation: a padded batch still equals each sequence alone."""
    model = MambaCodeModel(tiny("mamba2")).eval()
    mask = ONES.clone()
    mask[1, 4:] = 0
    with torch.no_grad():
        both = model(IDS, mask).last_hidden_state
        alone = model(IDS[1:, :4]).last_hidden_state
    torch.testing.assert_close(both[1, :4], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_encode_edge_cases(tokenizer, mixer, tiny):
    model = MambaCodeForRetrieval(tiny(mixer, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)).eval()
    empty = model.encode([], tokenizer)
    assert empty.shape == (0, 32) and empty.dtype == torch.float32
    # lone surrogates become U+FFFD (documented); a surrogate pair is joined into its character
    lone = model.encode(["x = '\ud800'", "x = '\ud83d\ude00'"], tokenizer)
    torch.testing.assert_close(lone, model.encode(["x = '\ufffd'", "x = '\U0001f600'"], tokenizer))
    # a text with no tokens (this tokenizer adds no special tokens) gets a zero vector, alone or in a batch
    assert not model.encode([""], tokenizer).any()
    mixed = model.encode(["def add(a, b)", "", "x = 1"], tokenizer, batch_size=2)
    assert not mixed[1].any() and torch.allclose(mixed[[0, 2]].norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(mixed[0], model.encode("def add(a, b)", tokenizer)[0], atol=1e-5, rtol=1e-5)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="max_length"):
            model.encode(["x"], tokenizer, max_length=bad)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["x"], tokenizer, batch_size=0)
    with pytest.raises(ValueError, match=r"texts\[1\] is a int"):
        model.encode(["x", 3], tokenizer)
