"""`extend_positions`: a model reads pools longer than its position limit (the long-context test), with its
outputs on short inputs unchanged and RoCoder's longer rotary table equal to the formula's."""

import math

import pytest
import torch
from transformers import RoFormerConfig

from mambacode.modeling import MambaCodeConfig, MambaCodeForRetrieval
from mambacode.training.models import extend_positions
from mambacode.training.rocoder import RoCoderForRetrieval


def _rotary_reference(n: int, dim: int) -> torch.Tensor:
    """RoFormer's table by its definition: sin of pos / 10000^(2i/dim) in the first half, cos in the second."""
    out = torch.empty(n, dim, dtype=torch.float64)
    for pos in range(n):
        for i in range(dim // 2):
            angle = pos / math.pow(10000, 2 * i / dim)
            out[pos, i], out[pos, dim // 2 + i] = math.sin(angle), math.cos(angle)
    return out


@pytest.mark.parametrize("family", ["mambacode", "rocoder"])
def test_a_model_reads_past_its_limit_and_keeps_its_short_outputs(family):
    torch.manual_seed(0)
    if family == "rocoder":
        config = RoFormerConfig(vocab_size=50, embedding_size=32, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
        model = RoCoderForRetrieval(config).eval()
    else:
        config = MambaCodeConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 state_size=8, max_position_embeddings=16)
        model = MambaCodeForRetrieval(config).eval()
    short = torch.randint(3, 50, (2, 12))
    long = torch.randint(3, 50, (1, 40))
    with torch.no_grad():
        before = model.embed(short, torch.ones_like(short))[0]
    if family == "mambacode":
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model.embed(long, torch.ones_like(long))
    assert extend_positions(model, 40) and model.config.max_position_embeddings == 40
    assert not extend_positions(model, 30)  # already long enough
    with torch.no_grad():
        after = model.embed(short, torch.ones_like(short))[0]
        model.embed(long, torch.ones_like(long))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    if family == "rocoder":
        table = model.roformer.encoder.embed_positions.weight
        assert table.shape == (40, 16) and not table.requires_grad  # head dim 16: the rotary table
        torch.testing.assert_close(table.double(), _rotary_reference(40, 16), rtol=0, atol=1e-6)
