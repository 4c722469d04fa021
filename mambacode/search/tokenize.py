"""Words for BM25 over code: identifiers kept whole and split at snake_case / camelCase boundaries.

A query for `parse_config` then matches the function of that exact name best (the whole identifier is a
rare word) and still matches `parseConfig` or "parse the config" through the pieces.
"""

from __future__ import annotations

import re


def _english_stopwords() -> tuple:
    """bm25s' English stop list (the one its own tokenizer uses), read from `bm25s/stopwords.py` without
    importing the `bm25s` package: its `__init__` imports scipy.sparse, 0.25-0.7 s of a cold `mambacode search`
    that needs only this tuple of words."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("bm25s")  # finds the package without running its __init__
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = os.path.join(folders[0], "stopwords.py") if folders else ""
    if os.path.isfile(path):
        words = importlib.util.spec_from_file_location("_mambacode_bm25s_stopwords", path)
        module = importlib.util.module_from_spec(words)
        words.loader.exec_module(module)
        return tuple(module.STOPWORDS_EN)
    from bm25s.stopwords import STOPWORDS_EN  # an unusual installation (zipped, ...): the ordinary import

    return tuple(STOPWORDS_EN)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOP = frozenset(_english_stopwords())


def code_tokens(text: str) -> list[str]:
    """Lower-cased words of `text`: each identifier, then its pieces when it has several (English stopwords
    and one-letter words dropped)."""
    out = []
    for ident in _IDENTIFIER.findall(text):
        whole = ident.strip("_").lower()
        pieces = [p.lower() for p in _PIECE.findall(ident)]
        if len(whole) > 1 and whole not in _STOP:
            out.append(whole)
        if len(pieces) > 1:
            out.extend(p for p in pieces if len(p) > 1 and p not in _STOP)
    return out


__all__ = ["code_tokens"]
