"""Type-inference metrics over labelled tokens: accuracy, micro F1 and macro F1.

Inputs are flat lists of predicted and gold label ids, one per labelled token (`-100` entries, the
positions a collator leaves unlabelled, are dropped). `ignore_labels` (e.g. the id of the rare-type
bucket `other`) are treated as "no type": a prediction of them is no prediction and a gold of them is
no gold, so micro precision = correct typed predictions / typed predictions and micro recall = correct
typed predictions / typed gold tokens, as in NER-style evaluation. Without `ignore_labels` micro F1
equals accuracy. Macro F1 averages the per-class F1 over every class that occurs in the gold or the
predictions (minus `ignore_labels`).
"""

import datasets
import evaluate
import numpy as np

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of int label ids (one per token).
    references: list of int label ids; -100 entries are skipped.
    ignore_labels: label ids that mean "no type" for F1 (accuracy still counts them).
Returns:
    accuracy, micro_precision, micro_recall, micro_f1, macro_f1, num_tokens.
"""


def _f1(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


class TypeF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION,
                                   inputs_description=_KWARGS_DESCRIPTION,
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, ignore_labels=()):
        pred = np.asarray(predictions, dtype=np.int64)
        gold = np.asarray(references, dtype=np.int64)
        keep = gold != -100
        pred, gold = pred[keep], gold[keep]
        ignore = np.asarray(sorted(set(int(i) for i in ignore_labels)), dtype=np.int64)
        n = len(gold)
        accuracy = float((pred == gold).mean()) if n else 0.0
        typed_pred = ~np.isin(pred, ignore)
        typed_gold = ~np.isin(gold, ignore)
        correct = (pred == gold) & typed_gold
        p = correct.sum() / typed_pred.sum() if typed_pred.sum() else 0.0
        r = correct.sum() / typed_gold.sum() if typed_gold.sum() else 0.0
        classes = sorted(set(np.unique(np.concatenate([pred, gold])).tolist()) - set(ignore.tolist()))
        per_class = []
        for c in classes:
            tp = int(((pred == c) & (gold == c)).sum())
            fp = int(((pred == c) & (gold != c)).sum())
            fn = int(((pred != c) & (gold == c)).sum())
            per_class.append(_f1(tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0))
        return {
            "accuracy": accuracy,
            "micro_precision": float(p),
            "micro_recall": float(r),
            "micro_f1": float(_f1(float(p), float(r))),
            "macro_f1": float(np.mean(per_class)) if per_class else 0.0,
            "num_tokens": int(n),
        }
