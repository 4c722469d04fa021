"""The probe set: snippets, their code tokens and balanced, seeded token pairs per task, saved to disk.

Pairs are sampled on *code* tokens (tree-sitter leaves), never on model sub-words, so one probe set serves
every model being compared; saving it to JSON makes the comparison reproducible across runs.
Sampling is uniform over all candidate pairs of a class (two passes: count, then draw global positions),
so long snippets do not dominate more than their share of pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .code_graph import DFG_KINDS, CodeGraph, ParseLimitError, ParseLimits, code_graph

TASKS = ("distance", "siblings", "dfg")
DISTANCE_CLASSES = (2, 3, 4, 5, 6)
DEFAULT_PER_CLASS = {"distance": 1300, "siblings": 1500, "dfg": 1500}
TASK_CLASSES = {"distance": [str(d) for d in DISTANCE_CLASSES], "siblings": ["0", "1"],
                "dfg": ["none"] + list(DFG_KINDS)}
# how a pair becomes one feature vector (paper: difference for distance, concatenation otherwise)
PAIR_MODE = {"distance": "diff", "siblings": "concat", "dfg": "concat"}


def _candidates(graph: CodeGraph, task: str) -> list[np.ndarray]:
    """Per class (TASK_CLASSES order), an (m, 2) array of leaf-index pairs, in a deterministic order."""
    n = len(graph)
    if task == "distance":
        D = graph.distance_matrix()
        iu, ju = np.triu_indices(n, 1)
        d = D[iu, ju]
        return [np.stack([iu[d == c], ju[d == c]], 1) for c in DISTANCE_CLASSES]
    if task == "siblings":
        S = graph.sibling_matrix()
        iu, ju = np.triu_indices(n, 1)
        s = S[iu, ju]
        return [np.stack([iu[~s], ju[~s]], 1), np.stack([iu[s], ju[s]], 1)]
    if task == "dfg":
        var = np.asarray(graph.variables, dtype=np.int64)
        edges = {(u, v): k for u, v, k in graph.dfg_edges}
        linked = set(edges) | {(v, u) for u, v in edges}
        out = [[], [], []]
        for a in range(len(var)):
            for b in range(a + 1, len(var)):
                u, v = int(var[a]), int(var[b])
                if (u, v) not in linked:
                    out[0].append((u, v))
        for (u, v), k in sorted(edges.items()):
            out[1 + DFG_KINDS.index(k)].append((u, v))
        return [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in out]
    raise ValueError(f"unknown probing task {task!r}: expected one of {', '.join(TASKS)}")


@dataclass
class TaskPairs:
    """Pairs of one task: snippet index, two leaf indices (feature order), class id, train/test flag."""

    classes: list[str]
    snippet: np.ndarray
    u: np.ndarray
    v: np.ndarray
    label: np.ndarray
    is_test: np.ndarray
    available: dict[str, int] = field(default_factory=dict)  # candidates per class before sampling

    def __len__(self):
        return len(self.label)


@dataclass
class ProbeSet:
    """Snippets + code tokens + sampled pairs per task. `save`/`load` round-trip through JSON."""

    language: str
    codes: list[str]
    spans: list[list[tuple[int, int]]]  # character spans of the code tokens, per snippet
    texts: list[list[str]]
    tasks: dict[str, TaskPairs]
    meta: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.spans)

    def token_offsets(self) -> np.ndarray:
        """Start row of each snippet in a flat (all tokens) feature matrix."""
        return np.concatenate([[0], np.cumsum([len(s) for s in self.spans])]).astype(np.int64)

    def fingerprint(self) -> str:
        """Hash of the snippets and token spans: the feature cache key of this probe set."""
        h = hashlib.sha1()
        h.update(self.language.encode())
        for code, spans in zip(self.codes, self.spans):
            h.update(code.encode("utf-8", errors="replace"))
            h.update(np.asarray(spans, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = {
            "format": "mambacode-probe-set/1",
            "language": self.language,
            "meta": self.meta,
            "snippets": [{"code": c, "spans": [list(s) for s in sp], "tokens": t}
                         for c, sp, t in zip(self.codes, self.spans, self.texts)],
            "tasks": {name: {"classes": tp.classes, "available": tp.available,
                             "pairs": np.stack([tp.snippet, tp.u, tp.v, tp.label, tp.is_test.astype(np.int64)],
                                               1).tolist()}
                      for name, tp in self.tasks.items()},
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path: str) -> "ProbeSet":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != "mambacode-probe-set/1":
            raise ValueError(f"{path}: field 'format' is {data.get('format')!r}, expected 'mambacode-probe-set/1'")
        tasks = {}
        for name, t in data["tasks"].items():
            p = np.asarray(t["pairs"], dtype=np.int64).reshape(-1, 5)
            tasks[name] = TaskPairs(classes=t["classes"], snippet=p[:, 0], u=p[:, 1], v=p[:, 2], label=p[:, 3],
                                    is_test=p[:, 4].astype(bool), available=t.get("available", {}))
        sn = data["snippets"]
        return cls(language=data["language"], codes=[s["code"] for s in sn],
                   spans=[[tuple(x) for x in s["spans"]] for s in sn], texts=[s["tokens"] for s in sn],
                   tasks=tasks, meta=data.get("meta", {}))


def build_probe_set(snippets: Iterable[str], language: str, tasks: Sequence[str] = TASKS,
                    n_per_class: dict[str, int] | int | None = None, seed: int = 0,
                    max_tokens: int = 256, min_tokens: int = 4, test_fraction: float = 0.2,
                    progress: bool = True, limits: ParseLimits | None = None) -> ProbeSet:
    """Parse `snippets`, sample balanced pairs per task and split 80/20 (stratified, seeded).

    Snippets with more than `max_tokens` code tokens are cut to their first `max_tokens` tokens (pairs are
    drawn inside that prefix, which keeps them within a model's context); those with syntax errors keep the
    well-formed part; snippets with fewer than `min_tokens` tokens are skipped, and so are snippets beyond
    the parser's `limits` (`code_graph.ParseLimits`: counted as `n_skipped_too_large`, `..._too_deep`,
    `..._too_complex`, `..._too_slow`); lone surrogates are replaced (`n_surrogates_replaced`). Counts go
    into `meta` (the limit counters only when nonzero).
    A class with fewer candidates than requested is sampled whole and reported in `available`.
    """
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown probing task {t!r}: expected one of {', '.join(TASKS)}")
    if n_per_class is None:
        per_class = {t: DEFAULT_PER_CLASS[t] for t in tasks}
    elif isinstance(n_per_class, int):
        per_class = {t: n_per_class for t in tasks}
    else:
        per_class = {t: int(n_per_class.get(t, DEFAULT_PER_CLASS[t])) for t in tasks}
    rng = np.random.default_rng(seed)
    graphs: list[CodeGraph] = []
    meta = {"seed": seed, "max_tokens": max_tokens, "n_snippets_in": 0, "n_skipped_short": 0,
            "n_with_syntax_errors": 0, "n_error_tokens_dropped": 0, "n_truncated": 0}
    skipped = Counter()  # ParseLimitError reasons, and snippets whose lone surrogates were replaced
    for code in tqdm(snippets, desc=f"parse {language}", disable=not progress, unit="snippet"):
        meta["n_snippets_in"] += 1
        try:
            g = code_graph(code, language, limits=limits)
        except ParseLimitError as exc:
            skipped[f"n_skipped_{exc.reason}"] += 1
            continue
        if g.code is not code:  # lone surrogates were replaced
            skipped["n_surrogates_replaced"] += 1
        if g.has_error:
            meta["n_with_syntax_errors"] += 1
            meta["n_error_tokens_dropped"] += g.n_error_tokens
        if len(g) < min_tokens:
            meta["n_skipped_short"] += 1
            continue
        if len(g) > max_tokens:
            meta["n_truncated"] += 1
            keep = max_tokens
            g = g.truncated(keep)
        graphs.append(g)
    meta.update(sorted(skipped.items()))
    if not graphs:
        raise ValueError(f"no usable {language} snippets: {meta}")
    out_tasks = {}
    for task in tasks:
        classes = TASK_CLASSES[task]
        counts = np.zeros((len(graphs), len(classes)), dtype=np.int64)
        for s, g in enumerate(graphs):
            counts[s] = [len(c) for c in _candidates(g, task)]
        totals = counts.sum(0)
        chosen = []  # per class: sorted global positions
        for c in range(len(classes)):
            k = min(per_class[task], int(totals[c]))
            chosen.append(np.sort(rng.choice(int(totals[c]), size=k, replace=False)) if k else np.zeros(0, int))
        cum = np.vstack([np.zeros((1, len(classes)), dtype=np.int64), np.cumsum(counts, 0)])
        rows = []
        for s, g in enumerate(graphs):
            need = [chosen[c][(chosen[c] >= cum[s, c]) & (chosen[c] < cum[s + 1, c])] - cum[s, c]
                    for c in range(len(classes))]
            if not any(len(n) for n in need):
                continue
            cands = _candidates(g, task)
            for c, pos in enumerate(need):
                for p in pos:
                    u, v = cands[c][p]
                    rows.append((s, int(u), int(v), c))
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        # randomise the order of the two tokens for symmetric labels so "u before v" is not a cue
        if task != "dfg" and len(rows):
            flip = rng.random(len(rows)) < 0.5
            rows[flip, 1], rows[flip, 2] = rows[flip, 2].copy(), rows[flip, 1].copy()
        elif len(rows):  # "none" pairs have no direction either
            flip = (rng.random(len(rows)) < 0.5) & (rows[:, 3] == 0)
            rows[flip, 1], rows[flip, 2] = rows[flip, 2].copy(), rows[flip, 1].copy()
        is_test = np.zeros(len(rows), dtype=bool)
        for c in range(len(classes)):  # stratified split
            idx = np.flatnonzero(rows[:, 3] == c)
            idx = rng.permutation(idx)
            is_test[idx[: int(round(test_fraction * len(idx)))]] = True
        out_tasks[task] = TaskPairs(classes=list(classes), snippet=rows[:, 0], u=rows[:, 1], v=rows[:, 2],
                                    label=rows[:, 3], is_test=is_test,
                                    available={cl: int(t) for cl, t in zip(classes, totals)})
    meta["n_snippets"] = len(graphs)
    return ProbeSet(language=graphs[0].language, codes=[g.code for g in graphs],
                    spans=[[(t.start_char, t.end_char) for t in g.tokens] for g in graphs],
                    texts=[g.token_texts() for g in graphs], tasks=out_tasks, meta=meta)
