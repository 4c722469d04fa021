"""Baselines of the whole-pool retrieval evaluation, on exactly the dense model's queries and candidates:
BM25 (`bm25s`, no model at all) and the hybrid, the dense ranking and the BM25 ranking merged by
reciprocal-rank fusion.

Both use the pieces `mambacode search` ranks with (code words from `mambacode.search.tokenize.code_tokens`,
the reciprocal-rank fusion of `mambacode.search.fusion`), so a hybrid number is what `mambacode search --mode
hybrid` would rank with the same `Fusion` if each ranker contributed the whole pool instead of its top 100.
`tune_fusion` chooses the fusion (the dense list's weight and k) on a validation split.
"""

from __future__ import annotations

import functools

import numpy as np

from mambacode.search.fusion import RRF_K, Fusion, fusion_grid
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


def _rank_matrix(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate in its row's `ranking` (descending score, ties by ascending index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty(order.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(1, order.shape[1] + 1)[None, :].repeat(len(order), 0), axis=1)
    return ranks


def hybrid_scores(dense: np.ndarray, lexical: np.ndarray, k: int = RRF_K, dense_weight: float = 1.0) -> np.ndarray:
    """(queries x pool) scores that order each query's candidates as the reciprocal-rank fusion of its whole
    dense ranking (weight `dense_weight`) and its BM25 ranking (candidates sharing a word with the query,
    weight 1) does: pool size for the first fused candidate down to 1 for the last, so the `mrr` metric's rank
    is the fused position. Computed for all rows at once, in the same float operations and tie order as
    `reciprocal_rank_fusion` (tested against it row by row)."""
    if k < 0:
        raise ValueError(f"hybrid_scores: k={k} must be >= 0")
    return _fused_positions(_ranks(dense, lexical), k, dense_weight)


def _ranks(dense, lexical) -> tuple:
    """(dense ranks, BM25 ranks, BM25-retrieved mask): what every fusion of the two rankings starts from."""
    dense, lexical = np.asarray(dense, dtype=np.float64), np.asarray(lexical, dtype=np.float64)
    if dense.shape != lexical.shape:
        raise ValueError(f"hybrid_scores: dense scores {dense.shape} and BM25 scores {lexical.shape} differ in shape")
    if dense.size == 0:
        return dense, lexical, lexical > 0
    # BM25 lists only the candidates sharing a word with the query
    return _rank_matrix(dense), _rank_matrix(lexical), lexical > 0


def _fused_positions(ranks: tuple, k: int, dense_weight: float) -> np.ndarray:
    dense_rank, lexical_rank, retrieved = ranks
    if dense_rank.size == 0:
        return np.zeros(dense_rank.shape)
    fused = dense_weight / (k + dense_rank) + np.where(retrieved, 1.0 / (k + lexical_rank), 0.0)
    best = np.where(retrieved, np.minimum(dense_rank, lexical_rank), dense_rank)
    ids = np.broadcast_to(np.arange(dense_rank.shape[1]), dense_rank.shape)
    order = np.lexsort((ids, best, -fused), axis=-1)  # the last key sorts first
    out = np.empty(dense_rank.shape)
    positions = np.arange(dense_rank.shape[1], 0, -1, dtype=np.float64)[None, :].repeat(len(order), 0)
    np.put_along_axis(out, order, positions, axis=1)
    return out


def tune_fusion(dense_scores: np.ndarray, lexical_scores: np.ndarray, gold: list[int],
                grid: list[Fusion] | None = None) -> tuple[Fusion, dict]:
    """The fusion of `grid` (default `fusion_grid()`) with the highest hybrid MRR on these (queries x pool)
    scores, and every candidate's MRR as {`Fusion.label`: mrr}. Meant for a validation split: the chosen
    fusion is then applied, unchanged, to the test pools. Ties go to the earlier candidate (the equal-weight
    default first). Both rankings are computed once for the whole grid."""
    from .metrics_loader import retrieval_metrics

    grid = fusion_grid() if grid is None else list(grid)
    if not grid:
        raise ValueError("tune_fusion: empty grid")
    ranks = _ranks(dense_scores, lexical_scores)
    table, best, best_mrr = {}, None, -1.0
    for fusion in grid:
        mrr = retrieval_metrics(_fused_positions(ranks, fusion.k, fusion.dense_weight), gold)["mrr"]
        table[fusion.label] = mrr
        if mrr > best_mrr:
            best, best_mrr = fusion, mrr
    return best, table


def baseline_metrics(queries: list[str], pool: list[str], gold: list[int], dense_scores: np.ndarray,
                     fusion: Fusion | None = None) -> dict:
    """{'bm25': metrics, 'hybrid': metrics}, each as the `mrr` metric gives them (MRR, Recall@1/5/10,
    nDCG@10; ties counted against the ranker), for `queries` against the candidate texts `pool` (gold: each
    query's candidate index) and the dense model's (queries x pool) `dense_scores`; the hybrid fuses by
    `fusion` (default: equal weights, k = 60)."""
    from .metrics_loader import retrieval_metrics

    fusion = fusion or Fusion()
    lexical = bm25_scores(queries, pool)
    if np.shape(dense_scores) != lexical.shape:
        raise ValueError(f"baseline_metrics: dense scores {np.shape(dense_scores)} do not match {len(queries)} "
                         f"queries x {len(pool)} candidates")
    return {"bm25": retrieval_metrics(lexical, gold),
            "hybrid": retrieval_metrics(hybrid_scores(dense_scores, lexical, fusion.k, fusion.dense_weight), gold)}


__all__ = ["RANKERS", "baseline_metrics", "bm25_scores", "hybrid_scores", "ranking", "tune_fusion"]
