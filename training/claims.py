"""The paper's claims (PAPER.md sections 1, 3 and 5) held against our runs: for each comparison the preset can
test, the difference of the two sides' means and whether it exceeds the seed spread, stays within it, or
exceeds it the other way. Rendered by the reproduction report; the rule is `SPREAD_RULE`.

Each claim is written "A > B", A being the side the paper (or, for the regulariser, this project's
hypothesis) puts higher; the values are {seed: value}, one entry for a run that has no seeds (pretraining)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mambacode.tables import markdown_table

SPREAD_RULE = ("A difference **exceeds the seed spread** when |mean(A) − mean(B)| is larger than the larger of the "
               "two sides' sample standard deviations over seeds (n − 1 in the denominator; a side with one run, "
               "such as a pretrained model, counts 0). This is a screen for differences larger than seed noise, "
               "not a significance test: with three seeds per side a flagged difference is at least 1.22 Welch "
               "standard errors, short of significance at 5%. Where neither side has more than one run there is no spread to compare "
               "with, and the verdict says so.")
PAPER_DIRECTION, WITHIN, OTHER_DIRECTION = ("exceeds the spread, paper's direction", "within the spread",
                                            "exceeds the spread, other direction")
NO_SPREAD = "one run: no spread"

# the paper's numbers (PAPER.md), quoted beside each claim
TASK_MEASURES = {"advtest": ("AdvTest-style MRR (%)", "NL code search MRR: baseline 25.39, best fix 30.89"),
                 "longctx": ("long-context MRR (%)", "QA retrieval MRR: baseline 76.08, best fix 79.57"),
                 "types": ("type-inference F1 (%)", "type F1: baseline 59.70, best fix 60.98")}
# DirectProbe accuracy at layers 3 / 6 / 11: CodeSSM, RoCoder, CodeSSM after type-inference / QA-retrieval FT
PAPER_PROBES = {"distance": (".588/.618/.622", ".555/.593/–", ".548/.545/.532", ".585/.587/.587"),
                "siblings": (".817/.837/.830", ".755/.797/.688", ".755/.775/.725", ".817/.823/.808"),
                "dfg": (".799/.802/.817", ".772/.804/.790", ".756/.760/.744", ".777/.779/.796")}


def verdict(a, b) -> tuple[str, float, float | None]:
    """(verdict, mean(a) - mean(b), spread) of two non-empty value lists under `SPREAD_RULE`; spread is None
    when neither side has two runs."""
    a, b = list(a), list(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 and len(b) < 2:
        side = "paper's direction" if diff > 0 else ("other direction" if diff < 0 else "no difference")
        return f"{NO_SPREAD} ({side})", diff, None
    spread = max(statistics.stdev(x) if len(x) > 1 else 0.0 for x in (a, b))
    if abs(diff) <= spread:
        return WITHIN, diff, spread
    return (PAPER_DIRECTION if diff > 0 else OTHER_DIRECTION), diff, spread


@dataclass
class Claim:
    """One comparison "A > B" of the paper: `a` / `b` map seed -> value; `percent`: values are fractions shown
    in % (task metrics), else accuracies shown as they are (probes)."""

    claim: str
    measure: str
    paper: str
    a: dict
    b: dict
    percent: bool = False

    def judged(self) -> tuple[str, float, float | None]:
        return verdict(self.a.values(), self.b.values())

    def to_json(self) -> dict:
        found, diff, spread = self.judged()

        def side(values):
            vals = list(values.values())
            return {"seeds": {str(s): v for s, v in values.items()}, "mean": statistics.fmean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else None}

        return {"claim": self.claim, "measure": self.measure, "paper": self.paper, "a": side(self.a),
                "b": side(self.b), "difference": diff, "spread": spread, "verdict": found}


def _present(values: dict) -> dict:
    return {s: v for s, v in values.items() if v is not None}


def task_claims(runs: dict, metrics: dict) -> list[Claim]:
    """Downstream claims from fine-tuning runs {(task, name): {seed: result}}, `metrics` {task: result -> number}:
    each fix above the baseline SSM, the SSM above RoCoder, and each variant with the regulariser above the
    same variant without it, on every task where both sides ran."""
    def values(task, name):
        return _present({s: metrics[task](r) for s, r in runs.get((task, name), {}).items()})

    claims = []
    for task in metrics:
        measure, paper = TASK_MEASURES[task]
        pairs = [("s4d-hf", "s4d", paper), ("s4d-8k", "s4d", paper),
                 ("s4d", "rocoder", "§1: the SSM learns code better than RoCoder trained alike (no number)")]
        pairs += [(name, name[:-len("+anchor")], "not in the paper: this project's regulariser (§5), hoped >")
                  for t, name in sorted(runs) if t == task and name.endswith("+anchor")]
        for a, b, source in pairs:
            va, vb = values(task, a), values(task, b)
            if va and vb:
                claims.append(Claim(f"{a} > {b}", measure, source, va, vb, percent=True))
    return claims


def layer_mean(per_task: dict, task: str, probe: str) -> float | None:
    """Mean `probe` accuracy of one model on one probe task over layers 1..L (layer 0, the embeddings, left out)."""
    vals = [per_probe[probe] for layer, per_probe in per_task.get(task, {}).items()
            if int(layer) >= 1 and per_probe.get(probe) is not None]
    return statistics.fmean(vals) if vals else None


def probe_claims(runs: dict, probe: str = "directprobe") -> list[Claim]:
    """Probing claims from probe runs {(stage, name): {seed: {task: {layer: {probe: accuracy}}}}} (stage
    'pretrained' or the fine-tuning task): the SSM above RoCoder after pretraining, the SSM's forgetting in
    type-inference fine-tuning, less of it after QA retrieval, with the high-frequency path, and with the
    regulariser."""
    tasks = list(dict.fromkeys(t for per_seed in runs.values() for per_task in per_seed.values() for t in per_task))

    def values(stage, name, task):
        return _present({s: layer_mean(pt, task, probe) for s, pt in runs.get((stage, name), {}).items()})

    def drop(name, task):
        pre = values("pretrained", name, task)
        return {s: pre[0] - v for s, v in values("types", name, task).items()} if 0 in pre else {}

    claims = []
    for task in tasks:
        ssm, rocoder, after_types, after_qa = PAPER_PROBES.get(task, ("?",) * 4)
        measure = f"{task}: {probe} accuracy, mean of layers 1..L"
        candidates = [
            ("s4d > rocoder, pretrained", f"CodeSSM {ssm} > RoCoder {rocoder} (L3/6/11)",
             values("pretrained", "s4d", task), values("pretrained", "rocoder", task)),
            ("forgetting: s4d pretrained > s4d after types FT", f"{ssm} -> {after_types}",
             values("pretrained", "s4d", task), values("types", "s4d", task)),
            ("s4d after longctx FT > s4d after types FT", f"QA FT {after_qa} > types FT {after_types}",
             values("longctx", "s4d", task), values("types", "s4d", task)),
            ("types-FT accuracy drop: s4d > s4d-hf", "§5: the HF path spares the SSM kernels (no number)",
             drop("s4d", task), drop("s4d-hf", task))]
        candidates += [(f"after types FT: {name} > {name[:-len('+anchor')]}",
                        "not in the paper: this project's regulariser (§5), hoped >",
                        values("types", name, task), values("types", name[:-len("+anchor")], task))
                       for stage, name in sorted(runs) if stage == "types" and name.endswith("+anchor")]
        claims += [Claim(text, measure, paper, a, b) for text, paper, a, b in candidates if a and b]
    return claims


def mean_std_text(values: dict, percent: bool) -> str:
    """{seed: value} as 'mean ± sample std' ('mean' for one value): fractions in % with 2 decimals, else 3."""
    vals = [v * (100.0 if percent else 1.0) for v in values.values()]
    digits = 2 if percent else 3
    text = f"{statistics.fmean(vals):.{digits}f}"
    return text + (f" ± {statistics.stdev(vals):.{digits}f}" if len(vals) > 1 else "")


def claims_table(claims: list[Claim]) -> str:
    """One row per claim: both sides as mean ± std, their difference, the spread and the verdict."""
    if not claims:
        return "No claim can be tested with the stages this run has."
    body = []
    for c in claims:
        found, diff, spread = c.judged()
        scale, digits = (100.0, 2) if c.percent else (1.0, 3)
        body.append([c.claim, c.measure, c.paper, mean_std_text(c.a, c.percent), mean_std_text(c.b, c.percent),
                     f"{diff * scale:+.{digits}f}", "–" if spread is None else f"{spread * scale:.{digits}f}", found])
    return markdown_table(["claim (paper's direction: A > B)", "measure", "paper", "A", "B", "A − B", "spread",
                           "verdict"], body)


__all__ = ["SPREAD_RULE", "PAPER_DIRECTION", "WITHIN", "OTHER_DIRECTION", "NO_SPREAD", "verdict", "Claim",
           "task_claims", "probe_claims", "layer_mean", "mean_std_text", "claims_table"]
