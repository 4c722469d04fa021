"""Frequency-domain statistics of one convolution kernel, exactly as PAPER.md section 4 defines them.

For a kernel K of length L: |K^| = |rfft(K)| (no window, no padding), freqs = rfftfreq(L) in [0, 0.5]
cycles/token, F = L // 2 + 1 bins.
- dominant_frequency = freqs[argmax |K^|]
- centroid = sum(f |K^|) / sum(|K^|)
- lhfr = sum(|K^|^2 over bins [0, floor(0.1 F))) / sum(|K^|^2 over bins [floor(0.6 F), F)); log10_lhfr
- filter_class: 'low-pass' if centroid < 0.166 and log10 LHFR > 1; 'high-pass' if centroid >= 0.166 and
  log10 LHFR < 0; 'band-pass' if centroid >= 0.166 and 0 <= log10 LHFR <= 1; else 'unclassified'.
- effective_receptive_field: the smallest n such that lags 0..n-1 hold at least 90% of sum |K| (a delta
  gives 1).
A kernel that is identically zero has no spectrum: its statistics are NaN and its class 'unclassified'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILTER_CLASSES = ("low-pass", "band-pass", "high-pass", "unclassified")


@dataclass(frozen=True)
class Thresholds:
    """Every constant of PAPER.md section 4, configurable (the defaults are the paper's)."""

    low_band: float = 0.10  # LHFR numerator: the first `low_band` fraction of the bins
    high_band: float = 0.60  # LHFR denominator: bins from this fraction to the end
    centroid: float = 0.166  # low-pass below, band/high-pass at or above
    lowpass_log10_lhfr: float = 1.0  # low-pass needs log10 LHFR above this
    highpass_log10_lhfr: float = 0.0  # high-pass needs log10 LHFR below this; band-pass lies in between
    erf_fraction: float = 0.90  # effective receptive field: share of sum |K|

    def __post_init__(self):
        if not 0 < self.low_band < self.high_band < 1:
            raise ValueError(f"Thresholds: need 0 < low_band < high_band < 1, got low_band={self.low_band}, "
                             f"high_band={self.high_band}.")
        if not self.highpass_log10_lhfr <= self.lowpass_log10_lhfr:
            raise ValueError(f"Thresholds: need highpass_log10_lhfr <= lowpass_log10_lhfr, got "
                             f"{self.highpass_log10_lhfr} > {self.lowpass_log10_lhfr}.")
        if not 0 < self.erf_fraction <= 1:
            raise ValueError(f"Thresholds.erf_fraction={self.erf_fraction} is invalid: expected (0, 1].")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "Thresholds":
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown threshold(s) {sorted(unknown)}; expected some of "
                            f"{sorted(cls.__dataclass_fields__)}.")
        return cls(**kwargs)


def band_slices(num_bins: int, thresholds: Thresholds = Thresholds()) -> tuple[slice, slice]:
    """The LHFR numerator and denominator bins (at least one each)."""
    lo_end = max(1, int(num_bins * thresholds.low_band))
    hi_start = min(num_bins - 1, int(num_bins * thresholds.high_band))
    return slice(0, lo_end), slice(hi_start, num_bins)


def classify(centroid: float, log10_lhfr: float, thresholds: Thresholds = Thresholds()) -> str:
    """PAPER.md section 4 filter class from the centroid and log10 LHFR."""
    if not (np.isfinite(centroid) and not np.isnan(log10_lhfr)):
        return "unclassified"
    if centroid < thresholds.centroid:
        return "low-pass" if log10_lhfr > thresholds.lowpass_log10_lhfr else "unclassified"
    if log10_lhfr < thresholds.highpass_log10_lhfr:
        return "high-pass"
    if log10_lhfr <= thresholds.lowpass_log10_lhfr:
        return "band-pass"
    return "unclassified"


def magnitude_response(kernel, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, |rfft(kernel, n=length)|); `length` zero-pads short kernels (e.g. the 3-tap hf_conv)."""
    k = np.asarray(kernel, dtype=np.float64)
    n = k.shape[-1] if length is None else int(length)
    if n < k.shape[-1]:
        raise ValueError(f"length={n} is shorter than the kernel ({k.shape[-1]} taps); it would truncate it.")
    return np.fft.rfftfreq(n), np.abs(np.fft.rfft(k, n=n, axis=-1))


def spectrum_metrics_batch(kernels, length: int | None = None, **thresholds) -> list[dict]:
    """`spectrum_metrics` for a 2-D array of kernels (one per row), vectorised: one rfft for all."""
    th = thresholds.pop("_thresholds", None) or Thresholds.from_kwargs(**thresholds)
    k = np.atleast_2d(np.asarray(kernels, dtype=np.float64))
    if k.ndim != 2 or k.shape[-1] < 2:
        raise ValueError(f"kernels must be 1-D or 2-D with at least 2 lags, got shape {np.shape(kernels)}.")
    freqs, mag = magnitude_response(k, length)
    power = mag ** 2
    total = mag.sum(-1)
    lo, hi = band_slices(freqs.size, th)
    with np.errstate(divide="ignore", invalid="ignore"):
        centroid = (mag * freqs).sum(-1) / total
        lhfr = power[:, lo].sum(-1) / power[:, hi].sum(-1)
        log10_lhfr = np.log10(lhfr)
    dominant = freqs[mag.argmax(-1)]
    absk = np.abs(k)
    cum = np.cumsum(absk, -1)
    tot = cum[:, -1:]
    # smallest n with sum_{l<n} |K_l| >= fraction * sum |K| (relative slack for rounding in the cumsum)
    erf = (cum < th.erf_fraction * tot * (1 - 1e-12)).sum(-1) + 1
    rows = []
    for i in range(k.shape[0]):
        zero = not total[i] > 0
        c = float("nan") if zero else float(centroid[i])
        r = float("nan") if zero else float(lhfr[i])
        lr = float("nan") if zero else float(log10_lhfr[i])
        rows.append({
            "dominant_frequency": float("nan") if zero else float(dominant[i]),
            "centroid": c,
            "lhfr": r,
            "log10_lhfr": lr,
            "filter_class": classify(c, lr, th),
            "effective_receptive_field": 0 if zero else int(erf[i]),
        })
    return rows


def spectrum_metrics(kernel, length: int | None = None, **thresholds) -> dict:
    """dominant_frequency, centroid, lhfr, log10_lhfr, filter_class, effective_receptive_field of one kernel.

    `thresholds`: any field of `Thresholds` (low_band, high_band, centroid, lowpass_log10_lhfr,
    highpass_log10_lhfr, erf_fraction). `length` zero-pads the kernel before the rfft (default: none).
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1:
        raise ValueError(f"spectrum_metrics takes one 1-D kernel, got shape {k.shape}; use "
                         "spectrum_metrics_batch for several.")
    return spectrum_metrics_batch(k[None], length, **thresholds)[0]


__all__ = ["Thresholds", "spectrum_metrics", "spectrum_metrics_batch", "magnitude_response", "classify",
           "band_slices", "FILTER_CLASSES"]
