"""The reproduction report (`report.md`, a self-contained `report.html`, `results.json`, `claims.json`,
`targets.json`, `results.png`) rendered from the pipeline's typed stage results: a Table-1-style results table
with a BM25 row, a retrieval table of each model beside BM25 and its dense + BM25 hybrid, the probing tables,
the spectral shift table, the paper's claims held against the seed spread, the project's targets (`targets`),
and the wall time of every stage.

Fine-tuning results are keyed `(task, name, seed)` (a key `(task, name)` is seed 0). With one seed every
number is shown as it is; with several, every fine-tuned number is shown as mean ± sample std over the seeds
and `results.json` holds `{"seeds": {seed: value}, "mean": m, "std": s}` in its place."""

from __future__ import annotations

import base64
import json
import os
import re
import statistics
from dataclasses import asdict, dataclass

import markdown

from mambacode.atomic import atomic_path, atomic_write_text
from mambacode.probing.report import layer_table
from mambacode.tables import markdown_table

from .claims import SPREAD_RULE, claims_table, probe_claims, task_claims
from .pipeline import SEED_BASE, TASKS, VARIANTS, seed_suffix, split_seed
from .targets import probe_targets, retrieval_targets, shared_bm25, targets_table, types_target

TASK_TITLES = {"advtest": "AdvTest-style MRR", "longctx": "long-context MRR", "types": "type-inference F1"}
ADVTEST_SET = "retrieval_adv"  # the obfuscated test set, named after its corpus folder
# a retrieval column of the results -> (fine-tuning task, test set); each also has a `<column>_hybrid` twin
RETRIEVAL_COLUMNS = {"advtest": ("advtest", ADVTEST_SET), "advtest_clean": ("advtest", "test"),
                     "longctx": ("longctx", "test")}
BASELINE = "bm25"  # the results row of BM25 alone (bm25s, no model), ranked on the same pools as the models
BASELINE_LABEL = "BM25 (bm25s, no model)"


@dataclass
class MeanStd:
    """One number over seeds, `values` {seed: value}: formats as 'mean ± std' (sample std, n - 1) under any float
    format spec (f"{x:.3f}"), as the mean alone for one seed, so tables written for single numbers show it."""

    values: dict

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else None

    def __format__(self, spec: str) -> str:
        return format(self.mean, spec) + ("" if self.std is None else " ± " + format(self.std, spec))

    def to_json(self) -> dict:
        return {"seeds": {str(s): v for s, v in self.values.items()}, "mean": self.mean, "std": self.std}


def seed_runs(finetuned: dict) -> dict:
    """{(task, name): {seed: result}} from fine-tuning results keyed (task, name, seed) or (task, name) (seed 0)."""
    runs = {}
    for key, res in finetuned.items():
        task, name, seed = key if len(key) == 3 else (*key, 0)
        runs.setdefault((task, name), {})[seed] = res
    return {k: dict(sorted(v.items())) for k, v in runs.items()}


def _over_seeds(runs: dict, metric, several: bool):
    """`metric(result)` of one run as it is (`several` False), or {seeds, mean, std} over the runs that have it."""
    values = {s: metric(r) for s, r in runs.items()}
    if not several:
        return next(iter(values.values()))
    present = {s: v for s, v in values.items() if v is not None}
    return MeanStd(present).to_json() if present else None


TASK_METRIC = {"advtest": lambda r: r.mrr(ADVTEST_SET), "longctx": lambda r: r.mrr("test"),
               "types": lambda r: r.test_metrics.get("micro_f1")}  # the Table-1 number of each task


def results_rows(pretrained: dict, finetuned: dict) -> dict:
    """{model name: {advtest, advtest_clean, longctx, their `_hybrid` twins, types, types_acc, params, mlm_ppl}}
    from the MLM results (by variant) and the fine-tuning results (by (task, name[, seed])), plus the row `bm25`
    ({advtest, advtest_clean, longctx}) where any run ranked its pools with BM25; missing numbers are None.
    With several seeds each fine-tuned number is {seeds, mean, std} (`MeanStd.to_json`)."""
    runs = seed_runs(finetuned)
    several = len({s for per_seed in runs.values() for s in per_seed}) > 1
    rows = {}
    for task in TASKS:
        for name in sorted(n for t, n in runs if t == task):
            per_seed, row = runs[(task, name)], rows.setdefault(name, {})
            if task == "types":
                row["types"] = _over_seeds(per_seed, lambda r: r.test_metrics.get("micro_f1"), several)
                row["types_acc"] = _over_seeds(per_seed, lambda r: r.test_metrics.get("accuracy"), several)
            for column, (column_task, test_set) in RETRIEVAL_COLUMNS.items():
                if column_task == task:
                    row[column] = _over_seeds(per_seed, lambda r, s=test_set: r.mrr(s), several)
                    row[column + "_hybrid"] = _over_seeds(per_seed, lambda r, s=test_set: r.mrr(s, "hybrid"), several)
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
    so every run of a task (every seed too) ranks the same pool alike; runs that disagree were tested on
    different pools (e.g. other sample limits), and their column is left empty rather than one of them shown."""
    row, notes = {}, []
    runs = seed_runs(finetuned)
    for column, (task, test_set) in RETRIEVAL_COLUMNS.items():
        values = {name + seed_suffix(seed): res.mrr(test_set, "bm25")
                  for (t, name), per_seed in sorted(runs.items()) if t == task for seed, res in per_seed.items()}
        found = {v for v in values.values() if v is not None}
        row[column] = shared_bm25(found)
        if len(found) > 1:
            shown = ", ".join(f"{n}: {_pct(v)}" for n, v in values.items() if v is not None)
            notes.append(f"BM25 differs between the {task} runs on the `{test_set}` pool ({shown}): they were "
                         "tested on different pools, so the BM25 cell is left empty.")
    return row, notes


def _pct(x) -> str:
    """A fraction in %, or a results.json {seeds, mean, std} as 'mean ± std' in %."""
    if isinstance(x, dict):
        return _pct(x["mean"]) + ("" if x.get("std") is None else f" ± {x['std'] * 100.0:.2f}")
    return "–" if x is None else f"{x * 100.0:.2f}"


def _mean(x):
    return x["mean"] if isinstance(x, dict) else x


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


def fusion_table(finetuned: dict) -> str:
    """The hybrid's fusion of each retrieval model and seed, as its validation split chose it
    (`RetrievalResult.fusion`: the dense ranking's weight w against BM25's 1, and k), with the validation
    hybrid MRR it reached and the equal-weight fusion's; '' when no run chose one."""
    body = []
    for (task, name), per_seed in sorted(seed_runs(finetuned).items()):
        for seed, result in per_seed.items():
            f = getattr(result, "fusion", None)
            if f:
                body.append([name, task, str(seed), f"{f['dense_weight']:g}", str(f["k"]),
                             _pct(f["validation_mrr"]), _pct(f["validation_mrr_equal_weights"])])
    if not body:
        return ""
    return markdown_table(["model", "task", "seed", "w", "k", "validation hybrid MRR", "with w = 1, k = 60"], body)


def model_path_key(path: str) -> tuple[str, str, int]:
    """(stage, name, seed) of a pipeline model folder: ('pretrained', 's4d', 0) for `.../pretrain/s4d`,
    ('types', 's4d+anchor', 2) for `.../finetune/types/s4d+anchor-seed2`, ('', folder name, 0) otherwise."""
    parts = os.path.normpath(str(path)).split(os.sep)
    if "pretrain" in parts:
        return "pretrained", parts[-1], 0
    if "finetune" in parts:
        return (parts[-2], *split_seed(parts[-1]))
    return "", parts[-1], 0


def stage_label(stage: str, name: str) -> str:
    """'s4d (pretrained)' / 's4d (after types FT)' / the name alone (a folder outside the pipeline)."""
    return f"{name} (pretrained)" if stage == "pretrained" else (f"{name} (after {stage} FT)" if stage else name)


def model_label(path: str) -> str:
    """`stage_label` of a pipeline model folder (any seed suffix left out)."""
    return stage_label(*model_path_key(path)[:2])


def probe_runs(probes: list) -> dict:
    """{(stage, name): {seed: {task: {layer: {probe: accuracy}}}}} over probe runs (`model_path_key` of each
    probed folder), in order of first appearance."""
    runs = {}
    for result in probes:
        for model, per_task in result.accuracy.items():
            stage, name, seed = model_path_key(model)
            runs.setdefault((stage, name), {})[seed] = per_task
    return runs


def probe_accuracy(probes: list) -> dict:
    """{row label: {task: {layer: {probe: accuracy}}}} over probe runs, one row per model and stage: the runs of
    a fine-tuned model's seeds merge into one row of `MeanStd` cells."""
    merged = {}
    for (stage, name), per_seed in probe_runs(probes).items():
        label = stage_label(stage, name)
        if len(per_seed) == 1:
            merged[label] = next(iter(per_seed.values()))
            continue
        cells = {}
        for seed, per_task in sorted(per_seed.items()):
            for task, per_layer in per_task.items():
                for layer, per_probe in per_layer.items():
                    for probe, acc in per_probe.items():
                        cells.setdefault(task, {}).setdefault(layer, {}).setdefault(probe, {})[seed] = acc
        merged[label] = {t: {layer: {p: MeanStd(v) for p, v in pp.items()} for layer, pp in pl.items()}
                         for t, pl in cells.items()}
    return merged


def probe_test_pairs(probes: list) -> dict:
    """{probe task: held-out test pairs} over probe runs (the same pairs for every model: the first run's)."""
    counts = {}
    for result in probes:
        for task, n in (getattr(result, "test_pairs", None) or {}).items():
            counts.setdefault(task, n)
    return counts


def test_pairs_line(probes: list) -> list[str]:
    """The held-out test pairs per probe task, and how far one pair moves an accuracy (100 / n points), as
    lines of the report ([] when the runs did not record them)."""
    counts = probe_test_pairs(probes)
    if not counts:
        return []
    parts = ", ".join(f"{task} {n:,} (one pair = {100 / n:.2f} points)" if n else f"{task} 0"
                      for task, n in counts.items())
    return [f"Held-out test pairs per task: {parts}.", ""]


def probe_table(probes: list, probe: str) -> str:
    accuracy = probe_accuracy(probes)
    if not accuracy:
        return "No probe results (the probing stages did not run)."
    return layer_table(accuracy, probe, name=str)


def spectrum_table(spectra: dict) -> str:
    """`spectra`: {(task, name[, seed]): SpectrumResult}; several seeds of one run merge into one row (kernels
    changing class and each layer's shift as mean ± std, transitions counted over all seeds)."""
    runs = seed_runs(spectra)
    body = []
    for task in ("types", "longctx"):
        for name in sorted(n for t, n in runs if t == task):
            per_seed = runs[(task, name)]
            if len(per_seed) == 1:
                s = next(iter(per_seed.values()))
                per_layer = "; ".join(f"{k}: " + ", ".join("–" if x is None else f"{x:.2f}" for x in vals)
                                      for k, vals in s.layer_shift.items())
                trans = ", ".join(f"{k} ({v})" for k, v in s.transitions.items()) or "none"
                body.append([name, task, f"{s.changed} / {s.kernels}", trans, per_layer])
                continue
            first = next(iter(per_seed.values()))
            counts = {}
            for s in per_seed.values():
                for k, v in s.transitions.items():
                    counts[k] = counts.get(k, 0) + v
            trans = (", ".join(f"{k} ({v})" for k, v in counts.items()) or "none") + f" (over {len(per_seed)} seeds)"

            def cell(direction, i):
                vals = {seed: s.layer_shift[direction][i] for seed, s in per_seed.items()
                        if i < len(s.layer_shift.get(direction, [])) and s.layer_shift[direction][i] is not None}
                return f"{MeanStd(vals):.2f}" if vals else "–"

            per_layer = "; ".join(f"{k}: " + ", ".join(cell(k, i) for i in range(len(vals)))
                                  for k, vals in first.layer_shift.items())
            changed = MeanStd({seed: s.changed for seed, s in per_seed.items()})
            body.append([name, task, f"{changed:.1f} / {first.kernels}", trans, per_layer])
    if not body:
        return "No spectral shift reports (the spectrum stages did not run)."
    return markdown_table(["model", "fine-tuning", "SSM kernels changing class", "transitions",
                           "mean abs delta log10 LHFR per layer"], body)


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save_figure(fig, path: str) -> str:
    """Lay out `fig`, write it to `path` as a PNG atomically, close it; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def results_plot(rows: dict, path: str) -> str | None:
    """Bar charts of the three task metrics, with the seed std as error bars (None without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return None
    names = _ordered(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, TASKS):
        values = [rows[n].get(key) for n in names]
        errors = [100 * (v.get("std") or 0.0) if isinstance(v, dict) else 0.0 for v in values]
        ax.bar(range(len(names)), [100 * (_mean(v) or 0.0) for v in values],
               yerr=errors if any(errors) else None, capsize=3,
               color=["#888" if n == "rocoder" else ("#2a7" if "+anchor" in n else "#36c") for n in names])
        if rows.get(BASELINE, {}).get(key) is not None:
            ax.axhline(100 * rows[BASELINE][key], color="#c33", linestyle="--", linewidth=1, label="BM25")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(TASK_TITLES[key])
    return _save_figure(fig, path)


def loss_curve(folder: str) -> list[tuple[int, float]]:
    """(step, training loss) of every logged step of the Trainer run in `folder` (its `trainer_state.json`; a
    run made in pieces has one history), [] when the folder has none."""
    path = os.path.join(folder, "trainer_state.json")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        history = json.load(fh).get("log_history", [])
    return [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]


def loss_panels(pretrained: dict, finetuned: dict) -> dict:
    """{panel title: {model name: loss_curve}}: MLM per variant, then one panel per fine-tuning task with each
    model's first seed; runs without a history and panels left empty are dropped."""
    panels = {"MLM": {v: loss_curve(r.output_dir) for v, r in pretrained.items()}}
    for (task, name), per_seed in seed_runs(finetuned).items():
        title = TASK_TITLES.get(task, task).split(" ")[0] + " fine-tuning"
        panels.setdefault(title, {})[name] = loss_curve(per_seed[min(per_seed)].output_dir)
    panels = {title: {n: c for n, c in curves.items() if c} for title, curves in panels.items()}
    return {title: curves for title, curves in panels.items() if curves}


def curves_plot(pretrained: dict, finetuned: dict, path: str) -> str | None:
    """Training loss against optimizer step, one panel per stage (`loss_panels`), so a reader sees whether a stage
    was still improving when its budget ended (None without matplotlib or without any history)."""
    panels = loss_panels(pretrained, finetuned)
    if not panels:
        return None
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for name, curve in curves.items():
            ax.plot([c[0] for c in curve], [c[1] for c in curve], label=name, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    return _save_figure(fig, path)


def timing_table(timings: dict, earlier=(), invocation_seconds: float | None = None) -> str:
    """Wall seconds per stage (`timings`, in run order; `earlier`: stages finished by an earlier invocation, whose
    seconds come from their markers), their sum, and this invocation's own time before the report."""
    body = [[name, f"{sec:.1f}", f"{sec / 60:.1f}", "earlier run" if name in earlier else "this run"]
            for name, sec in timings.items()]
    total = sum(timings.values())
    body.append(["**all stages**", f"{total:.1f}", f"{total / 60:.1f}", ""])
    if invocation_seconds is not None:
        body.append(["this invocation (before the report)", f"{invocation_seconds:.1f}",
                     f"{invocation_seconds / 60:.1f}", ""])
    return markdown_table(["stage", "seconds", "minutes", "run by"], body)


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
                  figures: list, manifest: dict | None = None, notes: list | None = None, claims: list | None = None,
                  seeds: tuple = (0,), earlier=(), invocation_seconds: float | None = None, fusions: str = "",
                  targets: list | None = None) -> str:
    """The Markdown report; `figures`: (caption, path relative to the report) pairs; `manifest`: the
    corpus manifest (`mambacode.corpus.read_manifest`), whose sources are listed; `notes`: warnings printed
    under the retrieval table (`baseline_row`); `claims`: `mambacode.training.claims.Claim`s; `seeds`: the
    fine-tuning seeds the results hold; `timings` / `earlier` / `invocation_seconds`: see `timing_table`;
    `fusions`: the hybrid's fusion per retrieval model (`fusion_table`), under the retrieval table; `targets`:
    `mambacode.training.targets.TargetCheck`s."""
    spread = ([f"Every fine-tuned number is the mean ± sample standard deviation over {len(seeds)} seeds "
               f"({', '.join(map(str, seeds))}: Trainer seeds {', '.join(str(SEED_BASE + s) for s in seeds)}; same "
               "pretrained model, data and test pools); parameters and MLM perplexity are the one pretraining run's.",
               ""] if len(seeds) > 1 else [])
    md = [f"# MambaCode reproduction report (preset `{preset_name}`)", "",
          f"Settings: `{json.dumps(asdict(preset))}`", "",
          "## Table 1: downstream results", "",
          "MRR over the whole test pool and micro F1 (the `other` bucket counted as no type), in %. AdvTest-style: "
          "test code with function and variable names replaced by placeholders (the non-obfuscated test MRR in "
          "parentheses). `+anchor`: fine-tuned with the spectral-preserving regulariser "
          f"(weight {preset.anchor_weight}). {BASELINE_LABEL}: the lexical baseline on the same queries and pools.",
          "", *spread, results_table(rows), "",
          "## Retrieval against BM25", "",
          "MRR in %, every ranker on the same queries and pools as Table 1. BM25: `bm25s` (Lucene variant, k1 = 1.5, "
          "b = 0.75) over code words (identifiers whole and split at snake_case / camelCase). Hybrid: the model's "
          "ranking of the whole pool and BM25's (candidates sharing a word with the query) merged by reciprocal-rank "
          "fusion, score = w / (k + dense rank) + 1 / (k + BM25 rank), with w and k chosen per model on its "
          "validation split's pool before the test pools are ranked (equal weights and k = 60 where no validation "
          "split was ranked; `mambacode search --mode hybrid` uses the model's choice and fuses each ranker's top "
          "100 instead of the whole pool).", "",
          retrieval_table(rows), "",
          *(["The fusion each run chose on its validation pool, with the validation hybrid MRR (%) it reached and "
             "the equal-weight fusion's:", "", fusions, ""] if fusions else []),
          *(f"**Note:** {n}" for n in notes or []), *([""] if notes else []),
          "## Probing (DirectProbe accuracy per task and layer)", "",
          "Rows: models pretrained and after fine-tuning (same sampled pairs for every model). Layer 0 is the "
          "embedding output." + (" Fine-tuned models: mean ± std over the seeds." if len(seeds) > 1 else ""), "",
          probe_table(probes, "directprobe"), "", *test_pairs_line(probes),
          "### Linear probe accuracy", "", probe_table(probes, "linear"), "",
          "## Spectral shift (pretrained -> fine-tuned)", "", spectrum_table(spectra), "",
          "## Claims", "",
          "Each of the paper's comparisons this run can test (PAPER.md; the regulariser's rows are this project's "
          "hypothesis), written A > B in the paper's direction. " + SPREAD_RULE, "",
          claims_table(claims or []), "",
          "## Targets", "",
          "The targets set for a study trained on CPU (issue 13): the shipped code-search variant's dense MRR above "
          "BM25 on the AdvTest-style pool and its hybrid above BM25 on the plain pool; micro-F1 over real types of "
          "the best variant at least 30%; the pretrained encoders' best-layer DirectProbe accuracy at least 0.45 on "
          "AST distance (5 classes) and 0.75 on siblings (2 classes), on enough held-out pairs that one pair moves "
          "an accuracy by less than 0.5 points. Over seeds a target is met in every seed, by the mean only, or not "
          "met; a number measured once is met or not.", "", targets_table(targets or []), "",
          *(["## Corpus sources", "", *sources_section(manifest), ""] if manifest else []),
          "## Wall time per stage", "",
          "Seconds each stage took when it ran (stages finished by an earlier, interrupted invocation keep the time "
          "their marker recorded).", "", timing_table(timings, earlier, invocation_seconds), "",
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
                 spectra: dict, timings: dict, manifest: dict | None = None, earlier=(),
                 invocation_seconds: float | None = None) -> str:
    """Write report.md, report.html, results.json, claims.json, targets.json, results.png and curves.png to
    `output_dir`; returns
    report.md's path. `finetuned` / `spectra`: keyed (task, name[, seed]); `probes`: {'pretrained' |
    'finetuned[-seed<s>]': ProbeResult}."""
    rows = results_rows(pretrained, finetuned)
    _, notes = baseline_row(finetuned)
    runs = seed_runs(finetuned)
    seeds = tuple(sorted({s for per_seed in runs.values() for s in per_seed})) or (0,)
    probe_results = list(probes.values())
    probed = probe_runs(probe_results)
    claims = task_claims(runs, {t: TASK_METRIC[t] for t in TASKS}) + probe_claims(probed)
    targets = (retrieval_targets(runs) + types_target(runs)
               + probe_targets(probed, probe_test_pairs(probe_results)))
    figures = []
    if results_plot(rows, os.path.join(output_dir, "results.png")):
        figures.append(("Table 1 metrics (higher is better)", "results.png"))
    if curves_plot(pretrained, finetuned, os.path.join(output_dir, "curves.png")):
        figures.append(("Training loss per stage (first seed)", "curves.png"))
    for stage, result in probes.items():
        if result.figure and os.path.exists(result.figure):
            figures.append((f"Probes of the {stage} models", os.path.relpath(result.figure, output_dir)))
    spectrum_runs = seed_runs(spectra)
    for task in ("types", "longctx"):
        for name in sorted(n for t, n in spectrum_runs if t == task):
            seed, result = next(iter(spectrum_runs[(task, name)].items()))  # the first seed's figures
            figures += [(f"Spectra {name}{seed_suffix(seed)} before/after {task} fine-tuning "
                         f"({os.path.basename(p)[:-4]})", os.path.relpath(p, output_dir)) for p in result.figures]
    text = render_report(preset_name, preset, rows, list(probes.values()), spectra, timings, figures, manifest, notes,
                         claims, seeds, earlier, invocation_seconds, fusion_table(finetuned), targets)
    path = atomic_write_text(os.path.join(output_dir, "report.md"), text)
    atomic_write_text(os.path.join(output_dir, "report.html"), markdown_to_html(text, output_dir))
    atomic_write_text(os.path.join(output_dir, "results.json"), json.dumps(rows, indent=1))
    atomic_write_text(os.path.join(output_dir, "claims.json"), json.dumps([c.to_json() for c in claims], indent=1))
    atomic_write_text(os.path.join(output_dir, "targets.json"), json.dumps([t.to_json() for t in targets], indent=1))
    return path


__all__ = ["MeanStd", "seed_runs", "results_rows", "baseline_row", "results_table", "retrieval_table", "probe_runs",
           "probe_accuracy", "probe_table", "probe_test_pairs", "test_pairs_line", "spectrum_table", "timing_table",
           "model_label",
           "loss_curve", "loss_panels", "curves_plot",
           "model_path_key", "render_report", "sources_section", "markdown_to_html", "write_report"]
