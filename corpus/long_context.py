"""Long-context retrieval documents: whole modules or classes, queried by their functions' docstrings.

A module becomes one document when it fits the token budget; otherwise each top-level class that fits
does. Every function docstring inside a document is deleted from it (a query must not be found verbatim),
and a body left empty gets ``...`` so the document still parses. Budgets count code tokens as tree-sitter
sees them (a string literal is one token; comments are not counted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tree_sitter import Node

from .pairs import FunctionSite, first_paragraph, is_test_function
from .parsing import count_tokens, cut

_CLASS_TYPES = frozenset({"class_definition", "class_declaration", "abstract_class_declaration"})


@dataclass(frozen=True)
class LongContextConfig:
    """Size limits of long-context documents (in code tokens)."""

    max_tokens: int = 4096
    min_tokens: int = 256
    min_queries: int = 1
    min_query_words: int = 3


def _class_node(top: Node) -> Node | None:
    """The class a top-level statement defines (through decorators and ``export``), if any."""
    n = top
    if n.type in ("decorated_definition", "export_statement"):
        n = n.child_by_field_name("definition") or n.child_by_field_name("declaration") or n
    return n if n.type in _CLASS_TYPES else None


def _removals(sites: list[FunctionSite], start: int, end: int) -> list[tuple[int, int, bytes]]:
    out = []
    for s in sites:
        if s.doc_span is None or not (start <= s.doc_node_span[0] and s.doc_node_span[1] <= end):
            continue
        if s.doc_only_statement:  # keep the body non-empty: the docstring becomes `...`
            out.append((s.doc_node_span[0], s.doc_node_span[1], b"..."))
        else:
            out.append((s.doc_span[0], s.doc_span[1], b""))
    return out


def _queries(sites: list[FunctionSite], start: int, end: int, min_words: int) -> list[tuple[str, str]]:
    out = []
    for s in sites:
        if s.docstring is None or not (start <= s.node.start_byte and s.node.end_byte <= end):
            continue
        if is_test_function(s.name):
            continue
        q = first_paragraph(s.docstring)
        if len(q.split()) >= min_words:
            out.append((s.qualname, q))
    return out


def documents(root: Node, source: bytes, sites: list[FunctionSite], config: LongContextConfig):
    """``(documents, skipped)`` for one parsed file.

    Each document is ``{"name", "kind", "code", "num_tokens", "queries": [(func_name, query), ...],
    "hash"}``; ``skipped`` counts candidates that were too long, too short or had no query.
    """
    skipped: dict[str, int] = {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    candidates: list[tuple[str, str, Node]] = [("module", "", root)]
    docs = []
    for kind, name, node in candidates:
        start, end = (0, len(source)) if kind == "module" else (node.start_byte, node.end_byte)
        queries = _queries(sites, start, end, config.min_query_words)
        if len(queries) < config.min_queries:
            skip(f"{kind}_no_query")
            continue
        removals = _removals(sites, start, end)
        # docstrings are single tokens; deleting them shortens the document by that many tokens
        removed_strings = sum(1 for r in removals if r[2] == b"" and source[r[0]:r[1]].strip()[:1] in b"\"'rRuU")
        tokens = count_tokens(node, limit=config.max_tokens + removed_strings) - removed_strings
        if tokens > config.max_tokens:
            skip(f"{kind}_too_long")
            if kind == "module":  # fall back to the classes of the module
                for top in root.named_children:
                    cls = _class_node(top)
                    if cls is not None:
                        nm = cls.child_by_field_name("name")
                        candidates.append(("class", nm.text.decode("utf-8", "replace") if nm else "", top))
            continue
        if tokens < config.min_tokens:
            skip(f"{kind}_too_short")
            continue
        text = cut(source, start, end, removals).decode("utf-8")
        digest = hashlib.sha1(b" ".join(text.encode("utf-8").split())).hexdigest()
        docs.append({"name": name, "kind": kind, "code": text, "num_tokens": tokens, "queries": queries, "hash": digest})
    return docs, skipped


# ----------------------------------------------------------------------------------------------- training windows
def function_window(document: str, func_name: str) -> str | None:
    """The part of a long-context document a training pair should read: the document's first line (the class
    or module header) and then everything from the line that defines the queried function (`func_name`'s last
    dotted part; the first such `def`), or None when no such line is found. A model truncating the document
    to its first tokens would otherwise, for most pairs, never see the function its query describes."""
    import re

    name = (func_name or "").split(".")[-1]
    if not name:
        return None
    match = re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}\b", document, flags=re.MULTILINE)
    if match is None:
        return None
    header, _, _ = document.partition("\n")
    if match.start() == 0:
        return document
    return header + "\n" + document[match.start():]


def crop_to_functions(dataset, code_column: str = "code", name_column: str = "func_name") -> tuple:
    """(dataset, counts): each row's document replaced by its `function_window`, rows whose function is not
    found kept whole; counts: {"rows", "cropped", "kept"}."""
    for column in (code_column, name_column):
        if column not in dataset.column_names:
            raise ValueError(f"crop_to_functions: no column {column!r} (columns: {dataset.column_names}); the "
                             "long-context corpus has 'code' and 'func_name'")
    codes = []
    counts = {"rows": len(dataset), "cropped": 0, "kept": 0}
    for code, name in zip(dataset[code_column], dataset[name_column]):
        window = function_window(code, name)
        counts["cropped" if window is not None else "kept"] += 1
        codes.append(code if window is None else window)
    from .obfuscate import replace_column

    return replace_column(dataset, code_column, codes), counts
