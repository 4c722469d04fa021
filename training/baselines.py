"""Baselines of the whole-pool retrieval evaluation, on exactly the dense model's queries and candidates:
BM25 (`bm25s`, no model at all) and the hybrid, the dense ranking and the BM25 ranking merged by
reciprocal-rank fusion.

Both use the pieces `mambacode search` ranks with (code words from `mambacode.search.tokenize.code_tokens`,
`mambacode.search.fusion.reciprocal_rank_fusion` with k = 60), so a hybrid number is what
`mambacode search --mode hybrid` would rank if each ranker contributed the whole pool instead of its top 100.
"""

from __future__ import annotations

import functools

import numpy as np

from mambacode.search.fusion import RRF_K, reciprocal_rank_fusion
from mambacode.search.tokenize import code_tokens

RANKERS = ("dense", "bm25", "hybrid")


def bm25_scores(queries: list[str], pool: list[str]) -> np.ndarray:
    """(queries x pool) BM25 scores of each query's words against each candidate's code words (bm25s'
    defaults: the Lucene variant, k1 = 1.5, b = 0.75); 0 where they share no word, and for a query with no
    word. Model-free and deterministic, so a pool is scored once per process (cached; the array is read-only)."""
    return _bm25_scores(tuple(queries), tuple(pool))


@functools.lru_cache(maxsize=4)
def _bm25_scores(queries: tuple, pool: tuple) -> np.ndarray:
    import bm25s

    scores = np.zeros((len(queries), len(pool)))
    documents = [code_tokens(code) for code in pool]
    if any(documents):  # bm25s cannot index a pool without a single word
        retriever = bm25s.BM25()
        retriever.index(documents, show_progress=False)
        for row, query in enumerate(queries):
            words = code_tokens(query)
            if words:
                scores[row] = retriever.get_scores(words)
    scores.flags.writeable = False
    return scores


def ranking(scores: np.ndarray, positive_only: bool = False) -> list[int]:
    """Candidate indices by descending score, equal scores by ascending index (as `mambacode search` lists
    them); `positive_only` leaves out candidates scoring 0 or less (for BM25: sharing no word with the query,
    so never retrieved)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if positive_only:
        order = order[np.asarray(scores)[order] > 0]
    return order.tolist()


def hybrid_scores(dense: np.ndarray, lexical: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """(queries x pool) scores that order each query's candidates as the reciprocal-rank fusion of its whole
    dense ranking and its BM25 ranking (candidates sharing a word with the query) does: pool size for the
    first fused candidate down to 1 for the last, so the `mrr` metric's rank is the fused position."""
    dense, lexical = np.asarray(dense), np.asarray(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"hybrid_scores: dense scores {dense.shape} and BM25 scores {lexical.shape} differ in shape")
    out = np.zeros(dense.shape)
    positions = np.arange(dense.shape[1], 0, -1, dtype=np.float64)
    for row in range(len(dense)):
        fused = reciprocal_rank_fusion([ranking(dense[row]), ranking(lexical[row], positive_only=True)], k)
        out[row, [doc for doc, _ in fused]] = positions
    return out


def baseline_metrics(queries: list[str], pool: list[str], gold: list[int], dense_scores: np.ndarray,
                     k: int = RRF_K) -> dict:
    """{'bm25': metrics, 'hybrid': metrics}, each as the `mrr` metric gives them (MRR, Recall@1/5/10,
    nDCG@10; ties counted against the ranker), for `queries` against the candidate texts `pool` (gold: each
    query's candidate index) and the dense model's (queries x pool) `dense_scores`."""
    from .metrics_loader import retrieval_metrics

    lexical = bm25_scores(queries, pool)
    if np.shape(dense_scores) != lexical.shape:
        raise ValueError(f"baseline_metrics: dense scores {np.shape(dense_scores)} do not match {len(queries)} "
                         f"queries x {len(pool)} candidates")
    return {"bm25": retrieval_metrics(lexical, gold),
            "hybrid": retrieval_metrics(hybrid_scores(dense_scores, lexical, k), gold)}


__all__ = ["RANKERS", "baseline_metrics", "bm25_scores", "hybrid_scores", "ranking"]
