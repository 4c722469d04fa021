"""Tree-sitter grammars behind one name per language.

Only the per-language grammar packages are used (tree-sitter-python, -javascript, ...): they ship compiled
grammars, so nothing is fetched at run time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Tuple

import tree_sitter


def _python():
    import tree_sitter_python

    return tree_sitter_python.language()


def _javascript():
    import tree_sitter_javascript

    return tree_sitter_javascript.language()


def _typescript():
    import tree_sitter_typescript

    return tree_sitter_typescript.language_typescript()


def _java():
    import tree_sitter_java

    return tree_sitter_java.language()


def _go():
    import tree_sitter_go

    return tree_sitter_go.language()


@dataclass(frozen=True)
class LanguageSpec:
    """What the label builders need to know about one grammar.

    `atomic_types` are nodes that count as one code token although tree-sitter gives them children
    (string literals, as GraphCodeBERT does); `comment_types` are dropped from the token sequence.
    The data-flow fields are read by `dataflow.py`; see the module docstring there for the rules.
    """

    name: str
    loader: Callable[[], object]
    atomic_types: FrozenSet[str]
    comment_types: FrozenSet[str] = frozenset({"comment"})
    # --- data flow ---
    variable_types: FrozenSet[str] = frozenset({"identifier"})
    # (parent type, field) whose identifier is a name but not a variable (attribute names, method names)
    non_variable_fields: FrozenSet[Tuple[str, str]] = frozenset()
    # node types whose whole subtree is ignored by the data-flow pass (type annotations, imports)
    skip_types: FrozenSet[str] = frozenset()
    # type -> (target field, value field): "target = value"
    assignment: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # type -> (target field, value field): "target op= value" (reads the target too)
    augmented: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # types whose "operator" child decides between plain and augmented assignment ("=" / ":=" is plain)
    operator_assignment: FrozenSet[str] = frozenset()
    # x++ / x-- : type -> field of the operand ("" = first named child)
    update: Dict[str, str] = field(default_factory=dict)
    # for-each loops: type -> (target field, iterable field, body field)
    for_in: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)
    # loops whose children are walked twice (loop-carried flow)
    loops: FrozenSet[str] = frozenset()
    # branching statements: their "consequence"/"alternative" children start from the same state
    branches: FrozenSet[str] = frozenset()
    # functions: type -> (name field, parameters field, body field); "" = absent
    functions: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)
    # containers whose plain identifiers are all assignment targets (tuples, patterns, parameter lists)
    patterns: FrozenSet[str] = frozenset()
    # comprehensions: walk the generator clauses before the body
    comprehensions: FrozenSet[str] = frozenset()


_PY = LanguageSpec(
    name="python",
    loader=_python,
    atomic_types=frozenset({"string", "concatenated_string"}),
    non_variable_fields=frozenset({("attribute", "attribute"), ("keyword_argument", "name")}),
    skip_types=frozenset({"type", "import_statement", "import_from_statement", "decorator"}),
    assignment={"assignment": ("left", "right"), "for_in_clause": ("left", "right"),
                "named_expression": ("name", "value"), "as_pattern": ("alias", "")},
    augmented={"augmented_assignment": ("left", "right")},
    for_in={"for_statement": ("left", "right", "body")},
    loops=frozenset({"while_statement"}),
    branches=frozenset({"if_statement", "try_statement"}),
    functions={"function_definition": ("name", "parameters", "body"),
               "class_definition": ("name", "", "body"),
               "lambda": ("", "parameters", "body")},
    patterns=frozenset({"pattern_list", "tuple_pattern", "list_pattern", "tuple", "list", "expression_list",
                        "parenthesized_expression", "list_splat_pattern", "dictionary_splat_pattern",
                        "parameters", "lambda_parameters", "default_parameter", "typed_parameter",
                        "typed_default_parameter", "as_pattern_target", "list_splat"}),
    comprehensions=frozenset({"list_comprehension", "set_comprehension", "dictionary_comprehension",
                              "generator_expression"}),
)

_JS_COMMON = dict(
    atomic_types=frozenset({"string", "template_string", "regex"}),
    variable_types=frozenset({"identifier", "shorthand_property_identifier_pattern",
                              "shorthand_property_identifier"}),
    assignment={"assignment_expression": ("left", "right"), "variable_declarator": ("name", "value"),
                "assignment_pattern": ("left", "right")},
    augmented={"augmented_assignment_expression": ("left", "right")},
    update={"update_expression": "argument"},
    for_in={"for_in_statement": ("left", "right", "body")},
    loops=frozenset({"for_statement", "while_statement", "do_statement"}),
    branches=frozenset({"if_statement", "try_statement", "switch_statement"}),
    functions={"function_declaration": ("name", "parameters", "body"),
               "function_expression": ("name", "parameters", "body"),
               "generator_function_declaration": ("name", "parameters", "body"),
               "arrow_function": ("", "parameters", "body"),
               "method_definition": ("", "parameters", "body"),
               "class_declaration": ("name", "", "body")},
    patterns=frozenset({"array_pattern", "object_pattern", "pair_pattern", "rest_pattern", "formal_parameters",
                        "required_parameter", "optional_parameter", "parenthesized_expression"}),
)

_JS = LanguageSpec(name="javascript", loader=_javascript,
                   skip_types=frozenset({"import_statement"}), **_JS_COMMON)
_TS = LanguageSpec(name="typescript", loader=_typescript,
                   skip_types=frozenset({"import_statement", "type_annotation", "type_arguments",
                                         "type_parameters", "interface_declaration", "type_alias_declaration"}),
                   **_JS_COMMON)

_JAVA = LanguageSpec(
    name="java",
    loader=_java,
    atomic_types=frozenset({"string_literal", "character_literal", "text_block"}),
    comment_types=frozenset({"comment", "line_comment", "block_comment"}),
    non_variable_fields=frozenset({("field_access", "field"), ("method_invocation", "name"),
                                   ("method_declaration", "name"), ("class_declaration", "name"),
                                   ("constructor_declaration", "name"), ("interface_declaration", "name"),
                                   ("enum_declaration", "name")}),
    skip_types=frozenset({"import_declaration", "package_declaration", "marker_annotation", "annotation"}),
    assignment={"assignment_expression": ("left", "right"), "variable_declarator": ("name", "value"),
                "resource": ("name", "value")},
    operator_assignment=frozenset({"assignment_expression"}),
    update={"update_expression": ""},
    for_in={"enhanced_for_statement": ("name", "value", "body")},
    loops=frozenset({"for_statement", "while_statement", "do_statement"}),
    branches=frozenset({"if_statement", "try_statement", "switch_expression"}),
    functions={"method_declaration": ("", "parameters", "body"),
               "constructor_declaration": ("", "parameters", "body"),
               "lambda_expression": ("", "parameters", "body")},
    patterns=frozenset({"formal_parameters", "formal_parameter", "spread_parameter", "inferred_parameters",
                        "catch_formal_parameter"}),
)

_GO = LanguageSpec(
    name="go",
    loader=_go,
    atomic_types=frozenset({"interpreted_string_literal", "raw_string_literal", "rune_literal"}),
    skip_types=frozenset({"import_declaration", "package_clause"}),
    assignment={"assignment_statement": ("left", "right"), "short_var_declaration": ("left", "right"),
                "var_spec": ("name", "value"), "const_spec": ("name", "value"),
                "range_clause": ("left", "right")},
    operator_assignment=frozenset({"assignment_statement"}),
    update={"inc_statement": "", "dec_statement": ""},
    loops=frozenset({"for_statement"}),
    branches=frozenset({"if_statement", "expression_switch_statement", "type_switch_statement"}),
    functions={"function_declaration": ("name", "parameters", "body"),
               "method_declaration": ("", "parameters", "body"),
               "func_literal": ("", "parameters", "body")},
    patterns=frozenset({"expression_list", "parameter_list", "parameter_declaration",
                        "variadic_parameter_declaration"}),
)

LANGUAGES: Dict[str, LanguageSpec] = {s.name: s for s in (_PY, _JS, _TS, _JAVA, _GO)}
SUPPORTED_LANGUAGES = tuple(sorted(LANGUAGES))
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "golang": "go"}


def get_spec(language: str) -> LanguageSpec:
    """Spec for `language` (case-insensitive, common aliases accepted); ValueError names the supported ones."""
    key = str(language).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        raise ValueError(
            f"unsupported language {language!r}: expected one of {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return LANGUAGES[key]


@functools.lru_cache(maxsize=None)
def get_parser(language: str) -> tree_sitter.Parser:
    """A cached tree-sitter parser for `language`."""
    spec = get_spec(language)
    return tree_sitter.Parser(tree_sitter.Language(spec.loader()))
