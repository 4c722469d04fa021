"""What the student is trained on, from a corpus folder (`scripts/build_corpus.py`), and the teacher's targets
joined to it.

Rows are pairs `(query, code)`: the retrieval train split's docstring query and function (code with the
docstring removed), and the long-context train split's query and whole document (a module or class, up to
4,096 code tokens). Every text of a row has a teacher target (`teacher.combine` of its cached windows), so each
row gives the embedding match on both sides and a contrastive pair. Only train splits are read: validation and
test pools never reach the teacher cache or the student.
"""

from __future__ import annotations

import os

import numpy as np

from .teacher import TEACHER_DIM, combine, text_key

SOURCES = ("retrieval", "long_context")


def load_pairs(corpus_dir: str, split: str = "train", sources=SOURCES, max_rows: dict | None = None) -> dict:
    """{source: {"query": [...], "code": [...]}} from `corpus_dir/<source>/<split>`; a missing folder or column is
    an error naming it. `max_rows` caps rows per source (the first rows, for a quick run)."""
    import datasets

    out = {}
    for source in sources:
        path = os.path.join(corpus_dir, source)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"distillation data: {path} does not exist; build the corpus first "
                                    "(mambacode corpus / scripts/build_corpus.py).")
        dd = datasets.load_from_disk(path)
        if split not in dd:
            raise KeyError(f"distillation data: {path} has no split {split!r} (it has {', '.join(dd)})")
        ds = dd[split]
        missing = [c for c in ("query", "code") if c not in ds.column_names]
        if missing:
            raise KeyError(f"distillation data: {path}/{split} lacks the column(s) {', '.join(missing)}")
        if max_rows and max_rows.get(source) is not None:
            ds = ds.select(range(min(max_rows[source], len(ds))))
        out[source] = {"query": list(ds["query"]), "code": list(ds["code"])}
    return out


def pair_texts(pairs: dict) -> list[str]:
    """Every distinct text the teacher must embed for `pairs` (queries and codes, first-seen order)."""
    texts: dict[str, None] = {}
    for rows in pairs.values():
        for q, c in zip(rows["query"], rows["code"]):
            texts.setdefault(q)
            texts.setdefault(c)
    return list(texts)


def targets(texts: list[str], cache: dict, rule: str = "mean") -> np.ndarray:
    """(n, 384) teacher targets of `texts` from a loaded cache (`teacher.load_teacher_cache`) by `rule`; a text
    missing from the cache is an error (run the caching step on the same texts)."""
    out = np.zeros((len(texts), TEACHER_DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        hit = cache.get(text_key(t))
        if hit is None:
            raise KeyError(f"teacher cache: no embedding for text {i} ({t[:60]!r}...): cache the training texts first")
        out[i] = combine(hit[0], hit[1], rule)
    return out
