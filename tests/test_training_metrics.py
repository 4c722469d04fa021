"""The local evaluate metric modules against hand-computed values and an independent implementation."""

import math

import numpy as np
import pytest

from mambacode.training import load_metric, retrieval_pool


@pytest.fixture(scope="module")
def mrr():
    return load_metric("mrr")


@pytest.fixture(scope="module")
def type_f1():
    return load_metric("type_f1")


def test_mrr_hand_ranking(mrr):
    # gold ranks by hand: q0 -> 1, q1 -> 4, q2 -> 2, q3 -> 11 (of 12 candidates)
    scores = [
        [0.9, 0.1, 0.2] + [0.0] * 9,
        [0.5, 0.8, 0.4, 0.7] + [0.0] * 8,
        [0.3, 0.2, 0.6, 0.1] + [-1.0] * 8,
        [1.0] * 10 + [0.5, 0.2],
    ]
    gold = [0, 2, 0, 10]
    out = mrr.compute(predictions=scores, references=gold)
    ranks = [1, 4, 2, 11]
    assert out["mrr"] == pytest.approx(np.mean([1 / r for r in ranks]))
    assert out["recall@1"] == pytest.approx(0.25)
    assert out["recall@5"] == pytest.approx(0.75)
    assert out["recall@10"] == pytest.approx(0.75)
    assert out["ndcg@10"] == pytest.approx(np.mean([1.0, 1 / math.log2(5), 1 / math.log2(3), 0.0]))
    assert out["pool_size"] == 12 and out["num_queries"] == 4


def test_mrr_ties_count_against_the_model(mrr):
    out = mrr.compute(predictions=[[0.0] * 5] * 3, references=[0, 2, 4])
    assert out["mrr"] == pytest.approx(1 / 5)
    assert out["recall@1"] == 0.0


def test_mrr_rejects_nan_and_bad_references(mrr):
    with pytest.raises(ValueError, match="NaN"):
        mrr.compute(predictions=[[float("nan"), 0.1]], references=[0])
    with pytest.raises(ValueError, match="index the pool"):
        mrr.compute(predictions=[[0.2, 0.1]], references=[5])


def test_type_f1_by_hand(type_f1):
    # labels: 0 = other (ignored for F1), 1 = int, 2 = str
    pred = [1, 1, 2, 0, 2, 1, 0]
    gold = [1, 2, 2, 1, 0, -100, 0]
    out = type_f1.compute(predictions=pred, references=gold, ignore_labels=[0])
    # kept tokens (gold != -100): pred 1 1 2 0 2 0 / gold 1 2 2 1 0 0
    assert out["num_tokens"] == 6
    assert out["accuracy"] == pytest.approx(3 / 6)
    # typed predictions: 1,1,2,2 (4); typed gold: 1,2,2,1 (4); correct typed: pos 0 (1), pos 2 (2) -> 2
    assert out["micro_precision"] == pytest.approx(2 / 4)
    assert out["micro_recall"] == pytest.approx(2 / 4)
    assert out["micro_f1"] == pytest.approx(0.5)
    # class 1: tp 1, fp 1, fn 1 -> f1 .5; class 2: tp 1, fp 1 (pos 4), fn 1 (pos 1) -> .5
    assert out["macro_f1"] == pytest.approx(0.5)


def test_type_f1_matches_sklearn(type_f1):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, size=300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 6, size=300))
    out = type_f1.compute(predictions=pred.tolist(), references=gold.tolist())
    assert out["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert out["micro_f1"] == pytest.approx(f1_score(gold, pred, average="micro"))
    assert out["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    labels = [1, 2, 3, 4, 5]  # 0 ignored: sklearn's micro F1 restricted to the other labels
    ign = type_f1.compute(predictions=pred.tolist(), references=gold.tolist(), ignore_labels=[0])
    assert ign["micro_f1"] == pytest.approx(f1_score(gold, pred, labels=labels, average="micro"))
    assert ign["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=labels, average="macro"))


def test_retrieval_pool_deduplicates_candidates():
    pool, gold = retrieval_pool(["q1", "q2", "q3", "q4"], ["A", "B", "A", "C"])
    assert pool == ["A", "B", "C"]
    assert gold == [0, 1, 0, 2]


@pytest.mark.parametrize("name", ["mrr", "type_f1"])
def test_metric_folders_load_with_evaluate_offline_and_have_cards(name, monkeypatch):
    """Each metric is an `evaluate` module folder (<name>/<name>.py + README.md metric card) that
    `evaluate.load(folder)` loads without the Hub; the card's worked example holds."""
    import os

    import evaluate
    from huggingface_hub import constants
    from huggingface_hub.repocard import RepoCard

    from mambacode.training.metrics_loader import metric_path

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = metric_path(name)
    assert os.path.isfile(os.path.join(folder, f"{name}.py"))
    card = RepoCard.load(os.path.join(folder, "README.md"))
    assert {"evaluate", "metric"} <= set(card.data.tags) and card.data.description
    for section in ("## Metric Description", "### Inputs", "### Output Values", "## Limitations and Bias"):
        assert section in card.text
    metric = evaluate.load(folder)
    if name == "mrr":
        out = metric.compute(predictions=[[0.9, 0.1, 0.3], [0.2, 0.8, 0.8]], references=[0, 2])
        assert out["mrr"] == pytest.approx(0.75) and out["recall@1"] == pytest.approx(0.5)
        assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    else:
        out = metric.compute(predictions=[1, 2, 0, 1], references=[1, 1, 0, -100], ignore_labels=[0])
        assert out["accuracy"] == pytest.approx(2 / 3) and out["num_tokens"] == 3
        assert out["micro_precision"] == out["micro_recall"] == out["micro_f1"] == pytest.approx(0.5)
