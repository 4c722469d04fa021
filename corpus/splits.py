"""Package-level train/validation/test splits, shared by every task.

Functions of one package share style, helpers and often near-duplicate code, so a package lives in
exactly one split, and in the same split for every task (pretraining on train code never sees a test
package). Packages are dealt largest first (sizes bucketed by powers of two, the order inside a bucket
shuffled with a fixed seed); each goes to the split that is furthest below its target share, measured
per task and weighted by what the package brings to each task. This keeps every task's splits close to
the fractions even when a few packages dominate one task (sympy for retrieval, rich for types);
packages larger than half of a small split's target go to train, so that validation and test are
made of many packages rather than one or two.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

SPLITS = ("train", "validation", "test")
Sizes = int | Sequence[int]


def assign_splits(
    package_sizes: Mapping[str, Sizes], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 42
) -> dict[str, str]:
    """Map each package to ``train``/``validation``/``test``; deterministic for a given input and seed.

    ``package_sizes`` maps a package to its number of examples, or to a tuple with one count per task.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions: expected three non-negative numbers summing to 1, got {fractions}")
    sizes = {p: (tuple(max(0, int(x)) for x in v) if isinstance(v, (tuple, list)) else (max(0, int(v)),))
             for p, v in package_sizes.items()}
    if len({len(v) for v in sizes.values()}) > 1:
        raise ValueError("package_sizes: every package needs the same number of per-task counts")
    packages = sorted(sizes)
    if not packages:
        return {}
    ntasks = len(sizes[packages[0]])
    totals = [sum(sizes[p][t] for p in packages) or 1 for t in range(ntasks)]
    share = {p: [sizes[p][t] / totals[t] for t in range(ntasks)] for p in packages}
    rng = random.Random(seed)
    jitter = {p: rng.random() for p in packages}
    # largest first: bucket by the package's biggest share of any task (powers of two)
    order = sorted(packages, key=lambda p: (-math.floor(math.log2(max(max(share[p]), 1e-9))), jitter[p]))
    filled = {s: [0.0] * ntasks for s in SPLITS}
    out: dict[str, str] = {}
    open_splits = [s for s, f in zip(SPLITS, fractions) if f > 0]
    target = dict(zip(SPLITS, fractions))

    def need(s: str, p: str) -> float:
        # how far split s is below its target, per task, weighted by what p brings to that task
        weight = share[p] if sum(share[p]) > 0 else [1.0 / ntasks] * ntasks
        return sum(w * (target[s] - filled[s][t]) / target[s] for t, w in enumerate(weight))

    for p in order:
        # a package bigger than half a small split's target would make that split one package: train it
        # (only with enough packages to go round: tiny corpora still get every split)
        fits = open_splits
        if len(packages) >= 20:
            fits = [s for s in open_splits if s == "train" or max(share[p]) <= 0.5 * target[s]]
        split = max(fits, key=lambda s: (need(s, p), -SPLITS.index(s)))
        out[p] = split
        for t in range(ntasks):
            filled[split][t] += share[p][t]
    return out
