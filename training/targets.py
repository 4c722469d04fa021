"""The targets this project set for a CPU-trained study (issue 13), checked against a run: the shipped code-search
variant's dense MRR above BM25 on the AdvTest-style pool and its hybrid above BM25 on the plain pool, type
inference micro-F1 of the best variant at least 0.30, and the pretrained encoders' best-layer DirectProbe
accuracies (AST distance at least 0.45, siblings at least 0.75) on enough held-out pairs that one pair moves an
accuracy by less than 0.5 points. Rendered as the report's "Targets" section, so the README quotes a computed
verdict rather than a hand-written one.

A target over fine-tuning seeds is *met in every seed*, *met by the mean only*, or *not met* (mean below); one
measured once (a pretrained encoder's probe) is *met* or *not met*."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mambacode.tables import markdown_table

from .claims import mean_std_text

RETRIEVAL_VARIANT = "s4d-hf"  # the variant whose AdvTest model ships as `s4d-hf-codesearch`
TYPES_F1_MIN = 0.30
PROBE_MIN = {"distance": 0.45, "siblings": 0.75}  # DirectProbe accuracy, best layer of each pretrained encoder
MAX_POINTS_PER_PAIR = 0.5  # one held-out pair may move an accuracy by less than this (percentage points)
MET, EVERY_SEED, MEAN_ONLY, NOT_MET = "met", "met in every seed", "met by the mean only", "not met"


@dataclass
class TargetCheck:
    """One target: `values` {seed: value} (a single run is seed 0) held against `threshold`: strictly below it
    when `below`, strictly above it when `strict` (a comparison with BM25), else at least it; `percent`: fractions
    shown in %."""

    target: str
    measure: str
    values: dict
    threshold: float
    strict: bool = False
    percent: bool = False
    below: bool = False

    def _clears(self, value: float) -> bool:
        if self.below:
            return value < self.threshold
        return value > self.threshold if self.strict else value >= self.threshold

    def status(self) -> str:
        if not self._clears(statistics.fmean(self.values.values())):
            return NOT_MET
        if len(self.values) == 1:
            return MET
        return EVERY_SEED if all(self._clears(v) for v in self.values.values()) else MEAN_ONLY

    def row(self) -> list[str]:
        scale, digits = (100.0, 2) if self.percent else (1.0, 3)
        vals = [v * scale for v in self.values.values()]
        shown = mean_std_text(self.values, self.percent)
        per_seed = " / ".join(f"{v:.{digits}f}" for v in vals) if len(vals) > 1 else "–"
        required = ("< " if self.below else "> " if self.strict else "≥ ") + f"{self.threshold * scale:.{digits}f}"
        return [self.target, self.measure, required, shown, per_seed, self.status()]

    def to_json(self) -> dict:
        return {"target": self.target, "measure": self.measure, "threshold": self.threshold, "strict": self.strict,
                "below": self.below, "values": {str(s): v for s, v in self.values.items()}, "status": self.status()}


def _values(per_seed: dict, metric) -> dict:
    return {s: v for s, v in ((s, metric(r)) for s, r in per_seed.items()) if v is not None}


def shared_bm25(values) -> float | None:
    """BM25's one MRR on a pool from every run's value: BM25 needs no model, so every run (seed, variant) of a
    pool ranks it alike. None if every value is missing, or if the runs disagree (they were tested on
    different pools, e.g. other sample limits), rather than one of them shown."""
    found = set(values) - {None}
    return found.pop() if len(found) == 1 else None


def retrieval_targets(runs: dict, variant: str = RETRIEVAL_VARIANT) -> list[TargetCheck]:
    """The two retrieval targets from `runs` {(task, name): {seed: RetrievalResult}} of the AdvTest task."""
    per_seed, checks = runs.get(("advtest", variant), {}), []
    for target, test_set, ranker, pool in (
            ("dense above BM25 on the AdvTest-style pool", "retrieval_adv", "dense", "AdvTest-style"),
            ("hybrid above BM25 on the plain pool", "test", "hybrid", "plain")):
        values = _values(per_seed, lambda r, t=test_set, k=ranker: r.mrr(t, k))
        bm25 = shared_bm25(r.mrr(test_set, "bm25") for r in per_seed.values())
        if values and bm25 is not None:
            checks.append(TargetCheck(f"{variant}: {target}", f"{ranker} MRR (%), {pool} test pool; BM25 "
                                      f"{bm25 * 100:.2f}", values, bm25, strict=True, percent=True))
    return checks


def types_target(runs: dict) -> list[TargetCheck]:
    """Micro-F1 over real types of the variant with the best mean over seeds (every type-inference run)."""
    candidates = {name: _values(per_seed, lambda r: r.test_metrics.get("micro_f1"))
                  for (task, name), per_seed in runs.items() if task == "types"}
    candidates = {n: v for n, v in candidates.items() if v}
    if not candidates:
        return []
    best = max(sorted(candidates), key=lambda n: statistics.fmean(candidates[n].values()))
    return [TargetCheck(f"type inference, best variant ({best})", "micro-F1 over real types (%)",
                        candidates[best], TYPES_F1_MIN, percent=True)]


def probe_targets(runs: dict, test_pairs: dict, probe: str = "directprobe") -> list[TargetCheck]:
    """Per pretrained encoder and probe task of `PROBE_MIN`, its best layer's accuracy (any layer, embeddings
    included), from probe runs {(stage, name): {seed: {task: {layer: {probe: accuracy}}}}}; then one check that
    every task's held-out pairs make one pair worth less than `MAX_POINTS_PER_PAIR` points."""
    checks = []
    for (stage, name), per_seed in runs.items():
        if stage != "pretrained":
            continue
        for task, minimum in PROBE_MIN.items():
            layers = {layer: per_probe[probe] for seed, per_task in per_seed.items()
                      for layer, per_probe in per_task.get(task, {}).items() if per_probe.get(probe) is not None}
            if layers:
                best = max(sorted(layers, key=int), key=lambda layer: layers[layer])
                checks.append(TargetCheck(f"{name} pretrained: {task} probe", f"{probe} accuracy, best layer "
                                          f"(L{best} of 0..{max(map(int, layers))})", {0: layers[best]}, minimum))
    counted = {task: n for task, n in test_pairs.items() if n}
    if counted:
        task, fewest = min(counted.items(), key=lambda kv: kv[1])
        checks.append(TargetCheck("held-out probe pairs", f"points one pair moves an accuracy (100 / pairs; fewest: "
                                  f"{task}, {fewest:,})", {0: 100 / fewest}, MAX_POINTS_PER_PAIR, below=True))
    return checks


def targets_table(checks: list[TargetCheck]) -> str:
    if not checks:
        return "No target can be checked with the stages this run has."
    return markdown_table(["target", "measure", "required", "value (mean ± std over seeds)", "per seed", "status"],
                          [c.row() for c in checks])


__all__ = ["RETRIEVAL_VARIANT", "TYPES_F1_MIN", "PROBE_MIN", "MAX_POINTS_PER_PAIR", "MET", "EVERY_SEED", "MEAN_ONLY",
           "NOT_MET", "TargetCheck", "retrieval_targets", "types_target", "probe_targets", "targets_table"]
