"""Teacher, BM25 and student in one table, on the project's package-disjoint test pools.

Pools (a corpus folder's splits; each query is ranked against every distinct candidate of its pool):
`plain` = retrieval/test, `adv` = retrieval_adv/test (AdvTest-style: names obfuscated), `long` =
long_context/test (whole modules or classes up to 4,096 code tokens). The teacher reads at most 256 word pieces
at once, so a candidate is cut into windows (`teacher.Teacher.windows`) and scored by one of four chunking rules:
`first` (truncation, what sentence-transformers does), `mean` / `weighted` (the normalised mean of the window
embeddings, plain or weighted by word pieces) and `maxsim` (a query's best window). Its rule for the table is
chosen on the pool's validation split, as is each hybrid's fusion (`training.baselines.tune_fusion`); the
`adv` pool has no validation split of its own and uses `plain`'s choices. The student reads each candidate
whole, up to its `max_code_length` (512 for functions, 4,096 for documents).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .teacher import RULES, Teacher, cache_teacher_embeddings, combine, load_teacher_cache, text_key

POOLS = {"plain": ("retrieval", "test"), "adv": ("retrieval_adv", "test"), "long": ("long_context", "test")}
VALIDATION = {"plain": ("retrieval", "validation"), "adv": ("retrieval", "validation"),
              "long": ("long_context", "validation")}
TEACHER_RULES = RULES + ("maxsim",)
CODE_LENGTH = {"plain": 512, "adv": 512, "long": 4096}


def pool_rows(corpus_dir: str, task: str, split: str, max_queries: int | None = None) -> tuple:
    """(queries, distinct candidates, gold candidate index per query) of `corpus_dir/task/split`."""
    import datasets

    from mambacode.training.evaluation import retrieval_pool

    path = os.path.join(corpus_dir, task)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"distillation evaluation: {path} does not exist (build the corpus first)")
    ds = datasets.load_from_disk(path)[split]
    if max_queries is not None:
        ds = ds.select(range(min(max_queries, len(ds))))
    queries, codes = list(ds["query"]), list(ds["code"])
    pool, gold = retrieval_pool(queries, codes)
    return queries, pool, gold


def teacher_scores(queries: list[str], pool: list[str], cache: dict) -> dict:
    """{rule: (queries x pool) cosine scores} of the teacher for every chunking rule, from cached windows."""
    q = np.stack([combine(*cache[text_key(t)], "first") for t in queries])
    out = {}
    for rule in RULES:
        c = np.stack([combine(*cache[text_key(t)], rule) for t in pool])
        out[rule] = q @ c.T
    windows = [cache[text_key(t)][0] for t in pool]
    flat = np.concatenate(windows)
    owner = np.repeat(np.arange(len(pool)), [len(w) for w in windows])
    sims = q @ flat.T
    best = np.full((len(queries), len(pool)), -np.inf, dtype=np.float32)
    np.maximum.at(best.T, owner, sims.T)
    out["maxsim"] = best
    return out


def student_scores(model, tokenizer, queries, pool, max_query_length: int, max_code_length: int,
                   batch_size: int = 16) -> np.ndarray:
    from mambacode.modeling import encode_texts

    limit = model.config.max_position_embeddings  # the student reads up to its own limit
    max_query_length, max_code_length = min(max_query_length, limit), min(max_code_length, limit)
    q = encode_texts(model, tokenizer, queries, max_query_length, batch_size, desc="student queries")
    c = encode_texts(model, tokenizer, pool, max_code_length, max(1, batch_size // 4), desc="student pool")
    return (q @ c.T).numpy()


def evaluate_distillation(corpus_dir: str, student: str | None = None, teacher: bool = True,
                          cache_root: str = "runs/distill/teacher-eval", pools=tuple(POOLS),
                          teacher_bf16: bool = True, max_queries: int | None = None, max_query_length: int = 64,
                          threads: int | None = None, student_float16: bool = False) -> dict:
    """{"pools": {pool: {ranker: metrics}}, "choices": {...}, "seconds": ...} for BM25, the teacher (every
    chunking rule, the validation-chosen one, its hybrid) and the student folder (dense and hybrid).
    `student_float16`: the student's weights rounded to float16 (computed in float32), as they would ship."""
    import torch

    from mambacode.search.fusion import Fusion
    from mambacode.training.baselines import bm25_scores, hybrid_scores, tune_fusion
    from mambacode.training.metrics_loader import retrieval_metrics

    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    splits = {p: (POOLS[p], VALIDATION[p]) for p in pools}
    data = {}
    for p, (test, val) in splits.items():
        data[p] = {"test": pool_rows(corpus_dir, *test, max_queries=max_queries),
                   "validation": pool_rows(corpus_dir, *val, max_queries=max_queries)}
    cache = None
    if teacher:
        texts = [t for d in data.values() for rows in d.values() for t in rows[0] + rows[1]]
        cache = load_teacher_cache(cache_teacher_embeddings(texts, cache_root, Teacher(bf16=teacher_bf16)))
    model = tokenizer = None
    if student:
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(student).eval()
        if student_float16:
            model.to(torch.float16).to(torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(student)
    result = {"pools": {}, "choices": {}, "corpus_dir": corpus_dir, "student": student,
              "student_float16": student_float16, "teacher_bf16": teacher_bf16, "max_queries": max_queries}
    scored: dict = {}
    for p in pools:
        for split in ("validation", "test"):
            key = (VALIDATION[p] if split == "validation" else POOLS[p], split)
            if key in scored:
                continue
            queries, pool, gold = data[p][split]
            entry = {"gold": gold, "bm25": bm25_scores(queries, pool)}
            if cache is not None:
                entry["teacher"] = teacher_scores(queries, pool, cache)
            if model is not None:
                entry["student"] = student_scores(model, tokenizer, queries, pool, max_query_length, CODE_LENGTH[p])
            scored[key] = entry
    for p in pools:
        val = scored[(VALIDATION[p], "validation")]
        test = scored[(POOLS[p], "test")]
        rows, choices = {}, {}
        rows["bm25"] = retrieval_metrics(test["bm25"], test["gold"])
        if "teacher" in test:
            val_mrr = {r: retrieval_metrics(val["teacher"][r], val["gold"])["mrr"] for r in TEACHER_RULES}
            rule = max(TEACHER_RULES, key=lambda r: (val_mrr[r], -TEACHER_RULES.index(r)))
            choices["teacher_rule"], choices["teacher_rule_validation_mrr"] = rule, val_mrr
            for r in TEACHER_RULES:
                rows[f"teacher_{r}"] = retrieval_metrics(test["teacher"][r], test["gold"])
            rows["teacher"] = rows[f"teacher_{rule}"]
            fusion, _ = tune_fusion(val["teacher"][rule], val["bm25"], val["gold"])
            choices["teacher_fusion"] = fusion.label
            rows["teacher_hybrid"] = retrieval_metrics(
                hybrid_scores(test["teacher"][rule], test["bm25"], fusion.k, fusion.dense_weight), test["gold"])
        if "student" in test:
            rows["student"] = retrieval_metrics(test["student"], test["gold"])
            fusion, table = tune_fusion(val["student"], val["bm25"], val["gold"])
            choices["student_fusion"] = fusion.label
            # what a shipped student's config carries (`hybrid_fusion`, read by `mambacode search`)
            choices["student_hybrid_fusion"] = {
                "chosen_on": f"{'/'.join(VALIDATION[p])}", **fusion.to_dict(),
                "validation_mrr": table[fusion.label], "validation_mrr_equal_weights": table[Fusion().label]}
            rows["student_hybrid"] = retrieval_metrics(
                hybrid_scores(test["student"], test["bm25"], fusion.k, fusion.dense_weight), test["gold"])
        result["pools"][p] = rows
        result["choices"][p] = choices
    result["seconds"] = round(time.time() - started, 1)
    return result


def checkpoint_curve(run_dir: str, corpus_dir: str, pools=("plain", "long"), max_queries: int | None = 500,
                     max_query_length: int = 64) -> list[dict]:
    """Dense validation MRR of every checkpoint's student (`checkpoint-N/student`) against the CPU seconds the run
    had spent by then (`checkpoint-N/cpu_seconds.json`): the curve an arm is judged by (MRR per CPU minute)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mambacode.training.metrics_loader import retrieval_metrics

    from .train import CPU_RECORD

    data = {p: pool_rows(corpus_dir, *VALIDATION[p], max_queries=max_queries) for p in pools}
    points = []
    names = [n for n in os.listdir(run_dir) if n.startswith("checkpoint-") and n.split("-")[-1].isdigit()]
    for name in sorted(names, key=lambda n: int(n.split("-")[-1])):
        folder = os.path.join(run_dir, name)
        if not os.path.exists(os.path.join(folder, CPU_RECORD)):
            continue
        with open(os.path.join(folder, CPU_RECORD)) as f:
            point = json.load(f)
        model = AutoModel.from_pretrained(os.path.join(folder, "student")).eval()
        tok = AutoTokenizer.from_pretrained(os.path.join(folder, "student"))
        with torch.no_grad():
            for p, (queries, pool, gold) in data.items():
                scores = student_scores(model, tok, queries, pool, max_query_length, CODE_LENGTH[p])
                point[f"{p}_mrr"] = retrieval_metrics(scores, gold)["mrr"]
        points.append(point)
    return points


def markdown_table(result: dict, metric: str = "mrr") -> str:
    """One row per ranker, one column per pool: `metric` x 100."""
    from mambacode.tables import markdown_table as table

    pools = list(result["pools"])
    rankers: list[str] = []
    for p in pools:
        rankers += [r for r in result["pools"][p] if r not in rankers]
    rows = [[r] + [f"{100 * result['pools'][p][r][metric]:.1f}" if r in result["pools"][p] else "-" for p in pools]
            for r in rankers]
    return table(["ranker"] + [f"{p} {metric.upper()}" for p in pools], rows)


def main(argv=None) -> int:
    import argparse

    from mambacode.atomic import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus_dir", required=True)
    ap.add_argument("--student", default=None, help="a trained student folder (OUTPUT_DIR/student)")
    ap.add_argument("--no_teacher", action="store_true")
    ap.add_argument("--cache_root", default="runs/distill/teacher-eval")
    ap.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    ap.add_argument("--teacher_fp32", action="store_true", help="run the teacher in float32 (default: bf16 autocast)")
    ap.add_argument("--student_float16", action="store_true",
                    help="round the student's weights to float16 first (how `mambacode.distill.ship --float16` "
                         "stores them)")
    ap.add_argument("--max_queries", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=None, help="write the result as JSON here")
    ap.add_argument("--curve", default=None, metavar="RUN_DIR",
                    help="instead: the validation MRR of every checkpoint of RUN_DIR against its CPU minutes")
    args = ap.parse_args(argv)
    if args.curve:
        import torch

        torch.set_num_threads(args.threads)
        points = checkpoint_curve(args.curve, args.corpus_dir, max_queries=args.max_queries or 500)
        from mambacode.tables import markdown_table as table

        keys = [k for k in points[0] if k.endswith("_mrr")] if points else []
        print(table(["step", "CPU min", "wall min"] + keys,
                    [[p["global_step"], f"{p['cpu_seconds'] / 60:.1f}", f"{p['wall_seconds'] / 60:.1f}"]
                     + [f"{100 * p[k]:.1f}" for k in keys] for p in points]))
        if args.output:
            atomic_write_text(args.output, json.dumps(points, indent=2))
        return 0
    result = evaluate_distillation(args.corpus_dir, args.student, not args.no_teacher, args.cache_root,
                                   tuple(args.pools), not args.teacher_fp32, args.max_queries, threads=args.threads,
                                   student_float16=args.student_float16)
    print(markdown_table(result))
    print(json.dumps(result["choices"], indent=2))
    if args.output:
        atomic_write_text(args.output, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
