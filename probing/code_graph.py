"""Code tokens of a snippet and the structural relations the probes ask about.

`code_graph(code, language)` parses with tree-sitter and returns a `CodeGraph`: the leaf tokens (text,
byte span, character span), their AST tree distance, the sibling relation and the data-flow edges.
Leaf tokens are tree-sitter leaves (keywords and punctuation included), except comments, zero-width
(MISSING) nodes and string literals, which count as one token each, as in GraphCodeBERT.

Syntax errors: tokens inside an ERROR subtree (and MISSING nodes) are dropped, so the labels cover the
well-formed part; `n_error_tokens` counts what was dropped and `has_error` says whether anything was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from ..languages import get_parser, get_spec

COMES_FROM = "comesFrom"
COMPUTED_FROM = "computedFrom"
DFG_KINDS = (COMES_FROM, COMPUTED_FROM)


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

    def __iter__(self):  # allows `text, start, end = token`
        return iter((self.text, self.start_byte, self.end_byte))


@dataclass
class CodeGraph:
    """Leaf tokens of one snippet plus tree distance, siblings and data-flow edges between leaf indices."""

    code: str
    language: str
    tokens: list[Token]
    paths: list[tuple[int, ...]]  # root-to-leaf AST node ids, one tuple per token
    dfg_edges: list[tuple[int, int, str]] = field(default_factory=list)  # (u, v, kind): u <kind> v
    variables: list[int] = field(default_factory=list)  # leaf indices that are variable occurrences
    has_error: bool = False
    n_error_tokens: int = 0
    _dist: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    # --- AST relations ---------------------------------------------------------------------------
    def tree_distance(self, u: int, v: int) -> int:
        """depth(u) + depth(v) - 2 * depth(LCA(u, v)) in edges of the AST."""
        return int(self.distance_matrix()[u, v])

    def distance_matrix(self) -> np.ndarray:
        """All pairwise tree distances (n x n, int32), computed once from the root-to-leaf paths."""
        if self._dist is None:
            n = len(self.paths)
            if n == 0:
                self._dist = np.zeros((0, 0), dtype=np.int32)
                return self._dist
            depth = np.array([len(p) - 1 for p in self.paths], dtype=np.int32)
            width = int(depth.max()) + 1
            padded = np.full((n, width), -1, dtype=np.int64)
            for i, p in enumerate(self.paths):
                padded[i, : len(p)] = p
            # length of the common prefix of two paths = depth(LCA) + 1 (all paths start at the root)
            common = np.zeros((n, n), dtype=np.int32)
            alive = np.ones((n, n), dtype=bool)
            for k in range(width):
                col = padded[:, k]
                alive &= (col[:, None] == col[None, :]) & (col[:, None] >= 0)
                common += alive
                if not alive.any():
                    break
            self._dist = (depth[:, None] + depth[None, :] - 2 * (common - 1)).astype(np.int32)
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


def _leaf_nodes(root, spec):
    """Yield (node, depth, path, inside_error) for code-token leaves in source order (iterative DFS)."""
    stack = [(root, 0, (), False)]
    next_id = [0]
    ids = {}

    def nid(node):
        key = node.id
        if key not in ids:
            ids[key] = next_id[0]
            next_id[0] += 1
        return ids[key]

    while stack:
        node, depth, path, in_err = stack.pop()
        path = path + (nid(node),)
        in_err = in_err or node.type == "ERROR" or node.is_error
        if node.type in spec.comment_types:
            continue
        if node.child_count == 0 or node.type in spec.atomic_types:
            yield node, depth, path, in_err
            continue
        for child in reversed(node.children):
            stack.append((child, depth + 1, path, in_err))


def code_graph(code: str, language: str, with_dataflow: bool = True) -> CodeGraph:
    """Parse `code` and build its `CodeGraph` (see the module docstring for what counts as a token)."""
    spec = get_spec(language)
    if not isinstance(code, str):
        raise TypeError(f"code must be str, got {type(code).__name__}")
    src = code.encode("utf-8")
    tree = get_parser(spec.name).parse(src)
    # byte offset -> character offset (needed to align with tokenizers' character offsets)
    if len(src) == len(code):
        b2c = None
    else:
        b2c = np.zeros(len(src) + 1, dtype=np.int64)
        pos = 0
        for ci, ch in enumerate(code):
            n = len(ch.encode("utf-8"))
            b2c[pos: pos + n] = ci
            pos += n
        b2c[len(src)] = len(code)

    tokens: list[Token] = []
    paths: list[tuple[int, ...]] = []
    node_of_token = []
    n_err = 0
    for node, depth, path, in_err in _leaf_nodes(tree.root_node, spec):
        if node.start_byte == node.end_byte:  # MISSING / zero-width nodes are not code tokens
            if node.is_missing:
                n_err += 1
            continue
        if in_err or node.is_missing:
            n_err += 1
            continue
        sb, eb = node.start_byte, node.end_byte
        sc, ec = (sb, eb) if b2c is None else (int(b2c[sb]), int(b2c[eb]))
        tokens.append(Token(text=src[sb:eb].decode("utf-8", errors="replace"), start_byte=sb, end_byte=eb,
                            start_char=sc, end_char=ec, type=node.type, depth=depth, parent=path[-2]
                            if len(path) > 1 else -1))
        paths.append(path)
        node_of_token.append(node)
    graph = CodeGraph(code=code, language=spec.name, tokens=tokens, paths=paths,
                      has_error=bool(tree.root_node.has_error), n_error_tokens=n_err)
    if with_dataflow:
        from .dataflow import build_dataflow

        graph.dfg_edges, graph.variables = build_dataflow(tree.root_node, node_of_token, spec)
    return graph
