#!/usr/bin/env python
"""Wall time of `mambacode index` over this interpreter's standard library, end to end, on the CPU.

Runs what the index verb runs (`mambacode.cli._index`): its thread setup (`configure_index_threads`), then
`build_index(stdlib, OUT, MODEL, ...)` with the verb's defaults (batch size, precision "auto", the model's code
length, query length 64), into a fresh temporary folder. The source tree is scanned first on its own
(`scan_sources`, the same call `build_index` makes; the ready scan is passed in; the model is loaded first too,
as `build_index` would), so the table splits the wall time into model loading, scanning
(tree-sitter), embedding (`_embed_all`, timed by wrapping it) and the rest (fingerprint, FAISS, BM25, query
encoder export, writing). Counts: functions, files, files skipped, embedded functions, functions dropped for
syntax errors, and the tokens the model read.

    python benchmarks/index_stdlib.py --model runs/distill/armB-wordpiece/student [--label after] [--threads 2]

Prints a table and writes benchmarks/results/index_stdlib.json; runs are kept under their `--label`, so a
"before" and an "after" run sit side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a MambaCode retrieval folder or shipped name")
    ap.add_argument("--src", default=sysconfig.get_paths()["stdlib"], help="source tree (default: the stdlib)")
    ap.add_argument("--threads", default=None,
                    help="intra-op threads (default: what `mambacode index` chooses; OMP_NUM_THREADS if set)")
    ap.add_argument("--batch_size", type=int, default=None, help="default: the verb's (DEFAULT_BATCH_SIZE)")
    ap.add_argument("--max_length", type=int, default=None, help="default: the model's code length, as the verb")
    ap.add_argument("--precision", default="auto", help="build_index's precision (the verb's default: auto)")
    ap.add_argument("--label", default="after", help="the run's key in the JSON file")
    ap.add_argument("--output", default=os.path.join(HERE, "results", "index_stdlib.json"))
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # `import mambacode` loads torch here (not in the `mambacode` command, which loads it only after choosing its
    # threads), so the wait policy the verb sets must be in the environment first
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from mambacode.search.index import configure_index_threads
    except ImportError:  # a mambacode from before the verb set its threads: torch's defaults
        configure_index_threads = None
    plan = configure_index_threads(args.threads) if configure_index_threads else None  # before torch loads
    load_before = os.getloadavg()
    import torch

    import mambacode.search.index as index_module
    from mambacode.atomic import atomic_write_text
    from mambacode.model_names import shipped_code_length
    from mambacode.search.model import load_retrieval_model
    from mambacode.search.sources import scan_sources
    from mambacode.tables import markdown_table

    max_length = args.max_length or shipped_code_length(args.model)
    batch_size = args.batch_size or getattr(index_module, "DEFAULT_BATCH_SIZE", 32)
    import inspect

    # the verb's precision ("auto"), where this mambacode has the argument
    has_precision = "precision" in inspect.signature(index_module.build_index).parameters
    precision = {"precision": args.precision} if has_precision else {}
    timings = {"embed": 0.0}
    embedded: list[str] = []
    real_embed_all = index_module._embed_all

    def timed_embed_all(model, tokenizer, texts, *rest, **kwargs):
        start = time.perf_counter()
        out = real_embed_all(model, tokenizer, texts, *rest, **kwargs)
        timings["embed"] += time.perf_counter() - start
        embedded.extend(texts)  # counted after the clock stops
        return out

    out_dir = tempfile.mkdtemp(prefix="index-stdlib-")
    try:
        start = time.perf_counter()
        model, tokenizer = load_retrieval_model(args.model, "cpu")
        load_seconds = time.perf_counter() - start
        resolve = getattr(index_module, "index_precision", None)
        resolved_precision = resolve(model, args.precision) if resolve else "float32"
        scan = scan_sources(args.src, progress=False)
        scan_seconds = time.perf_counter() - start - load_seconds
        index_module._embed_all = timed_embed_all
        try:
            report = index_module.build_index(scan, os.path.join(out_dir, "index"), args.model, model=model,
                                              tokenizer=tokenizer, batch_size=batch_size,
                                              max_length=max_length, query_max_length=64, device="cpu",
                                              progress=False, **precision)
        finally:
            index_module._embed_all = real_embed_all
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    tokens = {"n": sum(len(ids) for ids in tokenizer(embedded, truncation=True, max_length=max_length)["input_ids"])}
    summary = report.summary
    run = {
        "wall_seconds": wall, "model_load_seconds": load_seconds, "scan_seconds": scan_seconds,
        "embed_seconds": timings["embed"], "other_seconds": wall - load_seconds - scan_seconds - timings["embed"],
        "functions": report.functions, "embedded": report.embedded, "files": report.files,
        "skipped_files": len(report.skipped), "skipped_by_reason": summary.get("skipped_by_reason"),
        "functions_with_syntax_errors": summary.get("functions_with_syntax_errors"),
        "tokens_embedded": tokens["n"], "functions_per_second": report.functions / wall,
        "embed_tokens_per_second": tokens["n"] / timings["embed"] if timings["embed"] else None,
        "max_length": max_length, "batch_size": batch_size, "precision": resolved_precision,
        "threads": torch.get_num_threads(), "thread_plan": plan.describe() if plan else "torch defaults",
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count()},
        "model": args.model, "source": args.src,
    }
    results = {}
    if os.path.isfile(args.output):
        with open(args.output, encoding="utf-8") as fh:
            results = json.load(fh)
    results.setdefault("runs", {})[args.label] = run
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    atomic_write_text(args.output, json.dumps(results, indent=2))

    rows = [[label, f"{r['wall_seconds']:.1f}", f"{r['scan_seconds']:.1f}", f"{r['embed_seconds']:.1f}",
             f"{r['other_seconds']:.1f}", r["functions"], r["files"], r["skipped_files"],
             f"{r['embed_tokens_per_second'] or 0:.0f}", r.get("precision", "float32"), r["threads"],
             "/".join(f"{x:.1f}" for x in r["load_average_before"])]
            for label, r in results["runs"].items()]
    print(markdown_table(["run", "wall s", "scan s", "embed s", "other s", "functions", "files", "skipped files",
                          "embed tokens/s", "precision", "threads", "load avg before"], rows))
    print(f"{args.label}: {wall:.1f} s for {report.functions} functions ({report.functions / wall:.0f}/s); "
          f"target <= 300 s: {'met' if wall <= 300 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
