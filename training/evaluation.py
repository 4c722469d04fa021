"""Whole-pool retrieval evaluation (CodeSearchNet-style): every query is ranked against every distinct
candidate of the test split, not just its batch, and the local `mrr` metric turns ranks into MRR,
Recall@k and nDCG@10.

Candidates are deduplicated by their text, so a document queried several times (long-context QA) is one
pool entry and each of its queries has that entry as gold. BM25 and the dense + BM25 hybrid are ranked on
the same queries and pool (`mambacode.training.baselines`), so every dense number has its baselines beside it.
"""

from __future__ import annotations

import numpy as np
import torch

from .baselines import RANKERS

POOL_KEYS = ("num_queries", "pool_size")  # the same for every ranker: reported once, with the dense metrics


def retrieval_pool(queries: list[str], codes: list[str]) -> tuple[list[str], list[int]]:
    """(distinct candidates in first-seen order, gold candidate index of each query)."""
    index: dict[str, int] = {}
    gold = []
    for code in codes:
        gold.append(index.setdefault(code, len(index)))
    if len(gold) != len(queries):
        raise ValueError(f"retrieval_pool: {len(queries)} queries but {len(codes)} codes")
    return list(index), gold


def embed_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                desc: str = "embed") -> torch.Tensor:
    """(n, d) L2-normalised embeddings via `model.embed`: the model package's one embedding loop
    (`encode_texts`, also behind `MambaCodeForRetrieval.encode`), so MambaCode and RoCoder are embedded alike."""
    from mambacode.modeling import encode_texts

    return encode_texts(model, tokenizer, texts, max_length, batch_size, show_progress_bar=True, desc=desc)


def retrieval_compute_metrics(codes: list[str]):
    """A `Trainer` `compute_metrics` for a bi-encoder evaluated on (query, code) rows whose code texts are
    `codes`, in dataset order: every query is ranked against every distinct code of the evaluation set (the
    pool of `evaluate_retrieval`), giving `mrr`, `recall@k`, `ndcg@10` (so `metric_for_best_model="mrr"`).

    The predictions are the model's `embeddings` and `code_embeddings` (its first two outputs after the
    ignored keys); a row of a repeated code is embedded as often as it occurs, its first embedding is used.
    """
    _, gold = retrieval_pool(list(codes), list(codes))
    first = {}
    for row, g in enumerate(gold):
        first.setdefault(g, row)
    pool_rows = [first[g] for g in range(len(first))]

    def compute_metrics(prediction) -> dict:
        from .metrics_loader import retrieval_metrics

        outputs = prediction.predictions
        if not isinstance(outputs, (tuple, list)) or len(outputs) < 2:
            raise ValueError("retrieval compute_metrics: expected the predictions (embeddings, code_embeddings, "
                             f"...), got {type(outputs).__name__}; does the model take code_input_ids?")
        queries, code_rows = np.asarray(outputs[0], dtype=np.float64), np.asarray(outputs[1], dtype=np.float64)
        if len(queries) != len(gold) or len(code_rows) != len(gold):
            raise ValueError(f"retrieval compute_metrics: {len(queries)} query and {len(code_rows)} code "
                             f"embeddings but the evaluation set has {len(gold)} rows.")
        scores = queries @ code_rows[pool_rows].T
        return {k: v for k, v in retrieval_metrics(scores, gold).items() if k not in POOL_KEYS}

    return compute_metrics


def evaluate_retrieval(model, tokenizer, dataset, query_column: str = "query", code_column: str = "code",
                       max_query_length: int = 128, max_code_length: int = 256, batch_size: int = 32,
                       max_samples: int | None = None, prefix: str = "test", baselines: bool = True,
                       fusion=None) -> dict:
    """MRR, Recall@1/5/10, nDCG@10 of `model` on `dataset` (queries vs. the pool of all its codes), keys
    `<prefix>_<metric>`; with `baselines`, the same metrics of BM25 and of the dense + BM25 hybrid on the same
    queries and pool (`mambacode.training.baselines`) as `<prefix>_bm25_<metric>`, `<prefix>_hybrid_<metric>`;
    the hybrid fuses by `fusion` (a `mambacode.search.Fusion`; default: equal weights, k = 60)."""
    from .baselines import baseline_metrics
    from .metrics_loader import retrieval_metrics

    queries, pool, gold, scores = _dense_scores(model, tokenizer, dataset, query_column, code_column,
                                                max_query_length, max_code_length, batch_size, max_samples, prefix)
    result = {f"{prefix}_{k}": v for k, v in retrieval_metrics(scores, gold).items()}
    if baselines:
        for ranker, metrics in baseline_metrics(queries, pool, gold, scores, fusion).items():
            result.update({f"{prefix}_{ranker}_{k}": v for k, v in metrics.items() if k not in POOL_KEYS})
    return result


def choose_fusion(model, tokenizer, dataset, query_column: str = "query", code_column: str = "code",
                  max_query_length: int = 128, max_code_length: int = 256, batch_size: int = 32,
                  max_samples: int | None = None, prefix: str = "validation") -> tuple:
    """(fusion, {candidate: MRR}): the hybrid's fusion (`baselines.tune_fusion`'s grid) with the highest MRR
    on `dataset`'s whole pool, for a validation split; the test pools are then ranked with it unchanged."""
    from .baselines import bm25_scores, tune_fusion

    queries, pool, gold, scores = _dense_scores(model, tokenizer, dataset, query_column, code_column,
                                                max_query_length, max_code_length, batch_size, max_samples, prefix)
    return tune_fusion(scores, bm25_scores(queries, pool), gold)


def _dense_scores(model, tokenizer, dataset, query_column, code_column, max_query_length, max_code_length,
                  batch_size, max_samples, prefix) -> tuple:
    """(queries, pool, gold, (queries x pool) cosine scores) of `dataset`'s first `max_samples` rows."""
    from .validation import require_columns

    require_columns(dataset, [query_column, code_column], where=prefix)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    queries, codes = list(dataset[query_column]), list(dataset[code_column])
    pool, gold = retrieval_pool(queries, codes)
    q = embed_texts(model, tokenizer, queries, max_query_length, batch_size, desc=f"{prefix} queries")
    c = embed_texts(model, tokenizer, pool, max_code_length, batch_size, desc=f"{prefix} pool")
    return queries, pool, gold, (q @ c.T).numpy()


def metrics_by_ranker(result: dict, prefix: str) -> dict:
    """{'dense' | 'bm25' | 'hybrid': {metric: value}} from an `evaluate_retrieval` result (its `prefix`); a
    ranker that was not evaluated is left out."""
    out: dict = {}
    for key, value in result.items():
        if not key.startswith(prefix + "_"):
            raise ValueError(f"metrics_by_ranker: key {key!r} does not start with the prefix {prefix + '_'!r}")
        name = key[len(prefix) + 1:]
        ranker = next((r for r in RANKERS[1:] if name.startswith(r + "_")), "dense")
        out.setdefault(ranker, {})[name if ranker == "dense" else name[len(ranker) + 1:]] = value
    return out


__all__ = ["choose_fusion", "embed_texts", "evaluate_retrieval", "metrics_by_ranker", "retrieval_compute_metrics",
           "retrieval_pool"]
