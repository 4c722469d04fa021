"""Rank the functions of an index for a query: dense (FAISS cosine), BM25 (bm25s), or hybrid (RRF of both,
weighted as the model's config says: `Fusion.of_config`).

`Searcher` holds a loaded index and, once a query needs one, its query encoder, so that repeated queries pay
only for the query embedding and the two look-ups; `search` is the one-shot form. The query encoder is the
index's numpy export (`encoder.NumpyQueryEncoder`: no torch) when the index has one that reproduces the
index's fingerprint, else the model itself, loaded with torch (`note` says why). A `bm25` query loads no model.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .fusion import MODES, Fusion, reciprocal_rank_fusion
from .index import CodeIndex, SearchIndexError
from .model import PROBE_TEXT, embed, fingerprint, load_retrieval_model, model_fusion_config, same_model
from .tokenize import code_tokens

FUSION_DEPTH = 100  # candidates each ranker contributes to the fusion (at least k)


def check_query(query) -> None:
    """Refuse an empty query before any model is loaded."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("empty query: give some words or code to search for")


@dataclass
class Hit:
    """One ranked function; `dense_rank` / `bm25_rank` are its 1-based ranks in each list and `dense_score` /
    `bm25_score` its scores there (None: that list was not computed, or does not hold it within its depth)."""

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
    dense_score: float | None = None
    bm25_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """A loaded index, and the query encoder of the model that built it once a dense query needs it.

    `model_name_or_path` (a folder, shipped name or Hub id) or `model` + `tokenizer` choose the model to embed
    queries with (torch), checked against the index's fingerprint here; without them the index's own numpy query
    encoder is used when it has one, else the model recorded in the index is loaded on the first dense query.
    """

    def __init__(self, index_dir: str, model_name_or_path: str | None = None, *, model=None, tokenizer=None,
                 device: str | None = None, fusion: Fusion | None = None):
        self.index = CodeIndex.load(index_dir)
        self.index_dir = index_dir
        self._name = model_name_or_path
        self._device = device
        self._fusion = fusion
        self._model, self._tokenizer = model, tokenizer
        self._numpy = None
        self.encoder = None  # "numpy" or "torch" once chosen
        self.note: str | None = None  # why queries run through torch, when they do
        if model is not None or tokenizer is not None or model_name_or_path is not None:
            self._use_torch_model()

    # ------------------------------------------------------------------ the query encoder
    @property
    def model(self):
        """The torch model (loaded on first use when queries run in numpy)."""
        if self._model is None:
            self._use_torch_model()
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._use_torch_model()
        return self._tokenizer

    def _use_torch_model(self) -> None:
        manifest = self.index.manifest
        name = self._name or manifest["model"]
        if self._model is None or self._tokenizer is None:
            try:
                self._model, self._tokenizer = load_retrieval_model(name, self._device)
            except (OSError, ValueError) as exc:
                raise SearchIndexError(f"{self.index_dir}: cannot load the model it was built with ({exc}); pass "
                                       "--model with that model's folder") from None
        if not same_model(manifest["model_fingerprint"], fingerprint(self._model, self._tokenizer,
                                                                     manifest["max_length"])):
            raise SearchIndexError(f"{self.index_dir}: built with another model ({manifest['model']}, embedding "
                                   f"size {manifest['dim']}); {name} gives different embeddings. Search with that "
                                   "model, or re-index with this one")
        if self.encoder is None:
            self.encoder = "torch"

    def _choose_encoder(self) -> None:
        """The numpy export when the index has a usable one, else the torch model (with a `note`)."""
        if self.encoder is not None:
            return
        from .encoder import FILE, NumpyQueryEncoder, read_export

        manifest = self.index.manifest
        data = self.index.extra.get(FILE)  # checked against the manifest by CodeIndex.load
        where = os.path.join(self.index_dir, FILE)
        meta, arrays, tokenizer_json = read_export(data, where) if data is not None else (None, None, None)
        if meta is None:
            reason = "the index has no query encoder (built by an older mambacode; re-run `mambacode index`)"
        elif not meta["supported"]:
            reason = f"the model has no numpy query encoder: {meta['reason']}"
        else:
            encoder = NumpyQueryEncoder(meta, arrays, tokenizer_json)
            probe = encoder.encode([PROBE_TEXT], min(manifest["max_length"], encoder.meta["max_length"]))[0]
            if same_model(manifest["model_fingerprint"], [float(x) for x in probe]):
                self._numpy, self.encoder = encoder, "numpy"
                return
            reason = "the index's query encoder does not reproduce its fingerprint (re-run `mambacode index`)"
        self.note = f"dense queries load the model with torch (slow start): {reason}"
        self._use_torch_model()

    @property
    def fusion(self) -> Fusion:
        """The hybrid's fusion: the one given, else the model's (chosen on its validation split when it was
        fine-tuned: `config.hybrid_fusion`, copied into the query encoder at index time), else equal weights."""
        if self._fusion is not None:
            return self._fusion
        self._choose_encoder()
        if self.encoder == "numpy":
            return Fusion.of_config(_FusionEntry(self._numpy.hybrid_fusion))
        return Fusion.of_config(model_fusion_config(self._model))

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        """(n, d) float32 L2-normalised query embeddings, as the index's model embeds them."""
        self._choose_encoder()
        length = self.index.manifest["query_max_length"]
        if self.encoder == "numpy":
            return self._numpy.encode(list(queries), length)
        return embed(self._model, self._tokenizer, list(queries), length)

    # ------------------------------------------------------------------ rankings
    def dense_ranking(self, query: str, depth: int) -> tuple[list[int], list[float]]:
        vec = self.embed_queries([query])
        if not np.any(vec) or not self.index.dense.ntotal:
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

    def search(self, query: str, k: int = 10, mode: str = "hybrid", explain: bool = False) -> list[Hit]:
        """The top `k` functions for `query` by `mode`. Each hit carries its rank and score in every list that
        was computed: both lists in hybrid mode, and with `explain=True` in every mode (each to depth
        max(k, FUSION_DEPTH)), so that a hit shows where each ranker put it."""
        check_query(query)
        if mode not in MODES:
            raise ValueError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
        if k < 1:
            raise ValueError(f"-k {k}: expected a positive number of hits")
        depth = max(k, FUSION_DEPTH)
        want_dense, want_bm25 = mode in ("hybrid", "dense") or explain, mode in ("hybrid", "bm25") or explain
        dense = self.dense_ranking(query, depth if mode == "hybrid" or explain else k) if want_dense else ([], [])
        lexical = self.bm25_ranking(query, depth if mode == "hybrid" or explain else k) if want_bm25 else ([], [])
        if mode == "hybrid":
            fusion = self.fusion
            ranked = reciprocal_rank_fusion([dense[0], lexical[0]], fusion.k, [fusion.dense_weight, 1.0])[:k]
        else:
            ids, scores = dense if mode == "dense" else lexical
            ranked = list(zip(ids, scores))[:k]
        dense_pos = {d: (r, s) for r, (d, s) in enumerate(zip(*dense), start=1)}
        bm25_pos = {d: (r, s) for r, (d, s) in enumerate(zip(*lexical), start=1)}
        root = self.index.manifest["source_root"]
        hits = []
        for rank, (doc, score) in enumerate(ranked, start=1):
            row = self.index.rows[doc]
            d_rank, d_score = dense_pos.get(doc, (None, None))
            b_rank, b_score = bm25_pos.get(doc, (None, None))
            hits.append(Hit(rank, float(score), row["path"], row["line"], row["end_line"], row["name"],
                            row["language"], row["snippet"], os.path.join(root, *row["path"].split("/")),
                            d_rank, b_rank, d_score, b_score))
        return hits


class _FusionEntry:
    """A stand-in config holding only `hybrid_fusion` (the query encoder's copy of the model's)."""

    def __init__(self, entry):
        self.hybrid_fusion = entry


def search(query: str, index_dir: str, k: int = 10, mode: str = "hybrid", model_name_or_path: str | None = None,
           device: str | None = None, explain: bool = False) -> list[Hit]:
    """One query against the index folder `index_dir` (the index's own model unless one is named)."""
    check_query(query)
    return Searcher(index_dir, model_name_or_path, device=device).search(query, k, mode, explain)


__all__ = ["FUSION_DEPTH", "Hit", "MODES", "Searcher", "check_query", "search"]
