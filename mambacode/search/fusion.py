"""Reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009): merge ranked lists by sum of w / (k + rank).

It needs no score calibration between a cosine similarity and a BM25 score, which live on unrelated scales.
The plain form weighs every list alike (w = 1, k = 60). A weak dense model pulls an equal-weight fusion below
BM25 alone, so a fine-tuned retrieval model carries the fusion chosen on its validation split
(`Fusion`, `config.hybrid_fusion`, written by `run_retrieval`), and `mambacode search` uses it.

The candidates (`fusion_grid`) end with w = 0: BM25's ranking as it is, the dense ranking only ordering what
BM25 does not retrieve at all (a fused score of 0; ties go to the better single rank). Its MRR is never below
BM25's alone (the gold keeps its BM25 position, or gains one where BM25 misses it), so the fusion a
validation split chooses, the best candidate, is never worse than BM25 alone on that split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: the rankers a query can use, the fused one first (here so that the command's parser imports nothing heavy)
MODES = ("hybrid", "dense", "bm25")
RRF_K = 60  # the constant of the original paper; it damps the weight of the very first ranks

#: the dense list's weights (BM25's is 1) and the k values a validation split chooses among
FUSION_DENSE_WEIGHTS = (1.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.5, 2.0, 3.0)
FUSION_KS = (RRF_K, 10)
#: the last candidate: BM25 first (with w = 0 the value of k changes no order)
BM25_FIRST = (0.0, RRF_K)


@dataclass(frozen=True)
class Fusion:
    """How the hybrid merges its two rankings: score = dense_weight / (k + dense rank) + 1 / (k + BM25 rank)."""

    dense_weight: float = 1.0
    k: int = RRF_K

    def __post_init__(self):
        if not self.dense_weight >= 0:  # also refuses NaN
            raise ValueError(f"Fusion: dense_weight={self.dense_weight} must be >= 0 (0: BM25's ranking, the dense "
                             "one ordering only what BM25 does not retrieve)")
        if self.k < 0:
            raise ValueError(f"Fusion: k={self.k} must be >= 0")

    @property
    def label(self) -> str:
        """'w=<dense_weight>,k=<k>': the key of a fusion in `tune_fusion`'s table."""
        return f"w={self.dense_weight:g},k={self.k}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_config(cls, config) -> Fusion:
        """The fusion a model's config carries (`hybrid_fusion`, set when its validation split chose one), or the
        equal-weight default; a malformed entry is an error naming the field."""
        entry = getattr(config, "hybrid_fusion", None)
        if entry is None:
            return cls()
        if not isinstance(entry, dict) or "dense_weight" not in entry or "k" not in entry:
            raise ValueError(f"config.hybrid_fusion = {entry!r}: expected {{'dense_weight': float, 'k': int, ...}}")
        return cls(float(entry["dense_weight"]), int(entry["k"]))


def fusion_grid() -> list[Fusion]:
    """The candidates a validation split chooses among, the equal-weight default first (it wins ties), BM25
    first (w = 0) last: a split where every weighted fusion loses to BM25 alone chooses it."""
    return [Fusion(w, k) for k in FUSION_KS for w in FUSION_DENSE_WEIGHTS] + [Fusion(*BM25_FIRST)]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K,
                           weights: list[float] | None = None) -> list[tuple[int, float]]:
    """Fuse ranked lists of ids (best first; rank 1 is the first element) into [(id, score)], best first.

    score(id) = sum over the lists that contain id of weight / (k + rank) (weights: one per list, default 1).
    Ties go to the id with the better single best rank, then the smaller id, so the order is deterministic.
    """
    if k < 0:
        raise ValueError(f"reciprocal_rank_fusion: k={k} must be >= 0")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"reciprocal_rank_fusion: {len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]], item[0]))


__all__ = ["BM25_FIRST", "FUSION_DENSE_WEIGHTS", "FUSION_KS", "Fusion", "MODES", "RRF_K", "fusion_grid",
           "reciprocal_rank_fusion"]
