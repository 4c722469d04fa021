#!/usr/bin/env python
"""Corpus build throughput over the Python standard library: 1 worker vs 2 workers.

Prints a table and writes benchmarks/results/corpus_build.json. Target: the whole standard library in
under 60 s on 2 cores.

    python benchmarks/corpus_build.py [--with_packages] [--workers 1 2]
"""

import argparse
import json
import os
import platform
import tempfile

from mambacode.corpus import CORPUS_PACKAGES, build_corpus


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--with_packages", action="store_true", help="Also read the [corpus] extra packages.")
    ap.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "corpus_build.json"))
    args = ap.parse_args()
    rows = []
    for w in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            stats = build_corpus(tmp, packages=CORPUS_PACKAGES if args.with_packages else (), num_workers=w,
                                 show_progress=False)
        rows.append({
            "workers": w,
            "files": stats.num_files,
            "functions_seen": stats.functions_seen,
            "retrieval_pairs": sum(stats.sizes["retrieval"].values()),
            "parse_seconds": stats.parse_seconds,
            "total_seconds": stats.total_seconds,
            "functions_per_second": stats.functions_per_second,
            "sizes": stats.sizes,
        })
    base = rows[0]["total_seconds"]
    print(f"{'workers':>7} {'files':>6} {'functions':>9} {'pairs':>6} {'parse s':>8} {'total s':>8} {'func/s':>8} {'speed-up':>8}")
    for r in rows:
        print(f"{r['workers']:>7} {r['files']:>6} {r['functions_seen']:>9} {r['retrieval_pairs']:>6} {r['parse_seconds']:>8} "
              f"{r['total_seconds']:>8} {r['functions_per_second']:>8} {base / r['total_seconds']:>7.2f}x")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump({"benchmark": "corpus_build", "with_packages": args.with_packages, "cpu_count": os.cpu_count(),
                   "python": platform.python_version(), "load_average": os.getloadavg(), "runs": rows}, fh, indent=1)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
