"""Linear probe (logistic regression) and control tasks (Hewitt & Liang, 2019) giving selectivity.

A control task keeps the pairs and their features but replaces the labels by a function of the token
*types* only: every token text w gets a random class c(w), and a pair (u, v) gets (c(u) + c(v)) mod K.
A probe that scores well there memorises word identity rather than reading structure; selectivity =
task accuracy - control accuracy (same probe, same split).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


def logistic_probe(X_train, y_train, X_test, y_test, C: float = 1.0, max_iter: int = 500, seed: int = 0) -> dict:
    """Standardise, fit multinomial logistic regression, return train/test accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    Xtr, Xte = scaler.transform(X_train), scaler.transform(X_test)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny probe sets
        clf.fit(Xtr, y_train)
    pred = clf.predict(Xte)
    y_test = np.asarray(y_test)
    per = [float(np.mean(pred[y_test == c] == c)) for c in np.unique(y_test)]
    return {"accuracy": float(np.mean(pred == y_test)), "train_accuracy": float(clf.score(Xtr, y_train)),
            "mean_per_label_accuracy": float(np.mean(per)) if per else float("nan")}


def control_labels(texts_u: Sequence[str], texts_v: Sequence[str], n_classes: int, seed: int = 0) -> np.ndarray:
    """Control-task labels: (c(u) + c(v)) mod K with c a random class per token text (fixed by `seed`)."""
    vocab = sorted(set(texts_u) | set(texts_v))
    rng = np.random.default_rng(seed)
    c = dict(zip(vocab, rng.integers(0, n_classes, len(vocab)).tolist()))
    return np.array([(c[a] + c[b]) % n_classes for a, b in zip(texts_u, texts_v)], dtype=np.int64)


def probe_with_control(X, y, is_test, texts_u, texts_v, n_classes: int, seed: int = 0, **kw) -> dict:
    """Linear probe on the task and on its control task; adds `control_accuracy` and `selectivity`."""
    X, y, is_test = np.asarray(X), np.asarray(y), np.asarray(is_test, dtype=bool)
    res = logistic_probe(X[~is_test], y[~is_test], X[is_test], y[is_test], seed=seed, **kw)
    yc = control_labels(texts_u, texts_v, n_classes, seed=seed)
    ctrl = logistic_probe(X[~is_test], yc[~is_test], X[is_test], yc[is_test], seed=seed, **kw)
    res["control_accuracy"] = ctrl["accuracy"]
    res["selectivity"] = res["accuracy"] - ctrl["accuracy"]
    return res
