"""mambacode.search: semantic + lexical code search over a source tree (the `mambacode index` / `search` verbs).

Functions and methods are cut out of every supported-language file with tree-sitter (the corpus extractor),
embedded with a MambaCode retrieval model into a FAISS inner-product index, indexed for BM25 with `bm25s`,
and described in a metadata table. Queries rank by dense similarity, BM25, or their reciprocal-rank fusion.
"""

from .fusion import RRF_K, Fusion, reciprocal_rank_fusion
from .index import CodeIndex, IndexReport, SearchIndexError, build_index
from .model import load_retrieval_model
from .query import MODES, Hit, Searcher, search
from .sources import SourceFunction, SourceScan, scan_sources
from .tokenize import code_tokens

__all__ = ["CodeIndex", "Fusion", "Hit", "IndexReport", "MODES", "RRF_K", "SearchIndexError", "Searcher", "SourceFunction",
           "SourceScan", "build_index", "code_tokens", "load_retrieval_model", "reciprocal_rank_fusion",
           "scan_sources", "search"]
