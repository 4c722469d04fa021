"""The spectral-preserving regulariser: zero at the anchor, positive after drift, gradcheck (float64),
the loss hook, the Mamba-2 closed form, anchor save/load."""

import numpy as np
import pytest
import torch

from mambacode import MambaCodeConfig, MambaCodeForMaskedLM, MambaCodeModel
from mambacode.modeling import spectral_anchor as sa
from mambacode.spectral import (
    SpectralAnchorRegularizer,
    clear_spectral_anchor,
    enable_spectral_anchor,
    get_spectral_anchor,
    load_spectral_anchor,
    save_spectral_anchor,
    set_spectral_anchor,
    spectral_anchor_penalty,
)


def tiny(mixer, **kw):
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, intermediate_size=64, mixer=mixer,
                  state_size=16, num_kernels=4 if mixer == "s4d" else 1, mamba_head_dim=8, mamba_chunk_size=8,
                  spectral_anchor_length=64)
    fields.update(kw)
    return MambaCodeConfig(**fields)


def perturb(model, scale=0.05):
    with torch.no_grad():
        for _, module, _ in sa.anchor_modules(model):
            for p in module.parameters():
                p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_zero_at_start_positive_after_perturbation(mixer):
    model = MambaCodeForMaskedLM(tiny(mixer))
    assert spectral_anchor_penalty(model).item() == 0.0  # first call records the anchor
    assert get_spectral_anchor(model) is not None
    perturb(model)
    drift = spectral_anchor_penalty(model)
    assert drift.item() > 0
    drift.backward()
    grads = [p.grad for _, m, _ in sa.anchor_modules(model) for p in m.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # a parameter the anchor does not cover (D skip) does not change the penalty
    with torch.no_grad():
        for _, m, _ in sa.anchor_modules(model):
            m.D.add_(1.0)
    assert spectral_anchor_penalty(model).item() == pytest.approx(drift.item(), rel=1e-6)
    clear_spectral_anchor(model)
    assert spectral_anchor_penalty(model).item() == 0.0


def test_gradcheck_functional_core_float64():
    torch.manual_seed(0)
    # small (2 kernels x 2 modes) so that numerical differentiation stays fast
    kernel = MambaCodeModel(tiny("s4d", state_size=4, num_kernels=2)).layers[0].mixer.ssm.kernel.double()
    ref = [getattr(kernel, n).detach().clone() for n in sa.S4D_PARAMS]
    length = 32
    anchor_power = sa.s4d_power(*ref, length)
    floor = 1e-6 * anchor_power.mean(-1, keepdim=True)
    w = sa.frequency_weights(length // 2 + 1, "low", dtype=torch.float64)

    def drift(log_step, A_real, A_imag, C):
        now = torch.log(sa.s4d_power(log_step, A_real, A_imag, C, length) + floor)
        return ((now - torch.log(anchor_power + floor)) / 2).square().mul(w).sum(-1).mean()

    inputs = [(t + 0.05 * torch.randn_like(t)).requires_grad_() for t in ref]
    assert torch.autograd.gradcheck(drift, inputs, eps=1e-6, atol=1e-6)
    assert kernel.log_step.dtype == torch.float64

    dt_bias, A_log = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    anchor = sa.mamba2_log_power(dt_bias, A_log, length)

    def drift_m2(dt_bias, A_log):
        return (sa.mamba2_log_power(dt_bias, A_log, length) - anchor).square().mean()

    assert torch.autograd.gradcheck(drift_m2, [(dt_bias + 0.1).requires_grad_(), A_log.clone().requires_grad_()])


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_gradcheck_full_penalty_through_the_model(mixer):
    """gradcheck of spectral_anchor_penalty(model) itself (float64 model, parameters swapped in)."""
    small = {"state_size": 4, "num_kernels": 2} if mixer == "s4d" else {}
    model = MambaCodeModel(tiny(mixer, num_hidden_layers=1, spectral_anchor_length=16, **small)).double()
    set_spectral_anchor(model)
    names = [f"{name}.{p}" for name, _, kind in sa.anchor_modules(model)
             for p in (sa.S4D_PARAMS if kind == "s4d" else sa.MAMBA2_PARAMS)]
    params = dict(model.named_parameters())

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self):
            return spectral_anchor_penalty(self.inner, weighting="bands")

    wrapper = Wrapper(model)

    def f(*tensors):
        return torch.func.functional_call(wrapper, {f"inner.{n}": t for n, t in zip(names, tensors)}, ())

    inputs = [(params[n].detach() + 0.03 * torch.randn_like(params[n])).requires_grad_() for n in names]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_mamba2_proxy_closed_form_matches_explicit_kernel():
    dt_bias, A_log = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    length = 256
    dt = torch.nn.functional.softplus(dt_bias)
    kernel = dt[..., None] * torch.exp(-torch.exp(A_log)[..., None] * dt[..., None] * torch.arange(length))
    want = torch.log(torch.fft.rfft(kernel).abs().square())
    torch.testing.assert_close(sa.mamba2_log_power(dt_bias, A_log, length), want, rtol=1e-8, atol=1e-8)


def test_loss_hook_adds_weight_times_penalty_in_training_only():
    config = tiny("s4d", spectral_anchor_weight=0.5)
    model = MambaCodeForMaskedLM(config)
    ids = torch.randint(3, 100, (2, 12))
    model.train()
    first = model(input_ids=ids, labels=ids).loss  # records the anchor: penalty 0
    perturb(model, 0.2)
    penalty = spectral_anchor_penalty(model).item()
    assert penalty > 0
    with_reg = model(input_ids=ids, labels=ids).loss
    model.config.spectral_anchor_weight = 0.0
    without = model(input_ids=ids, labels=ids).loss
    assert with_reg.item() == pytest.approx(without.item() + 0.5 * penalty, rel=1e-5)
    model.config.spectral_anchor_weight = 0.5
    model.eval()
    assert model(input_ids=ids, labels=ids).loss.item() == pytest.approx(without.item(), rel=1e-6)
    assert torch.isfinite(first)


def test_weightings_config_validation_and_regularizer_object():
    model = MambaCodeForMaskedLM(tiny("s4d"))
    reg = SpectralAnchorRegularizer(model, weight=2.0, length=64, weighting="high")
    assert reg().item() == 0.0
    perturb(model)
    values = {w: spectral_anchor_penalty(model, 64, w).item() for w in sa.WEIGHTINGS}
    assert all(v > 0 for v in values.values()) and len(set(values.values())) == 4
    assert reg().item() == pytest.approx(2.0 * values["high"], rel=1e-6)
    terms = reg.terms()
    assert set(terms) == {name for name, _, _ in sa.anchor_modules(model)}
    assert next(iter(terms.values())).shape == (2, 4)
    for w in sa.WEIGHTINGS:
        weights = sa.frequency_weights(33, w)
        assert weights.sum().item() == pytest.approx(1.0) and (weights >= 0).all()
    with pytest.raises(ValueError, match="spectral_anchor_weighting"):
        tiny("s4d", spectral_anchor_weighting="pink")
    with pytest.raises(ValueError, match="spectral_anchor_length"):
        tiny("s4d", spectral_anchor_length=2)
    with pytest.raises(ValueError, match="spectral_anchor_weighting"):
        enable_spectral_anchor(model, 0.1, weighting="pink")
    assert model.config.spectral_anchor_weight == 0.0  # unchanged after the failed call
    enable_spectral_anchor(model, 0.1, length=128, weighting="bands")
    assert model.config.spectral_anchor_weight == 0.1 and spectral_anchor_penalty(model).item() == 0.0


def test_anchor_save_load_roundtrip_and_mismatch(tmp_path):
    model = MambaCodeForMaskedLM(tiny("s4d"))
    set_spectral_anchor(model)
    save_spectral_anchor(model, str(tmp_path))
    perturb(model)
    drift = spectral_anchor_penalty(model).item()
    # a "resumed" copy: perturbed weights, no anchor; loading the saved one restores the same penalty
    resumed = MambaCodeForMaskedLM(model.config)
    resumed.load_state_dict(model.state_dict())
    load_spectral_anchor(resumed, str(tmp_path))
    assert spectral_anchor_penalty(resumed).item() == pytest.approx(drift, rel=1e-6)
    other = MambaCodeForMaskedLM(tiny("s4d", num_kernels=2))
    with pytest.raises(ValueError, match="shape"):
        load_spectral_anchor(other, str(tmp_path))
    with pytest.raises(ValueError, match="mamba2"):
        load_spectral_anchor(MambaCodeForMaskedLM(tiny("mamba2")), str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_spectral_anchor(model, str(tmp_path / "nowhere"))
    assert np.isfinite(drift)
