"""The spectral-preserving regulariser (PAPER.md section 5, third fix): penalise the drift of every SSM
kernel's log-magnitude spectrum away from the spectrum recorded at the start of fine-tuning.

Why: fine-tuning on short-range tasks pushes early-layer kernels from low/band-pass towards high-pass and
the model forgets code structure (PAPER.md section 4). Anchoring the spectrum keeps the long-range
filters while the rest of the network adapts.

What is anchored
- `s4d` mixers: each layer x direction x kernel group's exact kernel K (D excluded) at length
  `config.spectral_anchor_length`, through `rfft`: the same spectrum SSM-Interpret reports.
- `mamba2` mixers: the kernel depends on the input, so the anchor is an input-independent proxy per head:
  k[l] = dt * exp(dt * A * l) with dt = softplus(dt_bias), the impulse response of the head at its bias
  operating point for unit C.B. Its spectrum has a closed form (a truncated geometric series), so it is
  exact and costs 2H scalars per layer. It anchors each head's time scale and gain, not the projections
  that make B, C and dt input-dependent.
- the `hf_conv` path is deliberately free: it exists to carry the high frequencies.

Penalty = mean over kernels of sum_f w_f (log|K^_f| - log|K^anchor_f|)^2, with w normalised to sum 1
(`config.spectral_anchor_weighting`). S4D log-magnitudes use a floor of 1e-6 x the anchor's mean power so
that deep spectral nulls (where the phase of tiny numbers is noise) do not dominate.

The anchor is model state: `SpectralAnchor`, a submodule of the encoder that exists whenever
`config.spectral_anchor_weight > 0`, keeps the recorded log-power spectra (and S4D floors) as persistent
buffers plus a `recorded` flag, so `save_pretrained`, `from_pretrained` and Trainer checkpoints carry it.
It is filled by one explicit call, `model.record_spectral_anchor()`; a training forward with a weight and
no recorded anchor raises.

This file is copied next to saved weights for `trust_remote_code`: it imports only torch, math and its
sibling model files.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration_mambacode import SPECTRAL_ANCHOR_WEIGHTINGS, MambaCodeConfig
from .mamba2 import BiMamba2Mixer
from .s4d import S4DMixer, s4d_kernel

LOW_BAND, HIGH_BAND = 0.10, 0.60  # the LHFR bands of PAPER.md section 4 (fractions of the rfft bins)
POWER_FLOOR = 1e-6
NO_ANCHOR = ("config.spectral_anchor_weight > 0 but no spectral anchor is recorded; call "
             "model.record_spectral_anchor() after loading the weights to anchor to (before training).")


# ------------------------------------------------------------------------------------------ spectra
def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def s4d_power(log_step, A_real, A_imag, C, length: int, conjugate_pairs: bool = True) -> torch.Tensor:
    """|rfft(K)|^2 of the S4D kernels, shape (..., length // 2 + 1)."""
    return torch.fft.rfft(s4d_kernel(log_step, A_real, A_imag, C, length, conjugate_pairs)).abs().square()


def mamba2_log_power(dt_bias, A_log, length: int) -> torch.Tensor:
    """log |rfft(k)|^2 of the proxy kernel k[l] = dt exp(dt A l), l < length, in closed form.

    rfft(k)[f] = dt (1 - r^L) / (1 - r e^{-i w}),  r = exp(dt A),  w = 2 pi f / L; the denominator's
    squared modulus is written (1 - r)^2 + 4 r sin^2(w / 2) to stay accurate for r near 1.
    """
    dtype = _real_dtype(dt_bias)
    dt = torch.nn.functional.softplus(dt_bias.to(dtype))
    a = -torch.exp(A_log.to(dtype)) * dt  # log r < 0
    w = 2 * math.pi * torch.arange(length // 2 + 1, device=dt_bias.device, dtype=dtype) / length
    a_ = a.unsqueeze(-1)
    numerator = 2 * torch.log(dt).unsqueeze(-1) + 2 * torch.log(-torch.expm1(a_ * length))
    denominator = torch.expm1(a_).square() + 4 * torch.exp(a_) * torch.sin(w / 2).square()
    return numerator - torch.log(denominator)


def frequency_weights(num_bins: int, weighting: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """Per-bin weights (sum 1) for `weighting` in SPECTRAL_ANCHOR_WEIGHTINGS; bins are rfftfreq, f in [0, 0.5]."""
    f = torch.linspace(0.0, 0.5, num_bins, device=device, dtype=dtype)
    if weighting == "uniform":
        w = torch.ones_like(f)
    elif weighting == "low":
        w = 1.0 - 2.0 * f
    elif weighting == "high":
        w = 2.0 * f
    elif weighting == "bands":
        w = torch.zeros_like(f)
        w[: max(1, int(num_bins * LOW_BAND))] = 1.0
        w[int(num_bins * HIGH_BAND):] = 1.0
    else:
        raise ValueError(f"spectral_anchor_weighting={weighting!r} is invalid: expected one of "
                         f"{SPECTRAL_ANCHOR_WEIGHTINGS}.")
    return w / w.sum()


def kernel_log_power(ssm: nn.Module, length: int, floor: torch.Tensor | None = None):
    """(log power (2, K, length // 2 + 1), floor) of one mixer's kernels, differentiable in its parameters.

    S4D: log(|rfft K|^2 + floor), the floor computed from these kernels when None (then returned, shape
    (2, G, 1)). Mamba-2: the closed-form proxy spectrum, floor None.
    """
    if isinstance(ssm, BiMamba2Mixer):
        return mamba2_log_power(ssm.dt_bias, ssm.A_log, length), None
    if not isinstance(ssm, S4DMixer):
        raise TypeError(f"spectral anchor: {type(ssm).__name__} is not an S4DMixer or BiMamba2Mixer.")
    k = ssm.kernel
    power = s4d_power(k.log_step, k.A_real, k.A_imag, k.C, length, k.conjugate_pairs)
    if floor is None:
        floor = POWER_FLOOR * power.detach().mean(-1, keepdim=True) + torch.finfo(power.dtype).tiny
    return torch.log(power + floor), floor


# ------------------------------------------------------------------------------------------ state
class SpectralAnchor(nn.Module):
    """The recorded spectra of every layer's SSM kernels, as persistent buffers.

    Buffers: `log_power` (layers, 2, K, length // 2 + 1) with K = num_kernels (s4d) or heads (mamba2);
    `floor` (layers, 2, K, 1), s4d only; `recorded`, a bool scalar, False until `record` runs (a checkpoint
    without an anchor loads as not recorded).
    """

    def __init__(self, config: MambaCodeConfig):
        super().__init__()
        self.length = config.spectral_anchor_length
        kernels = config.num_kernels if config.mixer == "s4d" else config.hidden_size // config.mamba_head_dim
        shape = (config.num_hidden_layers, 2, kernels)
        self.register_buffer("log_power", torch.zeros(*shape, self.length // 2 + 1))
        if config.mixer == "s4d":
            self.register_buffer("floor", torch.zeros(*shape, 1))
        else:
            self.floor = None
        self.register_buffer("recorded", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def record(self, layers) -> None:
        """Store the current spectra of `layers` (the encoder's `MambaCodeLayer`s) as the anchor."""
        for i, layer in enumerate(layers):
            log_power, floor = kernel_log_power(layer.mixer.ssm, self.length)
            self.log_power[i].copy_(log_power)
            if floor is not None:
                self.floor[i].copy_(floor)
        self.recorded.fill_(True)

    def terms(self, layers, weighting: str) -> list[torch.Tensor]:
        """Per layer, the weighted squared log-magnitude drift of each kernel, shape (2, K); differentiable."""
        if not bool(self.recorded):
            raise ValueError(NO_ANCHOR)
        weights = None
        out = []
        for i, layer in enumerate(layers):
            floor = self.floor[i] if self.floor is not None else None
            log_now, _ = kernel_log_power(layer.mixer.ssm, self.length, floor)
            if weights is None:
                weights = frequency_weights(log_now.shape[-1], weighting, device=log_now.device,
                                            dtype=log_now.dtype)
            # (log power difference)/2 = log-magnitude difference
            out.append(((log_now - self.log_power[i].to(log_now.dtype)) / 2).square().mul(weights).sum(-1))
        return out

    def penalty(self, layers, weighting: str) -> torch.Tensor:
        """Mean over every kernel of `terms`: zero at the anchor, one kernel + rfft per S4D layer."""
        return torch.cat([t.reshape(-1) for t in self.terms(layers, weighting)]).mean()


__all__ = ["SpectralAnchor", "kernel_log_power", "s4d_power", "mamba2_log_power", "frequency_weights",
           "NO_ANCHOR"]
