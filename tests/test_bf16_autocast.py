"""bf16 autocast on CPU (the speed lever of `--bf16`): the FFT convolution and the SSD scan stay float32,
the short-sequence Toeplitz matmul runs in bf16 within a bound, and a training step's loss and gradients
stay within stated bounds of the float32 eager path.

Bounds: bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%). Measured at width 64, two layers,
for s4d, s4d + hf_conv and mamba2: loss 2-3e-5 relative, logits 0.44% (relative L2), gradients 0.45-0.50%
(relative L2, cosine 0.99999). The bounds (1e-3, 2%, 2%, 0.999) leave a 4x margin or more.
"""

import pytest
import torch

from mambacode import MambaCodeForMaskedLM
from mambacode.modeling.mamba2 import BiMamba2Mixer
from mambacode.modeling.s4d import S4DMixer


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("mixer_class,mixer", [(S4DMixer, "s4d"), (BiMamba2Mixer, "mamba2")])
def test_mixer_runs_in_float32_under_autocast(mixer_class, mixer, tiny):
    """The mixer's sums (FFTs, the SSD scan) ignore autocast: bf16 inputs give exactly the float32 result
    of the same (bf16-valued) inputs, rounded to bf16 once at the end."""
    torch.manual_seed(0)
    m = mixer_class(tiny(mixer=mixer, hidden_size=32), 0)
    if mixer == "s4d":  # the FFT path (CUDA); the Toeplitz and block paths of CPU are tested below / elsewhere
        m.direct_max_length = {"float32": 0, "autocast": 0}
        m.block_size = {"float32": 0, "autocast": 0}
    u_f, u_b = torch.randn(2, 24, 32).bfloat16(), torch.randn(2, 24, 32).bfloat16()
    with autocast():
        got = m(u_f, u_b)
    m_float = mixer_class(tiny(mixer=mixer, hidden_size=32), 0)
    m_float.load_state_dict(m.state_dict())
    if mixer == "s4d":
        m_float.direct_max_length, m_float.block_size = m.direct_max_length, m.block_size
    if mixer == "s4d":
        ref = m_float(u_f.float(), u_b.float())
        for g, r in zip(got, ref):
            assert g.dtype == torch.bfloat16
            torch.testing.assert_close(g, r.bfloat16(), rtol=0, atol=0)
    else:
        # compare the scan alone: the same parameters in, float32 out, bit-identical with and without autocast
        p = m.selective_parameters(u_f.float(), u_b.float())
        with autocast():
            y_auto = m.scan(p["x"], p["dt"], p["A"], p["B"], p["C"])
        y_ref = m.scan(p["x"], p["dt"], p["A"], p["B"], p["C"])
        assert y_auto.dtype == torch.float32
        torch.testing.assert_close(y_auto, y_ref, rtol=0, atol=0)


def test_s4d_toeplitz_path_under_autocast_is_bf16_within_bounds(tiny):
    """Short sequences take the direct Toeplitz matmul, which autocast runs in bf16 (float32 accumulation):
    within 1% (relative L2; measured 0.2-0.3%) of the float32 result, for both directions."""
    torch.manual_seed(0)
    m = S4DMixer(tiny(hidden_size=32), 0)
    u_f, u_b = torch.randn(2, 24, 32).bfloat16(), torch.randn(2, 24, 32).bfloat16()  # as the layer gives them
    with autocast():
        got = m(u_f, u_b)
    ref = m(u_f.float(), u_b.float())
    for g, r in zip(got, ref):
        assert g.dtype == torch.bfloat16 and r.dtype == torch.float32
        assert 0 < (g.float() - r).norm() / r.norm() < 0.01


@pytest.mark.parametrize("mixer,hf_conv", [("s4d", False), ("s4d", True), ("mamba2", False)])
def test_bf16_training_step_stays_close_to_float32(mixer, hf_conv, tiny):
    torch.manual_seed(0)
    config = tiny(mixer=mixer, hf_conv=hf_conv, hidden_size=64, intermediate_size=128)
    model = MambaCodeForMaskedLM(config).train()
    with torch.no_grad():  # a non-zero hf_conv scale, so that path is exercised
        for name, p in model.named_parameters():
            if name.endswith("short_conv.scale"):
                p.normal_(0, 0.5)
    ids = torch.randint(5, 100, (4, 48))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0  # padding too
    labels = ids.masked_fill(mask == 0, -100)

    def step(use_autocast):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_autocast):
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return out.loss.detach(), out.logits.detach().float(), grads

    loss32, logits32, grads32 = step(False)
    loss16, logits16, grads16 = step(True)
    assert abs(loss16 - loss32) / loss32 < 1e-3, (loss16, loss32)
    rel_logits = (logits16 - logits32).norm() / logits32.norm()
    assert rel_logits < 0.02, rel_logits
    cosine = torch.nn.functional.cosine_similarity(grads16.double(), grads32.double(), dim=0)
    rel_grads = (grads16 - grads32).norm() / grads32.norm()
    assert cosine > 0.999 and rel_grads < 0.02, (cosine, rel_grads)
