"""Type inference data, ManyTypes4TypeScript-style: strip annotations, label the tokens that had them.

From annotated Python (parameters, returns, annotated assignments) and TypeScript (parameters,
variables, fields, returns), the annotation is removed from the token stream and the identifier it
annotated is labelled with the annotation's text (for a return type: the function's name). The builder
later maps labels to the ``top_k`` most frequent types of the training split plus ``other``; tokens
that carried no annotation get ``-1`` (mask them, e.g. to ``-100``, before computing a loss).
"""

from __future__ import annotations

from tree_sitter import Node

from .parsing import iter_leaves

UNLABELLED = -1
OTHER = "other"

_PY_QUERY = """
(typed_parameter type: (type) @t) @p
(typed_default_parameter name: (identifier) @n type: (type) @t) @p
(function_definition name: (identifier) @n return_type: (type) @t) @p
(assignment left: (_) @n type: (type) @t) @p
"""
_TS_QUERY = """
(required_parameter pattern: (_) @n type: (type_annotation) @t) @p
(optional_parameter pattern: (_) @n type: (type_annotation) @t) @p
(variable_declarator name: (_) @n type: (type_annotation) @t) @p
(public_field_definition name: (_) @n type: (type_annotation) @t) @p
(property_signature name: (_) @n type: (type_annotation) @t) @p
(function_declaration name: (_) @n return_type: (type_annotation) @t) @p
(method_definition name: (_) @n return_type: (type_annotation) @t) @p
(method_signature name: (_) @n return_type: (type_annotation) @t) @p
(variable_declarator name: (identifier) @n value: (arrow_function return_type: (type_annotation) @t)) @p
(variable_declarator name: (identifier) @n value: (function_expression return_type: (type_annotation) @t)) @p
"""
_NAME_TYPES = frozenset({"identifier", "property_identifier", "private_property_identifier"})


def normalise_type(text: str, language: str) -> str:
    """Canonical spelling of an annotation: no whitespace, no quotes around forward references,
    ``typing.`` prefixes dropped (``typing.Optional[int]`` and ``Optional[ int ]`` are one type)."""
    t = text.strip()
    if language != "python" and t.startswith(":"):
        t = t[1:].strip()
    if language == "python" and len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        t = t[1:-1]
    t = "".join(t.split())
    if language == "python":
        t = t.replace("typing.", "").replace("typing_extensions.", "")
    return t


def _python_name(param: Node, n: Node | None) -> Node | None:
    if n is None:  # typed_parameter: the identifier, possibly inside *args / **kwargs
        for c in param.named_children:
            if c.type == "identifier":
                return c
            if c.type in ("list_splat_pattern", "dictionary_splat_pattern"):
                ids = [x for x in c.named_children if x.type == "identifier"]
                return ids[0] if ids else None
        return None
    if n.type == "attribute":  # `self.x: int = ...` labels `x`
        return n.child_by_field_name("attribute")
    if n.type == "rest_pattern":
        ids = [x for x in n.named_children if x.type == "identifier"]
        return ids[0] if ids else None
    return n if n.type in _NAME_TYPES else None


def annotation_sites(root: Node, language: str) -> tuple[set, dict[int, str]]:
    """``(skip, labels)``: the annotation subtrees to drop and ``{identifier start byte: type}``."""
    skip: set = set()
    labels: dict[int, str] = {}
    if language not in ("python", "typescript", "tsx"):
        return skip, labels
    from .parsing import get_query
    from tree_sitter import QueryCursor

    query = _PY_QUERY if language == "python" else _TS_QUERY
    for _, caps in QueryCursor(get_query(language, query)).matches(root):
        t = caps["t"][0]
        p = caps["p"][0]
        n = caps.get("n", [None])[0]
        skip.add((t.start_byte, t.end_byte, t.type))
        if language == "python":
            sep = t.prev_sibling  # the ':' or '->' before the annotation
            if sep is not None and sep.type in (":", "->"):
                skip.add((sep.start_byte, sep.end_byte, sep.type))
            name = _python_name(p, n)
        else:
            name = _python_name(p, n) if n is not None else None
        if name is not None and name.type in _NAME_TYPES:
            labels[name.start_byte] = normalise_type(t.text.decode("utf-8", "replace"), language)
    return skip, labels


def examples(root: Node, language: str, max_words: int = 512) -> tuple[list[tuple[list[str], list[str | None]]], int]:
    """Word-level examples of one file: consecutive top-level statements packed up to ``max_words``.

    Returns ``(examples, num_windows_without_labels)``; each example is ``(words, labels)`` with a type
    string for annotated identifiers and None elsewhere. Statements longer than ``max_words`` are cut
    into windows.
    """
    skip, labels = annotation_sites(root, language)
    if not labels:
        return [], 0
    out: list[tuple[list[str], list[str | None]]] = []
    unlabelled = 0
    words: list[str] = []
    tags: list[str | None] = []

    def flush():
        nonlocal words, tags, unlabelled
        if words:
            if any(t is not None for t in tags):
                out.append((words, tags))
            else:
                unlabelled += 1
        words, tags = [], []

    for stmt in root.named_children:
        sw: list[str] = []
        st: list[str | None] = []
        for leaf in iter_leaves(stmt, skip):
            sw.append(leaf.text.decode("utf-8", "replace"))
            st.append(labels.get(leaf.start_byte) if leaf.type in _NAME_TYPES else None)
        if not sw:
            continue
        if len(words) + len(sw) > max_words:
            flush()
        if len(sw) > max_words:
            for i in range(0, len(sw), max_words):
                words, tags = sw[i : i + max_words], st[i : i + max_words]
                flush()
            continue
        words.extend(sw)
        tags.extend(st)
    flush()
    return out, unlabelled


def top_k_labels(type_counts: dict[str, int], k: int) -> list[str]:
    """The k most frequent types (ties broken by name, for determinism) followed by ``other``."""
    ranked = sorted(type_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [t for t, _ in ranked[:k] if t != OTHER] + [OTHER]


def encode_labels(tags: list[str | None], label_names: list[str]) -> list[int]:
    """Type strings -> ClassLabel ids (``other`` for rare types, ``-1`` for unannotated tokens)."""
    index = {name: i for i, name in enumerate(label_names)}
    other = index[OTHER]
    return [UNLABELLED if t is None else index.get(t, other) for t in tags]


def align_labels_with_tokens(word_ids: list[int | None], labels: list[int], ignore_index: int = -100) -> list[int]:
    """Sub-word labels for a tokenized example: the first sub-word of each labelled word keeps its label.

    ``word_ids`` comes from a fast tokenizer (``encoding.word_ids()``); specials, continuation
    sub-words and unannotated words get ``ignore_index``.
    """
    out = []
    previous = None
    for w in word_ids:
        if w is None or w == previous or labels[w] < 0:
            out.append(ignore_index)
        else:
            out.append(labels[w])
        previous = w
    return out

