"""Spectrum reports of one checkpoint and spectral-shift reports between two (PAPER.md section 4).

`spectrum_report(model)` -> SpectrumReport (records + metrics); `compare_reports(pre, post)` ->
ShiftReport (per-kernel deltas, class changes, per-layer mean |delta log10 LHFR|); `write_report(report,
dir)` writes markdown, JSON and figures, every file atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mambacode.atomic import atomic_write_text
from mambacode.tables import markdown_table

from .kernels import DIRECTIONS, SSM_KINDS, KernelRecord, extract_kernels, find_encoder, mixer_kind
from .metrics import FILTER_CLASSES, Thresholds, spectrum_metrics_batch

METRIC_KEYS = ("dominant_frequency", "centroid", "lhfr", "log10_lhfr", "filter_class", "effective_receptive_field")
ARCHITECTURE_FIELDS = ("mixer", "num_hidden_layers", "hidden_size", "state_size", "num_kernels", "mamba_head_dim",
                       "hf_conv", "hf_conv_kernel_size", "hf_conv_groups", "hf_conv_layers")


class ArchitectureMismatchError(ValueError):
    """Two checkpoints whose kernels cannot be paired."""


# ------------------------------------------------------------------------------------------ architecture
def architecture(model) -> dict:
    """What decides the set and shape of kernels: config fields plus the structure actually built."""
    from .hf_mamba import find_hf_backbone, hf_architecture

    if find_hf_backbone(model) is not None:
        return hf_architecture(model)
    encoder = find_encoder(model)
    config = getattr(model, "config", None) or getattr(encoder, "config", None)
    arch = {f: getattr(config, f, None) for f in ARCHITECTURE_FIELDS} if config is not None else {}
    layers = []
    for layer in encoder.layers:
        ssm = layer.mixer.ssm
        n = ssm.num_kernels if type(ssm).__name__ == "S4DMixer" else ssm.num_heads
        conv = layer.mixer.short_conv
        layers.append((type(ssm).__name__, n, None if conv is None else tuple(conv.conv.weight.shape)))
    arch["mixer"] = mixer_kind(encoder)
    arch["num_hidden_layers"] = len(layers)
    arch["layer_structure"] = layers
    return arch


def check_same_architecture(model_a, model_b, names=("model", "compare_to")) -> None:
    """Raise ArchitectureMismatchError naming every field that differs."""
    a, b = architecture(model_a), architecture(model_b)
    diffs = [f"{k}: {a.get(k)!r} ({names[0]}) vs {b.get(k)!r} ({names[1]})"
             for k in dict.fromkeys(list(a) + list(b)) if k != "layer_structure" and a.get(k) != b.get(k)]
    if not diffs and a["layer_structure"] != b["layer_structure"]:
        for i, (x, y) in enumerate(zip(a["layer_structure"], b["layer_structure"])):
            if x != y:
                diffs.append(f"layer {i}: (mixer, kernels/heads, hf_conv weight shape) {x} ({names[0]}) vs {y} "
                             f"({names[1]})")
    if diffs:
        raise ArchitectureMismatchError(
            f"cannot compare spectra of {names[0]} and {names[1]}: different architectures ("
            + "; ".join(diffs) + "). A spectral shift report pairs each kernel with the same kernel of a "
            "checkpoint fine-tuned from the same architecture.")


# ------------------------------------------------------------------------------------------ reports
@dataclass
class SpectrumReport:
    """Kernels and their metrics for one checkpoint."""

    label: str
    length: int
    thresholds: Thresholds
    architecture: dict
    records: list[KernelRecord]
    metrics: list[dict]
    inputs: dict = field(default_factory=dict)  # mamba2: how many sequences / tokens

    def rows(self) -> list[dict]:
        return [{**r.to_dict(), **m, **({"mean_spread": float(np.mean(r.spread))} if r.spread is not None else {})}
                for r, m in zip(self.records, self.metrics)]

    def class_counts(self, kinds=SSM_KINDS) -> dict:
        counts = Counter(m["filter_class"] for r, m in zip(self.records, self.metrics) if r.kind in kinds)
        return {c: counts.get(c, 0) for c in FILTER_CLASSES}

    def layer_means(self, key: str = "log10_lhfr") -> tuple[list[int], dict[str, list[float]]]:
        """Per layer and direction: mean of a metric over the SSM kernels (finite values only)."""
        return _layer_means([(r, m[key]) for r, m in zip(self.records, self.metrics) if r.kind in SSM_KINDS])

    def to_json(self) -> dict:
        return {"label": self.label, "length": self.length, "thresholds": vars(self.thresholds),
                "architecture": self.architecture, "inputs": self.inputs, "class_counts": self.class_counts(),
                "layer_mean_log10_lhfr": dict(zip(("layers", "values"), self.layer_means())),
                "kernels": self.rows()}


def _layer_means(pairs) -> tuple[list[int], dict[str, list[float]]]:
    layers = sorted({r.layer for r, _ in pairs})
    out = {}
    # causal models (transformers' Mamba) have the forward direction only: no empty backward column
    for d in [d for d in DIRECTIONS if any(r.direction == d for r, _ in pairs)] or DIRECTIONS:
        vals = []
        for layer in layers:
            xs = [v for r, v in pairs if r.layer == layer and r.direction == d and np.isfinite(v)]
            vals.append(float(np.mean(xs)) if xs else float("nan"))
        out[d] = vals
    return layers, out


def spectrum_report(model, length: int = 4096, inputs=None, *, label: str = "model", thresholds=None,
                    tokenizer=None, **extract_kwargs) -> SpectrumReport:
    """Extract every kernel of `model` and compute its PAPER.md section 4 metrics."""
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_kwargs(**(thresholds or {}))
    records = extract_kernels(model, length, inputs, tokenizer=tokenizer, **extract_kwargs)
    metrics = metrics_for(records, th)
    info = {}
    if records and records[0].kind in ("mamba2", "mamba"):
        info = {"sequences": records[0].extra.get("sequences"), "tokens": int(records[0].count[0]),
                "max_lag": int(records[0].kernel.shape[-1])}
        if records[0].kind == "mamba":
            info["channels"] = [r.index for r in records if r.kind == "mamba" and r.layer == records[0].layer]
    return SpectrumReport(label, length, th, architecture(model), records, metrics, info)


def metrics_for(records: list[KernelRecord], thresholds: Thresholds = Thresholds()) -> list[dict]:
    """Metrics of every record; kernels of equal length share one batched rfft."""
    out: list[dict | None] = [None] * len(records)
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_len.setdefault(r.kernel.shape[-1], []).append(i)
    for idx in by_len.values():
        rows = spectrum_metrics_batch(np.stack([records[i].kernel for i in idx]), _thresholds=thresholds)
        for i, row in zip(idx, rows):
            out[i] = row
    return out


@dataclass
class ShiftReport:
    """Per-kernel change of the spectrum between two checkpoints of one architecture."""

    pre: SpectrumReport
    post: SpectrumReport

    def rows(self) -> list[dict]:
        post = {r.key: m for r, m in zip(self.post.records, self.post.metrics)}
        rows = []
        for r, m in zip(self.pre.records, self.pre.metrics):
            q = post[r.key]
            row = {"layer": r.layer, "direction": r.direction, "kind": r.kind, "index": r.index}
            for k in METRIC_KEYS:
                row[f"{k}_pre"], row[f"{k}_post"] = m[k], q[k]
            for k in ("dominant_frequency", "centroid", "log10_lhfr", "effective_receptive_field"):
                a, b = m[k], q[k]
                row[f"delta_{k}"] = float(b - a) if np.isfinite(a) and np.isfinite(b) else float("nan")
            row["class_changed"] = m["filter_class"] != q["filter_class"]
            rows.append(row)
        return rows

    def class_changes(self, kinds=SSM_KINDS) -> dict:
        """{'band-pass -> high-pass': n, ...} over the SSM kernels, plus 'total' and 'kernels'."""
        rows = [r for r in self.rows() if r["kind"] in kinds]
        moves = Counter(f"{r['filter_class_pre']} -> {r['filter_class_post']}" for r in rows if r["class_changed"])
        return {"kernels": len(rows), "total": sum(moves.values()), "transitions": dict(moves.most_common())}

    def layer_shift(self) -> tuple[list[int], dict[str, list[float]]]:
        """Per layer and direction: mean |delta log10 LHFR| over the SSM kernels."""
        pairs = []
        post = {r.key: m for r, m in zip(self.post.records, self.post.metrics)}
        for r, m in zip(self.pre.records, self.pre.metrics):
            if r.kind not in SSM_KINDS:
                continue
            a, b = m["log10_lhfr"], post[r.key]["log10_lhfr"]
            pairs.append((r, abs(b - a) if np.isfinite(a) and np.isfinite(b) else float("nan")))
        return _layer_means(pairs)

    def to_json(self) -> dict:
        layers, shift = self.layer_shift()
        return {"pre": self.pre.label, "post": self.post.label, "length": self.pre.length,
                "thresholds": vars(self.pre.thresholds), "architecture": self.pre.architecture,
                "inputs": self.pre.inputs, "class_changes": self.class_changes(),
                "class_counts": {"pre": self.pre.class_counts(), "post": self.post.class_counts()},
                "layer_mean_abs_delta_log10_lhfr": {"layers": layers, "values": shift},
                "kernels": self.rows()}


def compare_reports(pre: SpectrumReport, post: SpectrumReport) -> ShiftReport:
    """Pair two reports kernel by kernel; refuses reports of different architectures or settings."""
    names = (pre.label, post.label)
    a, b = dict(pre.architecture), dict(post.architecture)
    diffs = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in dict.fromkeys(list(a) + list(b)) if a.get(k) != b.get(k)]
    if pre.length != post.length:
        diffs.append(f"length: {pre.length} vs {post.length}")
    if {r.key for r in pre.records} != {r.key for r in post.records}:
        diffs.append("kernel sets differ")
    if diffs:
        raise ArchitectureMismatchError(f"cannot compare {names[0]} and {names[1]}: " + "; ".join(diffs) + ".")
    return ShiftReport(pre, post)


def shift_report(pre_model, post_model, length: int = 4096, inputs=None, *, labels=("pretrained", "fine-tuned"),
                 thresholds=None, tokenizer=None, **extract_kwargs) -> ShiftReport:
    """Check the architectures, then report both checkpoints on the same inputs and pair them."""
    check_same_architecture(pre_model, post_model, labels)
    reports = [spectrum_report(m, length, inputs, label=lab, thresholds=thresholds, tokenizer=tokenizer,
                               **extract_kwargs) for m, lab in zip((pre_model, post_model), labels)]
    return compare_reports(*reports)


# ------------------------------------------------------------------------------------------ writing
def _clean(obj):
    """JSON-safe copy: NaN/inf -> None (strict JSON has neither), numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _fmt(x, digits=3) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}" if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3) else f"{x:.{digits}f}"


def _table(headers: list[str], rows: list[list]) -> str:
    return markdown_table(headers, [[_fmt(v) for v in row] for row in rows])


def _settings_md(rep: SpectrumReport) -> list[str]:
    th = rep.thresholds
    arch = {k: v for k, v in rep.architecture.items() if k != "layer_structure"}
    lines = [f"- kernel length L = {rep.length} (selective mamba2 / mamba: as long as the longest input, at most L)",
             "- architecture: " + ", ".join(f"{k}={v}" for k, v in arch.items()),
             f"- thresholds: LHFR bands first {th.low_band:.0%} / from {th.high_band:.0%} of the bins; "
             f"centroid {th.centroid}; low-pass log10 LHFR > {th.lowpass_log10_lhfr}; high-pass < "
             f"{th.highpass_log10_lhfr}; ERF share {th.erf_fraction:.0%}"]
    if rep.architecture.get("source") == "transformers":
        unit = ("per channel c of d_inner: alpha_c[t, s] = sum_n C_t[n] exp(sum_{k=s+1..t} dt_k[c] A[c, n]) "
                "dt_s[c] B_s[n]" if rep.architecture.get("mixer") == "mamba" else "per head")
        lines.append(f"- transformers {rep.architecture.get('model_type')} model: causal, direction 'forward' only; "
                     f"effective kernels {unit}; conv1d = the causal depthwise conv before the SSM")
        if rep.inputs.get("channels") is not None:
            lines.append(f"- Mamba-1 channels recorded: {rep.inputs['channels']}")
    if rep.inputs:
        lines.append(f"- selective-SSM inputs: {rep.inputs.get('sequences')} sequences, {rep.inputs.get('tokens')} "
                     f"tokens, lags up to {rep.inputs.get('max_lag')}")
    return lines


def report_markdown(report, figures: dict | None = None) -> str:
    """Markdown for a SpectrumReport or a ShiftReport."""
    figures = figures or {}
    if isinstance(report, SpectrumReport):
        out = [f"# Spectrum report: {report.label}", "", *_settings_md(report), "", "## Filter classes (SSM kernels)",
               "", _table(list(FILTER_CLASSES), [list(report.class_counts().values())]), ""]
        layers, means = report.layer_means()
        out += ["## Mean log10 LHFR per layer", "", _table(["layer", *means], [[layer, *(means[d][i] for d in means)]
                                                                            for i, layer in enumerate(layers)]), ""]
        headers = ["layer", "direction", "kind", "index", "dominant f", "centroid", "LHFR", "log10 LHFR", "class",
                   "ERF"]
        rows = []
        for row in report.rows():
            rows.append([row["layer"], row["direction"], row["kind"], row["index"], row["dominant_frequency"],
                         row["centroid"], row["lhfr"], row["log10_lhfr"], row["filter_class"],
                         row["effective_receptive_field"]])
        out += ["## Kernels", "", _table(headers, rows), ""]
    else:
        changes = report.class_changes()
        layers, shift = report.layer_shift()
        out = [f"# Spectral shift: {report.pre.label} -> {report.post.label}", "", *_settings_md(report.pre), "",
               "## Class changes (SSM kernels)", "",
               f"{changes['total']} of {changes['kernels']} kernels changed class.", ""]
        if changes["transitions"]:
            out += [_table(["transition", "kernels"], [[k, v] for k, v in changes["transitions"].items()]), ""]
        out += [_table(["checkpoint", *FILTER_CLASSES],
                       [[report.pre.label, *report.pre.class_counts().values()],
                        [report.post.label, *report.post.class_counts().values()]]), "",
                "## Mean |delta log10 LHFR| per layer", "",
                _table(["layer", *shift], [[layer, *(shift[d][i] for d in shift)] for i, layer in enumerate(layers)]),
                ""]
        headers = ["layer", "direction", "kind", "index", "class pre", "class post", "log10 LHFR pre",
                   "log10 LHFR post", "delta", "centroid pre", "centroid post", "ERF pre", "ERF post"]
        rows = [[r["layer"], r["direction"], r["kind"], r["index"],
                 r["filter_class_pre"], r["filter_class_post"] + (" *" if r["class_changed"] else ""),
                 r["log10_lhfr_pre"], r["log10_lhfr_post"], r["delta_log10_lhfr"], r["centroid_pre"],
                 r["centroid_post"], r["effective_receptive_field_pre"], r["effective_receptive_field_post"]]
                for r in report.rows()]
        out += ["## Kernels (* = class changed)", "", _table(headers, rows), ""]
    if figures:
        out += ["## Figures", ""] + [f"{'!' if path.endswith(('.png', '.svg', '.jpg')) else ''}[{name}]"
                                     f"({os.path.basename(path)})" for name, path in figures.items()] + [""]
    return "\n".join(out)


def write_figures(report, output_dir: str) -> dict:
    """Write the report's figures; returns {name: path}."""
    from .plots import (plot_centroid_lhfr, plot_hf_conv_responses, plot_layer_summary, plot_magnitude_responses,
                        save_figure)

    if isinstance(report, ShiftReport):
        reps = [report.pre, report.post]
        layers, values = report.layer_shift()
        summary = plot_layer_summary(layers, values, "mean |delta log10 LHFR|",
                                     f"Spectral shift per layer: {report.pre.label} -> {report.post.label}")
    else:
        reps = [report]
        layers, values = report.layer_means()
        summary = plot_layer_summary(layers, values, "mean log10 LHFR", f"log10 LHFR per layer: {report.label}")
    figs = {"summary": summary,
            "magnitude_responses": plot_magnitude_responses([(r.label, r.records) for r in reps]),
            "centroid_vs_lhfr": plot_centroid_lhfr([(r.label, r.records, r.metrics) for r in reps], reps[0].thresholds),
            "hf_conv_responses": plot_hf_conv_responses([(r.label, r.records) for r in reps])}
    return {name: save_figure(fig, os.path.join(output_dir, f"{name}.png")) for name, fig in figs.items()
            if fig is not None}


def write_report(report, output_dir: str, figures: bool = True, with_kernels: bool = False,
                 extra_files: dict | None = None) -> dict:
    """Write spectrum_report.{json,md} (or spectral_shift.{json,md}) and figures into `output_dir`.

    `with_kernels` also stores every kernel's taps in the JSON (large: L floats per kernel). `extra_files`
    ({name: path}, already written, e.g. the attention matrices) are linked from the markdown too.
    Returns {name: path} of everything written.
    """
    os.makedirs(output_dir, exist_ok=True)
    stem = "spectral_shift" if isinstance(report, ShiftReport) else "spectrum_report"
    paths = write_figures(report, output_dir) if figures else {}
    paths.update(extra_files or {})
    data = report.to_json()
    if with_kernels:
        reps = [report.pre, report.post] if isinstance(report, ShiftReport) else [report]
        data["kernel_taps"] = {r.label: [rec.to_dict(with_kernel=True) for rec in r.records] for r in reps}
    written = dict(paths)
    written["json"] = atomic_write_text(os.path.join(output_dir, f"{stem}.json"),
                                        json.dumps(_clean(data), indent=1, allow_nan=False))
    written["markdown"] = atomic_write_text(os.path.join(output_dir, f"{stem}.md"), report_markdown(report, paths))
    return written


__all__ = ["SpectrumReport", "ShiftReport", "spectrum_report", "compare_reports", "shift_report", "write_report",
           "write_figures", "report_markdown", "architecture", "check_same_architecture", "ArchitectureMismatchError",
           "metrics_for", "atomic_write_text"]
