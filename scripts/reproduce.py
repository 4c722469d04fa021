#!/usr/bin/env python
"""Reproduce the study end to end from one preset.

    python scripts/reproduce.py --preset tiny --output_dir runs/tiny

Stages: corpus -> tokenizer -> MLM pretraining of the SSM variants (s4d, s4d+hf_conv parameter-matched,
s4d with 8 kernels, mamba2) and RoCoder -> probes of the pretrained models -> fine-tuning on AdvTest-style
code search, long-context QA retrieval and type inference (each SSM variant with and without the spectral
regulariser) -> probes of the fine-tuned models -> spectral shift reports -> DIR/report.md and
DIR/report.html (plots, a Table-1-style results table, the probing table). Retrieval models are exported
to DIR/models/<name>/ (AutoModel.from_pretrained(path, trust_remote_code=True) + AutoTokenizer).

A stage whose output exists is skipped (each writes a `.done` marker last), so a killed run resumes where
it stopped; a training stage that was cut off resumes from its last checkpoint. A failing stage is named,
with its log file, and the run stops with exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import traceback

from mambacode.atomic import atomic_write_text

HERE = os.path.dirname(os.path.abspath(__file__))

TASKS_ALL = ("advtest", "longctx", "types")
# The tiny preset fine-tunes with the regulariser only on type inference (where the paper sees the
# forgetting) to stay under 20 CPU minutes; larger presets run every task with and without it.
PRESETS = {
    # 2 CPU cores, < 20 minutes
    "tiny": dict(max_functions=12000, vocab_size=4096, hidden_size=64, num_hidden_layers=2, intermediate_size=256,
                 state_size=32, mamba_head_dim=32, mlm_seq=128, mlm_steps=300, mlm_batch=8, mlm_lr=2e-3,
                 ft_steps=100, ft_batch=8, ft_lr=1e-3, query_len=32, code_len=128, long_code_len=256,
                 type_len=256, eval_samples=150, probe_pairs=80, probe_snippets=150, probe_kinds="linear,directprobe",
                 spectrum_length=1024, anchor_weight=1.0, warmup=30, anchor_tasks=("types",),
                 max_train_rows=2000),
    # one GPU, about an hour
    "small": dict(max_functions=30000, vocab_size=16384, hidden_size=256, num_hidden_layers=6, intermediate_size=1024,
                  state_size=64, mamba_head_dim=64, mlm_seq=256, mlm_steps=5000, mlm_batch=64, mlm_lr=1e-3,
                  ft_steps=2000, ft_batch=64, ft_lr=2e-4, query_len=64, code_len=256, long_code_len=1024,
                  type_len=512, eval_samples=None, probe_pairs=300, probe_snippets=1000,
                  probe_kinds="linear,directprobe", spectrum_length=4096, anchor_weight=1.0, warmup=300, anchor_tasks=TASKS_ALL),
    # the paper's width and depth (several GPUs)
    "base": dict(max_functions=None, vocab_size=32000, hidden_size=768, num_hidden_layers=12, intermediate_size=3072,
                 state_size=64, mamba_head_dim=64, mlm_seq=256, mlm_steps=100000, mlm_batch=128, mlm_lr=5e-5,
                 ft_steps=10000, ft_batch=64, ft_lr=5e-5, query_len=64, code_len=256, long_code_len=4096,
                 type_len=512, eval_samples=None, probe_pairs=None, probe_snippets=None,
                 probe_kinds="directprobe,linear", spectrum_length=4096, anchor_weight=1.0, warmup=300, anchor_tasks=TASKS_ALL),
}

# name -> MLM flags. "rocoder" is the Transformer baseline (RoFormer at the same width/depth).
VARIANTS = {
    "s4d": ["--mixer", "s4d"],
    "s4d-hf": ["--mixer", "s4d", "--hf_conv", "true", "--parameter_matched", "true"],
    "s4d-8k": ["--mixer", "s4d", "--num_kernels", "8"],
    "mamba2": ["--mixer", "mamba2"],
    "rocoder": ["--model_type", "roformer"],
}
SSM_VARIANTS = [v for v in VARIANTS if v != "rocoder"]
TASKS = TASKS_ALL
TASK_TITLES = {"advtest": "AdvTest-style MRR", "longctx": "long-context MRR", "types": "type-inference F1"}

logger = logging.getLogger("reproduce")


class StageError(RuntimeError):
    pass


class _CurrentStderr(logging.Handler):
    """Writes to whatever sys.stderr is at emit time (so stage logs follow the redirection)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never crash a stage
            pass


class _StderrProxy:
    """A stream that is always the current sys.stderr (library log handlers keep the stream they were
    created with; stages redirect stderr into their log files)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


def _route_library_logs() -> None:
    import datasets  # noqa: F401
    import transformers

    transformers.utils.logging.get_verbosity()  # creates the library handler now, outside any stage
    for name in ("transformers", "datasets"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(_StderrProxy())


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_mambacode_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_done(folder: str, info: dict) -> None:
    atomic_write_text(os.path.join(folder, ".done"), json.dumps(info))


class Pipeline:
    def __init__(self, output_dir: str, preset: str, only_variants=None, skip_anchor=False, verbose=False):
        self.out = os.path.abspath(output_dir)
        self.preset_name = preset
        self.p = PRESETS[preset]
        self.variants = only_variants or list(VARIANTS)
        self.skip_anchor = skip_anchor
        self.verbose = verbose
        self.logs = os.path.join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.corpus = os.path.join(self.out, "corpus")
        # longest input any stage feeds the models (probes and spectra are truncated to it as well)
        self.max_positions = max(self.p["long_code_len"], self.p["type_len"], self.p["mlm_seq"], 512)
        self.tokenizer = os.path.join(self.out, "tokenizer")

    # ------------------------------------------------------------------ stage machinery
    def stage(self, name: str, folder: str, fn, done=None) -> None:
        """Run `fn` unless `folder/.done` (or `done()`) says it ran; name the stage if it fails."""
        finished = done() if done is not None else os.path.exists(os.path.join(folder, ".done"))
        if finished:
            logger.info("[skip] %s (output exists: %s)", name, folder)
            return
        log_path = os.path.join(self.logs, f"{name}.log")
        logger.info("[run ] %s  (log: %s)", name, os.path.relpath(log_path, self.out))
        start = time.time()
        try:
            with open(log_path, "a", buffering=1) as log:
                if self.verbose:
                    fn(log)
                else:
                    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                        fn(log)
        except BaseException as exc:  # noqa: BLE001 - a stage may sys.exit
            if isinstance(exc, KeyboardInterrupt):
                raise
            with open(log_path, "a") as log:
                traceback.print_exc(file=log)
            detail = f"exit status {exc.code}" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
            raise StageError(f"stage '{name}' failed ({detail}); see {log_path}") from exc
        self.timings[name] = round(time.time() - start, 1)
        if done is None:
            _write_done(folder, {"stage": name, "seconds": self.timings[name]})
        logger.info("[done] %s in %.1f s", name, self.timings[name])

    def run_script_main(self, script: str, argv: list[str]) -> None:
        """Run scripts/<script>.py's main(argv) in this process (no interpreter start-up per stage)."""
        rc = _load_script(script).main(argv)
        if rc not in (0, None):
            raise SystemExit(rc)

    def run_subprocess(self, log, argv: list[str]) -> None:
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run([sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            raise SystemExit(proc.returncode)

    def common_train_flags(self, steps, batch, lr, output_dir):
        return ["--output_dir", output_dir, "--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
                "--per_device_eval_batch_size", str(batch), "--learning_rate", str(lr), "--warmup_steps",
                str(self.p["warmup"]), "--lr_scheduler_type", "cosine", "--logging_steps", "20", "--save_steps",
                str(max(steps // 2, 1)), "--save_total_limit", "1", "--report_to", "tensorboard", "--seed", "42",
                "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--max_grad_norm", "1.0"]

    # ------------------------------------------------------------------ stages
    def run(self) -> None:
        p = self.p
        t0 = time.time()
        corpus_args = ["--output_dir", self.corpus, "--quiet", "true"]
        if p["max_functions"]:
            corpus_args += ["--max_functions", str(p["max_functions"])]
        self.stage("corpus", self.corpus, lambda log: self.run_subprocess(
            log, [os.path.join(HERE, "build_corpus.py"), *corpus_args]),
            done=lambda: all(os.path.isdir(os.path.join(self.corpus, t)) for t in
                             ("retrieval", "retrieval_adv", "long_context", "type_inference")))
        self.stage("tokenizer", self.tokenizer, lambda log: self.run_subprocess(
            log, [os.path.join(HERE, "train_tokenizer.py"), "--corpus_dir", self.corpus, "--output_dir",
                  self.tokenizer, "--vocab_size", str(p["vocab_size"])]))
        pre = {}
        for v in self.variants:
            folder = os.path.join(self.out, "pretrain", v)
            pre[v] = folder
            size = ["--hidden_size", str(p["hidden_size"]), "--num_hidden_layers", str(p["num_hidden_layers"]),
                    "--intermediate_size", str(p["intermediate_size"]), "--state_size", str(p["state_size"]),
                    "--mamba_head_dim", str(p["mamba_head_dim"]), "--max_position_embeddings",
                    str(self.max_positions)]
            argv = ["--tokenizer_name", self.tokenizer, "--dataset_path", os.path.join(self.corpus, "retrieval"),
                    "--text_column", "code", "--max_seq_length", str(p["mlm_seq"]), *size, *VARIANTS[v],
                    "--do_train", "--do_eval", "--max_eval_samples", "200", "--model_card_name", f"mambacode-{v}-mlm",
                    *self.train_rows(),
                    *self.common_train_flags(p["mlm_steps"], p["mlm_batch"], p["mlm_lr"], folder)]
            self.stage(f"pretrain-{v}", folder, lambda log, a=argv: self.run_script_main("run_mlm", a))

        probe_dir = os.path.join(self.out, "probes")
        self.stage("probe-pretrained", os.path.join(probe_dir, "pretrained"),
                   lambda log: self.probe(log, [pre[v] for v in self.variants], os.path.join(probe_dir, "pretrained")))

        ft = {}
        for task in TASKS:
            for v in self.variants:
                anchors = [False] if (v == "rocoder" or self.skip_anchor or task not in p["anchor_tasks"]) \
                    else [False, True]
                for anchored in anchors:
                    name = v + ("+anchor" if anchored else "")
                    folder = os.path.join(self.out, "finetune", task, name)
                    ft[(task, name)] = folder
                    self.stage(f"finetune-{task}-{name}", folder,
                               lambda log, t=task, f=folder, m=pre[v], a=anchored, n=name:
                               self.finetune(t, m, f, a, n))

        self.stage("export-models", os.path.join(self.out, "models"), lambda log: self.export(ft))
        # the paper's probing table: the baseline SSM after type-inference and after QA-retrieval fine-tuning
        # (plus RoCoder and the regularised / fixed variants after type inference, where forgetting shows)
        keys = [("types", "s4d"), ("longctx", "s4d"), ("types", "s4d+anchor"), ("types", "s4d-hf"),
                ("types", "rocoder")]
        if self.preset_name != "tiny":
            keys += [(t, v) for t in ("types", "longctx") for v in self.variants]
            keys += [("types", v + "+anchor") for v in self.variants]
        tuned = list(dict.fromkeys(ft[k] for k in keys if k in ft))
        self.stage("probe-finetuned", os.path.join(probe_dir, "finetuned"),
                   lambda log: self.probe(log, tuned, os.path.join(probe_dir, "finetuned"),
                                          probe_set=os.path.join(probe_dir, "pretrained", "probe_set.json")))
        for v in [v for v in self.variants if v != "rocoder"]:
            for name in [v, v + "+anchor"]:
                for task in ("types", "longctx"):
                    if (task, name) not in ft:
                        continue
                    folder = os.path.join(self.out, "spectra", task, name)
                    self.stage(f"spectrum-{task}-{name}", folder,
                               lambda log, f=folder, m=pre[v], t=ft[(task, name)]: self.spectrum(log, m, t, f))
        self.timings["total_before_report"] = round(time.time() - t0, 1)
        self.stage("report", self.out, lambda log: write_report(self), done=lambda: False)

    def train_rows(self) -> list[str]:
        """Cap the rows tokenised for training (tiny: the steps never reach further into the data)."""
        n = self.p.get("max_train_rows")
        return ["--max_train_samples", str(n)] if n else []

    def finetune(self, task, model_dir, folder, anchored, name):
        p = self.p
        anchor = ["--spectral_anchor_weight", str(p["anchor_weight"]),
                  "--spectral_anchor_length", str(p["spectrum_length"])] if anchored else []
        flags = self.common_train_flags(p["ft_steps"], p["ft_batch"], p["ft_lr"], folder)
        card = ["--model_card_name", f"mambacode-{name}-{task}"]
        limit = ["--max_eval_samples", str(p["eval_samples"])] if p["eval_samples"] else []
        limit += self.train_rows()
        if task == "types":
            argv = ["--model_name_or_path", model_dir, "--dataset_path", os.path.join(self.corpus, "type_inference"),
                    "--max_seq_length", str(p["type_len"]), "--do_train", "--do_predict", *limit, *anchor, *card, *flags]
            self.run_script_main("run_type_inference", argv)
            return
        data = "retrieval" if task == "advtest" else "long_context"
        code_len = p["code_len"] if task == "advtest" else p["long_code_len"]
        argv = ["--model_name_or_path", model_dir, "--dataset_path", os.path.join(self.corpus, data),
                "--max_query_length", str(p["query_len"]), "--max_code_length", str(code_len),
                "--do_train", "--do_predict", *limit, *anchor, *card, *flags]
        if task == "advtest":
            argv += ["--test_dataset_path", os.path.join(self.corpus, "retrieval_adv")]
        self.run_script_main("run_retrieval", argv)

    def _has_split(self, task, split):
        import datasets

        return split in datasets.load_from_disk(os.path.join(self.corpus, task))

    def probe(self, log, models, out, probe_set=None):
        p = self.p
        argv = [os.path.join(HERE, "probe.py"), "--language", "python", "--output_dir", out,
                "--max_length", str(self.max_positions),
                "--probes", *p["probe_kinds"].split(",")]
        for m in models:
            argv += ["--model_name_or_path", m]
        if probe_set and os.path.exists(probe_set):
            argv += ["--probe_set", probe_set]
        else:
            argv += ["--corpus_dir", self.corpus]
        if p["probe_pairs"]:
            argv += ["--pairs_per_class", str(p["probe_pairs"])]
        if p["probe_snippets"]:
            argv += ["--max_snippets", str(p["probe_snippets"])]
        self.run_subprocess(log, argv)

    def spectrum(self, log, pre, post, out):
        inputs = os.path.join(self.out, "spectrum_inputs.jsonl")
        if not os.path.exists(inputs):
            import datasets

            test = datasets.load_from_disk(os.path.join(self.corpus, "retrieval"))["test"]
            tmp = inputs + ".tmp"
            with open(tmp, "w") as f:
                for code in test["code"][:64]:
                    f.write(json.dumps({"code": code}) + "\n")
            os.replace(tmp, inputs)
        self.run_subprocess(log, [os.path.join(HERE, "spectrum.py"), "--model_name_or_path", pre, "--compare_to",
                                  post, "--output_dir", out, "--length", str(self.p["spectrum_length"]),
                                  "--inputs_file", inputs, "--max_snippets", "32", "--max_length", "256",
                                  "--tokenizer_name_or_path", self.tokenizer])

    def export(self, ft):
        """Copy the AdvTest retrieval models (final weights, code, tokenizer, card) to models/<name>/."""
        root = os.path.join(self.out, "models")
        for (task, name), folder in ft.items():
            if task != "advtest":
                continue
            dest = os.path.join(root, name)
            tmp = dest + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns("checkpoint-*", "runs", ".done",
                                                                      "training_args.bin", "*.json.tmp"))
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)


# ---------------------------------------------------------------------------------------------- report
def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def collect_results(pl: Pipeline) -> dict:
    rows = {}
    for task in TASKS:
        root = os.path.join(pl.out, "finetune", task)
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            res = _read_json(os.path.join(root, name, "all_results.json")) or {}
            row = rows.setdefault(name, {})
            if task == "advtest":
                row["advtest"] = res.get("retrieval_adv_mrr")
                row["advtest_clean"] = res.get("test_mrr")
            elif task == "longctx":
                row["longctx"] = res.get("test_mrr")
            else:
                row["types"] = res.get("test_micro_f1")
                row["types_acc"] = res.get("test_accuracy")
            row.setdefault("params", None)
    for v in VARIANTS:
        st = os.path.join(pl.out, "pretrain", v, "model.safetensors")
        if os.path.exists(st):
            from safetensors import safe_open

            with safe_open(st, "pt") as f:
                n = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()
                        if not k.startswith(("lm_head", "cls.")))
            for name in rows:
                if name.split("+")[0] == v:
                    rows[name]["params"] = n
        ev = _read_json(os.path.join(pl.out, "pretrain", v, "eval_results.json")) or {}
        for name in rows:
            if name.split("+")[0] == v:
                rows[name]["mlm_ppl"] = ev.get("perplexity")
    return rows


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _fmt(x, scale=100.0):
    return "–" if x is None else f"{x * scale:.2f}"


def results_table(rows: dict) -> str:
    order = [n for v in VARIANTS for n in (v, v + "+anchor") if n in rows]
    lines = ["| model | params (encoder+emb) | MLM ppl | AdvTest-style MRR | (non-obfuscated MRR) | long-context MRR "
             "| type-inference F1 | (type accuracy) |", "|---|---|---|---|---|---|---|---|"]
    for n in order:
        r = rows[n]
        params = f"{r['params']:,}" if isinstance(r.get("params"), int) else "–"
        ppl = "–" if r.get("mlm_ppl") is None else f"{r['mlm_ppl']:.1f}"
        lines.append(f"| {n} | {params} | {ppl} | {_fmt(r.get('advtest'))} | {_fmt(r.get('advtest_clean'))} | "
                     f"{_fmt(r.get('longctx'))} | {_fmt(r.get('types'))} | {_fmt(r.get('types_acc'))} |")
    return "\n".join(lines)


def _short(path: str) -> str:
    parts = os.path.normpath(str(path)).split(os.sep)
    if "pretrain" in parts:
        return f"{parts[-1]} (pretrained)"
    if "finetune" in parts:
        return f"{parts[-1]} (after {parts[-2]} FT)"
    return parts[-1]


def probe_table(pl: Pipeline, probe: str = "directprobe") -> str:
    rows, layers_all, tasks_all = [], set(), []
    for stage in ("pretrained", "finetuned"):
        rep = _read_json(os.path.join(pl.out, "probes", stage, "probe_report.json"))
        if not rep:
            continue
        for model, per_task in rep.get("results", {}).items():
            for task, per_layer in per_task.items():
                if task not in tasks_all:
                    tasks_all.append(task)
                layers_all |= {int(l) for l in per_layer}
            rows.append((_short(model), per_task))
    if not rows:
        return "No probe results (the probing stages did not run)."
    layers = sorted(layers_all)
    head = "| model | " + " | ".join(f"{t} L{l}" for t in tasks_all for l in layers) + " |"
    lines = [head, "|---|" + "---|" * (len(tasks_all) * len(layers))]
    for name, per_task in rows:
        cells = []
        for t in tasks_all:
            for l in layers:
                r = per_task.get(t, {}).get(str(l), {}).get(probe)
                cells.append("–" if r is None else f"{r['accuracy']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spectrum_table(pl: Pipeline) -> str:
    lines = ["| model | fine-tuning | SSM kernels changing class | transitions | mean abs delta log10 LHFR per layer |",
             "|---|---|---|---|---|"]
    root = os.path.join(pl.out, "spectra")
    found = False
    for task in ("types", "longctx"):
        for name in sorted(os.listdir(os.path.join(root, task))) if os.path.isdir(os.path.join(root, task)) else []:
            rep = _read_json(os.path.join(root, task, name, "spectral_shift.json"))
            if not rep:
                continue
            found = True
            ch = rep.get("class_changes", {})
            shift = rep.get("layer_mean_abs_delta_log10_lhfr", {})
            per_layer = "; ".join(f"{k}: " + ", ".join("–" if x is None else f"{x:.2f}" for x in vals)
                                  for k, vals in (shift.get("values") or {}).items())
            trans = ", ".join(f"{k} ({v})" for k, v in (ch.get("transitions") or {}).items()) or "none"
            lines.append(f"| {name} | {task} | {ch.get('total', '–')} / {ch.get('kernels', '–')} | {trans} | {per_layer} |")
    return "\n".join(lines) if found else "No spectral shift reports (the spectrum stages did not run)."


def results_plot(rows: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [n for v in VARIANTS for n in (v, v + "+anchor") if n in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, TASKS):
        vals = [100 * (rows[n].get(key) or 0.0) for n in names]
        colors = ["#888" if n == "rocoder" else ("#2a7" if "+anchor" in n else "#36c") for n in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(TASK_TITLES[key])
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_report(pl: Pipeline) -> None:
    rows = collect_results(pl)
    figs = []
    plot = results_plot(rows, os.path.join(pl.out, "results.png"))
    if plot:
        figs.append(("Table 1 metrics (higher is better)", "results.png"))
    for stage in ("pretrained", "finetuned"):
        png = os.path.join(pl.out, "probes", stage, "probe_report.png")
        if os.path.exists(png):
            figs.append((f"Probes of the {stage} models", os.path.relpath(png, pl.out)))
    for task in ("types", "longctx"):
        root = os.path.join(pl.out, "spectra", task)
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            for fn in sorted(os.listdir(os.path.join(root, name))):
                if fn.endswith(".png"):
                    figs.append((f"Spectra {name} before/after {task} fine-tuning ({fn[:-4]})",
                                 os.path.relpath(os.path.join(root, name, fn), pl.out)))
    md = [f"# MambaCode reproduction report (preset `{pl.preset_name}`)", "",
          f"Settings: `{json.dumps(pl.p)}`", "",
          "## Table 1: downstream results", "",
          "MRR over the whole test pool and micro F1 (the `other` bucket counted as no type), in %. AdvTest-style: "
          "test code with function and variable names replaced by placeholders (the non-obfuscated test MRR in "
          "parentheses). `+anchor`: fine-tuned with the spectral-preserving regulariser "
          f"(weight {pl.p['anchor_weight']}).", "", results_table(rows), "",
          "## Probing (DirectProbe accuracy per task and layer)", "",
          "Rows: models pretrained and after fine-tuning (same sampled pairs for every model). Layer 0 is the "
          "embedding output.", "", probe_table(pl, "directprobe"), "",
          "### Linear probe accuracy", "", probe_table(pl, "linear"), "",
          "## Spectral shift (pretrained -> fine-tuned)", "", spectrum_table(pl), "",
          "## Stage timings (s)", "", "| stage | seconds |", "|---|---|",
          *[f"| {k} | {v} |" for k, v in pl.timings.items()], "", "## Figures", ""]
    for caption, rel in figs:
        md += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    text = "\n".join(md)
    atomic_write_text(os.path.join(pl.out, "report.md"), text)
    atomic_write_text(os.path.join(pl.out, "report.html"), markdown_to_html(text, pl.out))
    atomic_write_text(os.path.join(pl.out, "results.json"), json.dumps(rows, indent=1))


def markdown_to_html(text: str, base: str) -> str:
    """The report's small markdown subset (headings, tables, images, code spans) as self-contained HTML."""
    out, table = [], []

    def inline(s):
        s = html.escape(s)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)

    def flush():
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|(-+\|)+", r.replace(" ", ""))]
            out.append("<table>")
            for i, r in enumerate(rows):
                tag = "th" if i == 0 else "td"
                cells = [c.strip() for c in r.strip().strip("|").split("|")]
                out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
            out.append("</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        m = re.match(r"^(#+) (.*)", line)
        img = re.match(r"^!\[(.*)\]\((.*)\)$", line)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
        elif img:
            path = os.path.join(base, img.group(2))
            try:
                with open(path, "rb") as f:
                    data = base64.b64encode(f.read()).decode()
                out.append(f'<img alt="{html.escape(img.group(1))}" src="data:image/png;base64,{data}" '
                           'style="max-width:100%">')
            except OSError:
                out.append(f"<p>(missing figure {html.escape(img.group(2))})</p>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>MambaCode report</title><style>{style}</style>" \
           f"</head><body>{''.join(out)}</body></html>"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=list(PRESETS), default="tiny")
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--variants", default=None, help=f"comma list, subset of {list(VARIANTS)} (default: all)")
    ap.add_argument("--no_anchor", action="store_true", help="skip the spectral-regulariser fine-tunes")
    ap.add_argument("--verbose", action="store_true", help="stage output on the console instead of log files")
    args = ap.parse_args(argv)
    variants = None
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            ap.error(f"--variants: unknown {bad}; choose from {list(VARIANTS)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = logging.getLogger()
    if not root.handlers:
        h = _CurrentStderr()
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    logging.getLogger("reproduce").setLevel(logging.INFO)
    console = logging.StreamHandler(sys.__stdout__)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(console)
    logger.propagate = False
    _route_library_logs()
    pl = Pipeline(args.output_dir, args.preset, variants, args.no_anchor, args.verbose)
    start = time.time()
    try:
        pl.run()
    except StageError as exc:
        logger.error("error: %s", exc)
        return 1
    logger.info("finished in %.1f min: %s, %s", (time.time() - start) / 60, os.path.join(pl.out, "report.md"),
                os.path.join(pl.out, "report.html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
