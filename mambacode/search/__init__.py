"""mambacode.search: semantic + lexical code search over a source tree (the `mambacode index` / `search` verbs).

Functions and methods are cut out of every supported-language file with tree-sitter (the corpus extractor),
embedded with a MambaCode retrieval model (or any sentence-transformers model) into a FAISS inner-product
index, indexed for BM25 with `bm25s`, and described in a metadata table. Queries rank by dense similarity,
BM25, or their reciprocal-rank fusion. The names below load their module on first use (PEP 562), so that
`mambacode search` imports only what its mode needs (no torch for an index with an exported query encoder).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "RRF_K": "fusion", "Fusion": "fusion", "reciprocal_rank_fusion": "fusion",
    "CodeIndex": "index", "IndexReport": "index", "SearchIndexError": "index", "build_index": "index",
    "load_retrieval_model": "model",
    "MODES": "query", "Hit": "query", "Searcher": "query", "search": "query",
    "SourceFunction": "sources", "SourceScan": "sources", "scan_sources": "sources",
    "code_tokens": "tokenize",
    "NumpyQueryEncoder": "encoder",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'mambacode.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
