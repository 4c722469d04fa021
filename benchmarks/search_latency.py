"""Cold start of the `mambacode` command: what a person waits for at every call.

Each number is the wall time of a fresh process (`python -m mambacode.cli ...`, what the console script runs),
several repeats, median (and min): `mambacode --help`, and `mambacode search` per mode (bm25, dense, hybrid)
on an index of a small real source tree (default: the standard library's `email` package) built with a shipped
model (default `s4d-hf-codesearch`). Three ways are compared in the same run, on the same index:

* old:   the code of `--old_rev` (default: the commit before issue 24's changes), checked out with `git archive`
         into a temporary folder and put first on PYTHONPATH; it imported torch for every call and loaded the
         model even for bm25 (it reads the new index unchanged: same format version), and it needs `--model
         FOLDER` for a shipped model (it looked the name up on the Hub);
* new:   this checkout: bm25 loads no model, dense and hybrid run the index's numpy query encoder;
* torch: this checkout with `--model NAME`, which embeds queries with the torch model (the path that models
         without a numpy encoder take, e.g. mamba2 or sentence-transformers ones).

Other work on the machine changes every number: the load average and the busiest other processes are sampled
before and after and written beside the timings. Run it at low priority, as the results in the repository were:

    nice -n 10 python benchmarks/search_latency.py [--repeats 5] [--src DIR] [--model NAME] [--old_rev REV]

Prints a table and writes benchmarks/results/search_latency.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the repository folder -> its place in the installed package (setup.cfg's package_dir)
PACKAGE_DIRS = {"mambacode": "mambacode", "modeling": "mambacode/modeling", "corpus": "mambacode/corpus",
                "probing": "mambacode/probing", "spectral": "mambacode/spectral", "training": "mambacode/training",
                "pretrained": "mambacode/shipped", "study": "mambacode/study"}
OLD_REV = "6815a69"  # the last commit before issue 24's search-command changes
QUERY = "parse an email address into name and address"


def other_processes(limit: int = 6) -> list[str]:
    """The busiest processes other than this one and its children (ps), as 'pcpu% command'."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    rows = []
    for line in out:
        pid, ppid, pcpu, comm = line.split(None, 3)
        if int(pid) == me or int(ppid) == me or comm == "ps":
            continue
        rows.append(f"{pcpu}% {comm}")
        if len(rows) == limit:
            break
    return rows


def old_checkout(rev: str, where: str) -> str | None:
    """PYTHONPATH folder holding the `mambacode` package of commit `rev` (laid out as installed), or None."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True,
                                 timeout=300).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"old path skipped: git archive {rev} failed ({exc})", file=sys.stderr)
        return None
    src = os.path.join(where, "src")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    site = os.path.join(where, "site")
    for folder, target in PACKAGE_DIRS.items():
        if os.path.isdir(os.path.join(src, folder)):
            shutil.copytree(os.path.join(src, folder), os.path.join(site, target))
    return site


def timed(cmd: list[str], env: dict, repeats: int, cwd: str) -> dict:
    """Median / min / all wall seconds of `cmd` run `repeats` times (after one untimed run: a warm page cache),
    in the folder `cwd` (not the repository: `python -m` puts the working folder first on sys.path)."""
    subprocess.run(cmd, capture_output=True, env=env, timeout=600, cwd=cwd)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=os.path.join(sysconfig.get_paths()["stdlib"], "email"),
                        help="the source tree to index (default: the standard library's email package)")
    parser.add_argument("--model", default="s4d-hf-codesearch", help="the model to index with (shipped name, folder)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old_rev", default=OLD_REV, help="the commit whose code is the 'old' path ('' to skip)")
    parser.add_argument("--work_dir", default=None, help="where the index and the old checkout go (default: temp)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "search_latency.json"))
    args = parser.parse_args()

    from mambacode.model_names import resolve_model
    from mambacode.search.index import build_index
    from mambacode.tables import markdown_table

    work = args.work_dir or tempfile.mkdtemp(prefix="mambacode-latency-")
    index = os.path.join(work, "index")
    shutil.rmtree(index, ignore_errors=True)
    load_before, busy_before = os.getloadavg(), other_processes()
    report = build_index(args.src, index, args.model, device="cpu", progress=False)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    cli = [sys.executable, "-m", "mambacode.cli"]
    ways = {"new": (env, [])}
    old_site = old_checkout(args.old_rev, os.path.join(work, "old")) if args.old_rev else None
    if old_site:  # the old code looked a shipped name up on the Hub: it needs the folder
        ways["old"] = (dict(env, PYTHONPATH=old_site), ["--model", os.path.abspath(resolve_model(args.model))])
    ways["torch"] = (env, ["--model", args.model])
    commands = {"--help": ["--help"]}
    for mode in ("bm25", "dense", "hybrid"):
        commands[f"search --mode {mode}"] = ["search", QUERY, "--index", index, "--mode", mode, "-k", "10"]
    timings: dict = {}
    for label, argv in commands.items():
        for way, (way_env, extra) in ways.items():
            if way == "torch" and label == "--help":
                continue
            timings.setdefault(label, {})[way] = timed(cli + argv + (extra if argv[0] == "search" else []), way_env,
                                                      args.repeats, work)
            print(f"{label:<22} {way:<6} median {timings[label][way]['median_s']:.2f} s", file=sys.stderr)
    load_after, busy_after = os.getloadavg(), other_processes()

    headers = ["command", "old (s)", "new (s)", "new, torch query encoder (s)", "old / new"]
    rows = []
    for label, by_way in timings.items():
        old, new, via_torch = (by_way.get(w, {}).get("median_s") for w in ("old", "new", "torch"))
        rows.append([f"`mambacode {label}`", f"{old:.2f}" if old else "-", f"{new:.2f}",
                     f"{via_torch:.2f}" if via_torch else "-", f"{old / new:.1f}x" if old else "-"])
    print(markdown_table(headers, rows))
    result = {
        "source": args.src, "functions": report.functions, "files": report.files, "model": args.model,
        "index_bytes": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(index) for f in fs),
        "query": QUERY, "repeats": args.repeats, "old_rev": args.old_rev if old_site else None,
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "niceness": os.nice(0),
        "load_average_before": load_before, "load_average_after": load_after,
        "busiest_other_processes_before": busy_before, "busiest_other_processes_after": busy_after,
        "timings": timings,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
