"""Docstring -> function pairs, CodeSearchNet-style, found with tree-sitter.

The query is the first paragraph of the docstring (Python) or JSDoc description (JavaScript/TypeScript);
the code is the function with that docstring removed. Filters drop what CodeSearchNet dropped: dunder
and test functions, tiny bodies, huge functions, short queries. Each drop is returned as a reason so the
builder can count it.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
from dataclasses import dataclass

from tree_sitter import Node

from .parsing import captures, cut, dedent_from, line_span
from .sources import is_utf8_text


@dataclass(frozen=True)
class PairFilters:
    """What a function must satisfy to become a retrieval pair (all configurable from the CLI)."""

    min_query_words: int = 3
    min_body_lines: int = 3
    max_code_lines: int = 256
    max_code_chars: int = 16_000
    skip_dunder: bool = True
    skip_tests: bool = True


@dataclass
class FunctionSite:
    """A function found in a parsed file, with where its docstring is (no text copied yet)."""

    node: Node  # the code span (function, or the `const f = ...` declaration for JS function values)
    name: str
    qualname: str
    body: Node | None
    docstring: str | None  # cleaned docstring text
    doc_span: tuple[int, int] | None  # bytes to delete to remove the docstring (whole lines)
    doc_node_span: tuple[int, int] | None  # the docstring node itself
    doc_only_statement: bool  # Python: the docstring is the whole body (deleting it needs a `...`)
    top: Node | None  # the top-level statement that contains the function


# ----------------------------------------------------------------------------------------------- docstrings
def first_paragraph(docstring: str) -> str:
    """The first paragraph (up to the first blank line), whitespace collapsed."""
    lines = []
    for line in docstring.strip().splitlines():
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line.strip())
    return " ".join(" ".join(lines).split())


def python_string_value(node: Node) -> str | None:
    """Value of a Python string literal node; None for f-strings or byte strings (not docstrings)."""
    text = node.text.decode("utf-8", "replace")
    prefix = text[: len(text) - len(text.lstrip("rRuUbBfF"))].lower()
    if "f" in prefix or "b" in prefix:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if value is None or (isinstance(value, str) and not is_utf8_text(value)):
        # unparseable, or escapes to lone surrogates (no dataset can store them): the text as written
        parts = [c.text.decode("utf-8", "replace") for c in node.children if c.type == "string_content"]
        value = "".join(parts)
    return value if isinstance(value, str) else None


def jsdoc_description(comment: str) -> str | None:
    """Description part of a ``/** ... */`` comment (text before the first ``@tag`` line)."""
    if not comment.startswith("/**") or comment.startswith("/***") or not comment.endswith("*/"):
        return None
    body = comment[3:-2]
    lines = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("*"):
            line = line[1:].strip()
        if line.startswith("@"):
            break
        lines.append(line)
    return "\n".join(lines).strip()


# ----------------------------------------------------------------------------------------------- finding
_PY_QUERY = "(function_definition) @f"
_JS_QUERY = """
[(function_declaration) (generator_function_declaration) (method_definition)
 (variable_declarator name: (identifier) value: [(function_expression) (arrow_function)])] @f
"""
_TOP_TYPES = frozenset({"module", "program"})


def _top_statement(node: Node) -> Node | None:
    top = None
    n = node
    while n is not None and n.type not in _TOP_TYPES:
        top = n
        n = n.parent
    return top


def _qualname(node: Node, name: str, language: str) -> str:
    parts = [name]
    n = node.parent
    scopes = (
        {"class_definition", "function_definition"}
        if language == "python"
        else {"class_declaration", "class", "function_declaration", "method_definition"}
    )
    while n is not None:
        if n.type in scopes:
            nm = n.child_by_field_name("name")
            if nm is not None:
                parts.append(nm.text.decode("utf-8", "replace"))
        n = n.parent
    return ".".join(reversed(parts))


def find_functions(root: Node, source: bytes, language: str) -> list[FunctionSite]:
    """Every function definition (methods and nested functions included), in source order."""
    sites = []
    if language == "python":
        for f in captures("python", _PY_QUERY, root).get("f", []):
            name_node = f.child_by_field_name("name")
            body = f.child_by_field_name("body")
            if name_node is None or body is None:
                continue
            name = name_node.text.decode("utf-8", "replace")
            doc = span = node_span = None
            only = False
            stmts = [c for c in body.named_children if c.type != "comment"]
            if stmts and stmts[0].type == "expression_statement" and stmts[0].named_child_count == 1:
                s = stmts[0].named_children[0]
                if s.type == "string":
                    doc = python_string_value(s)
                    if doc is not None:
                        span = line_span(source, stmts[0].start_byte, stmts[0].end_byte)
                        node_span = (stmts[0].start_byte, stmts[0].end_byte)
                        only = len(stmts) == 1
            sites.append(
                FunctionSite(f, name, _qualname(f, name, language), body, doc, span, node_span, only, _top_statement(f))
            )
        return sites

    for f in captures(language, _JS_QUERY, root).get("f", []):
        name_node = f.child_by_field_name("name")
        if name_node is None:
            continue
        name = name_node.text.decode("utf-8", "replace")
        code_node, stmt = f, f
        if f.type == "variable_declarator":
            body = f.child_by_field_name("value").child_by_field_name("body")
            if f.parent is not None and f.parent.type in ("lexical_declaration", "variable_declaration"):
                code_node = stmt = f.parent
                if len(stmt.named_children) > 1:  # `const a = () => {}, b = ...`: keep only this declarator
                    code_node = f
        else:
            body = f.child_by_field_name("body")
            if body is None:  # overload signatures, abstract methods
                continue
        if stmt.parent is not None and stmt.parent.type == "export_statement":
            stmt = stmt.parent
        doc = span = node_span = None
        prev = stmt.prev_named_sibling
        while prev is not None and prev.type == "decorator":
            prev = prev.prev_named_sibling
        if prev is not None and prev.type == "comment" and stmt.start_point[0] - prev.end_point[0] <= 1:
            doc = jsdoc_description(prev.text.decode("utf-8", "replace"))
            if doc is not None:
                span = line_span(source, prev.start_byte, prev.end_byte)
                node_span = (prev.start_byte, prev.end_byte)
        sites.append(
            FunctionSite(code_node, name, _qualname(f, name, language), body, doc, span, node_span, False, _top_statement(f))
        )
    return sites


# ----------------------------------------------------------------------------------------------- pairs
def comment_spans(root: Node, language: str) -> list[tuple[int, int]]:
    """Byte spans of all comments of a file, sorted (used to normalise code before deduplication)."""
    return [(c.start_byte, c.end_byte) for c in captures(language, "(comment) @c", root).get("c", [])]


def normalised_hash(source: bytes, start: int, end: int, removals: list[tuple[int, int]], comments) -> str:
    """SHA-1 of the code with docstring and comments removed and all whitespace runs collapsed."""
    starts = [c[0] for c in comments]
    i = bisect.bisect_left(starts, start)
    cuts = list(removals)
    while i < len(comments) and comments[i][0] < end:
        cuts.append(comments[i])
        i += 1
    cuts = _disjoint(cuts)
    text = cut(source, start, end, [(s, e, b" ") for s, e in cuts])
    return hashlib.sha1(b" ".join(text.split())).hexdigest()


def _disjoint(spans):
    out = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _body_lines(code: str, header_rows: int, language: str) -> int:
    lines = code.split("\n")[header_rows:]
    count = 0
    for line in lines:
        s = line.strip()
        if not s or s.startswith(("#", "//", "/*", "*")):
            continue
        count += 1
    if language != "python":
        # the `{` of the header line and the closing `}` line are not body
        count -= 1 if lines and lines[0].strip() else 0
        count -= 1 if lines and lines[-1].strip().startswith("}") and len(lines) > 1 else 0
    return count


def is_test_function(name: str) -> bool:
    low = name.lower()
    return low.startswith("test") or low.endswith("_test")


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def make_pair(site: FunctionSite, source: bytes, language: str, filters: PairFilters, comments) -> tuple[dict | None, str]:
    """A ``{func_name, code, query, docstring, ...}`` record, or ``(None, reason)`` when filtered out."""
    if filters.skip_dunder and is_dunder(site.name):
        return None, "dunder"
    if filters.skip_tests and is_test_function(site.name):
        return None, "test_function"
    if site.docstring is None:
        return None, "no_docstring"
    query = first_paragraph(site.docstring)
    if len(query.split()) < filters.min_query_words:
        return None, "short_docstring"
    node = site.node
    removals = []
    if site.doc_span is not None and node.start_byte <= site.doc_span[0] < node.end_byte:
        removals.append((site.doc_span[0], site.doc_span[1], b""))
    raw = cut(source, node.start_byte, node.end_byte, removals)
    code = dedent_from(raw.decode("utf-8"), node.start_point[1]).rstrip()
    if len(code) > filters.max_code_chars or code.count("\n") + 1 > filters.max_code_lines:
        return None, "too_long"
    header_rows = (site.body.start_point[0] - node.start_point[0]) if site.body is not None else 0
    if _body_lines(code, header_rows, language) < filters.min_body_lines:
        return None, "short_body"
    digest = normalised_hash(source, node.start_byte, node.end_byte, [(s, e) for s, e, _ in removals], comments)
    return {
        "func_name": site.qualname,
        "code": code,
        "query": query,
        "docstring": site.docstring.strip(),
        "start_line": node.start_point[0] + 1,
        "hash": digest,
        "is_method": node.type == "method_definition",
    }, ""
