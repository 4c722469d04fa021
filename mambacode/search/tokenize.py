"""Words for BM25 over code: identifiers kept whole and split at snake_case / camelCase boundaries.

A query for `parse_config` then matches the function of that exact name best (the whole identifier is a
rare word) and still matches `parseConfig` or "parse the config" through the pieces.
"""

from __future__ import annotations

import re

from bm25s.stopwords import STOPWORDS_EN

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOP = frozenset(STOPWORDS_EN)


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
