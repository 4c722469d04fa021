"""The spectral-preserving regulariser as model state: zero at the anchor, positive after drift, equal to a
numpy reference, gradcheck (float64), the loss hook, the Mamba-2 closed form, the anchor in the state dict."""

import numpy as np
import pytest
import torch

from mambacode import MambaCodeForMaskedLM, MambaCodeModel
from mambacode.modeling import spectral_anchor as sa
from mambacode.modeling.configuration_mambacode import SPECTRAL_ANCHOR_WEIGHTINGS

S4D_PARAMS = ("log_step", "A_real", "A_imag", "C")


def anchored(config, weight=1.0, cls=MambaCodeForMaskedLM):
    config.spectral_anchor_weight = weight
    model = cls(config)
    model.record_spectral_anchor()
    return model


def kernel_modules(model):
    encoder = model.base_model
    return [layer.mixer.ssm.kernel if hasattr(layer.mixer.ssm, "kernel") else layer.mixer.ssm
            for layer in encoder.layers]


def perturb(model, scale=0.05):
    with torch.no_grad():
        for module in kernel_modules(model):
            for p in module.parameters():
                p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_zero_at_anchor_positive_after_perturbation(mixer, tiny):
    model = anchored(tiny(mixer, spectral_anchor_length=64))
    assert model.has_spectral_anchor() and model.spectral_anchor_penalty().item() == 0.0
    perturb(model)
    drift = model.spectral_anchor_penalty()
    assert drift.item() > 0
    drift.backward()
    grads = [p.grad for m in kernel_modules(model) for p in m.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # a parameter the anchor does not cover (D skip) does not change the penalty
    with torch.no_grad():
        for m in kernel_modules(model):
            m.D.add_(1.0)
    assert model.spectral_anchor_penalty().item() == pytest.approx(drift.item(), rel=1e-6)
    model.record_spectral_anchor()  # re-anchoring is explicit
    assert model.spectral_anchor_penalty().item() == 0.0


def numpy_s4d_log_power(kernel, length):
    """log|rfft K|^2 per direction x group, K from the closed form 2 Re(sum Ct exp(dt A l)) in complex128."""
    p = {n: getattr(kernel, n).detach().double().numpy() for n in S4D_PARAMS}
    A = np.minimum(p["A_real"], -1e-4) + 1j * p["A_imag"]
    dt = np.exp(p["log_step"])[..., None]
    Ct = (p["C"][..., 0] + 1j * p["C"][..., 1]) * (np.exp(dt * A) - 1) / A
    lags = np.arange(length)
    K = 2 * np.real((Ct[..., None] * np.exp(dt[..., None] * A[..., None] * lags)).sum(-2))
    return np.abs(np.fft.rfft(K)) ** 2


def test_penalty_matches_numpy_reference(tiny):
    length = 64
    model = anchored(tiny("s4d", spectral_anchor_length=length, spectral_anchor_weighting="low"))
    ref = [numpy_s4d_log_power(m, length) for m in kernel_modules(model)]
    perturb(model, 0.1)
    now = [numpy_s4d_log_power(m, length) for m in kernel_modules(model)]
    f = np.linspace(0, 0.5, length // 2 + 1)
    w = (1 - 2 * f) / (1 - 2 * f).sum()
    terms = []
    for r, n in zip(ref, now):
        floor = 1e-6 * r.mean(-1, keepdims=True)
        terms.append((((np.log(n + floor) - np.log(r + floor)) / 2) ** 2 * w).sum(-1).ravel())
    want = np.concatenate(terms).mean()
    assert model.spectral_anchor_penalty().item() == pytest.approx(want, rel=2e-3)


def test_gradcheck_functional_core_float64(tiny):
    # small (2 kernels x 2 modes) so that numerical differentiation stays fast
    kernel = MambaCodeModel(tiny("s4d", state_size=4, num_kernels=2)).layers[0].mixer.ssm.kernel.double()
    ref = [getattr(kernel, n).detach().clone() for n in S4D_PARAMS]
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
def test_gradcheck_full_penalty_through_the_model(mixer, tiny):
    """gradcheck of model.spectral_anchor_penalty() itself (float64 model, parameters swapped in)."""
    small = {"state_size": 4, "num_kernels": 2} if mixer == "s4d" else {}
    config = tiny(mixer, num_hidden_layers=1, spectral_anchor_length=16, spectral_anchor_weighting="bands",
                  spectral_anchor_weight=1.0, **small)
    model = MambaCodeModel(config).double()
    model.record_spectral_anchor()
    assert model.spectral_anchor.log_power.dtype == torch.float64
    names = [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in S4D_PARAMS + ("dt_bias", "A_log")]
    params = dict(model.named_parameters())

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self):
            return self.inner.spectral_anchor_penalty()

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


def test_loss_hook_adds_weight_times_penalty_in_training_only(tiny):
    model = anchored(tiny("s4d", spectral_anchor_length=64), weight=0.5)
    ids = torch.randint(3, 100, (2, 12))
    model.train()
    perturb(model, 0.2)
    penalty = model.spectral_anchor_penalty().item()
    assert penalty > 0
    with_reg = model(input_ids=ids, labels=ids).loss
    model.config.spectral_anchor_weight = 0.0
    without = model(input_ids=ids, labels=ids).loss
    assert with_reg.item() == pytest.approx(without.item() + 0.5 * penalty, rel=1e-5)
    model.config.spectral_anchor_weight = 0.5
    model.eval()
    assert model(input_ids=ids, labels=ids).loss.item() == pytest.approx(without.item(), rel=1e-6)


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_training_forward_without_anchor_raises_and_names_the_remedy(mixer, tiny):
    model = MambaCodeForMaskedLM(tiny(mixer, spectral_anchor_weight=0.5)).train()
    assert not model.has_spectral_anchor()  # the buffers exist but hold no anchor yet
    ids = torch.randint(3, 100, (2, 12))
    with pytest.raises(ValueError, match=r"model\.record_spectral_anchor\(\)"):
        model(input_ids=ids, labels=ids)
    with pytest.raises(ValueError, match=r"record_spectral_anchor"):
        model(input_ids=ids)  # no labels: still refused, the state is wrong either way
    model.eval()
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)  # evaluation needs no anchor
    model.train()
    model.record_spectral_anchor()
    assert model(input_ids=ids, labels=ids).loss.item() > 0
    off = MambaCodeForMaskedLM(tiny(mixer))
    assert off.base_model.spectral_anchor is None
    with pytest.raises(ValueError, match="spectral_anchor_weight is 0"):
        off.record_spectral_anchor()


def test_weightings_and_config_validation(tiny):
    model = anchored(tiny("s4d", spectral_anchor_length=64))
    perturb(model)
    values = {}
    for w in SPECTRAL_ANCHOR_WEIGHTINGS:
        model.config.spectral_anchor_weighting = w
        values[w] = model.spectral_anchor_penalty().item()
    assert all(v > 0 for v in values.values()) and len(set(values.values())) == 4
    for w in SPECTRAL_ANCHOR_WEIGHTINGS:
        weights = sa.frequency_weights(33, w)
        assert weights.sum().item() == pytest.approx(1.0) and (weights >= 0).all()
    with pytest.raises(ValueError, match="spectral_anchor_weighting"):
        tiny("s4d", spectral_anchor_weighting="pink")
    with pytest.raises(ValueError, match="spectral_anchor_length"):
        tiny("s4d", spectral_anchor_length=2)
    with pytest.raises(ValueError, match="spectral_anchor_weight"):
        tiny("s4d", spectral_anchor_weight=-1.0)
    model.config.spectral_anchor_weighting = "pink"
    with pytest.raises(ValueError, match="spectral_anchor_weighting"):
        model.record_spectral_anchor()
    model.config.spectral_anchor_weighting = "uniform"
    model.config.spectral_anchor_length = 128  # a new length needs a new recording
    with pytest.raises(ValueError, match="recorded at length 64"):
        model.spectral_anchor_penalty()
    model.record_spectral_anchor()
    assert model.spectral_anchor_penalty().item() == 0.0
    assert model.base_model.spectral_anchor.log_power.shape == (2, 2, 4, 65)


@pytest.mark.parametrize("mixer", ["s4d", "mamba2"])
def test_anchor_travels_in_the_state_dict(mixer, tiny, tmp_path, caplog):
    model = anchored(tiny(mixer, spectral_anchor_length=64))
    anchor = {k: v.clone() for k, v in model.state_dict().items() if "spectral_anchor" in k}
    assert set(anchor) >= {"mambacode.spectral_anchor.log_power", "mambacode.spectral_anchor.recorded"}
    perturb(model)
    drift = model.spectral_anchor_penalty().item()
    model.save_pretrained(tmp_path / "m")
    loaded = MambaCodeForMaskedLM.from_pretrained(tmp_path / "m")
    assert loaded.has_spectral_anchor()
    assert loaded.spectral_anchor_penalty().item() == pytest.approx(drift, rel=1e-6)
    for k, v in anchor.items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    # the bare encoder and another head load it too (the encoder owns the anchor)
    assert MambaCodeModel.from_pretrained(tmp_path / "m").has_spectral_anchor()
    # a checkpoint without an anchor, loaded with the regulariser on: "not recorded", so training refuses
    plain = MambaCodeForMaskedLM(tiny(mixer))
    plain.save_pretrained(tmp_path / "plain")
    on = MambaCodeForMaskedLM.from_pretrained(tmp_path / "plain", spectral_anchor_weight=1.0,
                                              spectral_anchor_length=64)
    assert on.base_model.spectral_anchor is not None and not on.has_spectral_anchor()
    torch.testing.assert_close(on.base_model.embeddings.weight, plain.base_model.embeddings.weight)
    # an anchored checkpoint loaded with the regulariser off: weights load, the anchor is simply not kept
    off = MambaCodeForMaskedLM.from_pretrained(tmp_path / "m", spectral_anchor_weight=0.0)
    assert off.base_model.spectral_anchor is None
