"""Training beside other CPU-bound work: one MLM stage and one fine-tuning stage of the tiny preset, quiet and
beside a competing process (at normal priority and at `nice 19`), with torch's default thread settings and with
`mambacode.threads.configure_threads` (as the scripts use it). Prints wall times and slowdowns to the quiet
time of the same settings, and writes benchmarks/results/contention_cpu.json.

    python benchmarks/contention.py --corpus runs/tiny/corpus --tokenizer runs/tiny/tokenizer
    python benchmarks/contention.py --work_dir /tmp/contention        # builds a small corpus + tokenizer first

Each stage runs in its own process, so that the OpenMP settings apply from its start. The competitor is a
PyTorch loop with torch's default threads (another training job). `--nice -10` (root only) raises this
benchmark's processes and its competitor alike, so that a machine's other work disturbs less; the competitor's
priorities stay relative (0 and +19 above the shift). A run still going after `--timeout` seconds is stopped
and recorded as at least that long.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("default", "configured")
SCENARIOS = ("quiet", "competitor", "competitor-nice19")
COMPETITOR = """
import torch
a = torch.randn(384, 384)
while True:
    a = torch.tanh((a @ a) * 1e-2)
"""


def child(args) -> None:
    """One stage in this process; prints its JSON record last."""
    policy = os.environ.get("OMP_WAIT_POLICY")  # as torch's OpenMP runtime reads it (scripts/ sets a default)
    if args.setting == "configured":
        from mambacode.threads import configure_threads

        plan = configure_threads().to_dict()  # OMP_WAIT_POLICY came with the environment, as the scripts set it
    else:
        plan = None
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from reproduce import PRESETS

    from mambacode.training.pipeline import finetune, pretrain

    p = dataclasses.replace(PRESETS["tiny"], mlm_steps=args.steps, ft_steps=args.steps, warmup=min(30, args.steps // 3))
    start = time.time()
    if args.stage == "mlm":
        pretrain(p, "s4d", args.tokenizer, args.corpus, args.output)
    else:
        finetune(p, "advtest", "s4d", args.base, args.corpus, args.output)
    print(json.dumps({"seconds": round(time.time() - start, 2), "threads": torch.get_num_threads(),
                      "OMP_WAIT_POLICY": policy, "plan": plan}), flush=True)


def run_stage(args, stage: str, setting: str, output: str, base: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if setting == "configured":
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # what the scripts' first line does before torch loads
    cmd = [sys.executable, __file__, "--_child", "--stage", stage, "--setting", setting, "--output", output,
           "--corpus", args.corpus, "--tokenizer", args.tokenizer, "--steps",
           str(args.mlm_steps if stage == "mlm" else args.ft_steps)] + (["--base", base] if base else [])
    load = os.getloadavg()[0]
    start = time.time()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "at_least_s": args.timeout, "load_before": round(load, 2)}
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{stage}/{setting} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "stage_s": record["seconds"], "threads": record["threads"],
            "OMP_WAIT_POLICY": record["OMP_WAIT_POLICY"], "plan": record["plan"], "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def start_competitor(scenario: str, shift: int):
    if scenario == "quiet":
        return None
    nice = 19 if scenario.endswith("nice19") else 0
    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR], env={k: v for k, v in os.environ.items()
                                                                    if not k.startswith("OMP_")},
                            preexec_fn=lambda: os.nice(nice))  # relative to the (shifted) priority of this process
    time.sleep(2.0)
    return proc


def prepare(args) -> str:
    """Corpus and tokenizer (built when not given), and the pretrained model every fine-tune starts from
    (a short MLM run at one thread, untimed); returns the model's folder."""
    work = Path(args.work_dir)
    if not (args.corpus and args.tokenizer):
        from mambacode.corpus import build_corpus, corpus_is_complete, corpus_texts, train_tokenizer

        args.corpus, args.tokenizer = str(work / "corpus"), str(work / "tokenizer")
        if not corpus_is_complete(args.corpus):
            build_corpus(output_dir=args.corpus, max_functions=3000, num_workers=1, show_progress=False)
        if not (Path(args.tokenizer) / "tokenizer.json").exists():
            train_tokenizer(corpus_texts(args.corpus), vocab_size=4096, output_dir=args.tokenizer)
    base = work / "base-mlm"
    if not (base / "model.safetensors").exists():
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        subprocess.run([sys.executable, __file__, "--_child", "--stage", "mlm", "--setting", "default", "--output",
                        str(base), "--corpus", args.corpus, "--tokenizer", args.tokenizer, "--steps", "20"],
                       env=env, check=True, capture_output=True)
    return str(base)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus"), ap.add_argument("--tokenizer")
    ap.add_argument("--work_dir", default="/tmp/mambacode-contention")
    ap.add_argument("--mlm_steps", type=int, default=40)
    ap.add_argument("--ft_steps", type=int, default=30)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--nice", type=int, default=0, help="Priority shift of every process here (negative: root).")
    ap.add_argument("--timeout", type=float, default=75.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "contention_cpu.json"))
    # the child's flags
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--stage", "--setting", "--output", "--base"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        child(args)
        return 0
    if args.nice:
        os.nice(args.nice)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    base = prepare(args)
    t0 = time.time()
    runs = []
    for scenario in args.scenarios:
        for setting in args.settings:
            competitor = start_competitor(scenario, args.nice)
            try:
                for stage in ("mlm", "finetune"):
                    folder = work / f"{stage}-{setting}-{scenario}"
                    subprocess.run(["rm", "-rf", str(folder)], check=True)
                    result = run_stage(args, stage, setting, str(folder), base if stage == "finetune" else None)
                    row = {"stage": stage, "setting": setting, "scenario": scenario, **result}
                    runs.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "plan"}), flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
    quiet = {(r["stage"], r["setting"]): r["wall_s"] for r in runs if r["scenario"] == "quiet"}
    for r in runs:
        q, t = quiet.get((r["stage"], r["setting"])), r["wall_s"] or r.get("at_least_s")
        r["slowdown"] = round(t / q, 2) if q and t else None
        r["slowdown_is_lower_bound"] = r["wall_s"] is None
    print(f"\n{'stage':9} {'setting':11} {'scenario':18} {'wall s':>8} {'slowdown':>9} {'threads':>7} {'load':>5}")
    for r in runs:
        wall = f"{r['wall_s']:.1f}" if r["wall_s"] else f">{r['at_least_s']:.0f}"
        slow = "" if r["slowdown"] is None else f"{r['slowdown']:.2f}x"
        slow = (">" if r["slowdown_is_lower_bound"] and slow else "") + slow
        print(f"{r['stage']:9} {r['setting']:11} {r['scenario']:18} {wall:>8} {slow:>9} {r.get('threads', ''):>7} "
              f"{r['load_before']:>5}")
    record = {"machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "nice_shift": args.nice},
              "mlm_steps": args.mlm_steps, "ft_steps": args.ft_steps, "total_s": round(time.time() - t0, 1),
              "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
