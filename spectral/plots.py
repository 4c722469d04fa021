"""Figures of SSM-Interpret: magnitude responses per layer, centroid vs log10 LHFR with the class regions,
the per-layer shift summary, the hf_conv / conv1d bands, and grids of effective attention matrices.

Built on matplotlib's object API (Figure + Agg canvas), not pyplot: no global state, no GUI backend, safe
inside a training process. Files are written atomically (temporary file, then os.replace).
"""

from __future__ import annotations

import math
import os

import numpy as np

from mambacode.atomic import atomic_path

from .kernels import SHORT_CONV_KINDS, SSM_KINDS
from .metrics import Thresholds, magnitude_response

DIRECTION_COLORS = {"forward": "tab:blue", "backward": "tab:orange"}
DIRECTION_SHORT = {"forward": "fwd", "backward": "bwd"}
CHECKPOINT_STYLES = ("-", "--", ":", "-.")
CHECKPOINT_MARKERS = ("o", "X", "s", "^")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> str:
    """Write `fig` to `path` atomically; the format comes from the extension (png, pdf, svg)."""
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    with atomic_path(path, suffix="." + fmt) as tmp:
        fig.savefig(tmp, format=fmt)
    return path


def figure_to_array(fig) -> np.ndarray:
    """RGB uint8 image (H, W, 3) of `fig`, e.g. for SummaryWriter.add_image(..., dataformats='HWC')."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _db(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    freqs, mag = magnitude_response(kernel)
    if not mag.any():
        return None
    return freqs, 20 * np.log10(np.maximum(mag, mag.max() * 1e-12))


def _grid(n: int, ncols: int = 4):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(3.4 * ncols, 2.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_magnitude_responses(checkpoints: list[tuple[str, list]], kinds=SSM_KINDS, title=None):
    """One panel per layer: |K^| in dB of every kernel of `kinds`, colour = direction, line style = checkpoint.

    checkpoints: [(label, records)], e.g. [("pretrained", recs_a), ("fine-tuned", recs_b)].
    """
    layers = sorted({r.layer for _, recs in checkpoints for r in recs if r.kind in kinds})
    if not layers:
        return None
    fig, axes = _grid(len(layers))
    for ax, layer in zip(axes, layers):
        for c, (label, recs) in enumerate(checkpoints):
            style = CHECKPOINT_STYLES[c % len(CHECKPOINT_STYLES)]
            for r in recs:
                if r.layer != layer or r.kind not in kinds:
                    continue
                curve = _db(r.kernel)
                if curve is None:
                    continue
                ax.plot(*curve, style, color=DIRECTION_COLORS[r.direction], lw=0.9, alpha=0.8)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlim(0, 0.5)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("|K^| (dB)", fontsize=8)
    axes[0].set_xlabel("frequency (cycles/token)", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=col, label=d) for d, col in DIRECTION_COLORS.items()]
    handles += [Line2D([], [], color="gray", ls=CHECKPOINT_STYLES[c % len(CHECKPOINT_STYLES)], label=label)
                for c, (label, _) in enumerate(checkpoints)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(title or "Kernel magnitude responses", fontsize=10)
    return fig


def plot_hf_conv_responses(checkpoints: list[tuple[str, list]]):
    """The short convolutions' frequency responses (MambaCode hf_conv groups, transformers Mamba conv1d), one
    panel per layer carrying one."""
    return plot_magnitude_responses(checkpoints, kinds=SHORT_CONV_KINDS,
                                    title="hf_conv / conv1d (short convolution) responses")


def plot_centroid_lhfr(checkpoints: list[tuple[str, list, list]], thresholds: Thresholds = Thresholds()):
    """Centroid vs log10 LHFR of every SSM kernel, with the class regions; arrows join the same kernel
    across checkpoints. checkpoints: [(label, records, metrics)] with metrics aligned to records."""
    fig = _figure(7.5, 5.5)
    ax = fig.subplots()
    points = [(label, [(r, m) for r, m in zip(recs, mets) if r.kind not in SHORT_CONV_KINDS
                       and np.isfinite(m["centroid"]) and not np.isnan(m["log10_lhfr"])])
              for label, recs, mets in checkpoints]
    ys = [m["log10_lhfr"] for _, pts in points for _, m in pts if np.isfinite(m["log10_lhfr"])]
    lo = min([thresholds.highpass_log10_lhfr - 1.5] + ys) - 0.5
    hi = max([thresholds.lowpass_log10_lhfr + 1.5] + ys) + 0.5
    clip = lambda y: float(np.clip(y, lo, hi))  # noqa: E731  (infinite LHFR sits on the frame)
    c, hp, lp = thresholds.centroid, thresholds.highpass_log10_lhfr, thresholds.lowpass_log10_lhfr
    ax.fill_between([0, c], lp, hi, color="tab:green", alpha=0.12, label="low-pass")
    ax.fill_between([c, 0.5], hp, lp, color="tab:purple", alpha=0.12, label="band-pass")
    ax.fill_between([c, 0.5], lo, hp, color="tab:red", alpha=0.12, label="high-pass")
    layers = sorted({r.layer for _, pts in points for r, _ in pts}) or [0]
    from matplotlib import colormaps

    colors = colormaps["viridis"]
    norm = lambda layer: layers.index(layer) / max(1, len(layers) - 1)  # noqa: E731
    by_key = []
    for k, (label, pts) in enumerate(points):
        marker = CHECKPOINT_MARKERS[k % len(CHECKPOINT_MARKERS)]
        xs = [m["centroid"] for _, m in pts]
        ys_ = [clip(m["log10_lhfr"]) for _, m in pts]
        col = [colors(norm(r.layer)) for r, _ in pts]
        ax.scatter(xs, ys_, c=col, marker=marker, s=28, edgecolors="k", linewidths=0.3, label=label, zorder=3)
        by_key.append({r.key: (x, y) for (r, _), x, y in zip(pts, xs, ys_)})
    for a, b in zip(by_key, by_key[1:]):
        for key in a.keys() & b.keys():
            (x0, y0), (x1, y1) = a[key], b[key]
            if abs(x1 - x0) + abs(y1 - y0) > 1e-9:
                ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "lw": 0.5, "color": "gray"})
    ax.set_xlim(0, 0.5)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("spectral centroid (cycles/token)")
    ax.set_ylabel("log10 LHFR")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(norm=Normalize(min(layers), max(layers)), cmap=colors)
    bar = fig.colorbar(sm, ax=ax, label="layer")
    bar.set_ticks(layers if len(layers) <= 24 else layers[:: math.ceil(len(layers) / 12)])
    ax.set_title("Centroid vs log10 LHFR (class regions of PAPER.md section 4)", fontsize=10)
    return fig


def plot_layer_summary(layers: list[int], values: dict[str, list[float]], ylabel: str, title: str):
    """Grouped bars per layer, one bar per direction (e.g. mean |delta log10 LHFR|)."""
    fig = _figure(max(5.0, 0.5 * len(layers) + 2), 3.6)
    ax = fig.subplots()
    x = np.arange(len(layers))
    width = 0.8 / max(1, len(values))
    for j, (direction, ys) in enumerate(values.items()):
        ax.bar(x + (j - (len(values) - 1) / 2) * width, np.nan_to_num(np.asarray(ys, float), nan=0.0), width,
               color=DIRECTION_COLORS.get(direction), label=direction)
    ax.set_xticks(x, [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_attention_matrices(matrices, tokens: list[str] | None = None, title: str | None = None,
                            max_columns: int = 8):
    """A grid of heatmaps of effective attention matrices (`spectral.attention.attention_matrices`): one row per
    (layer, direction), one column per head / channel (at most `max_columns`). Each panel has its own
    symmetric colour scale (red > 0 > blue), its maximum |M| in the title; tokens label the axes if <= 40."""
    rows = list(dict.fromkeys((m.layer, m.direction) for m in matrices))
    if not rows:
        return None
    cols = list(dict.fromkeys(m.index for m in matrices))[:max_columns]
    by_key = {(m.layer, m.direction, m.index): m for m in matrices}
    n = matrices[0].matrix.shape[0]
    side = 1.6 + 0.05 * min(n, 64)
    fig = _figure(side * len(cols) + 0.8, side * len(rows) + 0.8)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    label = tokens is not None and len(tokens) == n and n <= 40
    for r, (layer, direction) in enumerate(rows):
        for c, index in enumerate(cols):
            ax = axes[r, c]
            m = by_key.get((layer, direction, index))
            if m is None:
                ax.set_visible(False)
                continue
            vmax = float(np.abs(m.matrix).max()) or 1.0
            ax.imshow(m.matrix, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            unit = "ch" if m.kind == "mamba" else "h"
            ax.set_title(f"L{layer} {DIRECTION_SHORT.get(direction, direction)} {unit}{index} (max {vmax:.2g})",
                         fontsize=7)
            if label:
                ax.set_xticks(range(n), tokens if r == len(rows) - 1 else [""] * n, rotation=90, fontsize=5)
                ax.set_yticks(range(n), tokens if c == 0 else [""] * n, fontsize=5)
            else:
                ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("input token s", fontsize=7)
    axes[-1, 0].set_ylabel("output token t", fontsize=7)
    fig.suptitle(title or "Effective attention M[t, s] = (C_t . B_s) dt_s exp(A sum dt)", fontsize=9)
    return fig


__all__ = ["plot_magnitude_responses", "plot_hf_conv_responses", "plot_centroid_lhfr", "plot_layer_summary",
           "plot_attention_matrices", "save_figure", "figure_to_array"]
