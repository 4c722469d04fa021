"""Reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009): merge ranked lists by sum of 1/(k + rank).

It needs no score calibration between a cosine similarity and a BM25 score, which live on unrelated scales.
"""

from __future__ import annotations

RRF_K = 60  # the constant of the original paper; it damps the weight of the very first ranks


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids (best first; rank 1 is the first element) into [(id, score)], best first.

    score(id) = sum over the lists that contain id of 1 / (k + rank). Ties go to the id with the better
    single best rank, then the smaller id, so the order is deterministic.
    """
    if k < 0:
        raise ValueError(f"reciprocal_rank_fusion: k={k} must be >= 0")
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))


__all__ = ["RRF_K", "reciprocal_rank_fusion"]
