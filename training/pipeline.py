"""The reproduction pipeline's pieces (`scripts/reproduce.py` strings them together): presets, a stage runner
with per-stage log files and `.done` markers, the arguments of each training stage, and the probe, spectrum
and export stages. Every stage is one in-process library call returning a typed result.

A stage's marker `<folder>/.done` holds its result, so a skipped stage (a resumed run) hands the same
result on as a fresh one; a failing stage raises `StageError` naming the stage and its log file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field

import datasets
import transformers
from transformers import TrainingArguments

from mambacode.atomic import atomic_directory, atomic_write_text
from mambacode.corpus import read_snippets
from mambacode.devices import cpu_bf16_supported  # noqa: F401  (re-exported: the study and the recipe benchmark use it from here)

from .entry_points import (MLMDataArguments, RetrievalDataArguments, TypeInferenceDataArguments, run_mlm,
                           run_retrieval, run_type_inference)
from .models import ModelArguments
from .script_utils import RunArguments

logger = logging.getLogger("mambacode.pipeline")

TASKS = ("advtest", "longctx", "types")
# variant name -> ModelArguments of its pretraining; "rocoder" is the Transformer baseline (RoFormer)
VARIANTS = {
    "s4d": {"mixer": "s4d"},
    "s4d-hf": {"mixer": "s4d", "hf_conv": True, "parameter_matched": True},
    "s4d-8k": {"mixer": "s4d", "num_kernels": 8},
    "mamba2": {"mixer": "mamba2"},
    "rocoder": {"model_type": "roformer"},
}
ALL_CODE_FOLDER = "mlm_all_code"  # all_code_dataset's folder inside the corpus
# Trainer seed of fine-tuning seed s: SEED_BASE + s (seed 0 = the seed every run used before seeds existed)
SEED_BASE = 42


@dataclass
class Preset:
    """Sizes, steps and sample counts of one reproduction (None = no limit)."""

    max_functions: int | None
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    state_size: int
    mamba_head_dim: int
    mlm_seq: int
    mlm_steps: int
    mlm_batch: int
    mlm_lr: float
    ft_steps: int
    ft_batch: int
    ft_lr: float
    query_len: int
    code_len: int
    long_code_len: int
    type_len: int
    eval_samples: int | None
    probe_pairs: int | None
    probe_snippets: int | None
    probe_kinds: str
    spectrum_length: int
    anchor_weight: float
    warmup: int
    anchor_tasks: tuple = TASKS
    max_train_rows: int | None = None
    seeds: tuple = (0,)  # every fine-tuning run runs once per seed (Trainer seed SEED_BASE + s); pretraining once
    bf16: bool = False  # bf16 autocast on the CPU (`bf16=True, use_cpu=True`) where the CPU has bf16 instructions
    variants: tuple | None = None  # the variants run by default (None: every one in VARIANTS)
    tasks: tuple = TASKS  # the fine-tuning tasks run
    task_steps: tuple = ()  # (task, steps) pairs: fine-tuning steps of a task other than ft_steps
    mlm_data: str = "retrieval"  # MLM text: 'retrieval' (retrieval train code) or 'all' (+ long-context documents)
    checkpoints: int = 2  # checkpoints per training stage (evenly spaced): a kill loses at most 1/checkpoints
    warmup_ratio: float | None = None  # warm-up as a fraction of each stage's steps (None: `warmup` steps)
    length_grouped: bool = False  # retrieval fine-tuning batches of similar query + code length (less padding)
    lr_schedule: str = "cosine"  # transformers' lr_scheduler_type of every training stage ('cosine', 'linear')
    probe_test_fraction: float = 0.2  # probe pairs held out for testing (the paper's 80/20 split by default)
    long_eval_len: int | None = None  # long-context pools read this many tokens per document (None: long_code_len)
    crop_long_context: bool = False  # long-context training pairs read the queried function (`function_window`)

    def finetune_steps(self, task: str) -> int:
        """The fine-tuning steps of `task`: its entry in `task_steps`, else `ft_steps`."""
        return dict(self.task_steps).get(task, self.ft_steps)

    @property
    def max_positions(self) -> int:
        """The longest input any stage feeds the models (probes and spectra are truncated to it as well)."""
        return max(self.long_code_len, self.type_len, self.mlm_seq, 512)


def seed_suffix(seed: int) -> str:
    """The stage-name and folder suffix of a fine-tuning seed: '' for seed 0 (the names runs had before seeds
    existed), '-seed<s>' otherwise."""
    return "" if seed == 0 else f"-seed{seed}"


_SEEDED = re.compile(r"^(.*)-seed(\d+)$")


def split_seed(name: str) -> tuple[str, int]:
    """'s4d+anchor-seed2' -> ('s4d+anchor', 2); a name without the suffix is seed 0."""
    match = _SEEDED.match(name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


# ------------------------------------------------------------------------------------------ stage runner
class StageError(RuntimeError):
    """A stage failed; the message names the stage, the cause and the log file."""


@contextlib.contextmanager
def _output_to(log):
    """Send stdout, stderr and the log records of the root, transformers and datasets loggers to `log`."""
    transformers.utils.logging.get_verbosity()  # create the libraries' own handlers now, outside the stage
    datasets.utils.logging.get_verbosity()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s", "%H:%M:%S"))
    saved = {name: logging.getLogger(name).handlers for name in (None, "transformers", "datasets")}
    for name in saved:
        logging.getLogger(name).handlers = [handler]
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        for name, handlers in saved.items():
            logging.getLogger(name).handlers = handlers


@dataclass
class StageRunner:
    """Runs named stages once: output to `<logs>/<name>.log`, result and wall time kept in `<folder>/.done`.

    `timings` holds each stage's wall seconds, for stages skipped now too (read back from their markers, and
    named in `earlier`), so a run made of several pieces still reports every stage's time. A stage itself
    killed and resumed (training stages resume from their checkpoints) counts the time of every piece: while it
    runs, its seconds so far are written to `<logs>/<name>.pieces.json` every `heartbeat` seconds, so a killed
    piece loses at most that much of its time; the marker keeps the sum and the pieces."""

    logs: str
    verbose: bool = False
    timings: dict = field(default_factory=dict)
    earlier: set = field(default_factory=set)
    heartbeat: float = 30.0

    def __call__(self, name: str, folder: str, fn, result_type=None, done=None):
        """`fn()` unless `folder/.done` (or `done()`, for folders another tool owns) says it ran; returns its
        result (read back from the marker when skipped). `result_type`: the dataclass `fn` returns. A stage
        with `done` keeps its wall time in `<logs>/<name>.done` (its folder is not ours to write in)."""
        marker = os.path.join(folder, ".done") if done is None else os.path.join(self.logs, f"{name}.done")
        if done() if done is not None else _read_marker(marker, result_type) is not None:
            logger.info("[skip] %s (output exists: %s)", name, folder)
            record = _read_marker(marker, result_type if done is None else None) or {}
            if isinstance(record.get("seconds"), (int, float)):
                self.timings[name] = record["seconds"]
                self.earlier.add(name)
            return record.get("result") if done is None else None
        os.makedirs(self.logs, exist_ok=True)
        log_path = os.path.join(self.logs, f"{name}.log")
        logger.info("[run ] %s  (log: %s)", name, log_path)
        pieces_path = os.path.join(self.logs, f"{name}.pieces.json")
        pieces = _read_pieces(pieces_path) + [0.0]  # the seconds of earlier, killed pieces of this stage
        start = time.time()
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat):
                pieces[-1] = round(time.time() - start, 1)
                atomic_write_text(pieces_path, json.dumps(pieces))

        beating = threading.Thread(target=beat, name=f"stage-heartbeat-{name}", daemon=True)
        beating.start()
        with open(log_path, "a", buffering=1) as log:
            try:
                with contextlib.nullcontext() if self.verbose else _output_to(log):
                    result = fn()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a stage may sys.exit
                traceback.print_exc(file=log)
                detail = f"exit status {exc.code}" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
                raise StageError(f"stage '{name}' failed ({detail}); see {log_path}") from exc
            finally:
                stop.set()
                beating.join()
        end = time.time()
        pieces[-1] = round(end - start, 1)
        self.timings[name] = round(sum(pieces), 1)
        self.earlier.discard(name)
        record = {"stage": name, "seconds": self.timings[name], "pieces": pieces, "started": _utc(start),
                  "finished": _utc(end),
                  "result": dataclasses.asdict(result) if result_type is not None and done is None else None}
        atomic_write_text(marker, json.dumps(record))
        if os.path.exists(pieces_path):
            os.remove(pieces_path)
        logger.info("[done] %s in %.1f s", name, self.timings[name])
        return result


def _read_pieces(path: str) -> list[float]:
    """The seconds of the earlier pieces of a stage (its heartbeat file), [] if none or unreadable."""
    try:
        with open(path) as fh:
            pieces = json.load(fh)
    except (OSError, ValueError):
        return []
    return [float(x) for x in pieces] if isinstance(pieces, list) and all(
        isinstance(x, (int, float)) for x in pieces) else []


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="milliseconds")


def _read_marker(path: str, result_type) -> dict | None:
    """The marker's record with its result rebuilt, or None (no marker, or one without a result)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if result_type is not None:
        if not isinstance(record.get("result"), dict):
            return None  # a marker of an older version: run the stage again (training resumes)
        record["result"] = result_type(**record["result"])
    return record


# ------------------------------------------------------------------------------------------ training stages
def training_arguments(preset: Preset, steps: int, batch: int, lr: float, output_dir: str, seed: int = 0,
                       **flags) -> TrainingArguments:
    """The Trainer settings shared by every training stage (Trainer seed SEED_BASE + `seed`, `preset.lr_schedule`
    after `preset.warmup` warm-up steps or `preset.warmup_ratio` of the stage's steps, `preset.checkpoints` evenly
    spaced checkpoints, the last one kept; with `preset.bf16`, bf16 autocast on the CPU where it has bf16
    instructions); `flags`: do_eval / do_predict."""
    if preset.bf16:
        flags = {"use_cpu": True, "bf16": cpu_bf16_supported(), **flags}
        logger.info("bf16 autocast on the CPU: %s", "on" if flags["bf16"] else "off (no bf16 instructions)")
    return TrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        learning_rate=lr, warmup_steps=preset.warmup if preset.warmup_ratio is None else
        max(1, round(preset.warmup_ratio * steps)), lr_scheduler_type=preset.lr_schedule, logging_steps=20,
        save_steps=max(steps // preset.checkpoints, 1), save_total_limit=1, report_to="tensorboard",
        seed=SEED_BASE + seed, disable_tqdm=True, dataloader_num_workers=0, max_grad_norm=1.0, do_train=True, **flags)


def all_code_dataset(corpus: str, out: str | None = None, max_train_rows: int | None = None) -> str:
    """MLM text from all code the corpus holds (`Preset.mlm_data = 'all'`): a DatasetDict with one `code`
    column, train = the retrieval train code (its first `max_train_rows`) then the distinct long-context train
    documents; validation = the retrieval validation code (the MLM evaluation set either way). Built once, at
    `out` (default: `<corpus>/mlm_all_code`; the corpus check ignores folders added to it) atomically."""
    out = out or os.path.join(corpus, ALL_CODE_FOLDER)
    if os.path.isdir(out):
        return out
    retrieval = datasets.load_from_disk(os.path.join(corpus, "retrieval"))
    code = list(retrieval["train"]["code"])[:max_train_rows]
    documents = list(dict.fromkeys(read_snippets(corpus, dataset="long_context", split="train", seed=None)))
    logger.info("MLM on all code: %d retrieval functions + %d long-context documents", len(code), len(documents))
    dsets = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"code": code + documents}),
                                  "validation": datasets.Dataset.from_dict({"code": retrieval["validation"]["code"]})})
    with atomic_directory(out) as tmp:
        dsets.save_to_disk(tmp)
    return out


def pretrain_arguments(preset: Preset, variant: str, tokenizer: str, corpus: str, output_dir: str) -> tuple:
    """`pretrain`'s (model, data, training, run) arguments of `run_mlm`, for callers that change one of them
    (the recipe ablation, `benchmarks/recipe.py`)."""
    model_args = ModelArguments(
        tokenizer_name_or_path=tokenizer, hidden_size=preset.hidden_size, num_hidden_layers=preset.num_hidden_layers,
        intermediate_size=preset.intermediate_size, state_size=preset.state_size,
        mamba_head_dim=preset.mamba_head_dim, max_position_embeddings=preset.max_positions, **VARIANTS[variant])
    if preset.mlm_data not in ("retrieval", "all"):
        raise ValueError(f"Preset.mlm_data={preset.mlm_data!r}: expected 'retrieval' or 'all'")
    all_code = preset.mlm_data == "all"
    data_args = MLMDataArguments(
        dataset_path=all_code_dataset(corpus, max_train_rows=preset.max_train_rows) if all_code
        else os.path.join(corpus, "retrieval"), text_column="code", max_seq_length=preset.mlm_seq,
        max_eval_samples=200, max_train_samples=None if all_code else preset.max_train_rows)
    training_args = training_arguments(preset, preset.mlm_steps, preset.mlm_batch, preset.mlm_lr, output_dir,
                                       do_eval=True)
    return model_args, data_args, training_args, RunArguments(model_card_name=f"mambacode-{variant}-mlm")


def pretrain(preset: Preset, variant: str, tokenizer: str, corpus: str, output_dir: str):
    """MLM pretraining of one variant on the corpus's code (`Preset.mlm_data`; a new model from the preset's
    sizes)."""
    return run_mlm(*pretrain_arguments(preset, variant, tokenizer, corpus, output_dir))


def finetune_arguments(preset: Preset, task: str, name: str, model_dir: str, corpus: str, output_dir: str,
                       seed: int = 0) -> tuple:
    """`finetune`'s entry point and its (model, data, training, run) arguments: `(run, model_args, data_args,
    training_args, run_args)`, for callers that change one of them (`benchmarks/recipe.py`)."""
    anchored = name.endswith("+anchor")
    model_args = ModelArguments(model_name_or_path=model_dir,
                                spectral_anchor_weight=preset.anchor_weight if anchored else 0.0,
                                spectral_anchor_length=preset.spectrum_length if anchored else None)
    training_args = training_arguments(preset, preset.finetune_steps(task), preset.ft_batch, preset.ft_lr, output_dir,
                                       seed, do_predict=True)
    run_args = RunArguments(model_card_name=f"mambacode-{name}-{task}")
    limits = dict(max_eval_samples=preset.eval_samples, max_train_samples=preset.max_train_rows)
    if task == "types":
        data_args = TypeInferenceDataArguments(dataset_path=os.path.join(corpus, "type_inference"),
                                               max_seq_length=preset.type_len, **limits)
        return run_type_inference, model_args, data_args, training_args, run_args
    advtest = task == "advtest"
    if preset.length_grouped:
        training_args = dataclasses.replace(training_args, train_sampling_strategy="group_by_length")
    data_args = RetrievalDataArguments(
        dataset_path=os.path.join(corpus, "retrieval" if advtest else "long_context"),
        max_query_length=preset.query_len, max_code_length=preset.code_len if advtest else preset.long_code_len,
        test_dataset_path=[os.path.join(corpus, "retrieval_adv")] if advtest else [],
        eval_max_code_length=None if advtest else preset.long_eval_len,
        crop_train_to_function=not advtest and preset.crop_long_context, **limits)
    return run_retrieval, model_args, data_args, training_args, run_args


def finetune(preset: Preset, task: str, name: str, model_dir: str, corpus: str, output_dir: str, seed: int = 0):
    """Fine-tune a pretrained model on `task` (advtest / longctx retrieval, types) with fine-tuning seed `seed`
    (the data and test pools are the same for every seed; the batch order, any new head's
    initialisation and dropout differ); `name`
    ending in '+anchor' switches the spectral regulariser on."""
    run, *args = finetune_arguments(preset, task, name, model_dir, corpus, output_dir, seed)
    return run(*args)


def export_models(folders: dict, root: str) -> list[str]:
    """Copy the final retrieval models (weights, code, tokenizer, card; no checkpoints) to `root/<name>/`."""
    written = []
    for name, folder in folders.items():
        dest = os.path.join(root, name)
        with atomic_directory(dest) as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
                "checkpoint-*", "runs", ".done", "training_args.bin", ".tmp-*"))
        written.append(dest)
    return written


@dataclass
class ExportResult:
    folders: list


# ------------------------------------------------------------------------------------------ probes
@dataclass
class ProbeResult:
    """`accuracy[model][task][layer][probe]` of one probing run (layers as strings), and its figure."""

    accuracy: dict
    figure: str | None = None
    test_pairs: dict = field(default_factory=dict)  # {task: held-out test pairs}, the same for every model


def preset_probe_set(preset, corpus: str):
    """The probe set a preset samples from a corpus: `preset.probe_snippets` Python functions (seeded), every
    probing task, `preset.probe_pairs` pairs per class, `preset.probe_test_fraction` held out, snippets cut
    to 256 code tokens. `preset` needs only those three fields (a `Preset`, or any object that has them)."""
    from mambacode.probing import TASKS as PROBE_TASKS, build_probe_set

    snippets = read_snippets(corpus, language="python", max_snippets=preset.probe_snippets, seed=0)
    return build_probe_set(snippets, "python", tasks=list(PROBE_TASKS), n_per_class=preset.probe_pairs, seed=0,
                           max_tokens=256, test_fraction=preset.probe_test_fraction)


def preset_probe_options(preset) -> dict:
    """The keyword arguments with which a preset's probe stage calls `probe_models` (besides models, pairs,
    tasks and the cache): its probes (`preset.probe_kinds`), inputs cut to `preset.max_positions` tokens, CPU,
    seed 0, DirectProbe's merge phase unbounded."""
    return {"probes": preset.probe_kinds.split(","), "batch_size": 8, "max_length": preset.max_positions,
            "device": "cpu", "seed": 0, "directprobe_kwargs": {"merge_candidates": None}}


def probe(preset: Preset, models: list[str], output_dir: str, corpus: str, probe_set: str | None = None) -> ProbeResult:
    """Probe `models` on one probe set: `probe_set` if given (the same pairs for every run), else pairs
    sampled from the corpus (`preset_probe_set`) and saved as `output_dir/probe_set.json`."""
    from mambacode.probing import TASKS as PROBE_TASKS, ProbeSet, probe_models, save_report

    os.makedirs(output_dir, exist_ok=True)
    if probe_set and os.path.exists(probe_set):
        pairs = ProbeSet.load(probe_set)
    else:
        pairs = preset_probe_set(preset, corpus)
        pairs.save(os.path.join(output_dir, "probe_set.json"))
    results = probe_models(models, pairs, [t for t in PROBE_TASKS if t in pairs.tasks],
                           cache_dir=os.path.join(output_dir, "feature_cache"), **preset_probe_options(preset))
    paths = save_report(results, output_dir, overwrite=True)  # the stage owns its folder; a rerun replaces it
    accuracy = {model: {task: {str(layer): {p: res[p]["accuracy"] for p in ("directprobe", "linear") if p in res}
                               for layer, res in per_layer.items()} for task, per_layer in per_task.items()}
                for model, per_task in results["results"].items()}
    first = next(iter(results["results"].values()), {})  # the pairs are the same for every model
    test_pairs = {task: max((res.get("n_test", 0) for res in per_layer.values()), default=0)
                  for task, per_layer in first.items()}
    return ProbeResult(accuracy, paths["png"], test_pairs)


# ------------------------------------------------------------------------------------------ spectra
@dataclass
class SpectrumResult:
    """The spectral shift pretrained -> fine-tuned: SSM kernels changing filter class, and per layer and
    direction the mean |delta log10 LHFR| (None where undefined), and the figures' paths."""

    kernels: int
    changed: int
    transitions: dict
    layers: list
    layer_shift: dict
    figures: list = field(default_factory=list)


def spectrum(preset: Preset, pretrained: str, finetuned: str, output_dir: str, tokenizer: str,
             corpus: str) -> SpectrumResult:
    """Measure both checkpoints' kernels, write the shift report and figures to `output_dir`."""
    from mambacode.spectral.cli import SpectrumArguments, measure
    from mambacode.spectral.report import write_report

    args = SpectrumArguments(model_name_or_path=pretrained, compare_to=finetuned, output_dir=output_dir,
                             length=preset.spectrum_length, corpus_dir=corpus, split="test", max_snippets=32,
                             max_length=256, tokenizer_name_or_path=tokenizer,
                             use_cpu=True)  # the CPU, as before --device became --use_cpu: same numbers anywhere
    report = measure(args)
    write_report(report, output_dir)
    changes = report.class_changes()
    layers, shift = report.layer_shift()
    shift = {k: [None if v is None or math.isnan(v) else float(v) for v in vals] for k, vals in shift.items()}
    figures = sorted(os.path.join(output_dir, f) for f in os.listdir(output_dir) if f.endswith(".png"))
    return SpectrumResult(changes["kernels"], changes["total"], changes["transitions"], [int(x) for x in layers],
                          shift, figures)


__all__ = ["Preset", "VARIANTS", "TASKS", "SEED_BASE", "seed_suffix", "split_seed", "cpu_bf16_supported",
           "StageRunner", "StageError", "training_arguments", "all_code_dataset", "pretrain_arguments", "pretrain",
           "finetune_arguments", "finetune", "export_models", "ExportResult", "ProbeResult", "probe",
           "SpectrumResult", "spectrum"]
