"""Rank the functions of an index for a query: dense (FAISS cosine), BM25 (bm25s), or hybrid (RRF of both,
weighted as the model's config says: `Fusion.of_config`).

`Searcher` holds a loaded index and its model so that repeated queries pay only for the query embedding
and the two look-ups; `search` is the one-shot form the CLI uses.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .fusion import Fusion, reciprocal_rank_fusion
from .index import CodeIndex, SearchIndexError
from .model import embed, fingerprint, load_retrieval_model, same_model
from .tokenize import code_tokens

MODES = ("hybrid", "dense", "bm25")
FUSION_DEPTH = 100  # candidates each ranker contributes to the fusion (at least k)


def check_query(query) -> None:
    """Refuse an empty query before any model is loaded."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("empty query: give some words or code to search for")


@dataclass
class Hit:
    """One ranked function; `dense_rank` / `bm25_rank` are its 1-based ranks in each list (None: not there)."""

    rank: int
    score: float
    path: str
    line: int
    end_line: int
    name: str
    language: str
    snippet: str
    file: str
    dense_rank: int | None = None
    bm25_rank: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """A loaded index and the model that built it (or `model`/`tokenizer` given, checked against it)."""

    def __init__(self, index_dir: str, model_name_or_path: str | None = None, *, model=None, tokenizer=None,
                 device: str | None = None, fusion: Fusion | None = None):
        self.index = CodeIndex.load(index_dir)
        manifest = self.index.manifest
        name = model_name_or_path or manifest["model"]
        if model is None or tokenizer is None:
            try:
                model, tokenizer = load_retrieval_model(name, device)
            except (OSError, ValueError) as exc:
                raise SearchIndexError(f"{index_dir}: cannot load the model it was built with ({exc}); pass "
                                       "--model with that model's folder") from None
        if not same_model(manifest["model_fingerprint"], fingerprint(model, tokenizer, manifest["max_length"])):
            raise SearchIndexError(f"{index_dir}: built with another model ({manifest['model']}, embedding size "
                                   f"{manifest['dim']}); {name} gives different embeddings. Search with that "
                                   "model, or re-index with this one")
        self.model, self.tokenizer = model, tokenizer
        # the fusion chosen on the model's validation split when it was fine-tuned, else equal weights (k = 60)
        self.fusion = fusion if fusion is not None else Fusion.of_config(model.config)

    def dense_ranking(self, query: str, depth: int) -> tuple[list[int], list[float]]:
        vec = embed(self.model, self.tokenizer, [query], self.index.manifest["query_max_length"])
        if not np.any(vec):
            return [], []
        scores, ids = self.index.dense.search(vec, min(depth, self.index.dense.ntotal))
        keep = ids[0] >= 0
        return ids[0][keep].tolist(), scores[0][keep].tolist()

    def bm25_ranking(self, query: str, depth: int) -> tuple[list[int], list[float]]:
        tokens = code_tokens(query)
        if not tokens:
            return [], []
        scores = np.asarray(self.index.bm25.get_scores(tokens))
        depth = min(depth, len(scores))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = sorted((int(i) for i in top if scores[i] > 0), key=lambda i: (-scores[i], i))
        return top, [float(scores[i]) for i in top]

    def search(self, query: str, k: int = 10, mode: str = "hybrid") -> list[Hit]:
        check_query(query)
        if mode not in MODES:
            raise ValueError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
        if k < 1:
            raise ValueError(f"-k {k}: expected a positive number of hits")
        depth = max(k, FUSION_DEPTH) if mode == "hybrid" else k
        dense = self.dense_ranking(query, depth) if mode in ("hybrid", "dense") else ([], [])
        lexical = self.bm25_ranking(query, depth) if mode in ("hybrid", "bm25") else ([], [])
        if mode == "hybrid":
            ranked = reciprocal_rank_fusion([dense[0], lexical[0]], self.fusion.k, [self.fusion.dense_weight, 1.0])[:k]
        else:
            ids, scores = dense if mode == "dense" else lexical
            ranked = list(zip(ids, scores))[:k]
        dense_pos = {d: r for r, d in enumerate(dense[0], start=1)}
        bm25_pos = {d: r for r, d in enumerate(lexical[0], start=1)}
        root = self.index.manifest["source_root"]
        hits = []
        for rank, (doc, score) in enumerate(ranked, start=1):
            row = self.index.rows[doc]
            hits.append(Hit(rank, float(score), row["path"], row["line"], row["end_line"], row["name"],
                            row["language"], row["snippet"], os.path.join(root, *row["path"].split("/")),
                            dense_pos.get(doc), bm25_pos.get(doc)))
        return hits


def search(query: str, index_dir: str, k: int = 10, mode: str = "hybrid", model_name_or_path: str | None = None,
           device: str | None = None) -> list[Hit]:
    """One query against the index folder `index_dir` (the index's own model unless one is named)."""
    check_query(query)
    return Searcher(index_dir, model_name_or_path, device=device).search(query, k, mode)


__all__ = ["FUSION_DEPTH", "Hit", "MODES", "Searcher", "check_query", "search"]
