"""Retrieval metrics over a whole candidate pool: MRR, Recall@1/5/10 and nDCG@10 (one relevant item).

Inputs, one row per query:
- `predictions`: the query's scores against every candidate of the pool (higher = more similar);
- `references`: the index of the query's relevant candidate in that row.
The gold item's rank counts every candidate scoring at least as high as it (ties count against the
model, as CodeSearchNet's evaluation does), so a model that scores everything equally gets rank = pool
size, not 1. With a single relevant item, nDCG@10 = 1 / log2(rank + 1) if rank <= 10 else 0.
"""

import math

import datasets
import evaluate
import numpy as np

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of lists of floats, the scores of each query against all pool candidates.
    references: list of ints, the index of each query's relevant candidate.
    ks: recall cut-offs (default (1, 5, 10)).
Returns:
    mrr, recall@k for each k, ndcg@10, num_queries, pool_size (means are in [0, 1]).
"""


class MRR(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION,
                                   inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({
                                       "predictions": datasets.Sequence(datasets.Value("float32")),
                                       "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, ks=(1, 5, 10)):
        scores = np.asarray(predictions, dtype=np.float64)
        gold = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or len(scores) != len(gold):
            raise ValueError(f"mrr: expected one score row per reference, got scores {scores.shape} and "
                             f"{len(gold)} references")
        if len(gold) and (gold.min() < 0 or gold.max() >= scores.shape[1]):
            raise ValueError(f"mrr: references must index the pool [0, {scores.shape[1]}), got {gold.min()}..{gold.max()}")
        if not np.isfinite(scores).all():
            raise ValueError("mrr: scores contain NaN or inf (did the model diverge?)")
        gold_scores = scores[np.arange(len(gold)), gold][:, None]
        ranks = (scores >= gold_scores).sum(axis=1)  # 1-based, ties pessimistic
        out = {"mrr": float(np.mean(1.0 / ranks)) if len(ranks) else 0.0}
        for k in ks:
            out[f"recall@{k}"] = float(np.mean(ranks <= k)) if len(ranks) else 0.0
        ndcg = [1.0 / math.log2(r + 1) if r <= 10 else 0.0 for r in ranks]
        out["ndcg@10"] = float(np.mean(ndcg)) if ndcg else 0.0
        out["num_queries"] = int(len(ranks))
        out["pool_size"] = int(scores.shape[1])
        return out
