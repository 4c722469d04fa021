"""AdvTest-style obfuscation: rename a function, its parameters and its locals to placeholders.

CodeSearchNet-AdvTest replaces the function name with ``func``, parameters with ``arg_0, arg_1, ...``
and local variables with ``var_0, var_1, ...`` so that retrieval cannot lean on identifier names.
Renaming is consistent inside the function; attributes, keyword-argument names, globals, builtins and
imported names are untouched, because renaming them would change what the code means. The result must
parse without errors, or :func:`obfuscate` returns None.
"""

from __future__ import annotations

import hashlib

from tree_sitter import Node

from .parsing import get_parser, parses_cleanly

#: Python parameters that are conventions, not names chosen by the author
KEEP_FIRST_PARAMS = frozenset({"self", "cls", "mcs", "metacls"})

_PY_TARGET_CONTAINERS = frozenset({"pattern_list", "tuple_pattern", "list_pattern", "list_splat_pattern", "parenthesized_expression"})
_JS_FUNCTIONS = frozenset(
    {"function_declaration", "generator_function_declaration", "function_expression", "arrow_function", "method_definition", "generator_function"}
)


def _walk(node: Node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


# ----------------------------------------------------------------------------------------------- Python
def _py_targets(node: Node | None, out: list[Node]) -> None:
    """Identifiers bound by an assignment target (attributes and subscripts bind nothing new).

    An explicit stack, not recursion: a target nested 1,000 levels deep is valid Python.
    """
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        if n.type == "identifier":
            out.append(n)
        elif n.type in _PY_TARGET_CONTAINERS:
            stack.extend(reversed(n.named_children))


def _py_param_names(params: Node | None) -> list[Node]:
    out = []
    for p in params.named_children if params is not None else ():
        if p.type == "identifier":
            out.append(p)
        elif p.type in ("default_parameter", "typed_default_parameter"):
            n = p.child_by_field_name("name")
            if n is not None and n.type == "identifier":
                out.append(n)
        elif p.type in ("typed_parameter", "list_splat_pattern", "dictionary_splat_pattern"):
            for c in p.named_children:
                if c.type == "identifier":
                    out.append(c)
                    break
                if c.type in ("list_splat_pattern", "dictionary_splat_pattern"):
                    inner = [x for x in c.named_children if x.type == "identifier"]
                    out.extend(inner[:1])
                    break
    return out


def _py_bindings(func: Node) -> tuple[list[Node], list[Node], set[str]]:
    """(parameters, locals in first-binding order, names that must stay: globals and imports)."""
    params = _py_param_names(func.child_by_field_name("parameters"))
    locals_: list[Node] = []
    keep: set[str] = set()
    body = func.child_by_field_name("body")
    for n in _walk(body) if body is not None else ():
        t = n.type
        if t in ("assignment", "augmented_assignment"):
            _py_targets(n.child_by_field_name("left"), locals_)
        elif t in ("for_statement", "for_in_clause"):
            _py_targets(n.child_by_field_name("left"), locals_)
        elif t == "as_pattern":
            alias = n.child_by_field_name("alias")
            for c in _walk(alias) if alias is not None else ():
                if c.type == "identifier":
                    locals_.append(c)
        elif t == "named_expression":
            _py_targets(n.child_by_field_name("name"), locals_)
        elif t in ("function_definition", "class_definition"):
            _py_targets(n.child_by_field_name("name"), locals_)
            if t == "function_definition":
                locals_.extend(_py_param_names(n.child_by_field_name("parameters")))
        elif t == "lambda":
            locals_.extend(_py_param_names(n.child_by_field_name("parameters")))
        elif t in ("global_statement", "import_statement", "import_from_statement", "future_import_statement"):
            for c in _walk(n):
                if c.type == "identifier":
                    keep.add(c.text.decode())
    return params, locals_, keep


def _py_is_reference(node: Node) -> bool:
    """False for identifiers that name something other than a variable (attributes, keyword names)."""
    parent = node.parent
    if parent is None:
        return True
    if parent.type == "attribute" and parent.child_by_field_name("attribute") == node:
        return False
    if parent.type == "keyword_argument" and parent.child_by_field_name("name") == node:
        return False
    if parent.type in ("dotted_name", "aliased_import", "import_from_statement", "global_statement"):
        return False
    return True


# ----------------------------------------------------------------------------------------------- JS / TS
_JS_NAME_TYPES = frozenset({"identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"})


def _js_pattern(node: Node | None, out: list[Node]) -> None:
    """Identifiers bound by a JS/TS binding pattern (parameters, declarators, catch clauses).

    Walked with an explicit stack in source order, so arbitrarily deep destructuring cannot overflow.
    """
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        t = n.type
        if t in ("identifier", "shorthand_property_identifier_pattern"):
            out.append(n)
        elif t == "pair_pattern":
            stack.extend(x for x in (n.child_by_field_name("value"),) if x is not None)
        elif t == "assignment_pattern":
            stack.extend(x for x in (n.child_by_field_name("left"),) if x is not None)
        elif t in ("required_parameter", "optional_parameter"):
            stack.extend(x for x in (n.child_by_field_name("pattern"),) if x is not None)
        elif t in ("object_pattern", "array_pattern", "rest_pattern", "formal_parameters", "object_assignment_pattern"):
            for c in reversed(n.named_children):
                if c.type == "object_assignment_pattern":
                    c = c.child_by_field_name("left")
                if c is not None:
                    stack.append(c)


def _js_params(func: Node) -> list[Node]:
    out: list[Node] = []
    p = func.child_by_field_name("parameters")
    if p is None:
        p = func.child_by_field_name("parameter")  # `x => ...`
    _js_pattern(p, out)
    return out


def _js_bindings(func: Node) -> tuple[list[Node], list[Node], set[str]]:
    params = _js_params(func)
    locals_: list[Node] = []
    keep: set[str] = set()
    body = func.child_by_field_name("body")
    for n in _walk(body) if body is not None else ():
        t = n.type
        if t == "variable_declarator":
            _js_pattern(n.child_by_field_name("name"), locals_)
        elif t == "catch_clause":
            _js_pattern(n.child_by_field_name("parameter"), locals_)
        elif t == "for_in_statement" and n.child_by_field_name("kind") is not None:
            _js_pattern(n.child_by_field_name("left"), locals_)
        elif t in ("function_declaration", "generator_function_declaration", "class_declaration"):
            nm = n.child_by_field_name("name")
            if nm is not None and nm.type == "identifier":
                locals_.append(nm)
        if t in _JS_FUNCTIONS and n is not func:
            locals_.extend(_js_params(n))
        if t in ("import_statement",):
            for c in _walk(n):
                if c.type == "identifier":
                    keep.add(c.text.decode())
    return params, locals_, keep


# ----------------------------------------------------------------------------------------------- driver
def _find_function(root: Node, language: str) -> Node | None:
    for n in _walk(root):
        if language == "python" and n.type == "function_definition":
            return n
        if language != "python":
            if n.type in ("function_declaration", "generator_function_declaration", "method_definition"):
                return n
            if n.type == "variable_declarator":
                v = n.child_by_field_name("value")
                if v is not None and v.type in ("function_expression", "arrow_function"):
                    return v
    return None


def obfuscate(code: str, language: str = "python", is_method: bool = False) -> str | None:
    """Obfuscated copy of the single function in ``code``, or None when that cannot be done safely.

    ``is_method``: JS/TS method bodies (``name(a) {...}``) parse only inside a class; the snippet is
    wrapped for parsing and unwrapped again.
    """
    prefix = "class __W__ {\n" if (is_method and language != "python") else ""
    text = prefix + code + ("\n}" if prefix else "")
    source = text.encode("utf-8")
    root = get_parser(language).parse(source).root_node
    if root.has_error:
        return None
    func = _find_function(root, language)
    if func is None:
        return None

    name_node = func.child_by_field_name("name")
    if func.type in ("function_expression", "arrow_function") and func.parent is not None:
        name_node = func.parent.child_by_field_name("name")  # the declarator: `const name = () => ...`
    if language == "python":
        params, locals_, keep = _py_bindings(func)
        is_ref = _py_is_reference
        name_types = {"identifier"}
    else:
        params, locals_, keep = _js_bindings(func)
        is_ref = _js_is_reference
        name_types = _JS_NAME_TYPES

    mapping: dict[str, str] = {}
    func_name = name_node.text.decode() if name_node is not None else None
    for i, p in enumerate(params):
        name = p.text.decode()
        if language == "python" and i == 0 and name in KEEP_FIRST_PARAMS:
            continue
        if name not in mapping and name not in keep:
            mapping[name] = f"arg_{sum(v.startswith('arg_') for v in mapping.values())}"
    var_count = 0
    for v in locals_:
        name = v.text.decode()
        if name not in mapping and name not in keep and name != func_name:
            mapping[name] = f"var_{var_count}"
            var_count += 1
    if func_name is not None and func_name not in mapping:
        mapping[func_name] = "func"

    edits: list[tuple[int, int, str]] = []
    placeholders = set(mapping.values())
    search_root = func.parent if func.type in ("function_expression", "arrow_function") else func
    for n in _walk(search_root):
        if n.type not in name_types:
            continue
        name = n.text.decode()
        new = mapping.get(name)
        if new is None or not is_ref(n):
            if new is None and name in placeholders and is_ref(n):
                return None  # the code already uses a placeholder name for something else
            continue
        if n.type in ("shorthand_property_identifier", "shorthand_property_identifier_pattern"):
            edits.append((n.start_byte, n.end_byte, f"{name}: {new}"))
        else:
            edits.append((n.start_byte, n.end_byte, new))
    if name_node is not None and name_node.type not in name_types:  # a method name (property_identifier)
        edits.append((name_node.start_byte, name_node.end_byte, "func"))

    out = source
    for s, e, new in sorted(edits, reverse=True):
        out = out[:s] + new.encode() + out[e:]
    result = out.decode("utf-8")
    if prefix:
        result = result[len(prefix) : -2]
    if not parses_cleanly(result, language, wrap_method=bool(prefix)):
        return None
    return result


def _js_is_reference(node: Node) -> bool:
    parent = node.parent
    if parent is None:
        return True
    # `import {a as b}` and `export {a}` name module bindings, not locals
    if parent.type in ("import_specifier", "export_specifier", "namespace_import", "import_clause"):
        return False
    return True


# ----------------------------------------------------------------------------------------------- augmentation
def obfuscation_draw(seed: int, row: int) -> float:
    """A number in [0, 1) fixed by (seed, row): row `row` is obfuscated when it is below the fraction. A hash,
    not a generator stream, so the choice of a row does not depend on which rows came before it."""
    digest = hashlib.sha256(f"{seed}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def obfuscate_training_codes(dataset, fraction: float, seed: int = 0, code_column: str = "code",
                             language_column: str = "language") -> tuple:
    """(dataset, counts): AdvTest-style augmentation of retrieval training pairs. The code of each row whose
    `obfuscation_draw(seed, row)` is below `fraction` is replaced by `obfuscate(code, language)`, so the model
    must match queries without the author's names some of the time (the AdvTest-style test pool has none);
    a row whose code cannot be obfuscated safely stays as it is and is counted. Rows without a language
    column are taken as Python. counts: {"rows", "drawn", "obfuscated", "failed"}."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"obfuscate_training_codes: fraction={fraction} must be in [0, 1]")
    if code_column not in dataset.column_names:
        raise ValueError(f"obfuscate_training_codes: no column {code_column!r} (columns: {dataset.column_names})")
    counts = {"rows": len(dataset), "drawn": 0, "obfuscated": 0, "failed": 0}
    if fraction == 0.0:
        return dataset, counts
    codes = list(dataset[code_column])
    languages = (list(dataset[language_column]) if language_column in dataset.column_names
                 else ["python"] * len(codes))
    for row, (code, language) in enumerate(zip(codes, languages)):
        if obfuscation_draw(seed, row) >= fraction:
            continue
        counts["drawn"] += 1
        try:
            new = obfuscate(code, language)
        except RecursionError:  # tree-sitter bindings on extreme nesting
            new = None
        if new is None:
            counts["failed"] += 1
        else:
            codes[row] = new
            counts["obfuscated"] += 1
    return replace_column(dataset, code_column, codes), counts


def replace_column(dataset, column: str, values: list):
    """`dataset` with `column`'s values replaced (same position in the column order)."""
    order = dataset.column_names
    return dataset.remove_columns(column).add_column(column, values).select_columns(order)
