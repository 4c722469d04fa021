"""Package-level train/validation/test splits.

Functions of one package share style, helpers and often near-duplicate code, so a package lives in
exactly one split. Packages are shuffled with a fixed seed and dealt, largest deficit first, to the
split furthest below its target share of examples; this keeps split sizes close to the fractions even
when one package (sympy, say) is a large part of the corpus.
"""

from __future__ import annotations

import random

SPLITS = ("train", "validation", "test")


def assign_splits(
    package_sizes: dict[str, int], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 42
) -> dict[str, str]:
    """Map each package to ``train``/``validation``/``test``; deterministic for a given input and seed.

    With three or more packages, validation and test each get at least one package.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions: expected three non-negative numbers summing to 1, got {fractions}")
    packages = sorted(package_sizes)
    random.Random(seed).shuffle(packages)
    total = sum(max(0, package_sizes[p]) for p in packages) or 1
    filled = {s: 0 for s in SPLITS}
    out: dict[str, str] = {}
    queue = list(packages)
    if len(queue) >= 3:  # seed the small splits first so that neither ends up empty
        for split, frac in zip(SPLITS[1:], fractions[1:]):
            fits = [p for p in queue if package_sizes[p] <= frac * total]
            if frac > 0 and fits:
                queue.remove(fits[0])
                out[fits[0]] = split
                filled[split] += package_sizes[fits[0]]
    for p in queue:
        split = max(SPLITS, key=lambda s: (fractions[SPLITS.index(s)] * total - filled[s], -SPLITS.index(s)))
        out[p] = split
        filled[split] += package_sizes[p]
    return out
