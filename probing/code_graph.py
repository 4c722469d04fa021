"""Code tokens of a snippet and the structural relations the probes ask about.

`code_graph(code, language)` parses with tree-sitter and returns a `CodeGraph`: the leaf tokens (text,
byte span, character span), their AST tree distance, the sibling relation and the data-flow edges.
Leaf tokens are tree-sitter leaves (keywords and punctuation included), except comments, zero-width
(MISSING) nodes and string literals, which count as one token each, as in GraphCodeBERT.

Syntax errors: tokens inside an ERROR subtree (and MISSING nodes) are dropped, so the labels cover the
well-formed part; `n_error_tokens` counts what was dropped and `has_error` says whether anything was.

Hostile input: nothing here recurses on the input's nesting (walks keep explicit stacks), and the work is
linear in the input except the data-flow pass, whose loops are memoised (see `dataflow`). `ParseLimits`
bounds what is parsed at all; an input beyond a limit raises `ParseLimitError` with `reason`
`too_large` (bytes or code tokens), `too_deep` (AST nesting), `too_complex` (data-flow work) or
`too_slow` (CPU time, a safety net the other limits keep real inputs far from; CPU rather than wall time
so that a loaded machine skips the same inputs as an idle one, with a wall-clock backstop); `build_probe_set`
skips and counts these. Lone surrogates (U+D800-U+DFFF, which no UTF-8 text holds) are replaced by U+FFFD
before parsing: same length, same character offsets; `CodeGraph.code` is the replaced text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..languages import TimeBudget, get_spec, parse_within

COMES_FROM = "comesFrom"
COMPUTED_FROM = "computedFrom"
DFG_KINDS = (COMES_FROM, COMPUTED_FROM)
LIMIT_REASONS = ("too_large", "too_deep", "too_complex", "too_slow")


@dataclass(frozen=True)
class ParseLimits:
    """What `code_graph` accepts. The defaults keep every input under about a second on one slow core
    (`benchmarks/fuzz_parser.py`) and far exceed real functions (a 100 KB function is rare; nesting in
    real code stays in the tens; the deepest real file we met, sympy's resolvent_lookup.py, nests ~500)."""

    max_bytes: int = 100_000  # UTF-8 bytes of the snippet
    max_tokens: int = 20_000  # tree-sitter leaves
    max_depth: int = 2_000  # AST nesting
    # data-flow steps (sub-walks, names copied or merged): `work_per_node` per AST node (counting at least
    # 100 nodes), at most `max_work`; real code needs under 7 per node (5,590 functions of five languages)
    work_per_node: int = 64
    max_work: int = 400_000
    time_limit: float = 1.5  # CPU seconds per snippet: a safety net only, the bounds above come first
    wall_limit: float = 30.0  # wall-clock seconds per snippet: the backstop for a thread that gets no CPU


DEFAULT_LIMITS = ParseLimits()


class ParseLimitError(ValueError):
    """An input beyond a `ParseLimits` bound; `reason` is one of `LIMIT_REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


_SURROGATES = re.compile("[\ud800-\udfff]")


def replace_surrogates(code: str) -> tuple[str, int]:
    """`code` with every lone surrogate replaced by U+FFFD, and how many there were."""
    if code.isascii():
        return code, 0
    try:
        code.encode("utf-8")
        return code, 0
    except UnicodeEncodeError:
        return _SURROGATES.subn("\ufffd", code)


@dataclass
class Token:
    """One code token: its text, byte span in the UTF-8 source and character span in the str source."""

    text: str
    start_byte: int
    end_byte: int
    start_char: int
    end_char: int
    type: str
    depth: int
    parent: int  # id of the parent AST node (same id = siblings)
    node: int = -1  # its own AST node id (ids number the walked nodes in preorder, the root is 0)

    def __iter__(self):  # allows `text, start, end = token`
        return iter((self.text, self.start_byte, self.end_byte))


@dataclass
class CodeGraph:
    """Leaf tokens of one snippet plus tree distance, siblings and data-flow edges between leaf indices.

    The AST is kept as two arrays over the walked nodes (preorder ids): `node_parent` (-1 for the root) and
    `node_depth`, so memory is linear in the input whatever its nesting.
    """

    code: str
    language: str
    tokens: list[Token]
    node_parent: np.ndarray
    node_depth: np.ndarray
    dfg_edges: list[tuple[int, int, str]] = field(default_factory=list)  # (u, v, kind): u <kind> v
    variables: list[int] = field(default_factory=list)  # leaf indices that are variable occurrences
    has_error: bool = False
    n_error_tokens: int = 0
    _dist: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def truncated(self, keep: int) -> "CodeGraph":
        """The first `keep` tokens with the relations among them (the AST arrays are shared)."""
        return CodeGraph(code=self.code, language=self.language, tokens=self.tokens[:keep],
                         node_parent=self.node_parent, node_depth=self.node_depth,
                         dfg_edges=[e for e in self.dfg_edges if e[0] < keep and e[1] < keep],
                         variables=[v for v in self.variables if v < keep], has_error=self.has_error,
                         n_error_tokens=self.n_error_tokens)

    # --- AST relations ---------------------------------------------------------------------------
    def tree_distance(self, u: int, v: int) -> int:
        """depth(u) + depth(v) - 2 * depth(LCA(u, v)) in edges of the AST."""
        return int(self.distance_matrix()[u, v])

    def _lca_depth(self, a: int, b: int) -> int:
        parent, depth = self.node_parent, self.node_depth
        while depth[a] > depth[b]:
            a = parent[a]
        while depth[b] > depth[a]:
            b = parent[b]
        while a != b:
            a, b = parent[a], parent[b]
        return int(depth[a])

    def distance_matrix(self) -> np.ndarray:
        """All pairwise tree distances (n x n, int32), computed once.

        Tokens are AST leaves in preorder, so depth(LCA(u, w)) for u < w is the minimum of depth(LCA) over
        the adjacent pairs between them; the adjacent LCAs cost one walk over the tree in all.
        """
        if self._dist is None:
            n = len(self.tokens)
            depth = np.array([t.depth for t in self.tokens], dtype=np.int32)
            adjacent = np.array([self._lca_depth(self.tokens[k].node, self.tokens[k + 1].node)
                                 for k in range(n - 1)], dtype=np.int32)
            lca = np.zeros((n, n), dtype=np.int32)
            for u in range(n - 1):
                lca[u, u + 1:] = np.minimum.accumulate(adjacent[u:])
            lca = np.triu(lca, 1) + np.triu(lca, 1).T + np.diag(depth)
            self._dist = (depth[:, None] + depth[None, :] - 2 * lca).astype(np.int32)
        return self._dist

    def is_sibling(self, u: int, v: int) -> bool:
        """Distinct leaves with the same parent node."""
        return u != v and self.tokens[u].parent == self.tokens[v].parent

    def sibling_matrix(self) -> np.ndarray:
        parents = np.array([t.parent for t in self.tokens], dtype=np.int64)
        m = parents[:, None] == parents[None, :]
        np.fill_diagonal(m, False)
        return m

    # --- data flow -------------------------------------------------------------------------------
    def dfg_kind(self, u: int, v: int) -> str | None:
        """'comesFrom' / 'computedFrom' if there is an edge u <- v, else None."""
        for a, b, k in self.dfg_edges:
            if a == u and b == v:
                return k
        return None

    def dfg_matrix(self) -> np.ndarray:
        """n x n int8: 0 none, 1 comesFrom, 2 computedFrom; entry [u, v] = the edge "u <kind> v"."""
        n = len(self.tokens)
        m = np.zeros((n, n), dtype=np.int8)
        for u, v, k in self.dfg_edges:
            m[u, v] = 1 + DFG_KINDS.index(k)
        return m

    def token_texts(self) -> list[str]:
        return [t.text for t in self.tokens]


class _Leaf:
    """A walked leaf: the node, its preorder id, parent id and type, depth, field under the parent."""

    __slots__ = ("node", "id", "parent", "parent_type", "depth", "field", "in_error")

    def __init__(self, node, nid, parent, parent_type, depth, field_name, in_error):
        self.node, self.id, self.parent, self.parent_type = node, nid, parent, parent_type
        self.depth, self.field, self.in_error = depth, field_name, in_error


def _walk(root, spec, limits: ParseLimits, deadline: TimeBudget):
    """Preorder walk with a tree cursor (no recursion): the leaves (code-token candidates, comments left
    out, atomic literals as one leaf) and the parent/depth arrays of every walked node."""
    cursor = root.walk()
    parents: list[int] = []
    depths: list[int] = []
    leaves: list[_Leaf] = []
    stack: list[tuple[int, str, bool]] = []  # ancestors: (id, type, inside an ERROR subtree)
    comments, atomic = spec.comment_types, spec.atomic_types
    while True:
        node = cursor.node
        nid = len(parents)
        up = stack[-1] if stack else (-1, "", False)
        parents.append(up[0])
        depths.append(len(stack))
        if len(stack) > limits.max_depth:
            raise ParseLimitError("too_deep", f"AST nesting over {limits.max_depth}")
        if not nid & 0xFFFF and deadline.expired():
            raise ParseLimitError("too_slow", f"AST walk {deadline.describe()}")
        t = node.type
        in_err = up[2] or t == "ERROR" or node.is_error
        if t not in comments:
            if node.child_count == 0 or t in atomic:
                leaves.append(_Leaf(node, nid, up[0], up[1], len(stack), cursor.field_name or "", in_err))
                if len(leaves) > limits.max_tokens:
                    raise ParseLimitError("too_large", f"over {limits.max_tokens} code tokens")
            else:
                stack.append((nid, t, in_err))
                cursor.goto_first_child()
                continue
        while not cursor.goto_next_sibling():
            if not stack:
                return leaves, parents, depths
            cursor.goto_parent()
            stack.pop()


def _parse(grammar: str, src: bytes, deadline: TimeBudget, limits: ParseLimits):
    try:
        return parse_within(grammar, src, deadline)
    except TimeoutError:
        raise ParseLimitError("too_slow", f"tree-sitter parse {deadline.describe()}") from None


def code_graph(code: str, language: str, with_dataflow: bool = True, limits: ParseLimits | None = None) -> CodeGraph:
    """Parse `code` and build its `CodeGraph` (see the module docstring for tokens, limits, surrogates)."""
    spec = get_spec(language)
    if not isinstance(code, str):
        raise TypeError(f"code must be str, got {type(code).__name__}")
    limits = limits or DEFAULT_LIMITS
    deadline = TimeBudget(limits.time_limit, limits.wall_limit)
    if len(code) > limits.max_bytes:  # a str has at most as many characters as UTF-8 bytes
        raise ParseLimitError("too_large", f"{len(code)} characters, over {limits.max_bytes} bytes")
    code, _ = replace_surrogates(code)
    src = code.encode("utf-8")
    if len(src) > limits.max_bytes:
        raise ParseLimitError("too_large", f"{len(src)} bytes, over {limits.max_bytes}")
    tree = _parse(spec.name, src, deadline, limits)
    # byte offset -> character offset (needed to align with tokenizers' character offsets)
    if len(src) == len(code):
        b2c = None
    else:
        widths = np.fromiter((len(ch.encode("utf-8")) for ch in code), dtype=np.int64, count=len(code))
        b2c = np.append(np.repeat(np.arange(len(code), dtype=np.int64), widths), len(code))

    leaves, parents, depths = _walk(tree.root_node, spec, limits, deadline)
    tokens: list[Token] = []
    token_leaves: list[_Leaf] = []
    n_err = 0
    for leaf in leaves:
        node = leaf.node
        if node.start_byte == node.end_byte:  # MISSING / zero-width nodes are not code tokens
            if node.is_missing:
                n_err += 1
            continue
        if leaf.in_error or node.is_missing:
            n_err += 1
            continue
        sb, eb = node.start_byte, node.end_byte
        sc, ec = (sb, eb) if b2c is None else (int(b2c[sb]), int(b2c[eb]))
        tokens.append(Token(text=src[sb:eb].decode("utf-8", errors="replace"), start_byte=sb, end_byte=eb,
                            start_char=sc, end_char=ec, type=node.type, depth=leaf.depth, parent=leaf.parent,
                            node=leaf.id))
        token_leaves.append(leaf)
    graph = CodeGraph(code=code, language=spec.name, tokens=tokens,
                      node_parent=np.asarray(parents, dtype=np.int64), node_depth=np.asarray(depths, dtype=np.int64),
                      has_error=bool(tree.root_node.has_error), n_error_tokens=n_err)
    if with_dataflow:
        from .dataflow import build_dataflow

        budget = min(limits.work_per_node * max(len(parents), 100), limits.max_work)
        graph.dfg_edges, graph.variables = build_dataflow(tree.root_node, token_leaves, spec, budget, deadline)
    return graph
