"""The spectral-preserving regulariser (PAPER.md section 5, third fix): penalise the drift of every SSM
kernel's log-magnitude spectrum away from its value at the start of fine-tuning.

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

Anchor: the first call (or `capture_spectral_anchor`) records detached copies of the kernel *parameters*
on the encoder (attribute `_spectral_anchor`); spectra are recomputed from them and cached per length,
device and dtype. `mambacode.spectral.regularizer` saves and restores them next to checkpoints.

This file is copied next to saved weights for `trust_remote_code`: it imports only torch, math and its
sibling model files.
"""

from __future__ import annotations

import math

import torch

ANCHOR_ATTR = "_spectral_anchor"
CACHE_ATTR = "_spectral_anchor_cache"
WEIGHTINGS = ("uniform", "low", "high", "bands")
S4D_PARAMS = ("log_step", "A_real", "A_imag", "C")
MAMBA2_PARAMS = ("dt_bias", "A_log")
LOW_BAND, HIGH_BAND = 0.10, 0.60  # the LHFR bands of PAPER.md section 4 (fractions of the rfft bins)
POWER_FLOOR = 1e-6


# ------------------------------------------------------------------------------------------ kernels
def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def s4d_kernels(log_step, A_real, A_imag, C, length: int) -> torch.Tensor:
    """S4D kernels (..., length), float64 if the parameters are float64: the model's own `s4d_kernel`."""
    from .s4d import s4d_kernel

    return s4d_kernel(log_step, A_real, A_imag, C, length)


def s4d_power(log_step, A_real, A_imag, C, length: int) -> torch.Tensor:
    """|rfft(K)|^2 of the S4D kernels, shape (..., length // 2 + 1)."""
    return torch.fft.rfft(s4d_kernels(log_step, A_real, A_imag, C, length)).abs().square()


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
    """Per-bin weights (sum 1) for `weighting` in WEIGHTINGS; bins are rfftfreq, f in [0, 0.5]."""
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
        raise ValueError(f"spectral_anchor_weighting={weighting!r} is invalid: expected one of {WEIGHTINGS}.")
    return w / w.sum()


# ------------------------------------------------------------------------------------------ modules
def _encoder(model):
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    return inner if isinstance(inner, torch.nn.Module) else model


def anchor_modules(model) -> list[tuple[str, torch.nn.Module, str]]:
    """(name, module, kind) for every anchorable kernel module: S4DKernel ('s4d') or Mamba2Mixer ('mamba2')."""
    from .mamba2 import Mamba2Mixer
    from .s4d import S4DKernel

    found = []
    for name, module in _encoder(model).named_modules():
        if isinstance(module, S4DKernel):
            found.append((name, module, "s4d"))
        elif isinstance(module, Mamba2Mixer):
            found.append((name, module, "mamba2"))
    if not found:
        raise ValueError(
            f"spectral anchor: {type(model).__name__} has no SSM kernels to anchor; supported are MambaCode "
            "models (mixer='s4d' S4DKernel or mixer='mamba2' Mamba2Mixer)."
        )
    return found


def capture_spectral_anchor(model) -> dict:
    """Record the current kernel parameters (detached copies) as the anchor; returns it."""
    anchor = {}
    for name, module, kind in anchor_modules(model):
        names = S4D_PARAMS if kind == "s4d" else MAMBA2_PARAMS
        anchor[name] = {"kind": kind, **{p: getattr(module, p).detach().clone() for p in names}}
    encoder = _encoder(model)
    setattr(encoder, ANCHOR_ATTR, anchor)
    setattr(encoder, CACHE_ATTR, {})
    return anchor


def get_spectral_anchor(model):
    """The recorded anchor dict, or None."""
    return getattr(_encoder(model), ANCHOR_ATTR, None)


def clear_spectral_anchor(model) -> None:
    """Forget the anchor: the next penalty call records a new one."""
    encoder = _encoder(model)
    for attr in (ANCHOR_ATTR, CACHE_ATTR):
        if hasattr(encoder, attr):
            delattr(encoder, attr)


def _log_power(kind: str, params: dict, length: int, floor=None):
    """(log power, floor) of one module's kernels; `floor` is computed from this call when None."""
    if kind == "mamba2":
        return mamba2_log_power(params["dt_bias"], params["A_log"], length), None
    power = s4d_power(*(params[p] for p in S4D_PARAMS), length)
    if floor is None:
        floor = POWER_FLOOR * power.detach().mean(-1, keepdim=True) + torch.finfo(power.dtype).tiny
    return torch.log(power + floor), floor


def spectral_anchor_terms(model, length: int | None = None, weighting: str | None = None) -> dict:
    """Per-module drift (weighted mean squared log-power difference / 4, one value per kernel).

    Returns {module name: tensor of shape (2, G) or (2, H)}; differentiable w.r.t. the current parameters.
    Records the anchor first if none exists.
    """
    config = getattr(model, "config", None)
    length = int(length or getattr(config, "spectral_anchor_length", 1024))
    weighting = weighting or getattr(config, "spectral_anchor_weighting", "uniform")
    anchor = get_spectral_anchor(model)
    if anchor is None:
        anchor = capture_spectral_anchor(model)
    encoder = _encoder(model)
    cache = getattr(encoder, CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(encoder, CACHE_ATTR, cache)
    terms = {}
    weights = None
    for name, module, kind in anchor_modules(model):
        if name not in anchor:
            raise KeyError(f"spectral anchor has no entry for kernel module {name!r}; the model changed since "
                           "the anchor was recorded: clear it (clear_spectral_anchor) or load a matching one.")
        current = {p: getattr(module, p) for p in (S4D_PARAMS if kind == "s4d" else MAMBA2_PARAMS)}
        ref_dtype = _real_dtype(next(iter(current.values())))
        device = next(iter(current.values())).device
        key = (name, length, str(device), ref_dtype)
        if key not in cache:
            ref = {p: anchor[name][p].to(device=device, dtype=ref_dtype) for p in current}
            cache[key] = tuple(t.detach() if t is not None else None for t in _log_power(kind, ref, length))
        ref_log, floor = cache[key]
        log_now, _ = _log_power(kind, current, length, floor)
        if weights is None or weights.shape[-1] != log_now.shape[-1]:
            weights = frequency_weights(log_now.shape[-1], weighting, device=device, dtype=log_now.dtype)
        # (log power difference)/2 = log-magnitude difference
        terms[name] = ((log_now - ref_log) / 2).square().mul(weights).sum(-1)
    return terms


def spectral_anchor_penalty(model, length: int | None = None, weighting: str | None = None) -> torch.Tensor:
    """Mean over every kernel of the weighted squared log-magnitude spectrum drift from the anchor.

    Zero at the anchor, differentiable, and cheap: one (2, G, length) kernel and rfft per S4D layer, a
    closed form per Mamba-2 layer. Called by the models' losses when `config.spectral_anchor_weight > 0`.
    """
    terms = spectral_anchor_terms(model, length, weighting)
    flat = torch.cat([t.reshape(-1) for t in terms.values()])
    return flat.mean()


__all__ = [
    "spectral_anchor_penalty",
    "spectral_anchor_terms",
    "capture_spectral_anchor",
    "clear_spectral_anchor",
    "get_spectral_anchor",
    "anchor_modules",
    "s4d_kernels",
    "s4d_power",
    "mamba2_log_power",
    "frequency_weights",
    "WEIGHTINGS",
]
