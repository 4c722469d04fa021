"""Load the package's metric modules with `evaluate.load(<local path>)`: nothing reaches the Hub."""

from __future__ import annotations

import os

METRICS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics")
METRICS = ("mrr", "type_f1")


def metric_path(name: str) -> str:
    """Absolute path of the local evaluate module `name` (one of METRICS)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}: expected one of {METRICS}")
    return os.path.join(METRICS_DIR, f"{name}.py")


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a local metric module (works with HF_HUB_OFFLINE=1)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def metric_info(description: str, citation: str, inputs_description: str, **features):
    """The `evaluate.MetricInfo` of a local metric module; `features`: its input columns' feature types."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs_description,
                               features=datasets.Features(features))


def retrieval_metrics(scores, gold) -> dict:
    """MRR, Recall@1/5/10 and nDCG@10 of a (queries x pool) score matrix and the gold pool indices."""
    metric = load_metric("mrr")
    return metric.compute(predictions=[list(map(float, row)) for row in scores], references=[int(g) for g in gold])


__all__ = ["METRICS", "metric_path", "load_metric", "metric_info", "retrieval_metrics"]
