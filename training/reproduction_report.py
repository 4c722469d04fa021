"""The reproduction report (`report.md`, a self-contained `report.html`, `results.json`, `results.png`) rendered
from the pipeline's typed stage results: a Table-1-style results table with a BM25 row, a retrieval table of
each model beside BM25 and its dense + BM25 hybrid, the probing tables and the spectral shift table."""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import asdict

import markdown

from mambacode.atomic import atomic_path, atomic_write_text
from mambacode.probing.report import layer_table
from mambacode.tables import markdown_table

from .pipeline import TASKS, VARIANTS

TASK_TITLES = {"advtest": "AdvTest-style MRR", "longctx": "long-context MRR", "types": "type-inference F1"}
ADVTEST_SET = "retrieval_adv"  # the obfuscated test set, named after its corpus folder
# a retrieval column of the results -> (fine-tuning task, test set); each also has a `<column>_hybrid` twin
RETRIEVAL_COLUMNS = {"advtest": ("advtest", ADVTEST_SET), "advtest_clean": ("advtest", "test"),
                     "longctx": ("longctx", "test")}
BASELINE = "bm25"  # the results row of BM25 alone (bm25s, no model), ranked on the same pools as the models
BASELINE_LABEL = "BM25 (bm25s, no model)"


def results_rows(pretrained: dict, finetuned: dict) -> dict:
    """{model name: {advtest, advtest_clean, longctx, their `_hybrid` twins, types, types_acc, params, mlm_ppl}}
    from the MLM results (by variant) and the fine-tuning results (by (task, name)), plus the row `bm25`
    ({advtest, advtest_clean, longctx}) where any run ranked its pools with BM25; missing numbers are None."""
    rows = {}
    for task in TASKS:
        for name in sorted(n for t, n in finetuned if t == task):
            res, row = finetuned[(task, name)], rows.setdefault(name, {})
            if task == "types":
                row["types"], row["types_acc"] = res.test_metrics.get("micro_f1"), res.test_metrics.get("accuracy")
            for column, (column_task, test_set) in RETRIEVAL_COLUMNS.items():
                if column_task == task:
                    row[column], row[column + "_hybrid"] = res.mrr(test_set), res.mrr(test_set, "hybrid")
            row.setdefault("params", None)
    for variant, res in pretrained.items():
        for name, row in rows.items():
            if name.split("+")[0] == variant:
                if res.encoder_parameters is not None:
                    row["params"] = res.encoder_parameters
                row["mlm_ppl"] = res.perplexity
    baseline, _ = baseline_row(finetuned)
    if any(v is not None for v in baseline.values()):
        rows[BASELINE] = baseline
    return rows


def baseline_row(finetuned: dict) -> tuple[dict, list[str]]:
    """BM25's MRR per retrieval column, and notes naming any column whose runs disagree. BM25 needs no model,
    so every run of a task ranks the same pool alike; runs that disagree were tested on different pools
    (e.g. other sample limits), and their column is left empty rather than one of them shown."""
    row, notes = {}, []
    for column, (task, test_set) in RETRIEVAL_COLUMNS.items():
        values = {name: res.mrr(test_set, "bm25") for (t, name), res in sorted(finetuned.items()) if t == task}
        found = {v for v in values.values() if v is not None}
        row[column] = next(iter(found)) if len(found) == 1 else None
        if len(found) > 1:
            shown = ", ".join(f"{n}: {_pct(v)}" for n, v in values.items() if v is not None)
            notes.append(f"BM25 differs between the {task} runs on the `{test_set}` pool ({shown}): they were "
                         "tested on different pools, so the BM25 cell is left empty.")
    return row, notes


def _pct(x) -> str:
    return "–" if x is None else f"{x * 100.0:.2f}"


def _ordered(rows: dict) -> list[str]:
    return [n for v in VARIANTS for n in (v, v + "+anchor") if n in rows]


def results_table(rows: dict) -> str:
    """Table 1: one row per model, then BM25's row (retrieval columns only)."""
    body = [[n, f"{r['params']:,}" if isinstance(r.get("params"), int) else "–",
             "–" if r.get("mlm_ppl") is None else f"{r['mlm_ppl']:.1f}", _pct(r.get("advtest")),
             _pct(r.get("advtest_clean")), _pct(r.get("longctx")), _pct(r.get("types")), _pct(r.get("types_acc"))]
            for n, r in ((n, rows[n]) for n in _ordered(rows))]
    if BASELINE in rows:
        body.append([BASELINE_LABEL, "–", "–", *(_pct(rows[BASELINE].get(c)) for c in RETRIEVAL_COLUMNS), "–", "–"])
    return markdown_table(["model", "params (encoder+emb)", "MLM ppl", "AdvTest-style MRR", "(non-obfuscated MRR)",
                           "long-context MRR", "type-inference F1", "(type accuracy)"], body)


def retrieval_table(rows: dict) -> str:
    """Every retrieval MRR beside its baselines: BM25 alone, then per model its dense ranking and the hybrid
    (its ranking and BM25's merged by reciprocal-rank fusion); models without retrieval results are left out."""
    body = [[BASELINE_LABEL, *(_pct(rows[BASELINE].get(c)) for c in RETRIEVAL_COLUMNS)]] if BASELINE in rows else []
    for name in _ordered(rows):
        row = rows[name]
        if any(row.get(c) is not None or row.get(c + "_hybrid") is not None for c in RETRIEVAL_COLUMNS):
            body.append([f"{name} (dense)", *(_pct(row.get(c)) for c in RETRIEVAL_COLUMNS)])
            body.append([f"{name} + BM25 (hybrid)", *(_pct(row.get(c + "_hybrid")) for c in RETRIEVAL_COLUMNS)])
    if not body:
        return "No retrieval results (the retrieval fine-tuning stages did not run)."
    return markdown_table(["ranker", "AdvTest-style MRR", "(non-obfuscated MRR)", "long-context MRR"], body)


def model_label(path: str) -> str:
    """'s4d (pretrained)' / 's4d (after types FT)' from a pipeline model folder."""
    parts = os.path.normpath(str(path)).split(os.sep)
    if "pretrain" in parts:
        return f"{parts[-1]} (pretrained)"
    if "finetune" in parts:
        return f"{parts[-1]} (after {parts[-2]} FT)"
    return parts[-1]


def probe_table(probes: list, probe: str) -> str:
    accuracy = {model: per_task for result in probes for model, per_task in result.accuracy.items()}
    if not accuracy:
        return "No probe results (the probing stages did not run)."
    return layer_table(accuracy, probe, name=model_label)


def spectrum_table(spectra: dict) -> str:
    """`spectra`: {(task, name): SpectrumResult}."""
    body = []
    for task in ("types", "longctx"):
        for name in sorted(n for t, n in spectra if t == task):
            s = spectra[(task, name)]
            per_layer = "; ".join(f"{k}: " + ", ".join("–" if x is None else f"{x:.2f}" for x in vals)
                                  for k, vals in s.layer_shift.items())
            trans = ", ".join(f"{k} ({v})" for k, v in s.transitions.items()) or "none"
            body.append([name, task, f"{s.changed} / {s.kernels}", trans, per_layer])
    if not body:
        return "No spectral shift reports (the spectrum stages did not run)."
    return markdown_table(["model", "fine-tuning", "SSM kernels changing class", "transitions",
                           "mean abs delta log10 LHFR per layer"], body)


def results_plot(rows: dict, path: str) -> str | None:
    """Bar charts of the three task metrics (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = _ordered(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, TASKS):
        ax.bar(range(len(names)), [100 * (rows[n].get(key) or 0.0) for n in names],
               color=["#888" if n == "rocoder" else ("#2a7" if "+anchor" in n else "#36c") for n in names])
        if rows.get(BASELINE, {}).get(key) is not None:
            ax.axhline(100 * rows[BASELINE][key], color="#c33", linestyle="--", linewidth=1, label="BM25")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(TASK_TITLES[key])
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def sources_section(manifest: dict) -> list[str]:
    """The corpus' exact sources (from its manifest): what a rerun elsewhere must install to get this corpus."""
    rows = [(s["name"], s["version"], s.get("license") or "?", f"{s['num_files']:,}") for s in manifest["sources"]]
    lines = [f"Python {manifest['python']}; packages pinned by the `[corpus]` extra in setup.cfg.", "",
             markdown_table(["source", "version", "licence", "files"], rows)]
    problems = list(manifest.get("missing_packages") or []) + list(manifest.get("off_pin_packages") or [])
    if problems:
        lines += ["", "**Not as pinned** (this corpus differs from the README's): " + ", ".join(map(str, problems))]
    return lines


def render_report(preset_name: str, preset, rows: dict, probes: list, spectra: dict, timings: dict,
                  figures: list, manifest: dict | None = None, notes: list | None = None) -> str:
    """The Markdown report; `figures`: (caption, path relative to the report) pairs; `manifest`: the
    corpus manifest (`mambacode.corpus.read_manifest`), whose sources are listed; `notes`: warnings printed
    under the retrieval table (`baseline_row`)."""
    md = [f"# MambaCode reproduction report (preset `{preset_name}`)", "",
          f"Settings: `{json.dumps(asdict(preset))}`", "",
          "## Table 1: downstream results", "",
          "MRR over the whole test pool and micro F1 (the `other` bucket counted as no type), in %. AdvTest-style: "
          "test code with function and variable names replaced by placeholders (the non-obfuscated test MRR in "
          "parentheses). `+anchor`: fine-tuned with the spectral-preserving regulariser "
          f"(weight {preset.anchor_weight}). {BASELINE_LABEL}: the lexical baseline on the same queries and pools.",
          "", results_table(rows), "",
          "## Retrieval against BM25", "",
          "MRR in %, every ranker on the same queries and pools as Table 1. BM25: `bm25s` (Lucene variant, k1 = 1.5, "
          "b = 0.75) over code words (identifiers whole and split at snake_case / camelCase). Hybrid: the model's "
          "ranking of the whole pool and BM25's (candidates sharing a word with the query) merged by reciprocal-rank "
          "fusion, score = sum of 1 / (60 + rank) (`mambacode search --mode hybrid`, which fuses each ranker's top 100 "
          "instead of the whole pool).", "",
          retrieval_table(rows), "", *(f"**Note:** {n}" for n in notes or []), *([""] if notes else []),
          "## Probing (DirectProbe accuracy per task and layer)", "",
          "Rows: models pretrained and after fine-tuning (same sampled pairs for every model). Layer 0 is the "
          "embedding output.", "", probe_table(probes, "directprobe"), "",
          "### Linear probe accuracy", "", probe_table(probes, "linear"), "",
          "## Spectral shift (pretrained -> fine-tuned)", "", spectrum_table(spectra), "",
          *(["## Corpus sources", "", *sources_section(manifest), ""] if manifest else []),
          "## Stage timings (s)", "", markdown_table(["stage", "seconds"], list(timings.items())), "",
          "## Figures", ""]
    for caption, rel in figures:
        md += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    return "\n".join(md)


STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}")


def markdown_to_html(text: str, base: str) -> str:
    """A self-contained HTML page of the Markdown report (the `markdown` package, tables extension), with
    every local PNG it links embedded as a data URI (a missing one is named in the page)."""
    def embed(match):
        try:
            with open(os.path.join(base, match.group(2)), "rb") as f:
                return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(f.read()).decode()})"
        except OSError:
            return f"(missing figure {match.group(2)})"

    body = markdown.markdown(re.sub(r"^!\[(.*)\]\((.*)\)$", embed, text, flags=re.M), extensions=["tables"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MambaCode report</title><style>{STYLE}"
            f"</style></head><body>{body}</body></html>")


def write_report(output_dir: str, preset_name: str, preset, pretrained: dict, finetuned: dict, probes: dict,
                 spectra: dict, timings: dict, manifest: dict | None = None) -> str:
    """Write report.md, report.html, results.json and results.png to `output_dir`; returns report.md's path.
    `probes`: {'pretrained' | 'finetuned': ProbeResult}."""
    rows = results_rows(pretrained, finetuned)
    _, notes = baseline_row(finetuned)
    figures = []
    if results_plot(rows, os.path.join(output_dir, "results.png")):
        figures.append(("Table 1 metrics (higher is better)", "results.png"))
    for stage, result in probes.items():
        if result.figure and os.path.exists(result.figure):
            figures.append((f"Probes of the {stage} models", os.path.relpath(result.figure, output_dir)))
    for task in ("types", "longctx"):
        for name in sorted(n for t, n in spectra if t == task):
            figures += [(f"Spectra {name} before/after {task} fine-tuning ({os.path.basename(p)[:-4]})",
                         os.path.relpath(p, output_dir)) for p in spectra[(task, name)].figures]
    text = render_report(preset_name, preset, rows, list(probes.values()), spectra, timings, figures, manifest, notes)
    path = atomic_write_text(os.path.join(output_dir, "report.md"), text)
    atomic_write_text(os.path.join(output_dir, "report.html"), markdown_to_html(text, output_dir))
    atomic_write_text(os.path.join(output_dir, "results.json"), json.dumps(rows, indent=1))
    return path


__all__ = ["results_rows", "baseline_row", "results_table", "retrieval_table", "probe_table", "spectrum_table", "model_label", "render_report", "sources_section",
           "markdown_to_html", "write_report"]
