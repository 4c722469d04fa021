"""`mambacode search` benchmark: indexing speed, index size, query latency and retrieval quality.

1. Index a source tree (default: this interpreter's standard library) with a MambaCode retrieval model:
   functions/s of a fresh index, seconds of an unchanged re-index (nothing embedded), index size on disk.
2. Query latency per mode (hybrid / dense / bm25) with a loaded `Searcher` over that index: p50/p95 over
   the queries of a corpus split, plus the wall time of one `mambacode search` process (model load included).
3. MRR of dense / BM25 / hybrid on a corpus retrieval split (queries = docstrings, targets = their code):
   the distinct codes form the candidate pool, indexed through the same `build_index` path. The pool is
   ranked whole for dense and BM25; hybrid fuses each ranker's top `FUSION_DEPTH` (a gold candidate below
   both contributes 0, so hybrid MRR is a slight underestimate).

    python benchmarks/search.py --model MODEL_DIR --corpus CORPUS/retrieval [--threads 2]
Prints a table and writes benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from mambacode.tables import markdown_table


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def pool_scan(dataset, root: str):
    """The split's distinct codes as a `SourceScan` (one 'file' per candidate) and each query's gold row."""
    from mambacode.search import SourceFunction, SourceScan
    from mambacode.training.evaluation import retrieval_pool

    queries, codes = list(dataset["query"]), list(dataset["code"])
    pool, gold = retrieval_pool(queries, codes)
    language = {c: lang for c, lang in zip(codes, dataset["language"])}
    scan = SourceScan(root)
    for i, code in enumerate(pool):
        path = f"candidate-{i:06d}"
        scan.functions.append(SourceFunction(path, 1, code.count("\n") + 1, "", language[code], code))
        scan.files[path] = {"sha256": scan.functions[-1].sha256, "language": language[code], "functions": 1}
    return scan, queries, gold


def mrr_by_mode(searcher, queries: list[str], gold: list[int]) -> dict:
    from mambacode.search.query import FUSION_DEPTH

    pool = searcher.index.dense.ntotal
    out = {}
    for mode in ("dense", "bm25", "hybrid"):
        reciprocal = []
        for query, target in zip(queries, gold):
            hits = searcher.search(query, k=pool if mode != "hybrid" else FUSION_DEPTH, mode=mode)
            rank = next((h.rank for h in hits if int(h.path.rsplit("-", 1)[1]) == target), None)
            reciprocal.append(1.0 / rank if rank else 0.0)
        out[mode] = float(np.mean(reciprocal))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved MambaCode retrieval folder")
    parser.add_argument("--corpus", required=True, help="retrieval DatasetDict (build_corpus writes <dir>/retrieval)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--source", default=sysconfig.get_paths()["stdlib"], help="tree to index (default: stdlib)")
    parser.add_argument("--threads", type=int, default=2, help="torch / faiss threads while indexing")
    parser.add_argument("--query_threads", type=int, default=1, help="torch / faiss threads while querying "
                        "(one query gains nothing from a second thread on a shared machine)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--latency_queries", type=int, default=200)
    parser.add_argument("--work_dir", default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "search.json"))
    args = parser.parse_args()

    import datasets
    import faiss
    import torch

    from mambacode.search import Searcher, build_index, load_retrieval_model
    from mambacode.search.index import index_size_bytes

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    work = args.work_dir or tempfile.mkdtemp(prefix="mambacode-search-bench-")
    model, tokenizer = load_retrieval_model(args.model, "cpu")
    n_params = sum(p.numel() for p in model.parameters())

    # 1. index the source tree
    load_at_start = os.getloadavg()
    index = os.path.join(work, "source-index")
    shutil.rmtree(index, ignore_errors=True)
    report = build_index(args.source, index, args.model, model=model, tokenizer=tokenizer,
                         batch_size=args.batch_size, progress=True)
    again = build_index(args.source, index, args.model, model=model, tokenizer=tokenizer, progress=False)
    sizes = {name: index_size_bytes(os.path.join(index, name)) if os.path.isdir(os.path.join(index, name))
             else os.path.getsize(os.path.join(index, name)) for name in sorted(os.listdir(index))}

    # 2. latency over the source index, queries from the corpus split
    torch.set_num_threads(args.query_threads)
    faiss.omp_set_num_threads(args.query_threads)
    split = datasets.load_from_disk(args.corpus)[args.split]
    searcher = Searcher(index, model=model, tokenizer=tokenizer)
    queries = list(split["query"][:args.latency_queries])
    latency = {}
    for mode in ("hybrid", "dense", "bm25"):
        searcher.search(queries[0], k=10, mode=mode)  # warm-up
        times = []
        for q in queries:
            t = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            times.append(time.perf_counter() - t)
        latency[mode] = {"p50_ms": percentile_ms(times, 50), "p95_ms": percentile_ms(times, 95)}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.query_threads), HF_HUB_OFFLINE="1")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mambacode.cli", "search", queries[0], "--index", index, "--json"],
                          capture_output=True, text=True, env=env)
    cli_seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"mambacode search failed: {proc.stderr}")

    # 3. MRR on the corpus split
    scan, pool_queries, gold = pool_scan(split, os.path.join(work, "pool"))
    pool_index = os.path.join(work, "pool-index")
    shutil.rmtree(pool_index, ignore_errors=True)
    build_index(scan, pool_index, args.model, model=model, tokenizer=tokenizer, batch_size=args.batch_size,
                progress=False)
    mrr = mrr_by_mode(Searcher(pool_index, model=model, tokenizer=tokenizer), pool_queries, gold)

    result = {
        "model": os.path.abspath(args.model), "model_parameters": n_params, "threads": args.threads,
        "query_threads": args.query_threads, "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(), "source": args.source,
        "index": {"functions": report.functions, "files": report.files, "skipped_files": len(report.skipped),
                  "skipped_by_reason": report.summary["skipped_by_reason"],
                  "functions_with_syntax_errors": report.summary["functions_with_syntax_errors"],
                  "seconds": report.seconds, "functions_per_second": report.functions / report.seconds,
                  "unchanged_reindex_seconds": again.seconds, "unchanged_reindex_embedded": again.embedded,
                  "size_bytes": sum(sizes.values()), "size_bytes_by_part": sizes},
        "latency": {"queries": len(queries), "k": 10, **latency, "cli_process_seconds": cli_seconds},
        "mrr": {"corpus": os.path.abspath(args.corpus), "split": args.split, "queries": len(pool_queries),
                "pool_size": len(scan.functions), **mrr},
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    from mambacode.atomic import atomic_write_text

    atomic_write_text(args.output, json.dumps(result, indent=1) + "\n")
    idx = result["index"]
    print(f"\nindexed {idx['functions']} functions ({idx['files']} files, {idx['skipped_files']} skipped) in "
          f"{idx['seconds']:.1f}s = {idx['functions_per_second']:.1f} functions/s on {args.threads} threads; "
          f"unchanged re-index {again.seconds:.1f}s; index {idx['size_bytes'] / 2**20:.1f} MiB")
    rows = [[mode, f"{latency[mode]['p50_ms']:.1f}", f"{latency[mode]['p95_ms']:.1f}", f"{mrr[mode]:.4f}"]
            for mode in ("dense", "bm25", "hybrid")]
    print(markdown_table(["mode", f"p50 ms ({args.query_threads} thread)", "p95 ms",
                          f"MRR ({len(pool_queries)} queries, pool {len(scan.functions)})"], rows))
    print(f"one `mambacode search` process (model + index load included): {cli_seconds:.2f}s")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
