"""Load the package's metrics with `evaluate.load(<local folder>)`: nothing reaches the Hub.

Each metric is an `evaluate` module folder, `metrics/<name>/<name>.py` with its metric card `README.md`
(inputs, outputs, limitations), the layout of a metric on the Hub."""

from __future__ import annotations

import os

METRICS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics")
METRICS = ("mrr", "type_f1")


def metric_path(name: str) -> str:
    """Absolute path of the local evaluate module folder `name` (one of METRICS)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}: expected one of {METRICS}")
    return os.path.join(METRICS_DIR, name)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a local metric module (works with HF_HUB_OFFLINE=1)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def retrieval_metrics(scores, gold) -> dict:
    """MRR, Recall@1/5/10 and nDCG@10 of a (queries x pool) score matrix and the gold pool indices."""
    metric = load_metric("mrr")
    return metric.compute(predictions=[list(map(float, row)) for row in scores], references=[int(g) for g in gold])


__all__ = ["METRICS", "metric_path", "load_metric", "retrieval_metrics"]
