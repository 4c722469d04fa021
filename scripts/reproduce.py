#!/usr/bin/env python
"""Reproduce the study end to end from one preset.

    python scripts/reproduce.py --preset tiny --output_dir runs/tiny

Stages: corpus -> tokenizer -> MLM pretraining of the SSM variants (s4d, s4d+hf_conv parameter-matched,
s4d with 8 kernels, mamba2) and RoCoder -> probes of the pretrained models -> fine-tuning on AdvTest-style
code search, long-context QA retrieval and type inference (each SSM variant with and without the spectral
regulariser; once per seed of the preset) -> probes of the fine-tuned models -> spectral shift reports ->
DIR/report.md and DIR/report.html (plots, a Table-1-style results table, the probing table, the paper's
claims against the seed spread, wall time per stage). Retrieval models (first seed) are exported to
DIR/models/<name>/ (AutoModel.from_pretrained(path, trust_remote_code=True) + AutoTokenizer).

Each stage is one call of a library function (`mambacode.training.pipeline`) that returns a typed result.
A stage whose output exists is skipped (its `.done` marker, written last, holds its result), so a killed
run resumes where it stopped; a training stage that was cut off resumes from its last checkpoint. A
failing stage is named, with its log file, and the run stops with exit status 1.
"""

import logging
import os
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, at torch import: mambacode/threads.py

from transformers import HfArgumentParser  # noqa: E402

from mambacode.corpus import (build_corpus, corpus_is_complete, corpus_texts, missing_corpus_packages,  # noqa: E402
                              read_manifest, train_tokenizer)
from mambacode.threads import configure_threads  # noqa: E402
from mambacode.training import MLMResult, RetrievalResult, TypeInferenceResult  # noqa: E402
from mambacode.training.pipeline import (TASKS, VARIANTS, ExportResult, Preset, ProbeResult,  # noqa: E402
                                         SpectrumResult, StageError, StageRunner, export_models, finetune, pretrain,
                                         probe, seed_suffix, spectrum)
from mambacode.training.reproduction_report import write_report  # noqa: E402

logger = logging.getLogger("mambacode.pipeline")

# The tiny preset fine-tunes with the regulariser only on type inference (where the paper sees the
# forgetting) to stay under 20 CPU minutes; larger presets run every task with and without it.
PRESETS = {
    # 2 CPU cores, < 20 minutes
    "tiny": Preset(max_functions=12000, vocab_size=4096, hidden_size=64, num_hidden_layers=2, intermediate_size=256,
                   state_size=32, mamba_head_dim=32, mlm_seq=128, mlm_steps=300, mlm_batch=8, mlm_lr=2e-3,
                   ft_steps=100, ft_batch=8, ft_lr=1e-3, query_len=32, code_len=128, long_code_len=256,
                   type_len=256, eval_samples=150, probe_pairs=80, probe_snippets=150,
                   probe_kinds="linear,directprobe", spectrum_length=1024, anchor_weight=1.0, warmup=30,
                   anchor_tasks=("types",), max_train_rows=2000),
    # one GPU, about an hour
    "small": Preset(max_functions=30000, vocab_size=16384, hidden_size=256, num_hidden_layers=6, intermediate_size=1024,
                    state_size=64, mamba_head_dim=64, mlm_seq=256, mlm_steps=5000, mlm_batch=64, mlm_lr=1e-3,
                    ft_steps=2000, ft_batch=64, ft_lr=2e-4, query_len=64, code_len=256, long_code_len=1024,
                    type_len=512, eval_samples=None, probe_pairs=300, probe_snippets=1000,
                    probe_kinds="linear,directprobe", spectrum_length=4096, anchor_weight=1.0, warmup=300),
    # the paper's width and depth (several GPUs)
    "base": Preset(max_functions=None, vocab_size=32000, hidden_size=768, num_hidden_layers=12, intermediate_size=3072,
                   state_size=64, mamba_head_dim=64, mlm_seq=256, mlm_steps=100000, mlm_batch=128, mlm_lr=5e-5,
                   ft_steps=10000, ft_batch=64, ft_lr=5e-5, query_len=64, code_len=256, long_code_len=4096,
                   type_len=512, eval_samples=None, probe_pairs=None, probe_snippets=None,
                   probe_kinds="directprobe,linear", spectrum_length=4096, anchor_weight=1.0, warmup=300),
    # 2 CPU cores, under 10 hours, in pieces (README: "The cpu preset"). The recipe is the ablation's
    # (benchmarks/recipe.py, README table): MLM on all code, bf16 autocast, retrieval batches grouped by length
    # (+2.1 MRR points at the same CPU budget: 34% more steps), linear decay after a 10% warm-up in every stage
    # (MLM loss -0.06 and +1.0 MRR point against cosine after 4% / 33%), batches of 32 (a contrastive batch of 128
    # lost 3 points), 256-token MLM blocks and code (128 won on the ablation's metric; the preset tests claims
    # beyond 128 tokens). Budget from the ablation's measured speeds (process CPU minutes, bf16, 2 threads: MLM 35
    # steps/min, AdvTest fine-tuning 54 steps/min; types 400 steps in 6.2 min, micro-F1 0.40 from a 20-minute
    # MLM): MLM 2,400 steps (~69 CPU min, ~37 wall min per variant; 2.0 epochs of all code, 9.9M tokens, where
    # the retrieval code alone, 3.7M, would be 5.3); AdvTest 1,000 steps (~2 epochs of the 16k pairs, ~10 wall
    # min + test pools), long-context 500 steps of 512-token documents, types 400 steps; 3 variants x 3 tasks x 3
    # seeds + 2 anchored type runs x 3 seeds = 33 fine-tuning runs; 400 probe pairs per class, half held out
    # (>= 200 test pairs even for the two-class siblings task, so one pair moves an accuracy < 0.5 points; 200
    # training pairs per class keep an exact DirectProbe fit under ~20 s where 416 took ~240 s on AST distance).
    # Four checkpoints per training stage: a kill loses at most a quarter of one. Long-context: 81% of the test
    # split's queried functions start beyond a document's first 512 tokens, so training pairs read the queried
    # function (crop_long_context) and the pools read whole documents, up to 4,096 tokens (long_eval_len):
    # validation MRR of s4d 17.5 (head 512 / head 512) -> 25.7 (function window / 4,096), same training cost.
    "cpu": Preset(max_functions=None, vocab_size=8192, hidden_size=256, num_hidden_layers=4, intermediate_size=1024,
                  state_size=64, mamba_head_dim=64, mlm_seq=256, mlm_steps=2400, mlm_batch=32, mlm_lr=1e-3,
                  ft_steps=1000, ft_batch=32, ft_lr=5e-4, query_len=64, code_len=256, long_code_len=512,
                  type_len=256, eval_samples=None, probe_pairs=400, probe_snippets=1000, probe_test_fraction=0.5,
                  probe_kinds="linear,directprobe", spectrum_length=4096, anchor_weight=1.0, warmup=50,
                  anchor_tasks=("types",), max_train_rows=None, seeds=(0, 1, 2), bf16=True,
                  variants=("s4d", "s4d-hf", "rocoder"), tasks=TASKS, task_steps=(("longctx", 500), ("types", 400)),
                  mlm_data="all", checkpoints=4, warmup_ratio=0.10, lr_schedule="linear", length_grouped=True,
                  long_eval_len=4096, crop_long_context=True),
}
# Intra-op threads per preset where neither --num_threads nor OMP_NUM_THREADS says: the count changes the last
# bits of every result, so the tiny preset's tables are made at one fixed count (1: the fastest on a busy
# 2-core machine, see mambacode/threads.py), the cpu preset's at 2 (its 2 cores; a fixed count keeps a run
# made of pieces the same as one made at once); the GPU presets measure the free cores.
PRESET_THREADS = {"tiny": 1, "cpu": 2, "small": "auto", "base": "auto"}
FINETUNE_RESULT = {"advtest": RetrievalResult, "longctx": RetrievalResult, "types": TypeInferenceResult}


def probed_after_finetuning(preset_name: str, variants: list[str]) -> list[tuple[str, str]]:
    """The paper's probing table: the baseline SSM after type-inference and after QA-retrieval fine-tuning,
    plus RoCoder and the regularised / fixed variants after type inference (where forgetting shows)."""
    keys = [("types", "s4d"), ("longctx", "s4d"), ("types", "s4d+anchor"), ("types", "s4d-hf"), ("types", "rocoder")]
    if preset_name != "tiny":  # every variant after types, with and without the regulariser: what the claims use
        keys += [("types", v) for v in variants] + [("types", v + "+anchor") for v in variants]
    return keys


def reproduce(out: str, preset_name: str, variants: list[str], skip_anchor: bool = False, verbose: bool = False,
              tasks: list[str] | None = None) -> str | None:
    """Run every stage (skipping finished ones) and write the report; returns the report's path. Fine-tuning
    runs (and the probes and spectra of fine-tuned models) repeat per seed of the preset, seed-major, so the
    first seed's table is complete first; stages of seed s > 0 carry the suffix `-seed<s>` (names and folders).
    `tasks`: fine-tune only these of the preset's tasks and stop there (None, the report: the probes, spectra
    and report need every task's models, so a later run without `tasks` finishes the study)."""
    p, t0 = PRESETS[preset_name], time.time()
    stage = StageRunner(os.path.join(out, "logs"), verbose)
    corpus, tokenizer = os.path.join(out, "corpus"), os.path.join(out, "tokenizer")
    stage("corpus", corpus, lambda: build_corpus(output_dir=corpus, max_functions=p.max_functions, num_workers=2,
                                                 show_progress=False),
          done=lambda: corpus_is_complete(corpus))
    stage("tokenizer", tokenizer, lambda: train_tokenizer(corpus_texts(corpus), vocab_size=p.vocab_size,
                                                          output_dir=tokenizer))
    pre = {v: stage(f"pretrain-{v}", os.path.join(out, "pretrain", v),
                    lambda v=v: pretrain(p, v, tokenizer, corpus, os.path.join(out, "pretrain", v)), MLMResult)
           for v in variants}
    probe_dir = os.path.join(out, "probes")
    probes = {"pretrained": stage("probe-pretrained", os.path.join(probe_dir, "pretrained"), lambda: probe(
        p, [r.output_dir for r in pre.values()], os.path.join(probe_dir, "pretrained"), corpus), ProbeResult)}

    ft = {}  # (task, name, seed) -> result
    for seed in p.seeds:
        for task in [t for t in p.tasks if tasks is None or t in tasks]:
            for v in variants:
                anchored = [False] if v == "rocoder" or skip_anchor or task not in p.anchor_tasks else [False, True]
                for name in [v + ("+anchor" if a else "") for a in anchored]:
                    folder = os.path.join(out, "finetune", task, name + seed_suffix(seed))
                    ft[(task, name, seed)] = stage(
                        f"finetune-{task}-{name}{seed_suffix(seed)}", folder,
                        lambda t=task, n=name, v=v, f=folder, s=seed: finetune(p, t, n, pre[v].output_dir, corpus, f,
                                                                               seed=s),
                        FINETUNE_RESULT[task])

    if tasks is not None and set(tasks) != set(p.tasks):
        logger.info("fine-tuned the tasks %s only; run again without --tasks for the other tasks, the probes after "
                    "fine-tuning, the spectra and the report", ",".join(tasks))
        return None
    exported = {n: r.output_dir for (t, n, s), r in ft.items() if t == "advtest" and s == p.seeds[0]}
    if exported:
        stage("export-models", os.path.join(out, "models"), lambda: ExportResult(export_models(
            exported, os.path.join(out, "models"))), ExportResult)
    probe_set = os.path.join(probe_dir, "pretrained", "probe_set.json")
    for seed in p.seeds:
        tuned = list(dict.fromkeys(ft[(t, n, seed)].output_dir for t, n in probed_after_finetuning(preset_name, variants)
                                   if (t, n, seed) in ft))
        name, folder = "finetuned" + seed_suffix(seed), os.path.join(probe_dir, "finetuned" + seed_suffix(seed))
        if tuned:
            probes[name] = stage(f"probe-{name}", folder, lambda m=tuned, f=folder: probe(p, m, f, corpus, probe_set),
                                 ProbeResult)

    spectra = {}  # (task, name, seed) -> result
    for seed in p.seeds:
        for v in [v for v in variants if v != "rocoder"]:
            for key in [(task, name, seed) for name in (v, v + "+anchor") for task in ("types", "longctx")]:
                if key in ft:
                    folder = os.path.join(out, "spectra", key[0], key[1] + seed_suffix(seed))
                    spectra[key] = stage(f"spectrum-{key[0]}-{key[1]}{seed_suffix(seed)}", folder,
                                         lambda f=folder, v=v, k=key: spectrum(p, pre[v].output_dir, ft[k].output_dir,
                                                                               f, tokenizer, corpus),
                                         SpectrumResult)
    invocation = round(time.time() - t0, 1)
    return stage("report", out, lambda: write_report(out, preset_name, p, pre, ft, probes, spectra, stage.timings,
                                                     read_manifest(corpus), earlier=stage.earlier,
                                                     invocation_seconds=invocation), done=lambda: False)


@dataclass
class ReproduceArguments:
    output_dir: str = field(metadata={"help": "Run folder (stages, models, report); a killed run resumes in it."})
    preset: str = field(default="tiny", metadata={
        "help": f"Preset of sizes and steps, one of {list(PRESETS)} (or one a caller added to PRESETS)."})
    variants: str | None = field(default=None, metadata={
        "help": f"Comma list, subset of {list(VARIANTS)} (default: the preset's; tiny, small, base: all)."})
    tasks: str | None = field(default=None, metadata={
        "help": "Comma list of the preset's fine-tuning tasks to run now, then stop before the probes after "
                "fine-tuning, the spectra and the report (which need every task); default: all, to the report."})
    no_anchor: bool = field(default=False, metadata={"help": "Skip the spectral-regulariser fine-tunes."})
    verbose: bool = field(default=False, metadata={"help": "Stage output on the console instead of log files."})
    num_threads: str | None = field(default=None, metadata={
        "help": "Intra-op CPU threads, a number or 'auto' (the cores other work leaves free). Default: "
                "OMP_NUM_THREADS if set, else the preset's (tiny: 1, which its tables are made with; cpu: 2; "
                "small, base: auto)."})
    allow_unpinned_corpus: bool = field(default=False, metadata={
        "help": "Build the corpus even where [corpus] packages are missing or at other versions (the tables "
                "will then differ from the README's)."})


def main(argv=None) -> int:
    ap = HfArgumentParser(ReproduceArguments)
    (args,) = ap.parse_args_into_dataclasses(args=argv)
    if args.preset not in PRESETS:
        ap.error(f"--preset: unknown {args.preset!r}; choose from {list(PRESETS)}")
    def subset(value: str, allowed, error) -> list[str]:
        """The comma list `value`, every item in `allowed`; else `ap.error(error(bad items or value))`."""
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in chosen if v not in allowed]
        if bad or not chosen:
            ap.error(error(bad or repr(value)))
        return chosen

    variants = list(PRESETS[args.preset].variants or VARIANTS)
    if args.variants:
        variants = subset(args.variants, VARIANTS, lambda bad: f"--variants: unknown {bad}; choose from {list(VARIANTS)}")
    preset_tasks = list(PRESETS[args.preset].tasks)
    tasks = subset(args.tasks, preset_tasks,
                   lambda bad: f"--tasks: {bad} not among the preset's tasks {preset_tasks}") if args.tasks else None
    problems = missing_corpus_packages()
    if problems and not args.allow_unpinned_corpus and not corpus_is_complete(os.path.join(args.output_dir, "corpus")):
        print(f"error: the corpus would differ from the README's: [corpus] packages not as pinned: {', '.join(problems)}."
              ' Install them with `pip install -e ".[corpus]"`, or pass --allow_unpinned_corpus.', file=sys.stderr)
        return 2
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.handlers = [console]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        plan = configure_threads(args.num_threads, default=PRESET_THREADS.get(args.preset, "auto"))
    except ValueError as exc:
        ap.error(f"--num_threads: {exc}")
    logger.info("threads: %s", plan.describe())
    start, out = time.time(), os.path.abspath(args.output_dir)
    try:
        report = reproduce(out, args.preset, variants, args.no_anchor, args.verbose, tasks)
    except StageError as exc:
        logger.error("error: %s", exc)
        return 1
    if report is None:
        logger.info("stopped after %.1f min (--tasks %s)", (time.time() - start) / 60, ",".join(tasks))
        return 0
    logger.info("finished in %.1f min: %s, %s", (time.time() - start) / 60, report, os.path.join(out, "report.html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
