"""Read and score a saved `bm25s` index with numpy alone, for `mambacode search`.

`bm25s` builds the index (`build_index`) and saves it as plain files: `params.index.json`, `vocab.index.json`
(word -> id) and the word x document score matrix in CSC form (`data`, `indices`, `indptr` `.npy` files;
the BM25 score of every word in every document, precomputed). A query's score for a document is the sum of
its words' entries, as `bm25s.BM25.get_scores` computes it (words missing from the vocabulary are left out,
a repeated word counts each time; BM25L / BM25+ add the stored non-occurrence scores). Importing `bm25s`
imports `scipy.sparse` (0.25-0.7 s of a cold `mambacode search` on two busy cores), which scoring never uses.
"""

from __future__ import annotations

import json
import os

import numpy as np

NONOCCURRENCE_METHODS = ("bm25l", "bm25+")


class LexicalIndex:
    """A saved `bm25s` index: `get_scores(words)` -> (documents,) scores, equal to `bm25s.BM25.get_scores`."""

    def __init__(self, params: dict, vocab: dict, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 nonoccurrence: np.ndarray | None = None):
        self.params, self.vocab = params, vocab
        self.data, self.indices, self.indptr = data, indices, indptr
        self.num_docs = int(params["num_docs"])
        self.dtype = np.dtype(params.get("dtype", "float32"))
        self.nonoccurrence = nonoccurrence

    @classmethod
    def load(cls, folder: str) -> "LexicalIndex":
        with open(os.path.join(folder, "params.index.json"), encoding="utf-8") as fh:
            params = json.load(fh)
        with open(os.path.join(folder, "vocab.index.json"), encoding="utf-8") as fh:
            vocab = json.load(fh)
        arrays = [np.load(os.path.join(folder, f"{name}.csc.index.npy"), allow_pickle=False)
                  for name in ("data", "indices", "indptr")]
        nonoccurrence = None
        if params.get("method") in NONOCCURRENCE_METHODS:
            nonoccurrence = np.load(os.path.join(folder, "nonoccurrence_array.index.npy"), allow_pickle=False)
        return cls(params, vocab, *arrays, nonoccurrence=nonoccurrence)

    def get_scores(self, words: list[str]) -> np.ndarray:
        columns = len(self.indptr) - 1  # bm25s' vocabulary may hold an empty word beyond them (never a code word)
        ids = [i for i in (self.vocab[w] for w in words if w in self.vocab) if i < columns]
        scores = np.zeros(self.num_docs, dtype=self.dtype)
        for i in ids:
            start, end = self.indptr[i], self.indptr[i + 1]
            np.add.at(scores, self.indices[start:end], self.data[start:end])
        if self.nonoccurrence is not None and ids:
            scores += self.nonoccurrence[np.asarray(ids)].sum()
        return scores


__all__ = ["LexicalIndex"]
