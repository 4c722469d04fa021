#!/usr/bin/env python
"""Ablation of the CPU training recipe (issue 13, item 1): which choices buy validation MRR per CPU-minute.

    nice -n 19 python benchmarks/recipe.py --mlm_minutes 20 --ft_minutes 20 --output_dir runs/recipe

The reference arm is the `cpu` preset of `scripts/reproduce.py` (s4d, width 256, depth 4, its tokenizer and
corpus, bf16 autocast where the CPU has it); every other arm changes ONE choice (`ARMS`). Each arm pretrains
an MLM (`pipeline.pretrain_arguments` -> `run_mlm`; arms that change fine-tuning only reuse the reference's,
`Arm.mlm_arm`) and fine-tunes it for code search on the retrieval pairs (`pipeline.finetune_arguments` ->
`run_retrieval`), each stage under a budget of process CPU time
(`time.process_time()`: every thread of this process, so 2 threads busy for 1 minute count 2 minutes; the
budget counts training steps and data loading, not evaluations or checkpoints). The learning-rate schedule
(warm-up, then cosine or linear decay) runs over the budget's CPU time instead of a step count, so every arm
ends its schedule at the budget whatever its speed. Every `--eval_minutes` of CPU time and at the budget the
stage evaluates (MLM: eval loss on the preset's 200 validation texts; retrieval: MRR of the first
`--val_queries` validation queries against the pool of their distinct codes) and checkpoints; each
evaluation appends a record (arm, stage, step, cpu_minutes, wall_minutes, metric, value) to
`<output_dir>/records.jsonl`.

Resumable in pieces: each arm/stage trains in `<output_dir>/<arm>/<stage>/` with its checkpoints and a
`.done` marker (`pipeline.StageRunner`); running the command again skips finished stages and resumes an
interrupted one from its last checkpoint (with its CPU clock, saved in the checkpoint). `--arms` picks a
subset; `--report` only prints the table from the records; `--test_pools` ranks each finished arm's model on
the corpus's whole test pools too (AdvTest-style and plain: the metric of the dense target). The table, the JSON
(`benchmarks/results/recipe_cpu.json`) and the plot (MRR against CPU minutes) are rewritten after every
arm.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, at torch import: mambacode/threads.py

from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from mambacode.atomic import atomic_path, atomic_write_text  # noqa: E402
from mambacode.tables import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "recipe_cpu.json"
STAGES = ("mlm", "retrieval")
CLOCK_FILE = "recipe_clock.json"  # the stage's CPU and wall clock, saved in every checkpoint
MAX_STEPS = 10**7  # training stops at the budget, never here
logger = logging.getLogger("mambacode.pipeline")


# ------------------------------------------------------------------------------------------ arms
@dataclass(frozen=True)
class Arm:
    """One recipe: the reference (all fields at their defaults) or the reference with one choice changed."""

    name: str
    change: str  # what differs from the reference, for the table
    mlm_data: str = "retrieval"  # 'retrieval': retrieval train code; 'all': + the long-context documents
    bucketed: bool = False  # length-grouped batches (train_sampling_strategy="group_by_length")
    ft_batch: int | None = None  # contrastive batch (in-batch negatives); None: the preset's
    schedule: tuple | None = None  # (kind, warm-up fraction) of both stages; None: the preset's (cosine)
    bf16: bool | None = None  # None: the preset's
    seq_len: int | None = None  # MLM block and retrieval code length; None: the preset's
    code_len: int | None = None  # retrieval code length only (the MLM's blocks stay); None: the preset's

    @property
    def mlm_arm(self) -> str:
        """The arm whose MLM stage this arm fine-tunes: its own, or the reference's when the change touches
        fine-tuning only (the contrastive batch; length-grouped batches, since MLM blocks are packed to one
        length), so the same MLM is not paid for twice."""
        changes_mlm = (self.mlm_data != "retrieval" or self.schedule is not None or self.bf16 is not None
                       or self.seq_len is not None)
        return self.name if changes_mlm else "reference"


ARMS = {a.name: a for a in (
    Arm("reference", "the cpu preset's provisional recipe (REFERENCE_RECIPE)"),
    Arm("all-code", "MLM on all code (retrieval train code + long-context documents)", mlm_data="all"),
    Arm("bucketed", "length-grouped retrieval batches (on the reference's MLM)", bucketed=True),
    Arm("batch128", "contrastive batch 128, 127 in-batch negatives (on the reference's MLM)", ft_batch=128),
    Arm("linear-warm10", "linear decay, 10% warm-up", schedule=("linear", 0.10)),
    Arm("cosine-warm3", "cosine decay, 3% warm-up", schedule=("cosine", 0.03)),
    Arm("float32", "float32 (no bf16 autocast)", bf16=False),
    Arm("len128", "MLM blocks and code truncated to 128 tokens", seq_len=128),
    Arm("code128", "retrieval code truncated to 128 tokens (on the reference's MLM)", code_len=128),
)}


# The reference recipe: the cpu preset's provisional one, as it stood when the ablation ran (the preset has since
# taken the ablation's winners and longer budgets; these fields keep the reference, and so the table, the same)
REFERENCE_RECIPE = dict(mlm_steps=1200, ft_steps=150, warmup=50, warmup_ratio=None, mlm_data="retrieval", task_steps=(),
                        length_grouped=False, lr_schedule="cosine")


def arm_preset(preset, arm: Arm):
    """The preset with the reference recipe (`REFERENCE_RECIPE`) and the arm's change applied (one field, or
    none)."""
    preset = dataclasses.replace(preset, **REFERENCE_RECIPE)
    changes = {}
    if arm.ft_batch is not None:
        changes["ft_batch"] = arm.ft_batch
    if arm.bf16 is not None:
        changes["bf16"] = arm.bf16
    if arm.seq_len is not None:
        changes.update(mlm_seq=arm.seq_len, code_len=arm.seq_len)
    if arm.code_len is not None:
        changes["code_len"] = arm.code_len
    return dataclasses.replace(preset, **changes)


def stage_schedule(preset, arm: Arm, stage: str) -> tuple[str, float]:
    """(kind, warm-up fraction of the budget): the arm's, else cosine with the reference's warm-up steps as a
    fraction of the stage's steps (50 / 1,200 for MLM, 50 / 150 for fine-tuning). `preset`: the arm's
    (`arm_preset`), which carries REFERENCE_RECIPE."""
    if arm.schedule is not None:
        return arm.schedule
    steps = preset.mlm_steps if stage == "mlm" else preset.ft_steps
    return "cosine", min(preset.warmup / steps, 1.0)


def lr_factor(kind: str, warmup: float, progress: float) -> float:
    """The learning rate's multiplier at `progress` (0..1) through the budget: linear warm-up to 1 over the
    first `warmup` of it, then cosine or linear decay to 0 at 1 (transformers' schedules, in budget time)."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return progress / warmup
    rest = (progress - warmup) / max(1.0 - warmup, 1e-12)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    if kind == "linear":
        return 1.0 - rest
    raise ValueError(f"lr_factor: schedule {kind!r}, expected 'cosine' or 'linear'")


# ------------------------------------------------------------------------------------------ records
class RecordLog:
    """The JSONL of evaluation records; every line is flushed and synced as it is written, and a line cut
    by a kill is skipped (and counted) when read."""

    def __init__(self, path: str):
        self.path = path

    def append(self, record: dict) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> tuple[list[dict], int]:
        """(records, lines skipped); a step evaluated twice (a piece killed between its evaluation and its
        checkpoint, then resumed) keeps its last record."""
        if not os.path.exists(self.path):
            return [], 0
        kept, bad = {}, 0
        with open(self.path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                    key = (r["arm"], r["stage"], int(r["step"]), r["metric"])
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                kept[key] = r
        return list(kept.values()), bad


class BudgetCallback(TrainerCallback):
    """Trains one stage for `budget_minutes` of process CPU time: sets the learning rate from the fraction of
    the budget spent (`lr_factor`), evaluates and checkpoints every `eval_minutes` and at the budget (both left
    off the clock), appends each evaluation's `metrics` to `log`, and stops at the budget. The clock is saved
    in every checkpoint (`recipe_clock.json`) and read back from `resume_from`. A stage resumed from a
    checkpoint that had spent the budget (killed after it, before its end) takes the one step the Trainer
    cannot skip at learning rate 0 (AdamW then leaves the weights as they were) and off the clock."""

    def __init__(self, budget_minutes: float, eval_minutes: float, schedule: tuple, log: RecordLog, arm: str,
                 stage: str, metrics: tuple, resume_from: str | None = None):
        self.budget, self.every = budget_minutes * 60.0, eval_minutes * 60.0
        self.schedule, self.log, self.arm, self.stage, self.metrics = schedule, log, arm, stage, metrics
        self.cpu = self.wall = 0.0  # seconds charged to training
        if resume_from:
            saved = read_clock(resume_from)
            self.cpu, self.wall = saved["cpu_seconds"], saved["wall_seconds"]
        self.next_eval = (math.floor(self.cpu / self.every) + 1) * self.every
        self.spent_before = self.cpu >= self.budget
        self.mark = None

    def _now(self):
        return time.process_time(), time.perf_counter()

    def _charge(self):
        cpu, wall = self._now()
        self.cpu += cpu - self.mark[0]
        self.wall += wall - self.mark[1]
        self.mark = (cpu, wall)

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark = self._now()  # data preparation and model building before this are not charged

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.spent_before:
            self._charge()  # the batch's loading and collation count

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        factor = 0.0 if self.spent_before else lr_factor(self.schedule[0], self.schedule[1], self.cpu / self.budget)
        for group in optimizer.param_groups:  # the Trainer's own scheduler is constant
            group["lr"] = args.learning_rate * factor

    def on_step_end(self, args, state, control, **kwargs):
        if self.spent_before:
            control.should_training_stop = True
            return
        self._charge()
        if self.cpu >= self.budget:
            control.should_training_stop = True
        if self.cpu >= self.budget or self.cpu >= self.next_eval:
            control.should_evaluate = control.should_save = True
            self.next_eval = (math.floor(self.cpu / self.every) + 1) * self.every

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for name in self.metrics:
            if name in (metrics or {}):
                self.log.append({"arm": self.arm, "stage": self.stage, "step": state.global_step,
                                 "cpu_minutes": round(self.cpu / 60, 4), "wall_minutes": round(self.wall / 60, 4),
                                 "metric": name.removeprefix("eval_"), "value": float(metrics[name])})
        self.mark = self._now()  # the evaluation is not charged

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            atomic_write_text(os.path.join(folder, CLOCK_FILE), json.dumps(
                {"cpu_seconds": self.cpu, "wall_seconds": self.wall, "global_step": state.global_step}))
        self.mark = self._now()  # nor is the checkpoint


def read_clock(checkpoint: str) -> dict:
    path = os.path.join(checkpoint, CLOCK_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: the checkpoint has no readable CPU clock ({exc}); delete {checkpoint} to "
                         "redo its steps") from exc


# ------------------------------------------------------------------------------------------ stages
def budgeted(training_args, stage_dir: str, arm: Arm, **changes) -> tuple:
    """(the stage's TrainingArguments with the budget's settings, the checkpoint it resumes from): no step
    limit, the CPU (the budget is CPU time), a constant scheduler (the callback sets the rate), evaluations and
    checkpoints only when the callback asks, the arm's sampler."""
    last = get_last_checkpoint(stage_dir) if os.path.isdir(stage_dir) else None
    return dataclasses.replace(
        training_args, max_steps=MAX_STEPS, use_cpu=True, lr_scheduler_type="constant", warmup_steps=0,
        save_strategy="no", eval_strategy="no", save_total_limit=1, report_to=[],
        train_sampling_strategy="group_by_length" if arm.bucketed else "random", **changes), last


def run_stage(stage: str, preset, arm: Arm, args, dirs: dict, log: RecordLog):
    """Train one arm's stage under its budget; returns the entry point's result (MLMResult / RetrievalResult)."""
    from mambacode.training import run_mlm, run_retrieval
    from mambacode.training.pipeline import all_code_dataset, finetune_arguments, pretrain_arguments

    p, out = arm_preset(preset, arm), dirs[stage]
    budget = (args.mlm_minutes if stage == "mlm" else args.ft_minutes) * 60
    if stage == "mlm":
        model_args, data_args, training_args, run_args = pretrain_arguments(p, "s4d", dirs["tokenizer"],
                                                                            dirs["corpus"], out)
        if arm.mlm_data == "all":
            data_args = dataclasses.replace(data_args, max_train_samples=None, dataset_path=all_code_dataset(
                dirs["corpus"], os.path.join(args.output_dir, "data", "mlm-all-code"), p.max_train_rows))
        training_args, last = budgeted(training_args, out, arm)
        run, metrics = run_mlm, ("eval_loss",)
    else:
        run, model_args, data_args, training_args, run_args = finetune_arguments(
            p, "advtest", "s4d", dirs["mlm"], dirs["corpus"], out)
        data_args = dataclasses.replace(data_args, max_eval_samples=args.val_queries, test_dataset_path=[])
        training_args, last = budgeted(training_args, out, arm, do_eval=True, do_predict=False)
        run, metrics = run_retrieval, ("eval_mrr", "eval_loss")
    callback = BudgetCallback(budget / 60, args.eval_minutes, stage_schedule(p, arm, stage), log, arm.name,
                              stage, metrics, resume_from=last)
    logger.info("%s/%s: schedule %s, bf16 %s, budget %g CPU min", arm.name, stage, callback.schedule,
                training_args.bf16, budget / 60)
    return run(model_args, data_args, training_args, run_args, callbacks=[callback])


def run_arms(preset, args) -> None:
    """Every selected arm's two stages (finished ones skipped), the corpus and tokenizer first if needed."""
    from mambacode.corpus import build_corpus, corpus_is_complete, corpus_texts, train_tokenizer
    from mambacode.training import MLMResult, RetrievalResult
    from mambacode.training.pipeline import StageRunner

    out = os.path.abspath(args.output_dir)
    stage = StageRunner(os.path.join(out, "logs"), args.verbose)
    corpus = os.path.abspath(args.corpus_dir or os.path.join(out, "corpus"))
    tokenizer = os.path.abspath(args.tokenizer or os.path.join(out, "tokenizer"))
    if not args.corpus_dir:
        stage("corpus", corpus, lambda: build_corpus(output_dir=corpus, max_functions=preset.max_functions,
                                                     num_workers=2, show_progress=False),
              done=lambda: corpus_is_complete(corpus))
    if not args.tokenizer:
        stage("tokenizer", tokenizer, lambda: train_tokenizer(corpus_texts(corpus), vocab_size=preset.vocab_size,
                                                              output_dir=tokenizer))
    log = RecordLog(os.path.join(out, "records.jsonl"))
    for name in args.arms:
        arm = ARMS[name]
        dirs = {"corpus": corpus, "tokenizer": tokenizer, "mlm": os.path.join(out, arm.mlm_arm, "mlm"),
                "retrieval": os.path.join(out, name, "retrieval")}
        owner = ARMS[arm.mlm_arm]  # a shared MLM stage runs (once) under the reference's name
        stage(f"{owner.name}-mlm", dirs["mlm"], lambda: run_stage("mlm", preset, owner, args, dirs, log), MLMResult)
        stage(f"{name}-retrieval", dirs["retrieval"],
              lambda: run_stage("retrieval", preset, arm, args, dirs, log), RetrievalResult)
        write_outputs(args, preset)


# ------------------------------------------------------------------------------------------ report
def summarise(records: list[dict], arms: list[str]) -> list[dict]:
    """Per arm: the last MLM eval loss, the last validation MRR, the CPU minutes spent by both stages up to
    that MRR, MRR per CPU minute, and the deltas to the reference; None where a stage has no record yet. An
    arm that shares the reference's MLM stage (`Arm.mlm_arm`) reports, and is charged, the reference's. An MLM
    stage stopped before the reference's budget has its loss compared with the reference's at the same CPU
    minutes (`mlm_loss_delta_at`: those minutes; None when compared at the end)."""
    rows = []
    for arm in arms:
        owner = {"mlm": mlm_owner(arm), "retrieval": arm}

        def last(stage, metric):
            mine = records_of(records, owner[stage], stage, metric)
            return max(mine, key=lambda r: r["step"]) if mine else None

        loss, mrr = last("mlm", "loss"), last("retrieval", "mrr")
        mlm_minutes = mlm_cpu_minutes(records, arm)
        total = None if mrr is None or mlm_minutes is None else mlm_minutes + mrr["cpu_minutes"]
        rows.append({"arm": arm, "mlm_loss": loss and loss["value"], "mlm_cpu_minutes": mlm_minutes,
                     "mlm_steps": loss and loss["step"], "ft_steps": mrr and mrr["step"],
                     "mrr": mrr and mrr["value"], "ft_cpu_minutes": mrr and mrr["cpu_minutes"],
                     "cpu_minutes": total, "mrr_per_cpu_minute": mrr["value"] / total if total else None})
    ref = next((r for r in rows if r["arm"] == "reference"), None)
    for row in rows:
        for key in ("mlm_loss", "mrr"):
            both = ref is not None and row[key] is not None and ref[key] is not None
            row[f"{key}_delta"] = row[key] - ref[key] if both else None
        # an MLM stage stopped short of the reference's budget is compared at its own CPU minutes, on the same
        # schedule (it runs over the budget), not with the reference's end
        row["mlm_loss_delta_at"] = None
        short = (row["mlm_loss_delta"] is not None and row["mlm_cpu_minutes"] is not None
                 and row["mlm_cpu_minutes"] < ref["mlm_cpu_minutes"] - 0.5)
        if short:
            row["mlm_loss_delta"] = row["mlm_loss"] - mlm_loss_at(records, "reference", row["mlm_cpu_minutes"])
            row["mlm_loss_delta_at"] = row["mlm_cpu_minutes"]
    return rows


def records_of(records: list[dict], arm: str, stage: str, metric: str | None = None) -> list[dict]:
    """`arm`'s records of `stage` (of `metric` only, when given)."""
    return [r for r in records if r["arm"] == arm and r["stage"] == stage and metric in (None, r["metric"])]


def mlm_loss_at(records: list[dict], arm: str, minutes: float) -> float:
    """The MLM eval loss of `arm`'s MLM stage recorded nearest to `minutes` CPU minutes."""
    mine = records_of(records, mlm_owner(arm), "mlm", "loss")
    return min(mine, key=lambda r: abs(r["cpu_minutes"] - minutes))["value"]


def mlm_owner(arm: str) -> str:
    """The arm whose MLM records `arm` uses (itself for arms not in ARMS, e.g. from older records)."""
    return ARMS[arm].mlm_arm if arm in ARMS else arm


def mlm_cpu_minutes(records: list[dict], arm: str) -> float | None:
    """CPU minutes the MLM stage that `arm` fine-tunes spent (its last record)."""
    return max((r["cpu_minutes"] for r in records_of(records, mlm_owner(arm), "mlm")), default=None)


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict], done: dict) -> str:
    """The markdown table of `summarise`'s rows; `done[arm]`: whether both its stages finished. Rows ranked on
    the test pools (`test_pool_mrr`) add a last column: test MRR, AdvTest-style / plain."""
    headers = ["arm", "change", "MLM loss", "Δ loss", "val MRR", "Δ MRR", "CPU min (MLM + ft)",
               "MRR per CPU min", "steps (MLM + ft)", "status"]
    tested = any("test_mrr" in r for r in rows)
    body = [[r["arm"], ARMS[r["arm"]].change if r["arm"] in ARMS else "", _cell(r["mlm_loss"], ".4f"),
             _cell(r["mlm_loss_delta"], "+.4f") + ("" if r.get("mlm_loss_delta_at") is None else
                                                   f" (both at {r['mlm_loss_delta_at']:.0f} CPU min)"),
             _cell(r["mrr"], ".4f"), _cell(r["mrr_delta"], "+.4f"),
             "-" if r["mlm_cpu_minutes"] is None
             else f"{r['mlm_cpu_minutes']:.1f} + {_cell(r['ft_cpu_minutes'], '.1f')}",
             _cell(r["mrr_per_cpu_minute"], ".5f"),
             "-" if r["mlm_steps"] is None else f"{r['mlm_steps']:,} + {_cell(r['ft_steps'], ',')}",
             "done" if done.get(r["arm"]) else "running / not run"]
            + ([f"{_cell(r.get('test_adv_mrr'), '.4f')} / {_cell(r.get('test_mrr'), '.4f')}"] if tested else [])
            for r in rows]
    return markdown_table(headers + (["test MRR (AdvTest-style / plain)"] if tested else []), body)


def plot(records: list[dict], arms: list[str], path: str) -> str | None:
    """MRR against CPU minutes (MLM budget spent + fine-tuning minutes) per arm; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        mlm = mlm_cpu_minutes(records, arm) or 0.0
        points = sorted((mlm + r["cpu_minutes"], r["value"]) for r in records
                        if r["arm"] == arm and r["stage"] == "retrieval" and r["metric"] == "mrr")
        if points:
            ax.plot(*zip(*points), marker="o", label=arm, linewidth=2.5 if arm == "reference" else 1.2)
    ax.set_xlabel("CPU minutes (MLM + retrieval fine-tuning, process CPU time)")
    ax.set_ylabel("validation MRR")
    ax.set_title("Recipe ablation: validation MRR per CPU minute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


TEST_POOLS = {"test_adv_mrr": "retrieval_adv", "test_mrr": "retrieval"}  # row key -> corpus folder (test split)
TEST_POOLS_FILE = "test_pools.json"


def test_pool_mrr(folder: str, corpus: str, preset) -> dict:
    """Dense MRR of a finished arm's retrieval model on the corpus's test pools (whole pools: AdvTest-style and
    plain; the preset's query and code lengths, as the preset's own models are tested): the metric of issue
    13's dense target, which the validation metric (first `--val_queries` queries) only approximates. Cached
    in `<folder>/test_pools.json` (written atomically) with the lengths it was ranked at; other lengths rank
    again."""
    cache, lengths = os.path.join(folder, TEST_POOLS_FILE), {"max_query_length": preset.query_len,
                                                             "max_code_length": preset.code_len}
    if os.path.exists(cache):
        with open(cache) as f:
            cached = json.load(f)
        if all(cached.get(k) == v for k, v in lengths.items()):
            return {k: cached[k] for k in TEST_POOLS}
    from datasets import load_from_disk

    from mambacode.pretrained import load_for_task
    from mambacode.training.evaluation import evaluate_retrieval

    model, tokenizer = load_for_task(folder, "retrieval")
    model.eval()
    result = {}
    for key, split in TEST_POOLS.items():
        test = load_from_disk(os.path.join(corpus, split))["test"]
        metrics = evaluate_retrieval(model, tokenizer, test, max_query_length=preset.query_len,
                                     max_code_length=preset.code_len, baselines=False, prefix="t")
        result[key] = metrics["t_mrr"]
    atomic_write_text(cache, json.dumps({**result, **lengths}, indent=1))
    return result


def write_outputs(args, preset) -> str:
    """Print the table, write the JSON (atomically) and the plot; returns the table. With `args.test_pools`,
    every finished arm's model is also ranked on the test pools (`test_pool_mrr`) and the table says so."""
    from mambacode.training.pipeline import cpu_bf16_supported

    log = RecordLog(os.path.join(args.output_dir, "records.jsonl"))
    records, skipped = log.read()
    arms = [a for a in ARMS if a in args.arms or any(r["arm"] == a for r in records)]
    done = {a: all(os.path.exists(os.path.join(args.output_dir, mlm_owner(a) if s == "mlm" else a, s, ".done"))
                   for s in STAGES) for a in arms}
    rows = summarise(records, arms)
    if getattr(args, "test_pools", False):
        corpus = args.corpus_dir or os.path.join(args.output_dir, "corpus")
        for row in rows:
            if done[row["arm"]]:
                row.update(test_pool_mrr(os.path.join(args.output_dir, row["arm"], "retrieval"), corpus, preset))
    text = table(rows, done)
    print(text, flush=True)
    if skipped:
        print(f"({skipped} unreadable line(s) of {log.path} skipped)")
    figure = plot(records, arms, str(Path(args.results).with_suffix(".png")))
    result = {"settings": {"preset": args.preset, "mlm_minutes": args.mlm_minutes, "ft_minutes": args.ft_minutes,
                           "eval_minutes": args.eval_minutes, "val_queries": args.val_queries,
                           "num_threads": args.num_threads, "clock": "process CPU time, all threads, training only",
                           "cpu_bf16": cpu_bf16_supported(), "preset_fields": dataclasses.asdict(preset)},
              "arms": {a: dataclasses.asdict(ARMS[a]) for a in arms if a in ARMS}, "done": done, "table": rows,
              "figure": figure and os.path.relpath(figure, ROOT), "records": sorted(
                  records, key=lambda r: (r["arm"], STAGES.index(r["stage"]), r["step"], r["metric"]))}
    atomic_write_text(args.results, json.dumps(result, indent=1, default=str) + "\n")
    return text


def load_presets() -> dict:
    """`scripts/reproduce.py`'s PRESETS (the recipe is the cpu preset's unless --preset says otherwise)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from reproduce import PRESETS

    return PRESETS


def main(argv=None, presets: dict | None = None) -> int:
    """`presets`: the presets to choose from (default: reproduce.py's; tests add a shrunken one)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output_dir", default="runs/recipe")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {list(ARMS)}")
    ap.add_argument("--mlm_minutes", type=float, default=20.0, help="MLM budget, process CPU minutes")
    ap.add_argument("--ft_minutes", type=float, default=20.0, help="retrieval fine-tuning budget, CPU minutes")
    ap.add_argument("--eval_minutes", type=float, default=4.0, help="evaluate every this many CPU minutes")
    ap.add_argument("--val_queries", type=int, default=500, help="validation queries (first N; their codes = pool)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--corpus_dir", help="a built corpus (default: OUTPUT_DIR/corpus, built from the preset)")
    ap.add_argument("--tokenizer", help="a trained tokenizer (default: OUTPUT_DIR/tokenizer, trained here)")
    ap.add_argument("--num_threads", default="2", help="intra-op threads (fixed, so CPU minutes compare)")
    ap.add_argument("--results", default=str(RESULTS), help="JSON written at the end (the plot beside it, .png)")
    ap.add_argument("--report", action="store_true", help="only print the table and write the JSON from the records")
    ap.add_argument("--verbose", action="store_true", help="stage output on the console, not in log files")
    ap.add_argument("--test_pools", action="store_true",
                    help="also rank every finished arm's model on the corpus's whole test pools (AdvTest-style and "
                         "plain; cached per arm) and add the test MRR to the table")
    args = ap.parse_args(argv)
    presets = presets if presets is not None else load_presets()
    if args.preset not in presets:
        ap.error(f"--preset: unknown {args.preset!r}; choose from {list(presets)}")
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in args.arms if a not in ARMS]
    if bad:
        ap.error(f"--arms: unknown {bad}; choose from {list(ARMS)}")
    if min(args.mlm_minutes, args.ft_minutes, args.eval_minutes) <= 0:
        ap.error("--mlm_minutes, --ft_minutes and --eval_minutes must be > 0")
    args.output_dir = os.path.abspath(args.output_dir)
    preset = presets[args.preset]
    if args.report:
        write_outputs(args, preset)
        return 0
    from mambacode.threads import configure_threads
    from mambacode.training.pipeline import StageError

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.handlers, logger.propagate = [console], False
    logger.setLevel(logging.INFO)
    logger.info("threads: %s", configure_threads(args.num_threads).describe())
    try:
        run_arms(preset, args)
    except StageError as exc:
        logger.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
