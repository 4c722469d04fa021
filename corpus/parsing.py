"""tree-sitter parsers and the small tree helpers the corpus builders share.

Every piece of source the corpus looks at is parsed with tree-sitter (never with regular expressions), so
the same code handles Python, JavaScript and TypeScript and tolerates files newer than the running
interpreter.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

from tree_sitter import Node, Query, QueryCursor

from ..languages import LANGUAGES as _TABLE
from ..languages import get_language, get_parser, parse_within
from ..languages import grammar_key  # noqa: F401  (build.py and extract.py import it from here)
from ..languages import language_of as _language_of

#: the languages the corpus mines (their extensions, grammars and dialects come from `mambacode.languages`)
LANGUAGES = ("python", "javascript", "typescript")


def language_of(path: str) -> str | None:
    """Corpus language of a file name, or None (other languages, declaration files ``*.d.ts``)."""
    return _language_of(path, LANGUAGES)


@lru_cache(maxsize=None)
def get_query(language: str, source: str) -> Query:
    return Query(get_language(language), source)


#: CPU seconds tree-sitter may spend on one file before it is skipped as ``parse_timeout`` (real files take
#: milliseconds; some broken inputs make a grammar take exponential time). CPU time, not wall time, so a
#: loaded machine skips the same files as an idle one (``mambacode.languages.TimeBudget``).
PARSE_SECONDS = 10.0


def parse(source: bytes, language: str, seconds: float = PARSE_SECONDS):
    """Parse bytes with a grammar key (a language or a dialect such as ``tsx``, see :func:`grammar_key`);
    raises ``TimeoutError`` after ``seconds`` of CPU time."""
    return parse_within(language, source, seconds)


def captures(language: str, query: str, node: Node) -> dict[str, list[Node]]:
    """Run a tree-sitter query (in C) and return captures sorted by position."""
    found = QueryCursor(get_query(language, query)).captures(node)
    return {k: sorted(v, key=lambda n: (n.start_byte, -n.end_byte)) for k, v in found.items()}


def parses_cleanly(code: str, language: str, wrap_method: bool = False) -> bool:
    """True when ``code`` parses with no ERROR or MISSING node (obfuscated code must pass this)."""
    text = code
    if wrap_method:  # a bare JS/TS method is only valid inside a class body
        text = "class __W__ {\n" + code + "\n}"
    tree = get_parser(language).parse(text.encode("utf-8"))
    return not tree.root_node.has_error


# Node types that count as one word / token although tree-sitter gives them children, and comments: those of
# the corpus languages (their node type names do not collide across these grammars).
ATOMIC_TYPES = frozenset().union(*(_TABLE[lang].literal_types for lang in LANGUAGES))
COMMENT_TYPES = frozenset().union(*(_TABLE[lang].comment_types for lang in LANGUAGES))


def iter_leaves(node: Node, skip: set | None = None) -> Iterator[Node]:
    """Code tokens of a subtree in source order: leaves, strings as one token, comments left out.

    ``skip`` holds ``(start_byte, end_byte, type)`` keys of subtrees to leave out (e.g. annotations).
    """
    stack = [node]
    while stack:
        n = stack.pop()
        t = n.type
        if t in COMMENT_TYPES:
            continue
        if skip and (n.start_byte, n.end_byte, t) in skip:
            continue
        if n.child_count == 0 or t in ATOMIC_TYPES:
            if n.end_byte > n.start_byte:
                yield n
            continue
        stack.extend(reversed(n.children))


def count_tokens(node: Node, limit: int | None = None) -> int:
    """Number of code tokens in a subtree (as :func:`iter_leaves`), stopping early past ``limit``.

    Walks with a tree cursor, which is several times faster than recursing over ``Node.children``.
    """
    cursor = node.walk()
    count = 0
    depth = 0
    while True:
        kind = cursor.node.type
        if kind not in COMMENT_TYPES:
            if kind not in ATOMIC_TYPES and cursor.goto_first_child():
                depth += 1
                continue
            count += 1
            if limit is not None and count > limit:
                return count
        while depth and not cursor.goto_next_sibling():
            cursor.goto_parent()
            depth -= 1
        if depth == 0:
            return count


def line_span(source: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines when nothing but whitespace shares them.

    Used to delete a docstring together with its indentation and newline, so the code keeps its layout.
    """
    line_start = source.rfind(b"\n", 0, start) + 1
    if source[line_start:start].strip():
        line_start = start
    line_end = source.find(b"\n", end)
    if line_end < 0:
        line_end = len(source)
    if source[end:line_end].strip():
        return line_start, end
    return line_start, min(line_end + 1, len(source))


def cut(source: bytes, start: int, end: int, removals: list[tuple[int, int, bytes]]) -> bytes:
    """``source[start:end]`` with the given ``(start, end, replacement)`` ranges replaced (sorted, disjoint)."""
    out = []
    pos = start
    for s, e, rep in sorted(removals):
        if e <= start or s >= end or s < pos:
            continue
        out.append(source[pos:s])
        out.append(rep)
        pos = e
    out.append(source[pos:end])
    return b"".join(out)


def dedent_from(text: str, column: int) -> str:
    """Remove, from every line after the first, the indentation the first line had in its file.

    A method cut out of a class starts at column 0 but its body keeps the class indentation; this makes
    the snippet a valid top-level definition again.
    """
    if column <= 0:
        return text
    lines = text.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        width = len(line) - len(line.lstrip(" \t"))
        out.append(line[min(width, column):])
    return "\n".join(out)
