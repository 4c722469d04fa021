"""spectrum_metrics on analytic kernels, checked against closed forms computed here (not by the code)."""

import math

import numpy as np
import pytest

from mambacode.spectral import Thresholds, classify, spectrum_metrics, spectrum_metrics_batch

L = 4096


def bands(num_bins):
    """PAPER.md section 4 bands, written out: first 10% of the bins, and from 60% to the end."""
    return slice(0, int(0.1 * num_bins)), slice(int(0.6 * num_bins), num_bins)


@pytest.mark.parametrize("f0", [0.05, 0.125, 0.3, 100.5 / L])
def test_cosine_dominant_frequency(f0):
    lags = np.arange(L)
    m = spectrum_metrics(np.cos(2 * np.pi * f0 * lags))
    assert abs(m["dominant_frequency"] - f0) <= 0.5 / L + 1e-12


def test_exponential_matches_closed_form_dtft():
    a = 0.02
    r = math.exp(-a)
    kernel = r ** np.arange(L)
    freqs = np.arange(L // 2 + 1) / L
    # DTFT of the truncated geometric series at the rfft bins
    mag = np.abs((1 - r ** L) / (1 - r * np.exp(-2j * np.pi * freqs)))
    lo, hi = bands(freqs.size)
    want_centroid = float((freqs * mag).sum() / mag.sum())
    want_lhfr = float((mag[lo] ** 2).sum() / (mag[hi] ** 2).sum())
    m = spectrum_metrics(kernel)
    assert m["dominant_frequency"] == 0.0
    assert m["centroid"] == pytest.approx(want_centroid, rel=1e-9)
    assert m["lhfr"] == pytest.approx(want_lhfr, rel=1e-9)
    assert m["log10_lhfr"] == pytest.approx(math.log10(want_lhfr), rel=1e-9)
    assert m["filter_class"] == "low-pass"
    # 90% of sum |K|: smallest n with (1 - r^n) >= 0.9 (1 - r^L)
    n = math.ceil(math.log(1 - 0.9 * (1 - r ** L)) / math.log(r))
    assert m["effective_receptive_field"] == n


def test_second_difference_is_high_pass():
    m = spectrum_metrics([1.0, -2.0, 1.0], length=L)
    freqs = np.arange(L // 2 + 1) / L
    mag = 4 * np.sin(np.pi * freqs) ** 2  # |1 - 2 e^{-iw} + e^{-2iw}| = 4 sin^2(w/2)
    lo, hi = bands(freqs.size)
    assert m["filter_class"] == "high-pass"
    assert m["dominant_frequency"] == 0.5
    assert m["centroid"] == pytest.approx((freqs * mag).sum() / mag.sum(), rel=1e-9)
    assert m["lhfr"] == pytest.approx((mag[lo] ** 2).sum() / (mag[hi] ** 2).sum(), rel=1e-6)
    assert m["effective_receptive_field"] == 3  # |K| = 1, 2, 1: 3/4 < 90% after two taps


def test_long_moving_average_is_low_pass():
    kernel = np.zeros(L)
    kernel[:128] = 1 / 128
    m = spectrum_metrics(kernel)
    assert m["filter_class"] == "low-pass"
    assert m["centroid"] < 0.166 and m["log10_lhfr"] > 1
    assert m["effective_receptive_field"] == math.ceil(0.9 * 128)


def test_band_pass_example_and_thresholds_are_configurable():
    # an impulse (flat spectrum) plus a 64-tap box (a narrow lump at DC): LHFR between 1 and 10, centroid
    # still above 0.166 because most of the magnitude is spread flat
    kernel = np.zeros(L)
    kernel[:64] = 8 / 64
    kernel[0] += 1
    freqs = np.arange(L // 2 + 1) / L
    mag = np.abs(np.fft.rfft(kernel))
    lo, hi = bands(freqs.size)
    lhfr = (mag[lo] ** 2).sum() / (mag[hi] ** 2).sum()
    assert 0 < math.log10(lhfr) < 1
    m = spectrum_metrics(kernel)
    assert m["lhfr"] == pytest.approx(lhfr, rel=1e-12)
    assert m["centroid"] >= 0.166
    assert m["filter_class"] == "band-pass"
    moved = spectrum_metrics(kernel, centroid=0.45)  # now below the centroid threshold, log10 LHFR < 1
    assert moved["filter_class"] == "unclassified" and moved["centroid"] == m["centroid"]
    assert spectrum_metrics(kernel, highpass_log10_lhfr=0.9)["filter_class"] == "high-pass"
    assert spectrum_metrics(kernel, high_band=0.9)["lhfr"] > m["lhfr"]
    # sum |K| = 9; lags 0..n-1 hold 1 + 8 n / 64
    assert m["effective_receptive_field"] == 57  # first n with 1 + n/8 >= 8.1
    assert spectrum_metrics(kernel, erf_fraction=0.5)["effective_receptive_field"] == 28  # 1 + n/8 >= 4.5
    with pytest.raises(TypeError, match="unknown threshold"):
        spectrum_metrics(kernel, centriod=0.2)
    with pytest.raises(ValueError, match="low_band"):
        spectrum_metrics(kernel, low_band=0.7)


@pytest.mark.parametrize("centroid,log10_lhfr,expected", [
    (0.10, 1.5, "low-pass"), (0.10, 0.5, "unclassified"), (0.20, -0.5, "high-pass"), (0.20, 0.0, "band-pass"),
    (0.20, 1.0, "band-pass"), (0.20, 1.5, "unclassified"), (0.166, -1.0, "high-pass"), (0.1, math.inf, "low-pass"),
])
def test_class_boundaries(centroid, log10_lhfr, expected):
    assert classify(centroid, log10_lhfr, Thresholds()) == expected


def test_zero_kernel_and_batch_agree():
    m = spectrum_metrics(np.zeros(64))
    assert math.isnan(m["centroid"]) and m["filter_class"] == "unclassified"
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(5, 256))
    batch = spectrum_metrics_batch(kernels)
    for k, row in zip(kernels, batch):
        assert row == spectrum_metrics(k)
    with pytest.raises(ValueError, match="1-D"):
        spectrum_metrics(kernels)
