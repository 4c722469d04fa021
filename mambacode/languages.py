"""One table per language: file extensions, grammar, function nodes and the node names the labels use.

Corpus (`mambacode.corpus`), probing (`mambacode.probing`) and spectral inputs all read this table, and
every tree-sitter parser comes from the one cache here (`get_parser`). Only the per-language grammar
packages are used (tree-sitter-python, -javascript, ...): they ship compiled grammars, so nothing is
fetched at run time. `tests/test_languages.py` checks that every node type and field named here exists
in its grammar and that every extension maps back to its language.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Callable

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


def _tsx():
    import tree_sitter_typescript

    return tree_sitter_typescript.language_tsx()


def _java():
    import tree_sitter_java

    return tree_sitter_java.language()


def _go():
    import tree_sitter_go

    return tree_sitter_go.language()


@dataclass(frozen=True)
class LanguageSpec:
    """Everything the package knows about one language.

    Files: `extensions` (lower case) map a file to the language, `declaration_suffixes` are files of that
    extension that carry no code (TypeScript's `.d.ts`), `dialects` map an extension to another grammar
    key (`.tsx` -> `tsx`). `function_types` are the nodes cut out as function-level snippets.
    Tokens: `literal_types` are literals tree-sitter splits into pieces (quotes, content, escapes) that count
    as one token everywhere; `joined_literal_types` (Python's implicit `"a" "b"`) are one code token for the
    probes, as in GraphCodeBERT, but separate words for the corpus' type labels. `comment_types` are dropped.
    The data-flow fields are read by `mambacode.probing.dataflow`; see its module docstring for the rules.
    """

    name: str
    loader: Callable[[], object]
    extensions: tuple[str, ...]
    literal_types: frozenset[str]
    function_types: frozenset[str]
    declaration_suffixes: tuple[str, ...] = ()
    dialects: dict[str, tuple[str, Callable[[], object]]] = field(default_factory=dict)  # ext -> (key, loader)
    joined_literal_types: frozenset[str] = frozenset()
    comment_types: frozenset[str] = frozenset({"comment"})
    # --- data flow ---
    variable_types: frozenset[str] = frozenset({"identifier"})
    # (parent type, field) whose identifier is a name but not a variable (attribute names, method names)
    non_variable_fields: frozenset[tuple[str, str]] = frozenset()
    # node types whose whole subtree is ignored by the data-flow pass (type annotations, imports)
    skip_types: frozenset[str] = frozenset()
    # type -> (target field, value field): "target = value"
    assignment: dict[str, tuple[str, str]] = field(default_factory=dict)
    # type -> (target field, value field): "target op= value" (reads the target too)
    augmented: dict[str, tuple[str, str]] = field(default_factory=dict)
    # types whose "operator" child decides between plain and augmented assignment
    operator_assignment: frozenset[str] = frozenset()
    plain_operators: frozenset[str] = frozenset({"=", ":="})
    # x++ / x-- : type -> field of the operand ("" = first named child)
    update: dict[str, str] = field(default_factory=dict)
    # for-each loops: type -> (target field, iterable field, body field); `loop_else_types`: Python's `else:`
    for_in: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    loop_else_types: frozenset[str] = frozenset()
    # loops whose children are walked twice (loop-carried flow)
    loops: frozenset[str] = frozenset()
    # branching statements: their arms (children under `branch_arm_fields` or of `branch_arm_types`) start
    # from the same state. `switch_types` hold their cases inside `case_container_types`; the state before
    # the branch survives unless an arm is exhaustive (`exhaustive_arm_types`, or a child under an
    # (if type, field) of `exhaustive_fields`); `never_exhaustive` (try) always keeps it.
    branches: frozenset[str] = frozenset()
    branch_arm_fields: frozenset[str] = frozenset({"consequence", "alternative", "body"})
    branch_arm_types: frozenset[str] = frozenset()
    switch_types: frozenset[str] = frozenset()
    case_container_types: frozenset[str] = frozenset()
    exhaustive_arm_types: frozenset[str] = frozenset()
    exhaustive_fields: frozenset[tuple[str, str]] = frozenset({("if_statement", "alternative")})
    never_exhaustive: frozenset[str] = frozenset()
    # functions: type -> (name field, parameters field, body field); "" = absent;
    # `single_parameter_fields`: where a lone parameter hangs when the parameters field is absent (`x => x`)
    functions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    single_parameter_fields: dict[str, str] = field(default_factory=dict)
    # containers whose plain identifiers are all assignment targets (tuples, patterns, parameter lists);
    # children under `pattern_value_fields` (defaults, annotations) and `pattern_skip_fields` are not targets
    patterns: frozenset[str] = frozenset()
    pattern_value_fields: frozenset[str] = frozenset(
        {"value", "right", "type", "default", "return_type", "type_parameters", "body"})
    pattern_skip_fields: frozenset[tuple[str, str]] = frozenset()
    # comprehensions: walk the generator clauses before the body
    comprehensions: frozenset[str] = frozenset()

    @property
    def atomic_types(self) -> frozenset[str]:
        """Nodes that are one code token for the probes although tree-sitter gives them children."""
        return self.literal_types | self.joined_literal_types


_PY = LanguageSpec(
    name="python",
    loader=_python,
    extensions=(".py",),
    literal_types=frozenset({"string"}),
    joined_literal_types=frozenset({"concatenated_string"}),
    function_types=frozenset({"function_definition"}),
    non_variable_fields=frozenset({("attribute", "attribute"), ("keyword_argument", "name")}),
    skip_types=frozenset({"type", "import_statement", "import_from_statement", "decorator"}),
    assignment={"assignment": ("left", "right"), "for_in_clause": ("left", "right"),
                "named_expression": ("name", "value"), "as_pattern": ("alias", "")},
    augmented={"augmented_assignment": ("left", "right")},
    for_in={"for_statement": ("left", "right", "body")},
    loop_else_types=frozenset({"else_clause"}),
    loops=frozenset({"while_statement"}),
    branches=frozenset({"if_statement", "try_statement"}),
    branch_arm_types=frozenset({"elif_clause", "else_clause", "except_clause", "finally_clause"}),
    exhaustive_arm_types=frozenset({"else_clause"}),
    never_exhaustive=frozenset({"try_statement"}),
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

_JS_PATTERNS = frozenset({"array_pattern", "object_pattern", "pair_pattern", "rest_pattern", "formal_parameters",
                          "parenthesized_expression"})
_JS_COMMON = dict(
    literal_types=frozenset({"string", "template_string", "regex"}),
    comment_types=frozenset({"comment", "hash_bang_line", "html_comment"}),
    function_types=frozenset({"function_declaration", "method_definition"}),
    variable_types=frozenset({"identifier", "shorthand_property_identifier_pattern",
                              "shorthand_property_identifier"}),
    assignment={"assignment_expression": ("left", "right"), "variable_declarator": ("name", "value"),
                "assignment_pattern": ("left", "right")},
    augmented={"augmented_assignment_expression": ("left", "right")},
    update={"update_expression": "argument"},
    for_in={"for_in_statement": ("left", "right", "body")},
    loops=frozenset({"for_statement", "while_statement", "do_statement"}),
    branches=frozenset({"if_statement", "try_statement", "switch_statement"}),
    branch_arm_types=frozenset({"catch_clause", "else_clause", "finally_clause", "switch_body", "switch_case",
                                "switch_default"}),
    switch_types=frozenset({"switch_statement"}),
    case_container_types=frozenset({"switch_body"}),
    exhaustive_arm_types=frozenset({"else_clause", "switch_default"}),
    never_exhaustive=frozenset({"try_statement"}),
    functions={"function_declaration": ("name", "parameters", "body"),
               "function_expression": ("name", "parameters", "body"),
               "generator_function_declaration": ("name", "parameters", "body"),
               "arrow_function": ("", "parameters", "body"),
               "method_definition": ("", "parameters", "body"),
               "class_declaration": ("name", "", "body")},
    single_parameter_fields={"arrow_function": "parameter"},
    pattern_skip_fields=frozenset({("pair_pattern", "key")}),
)

_JS = LanguageSpec(name="javascript", loader=_javascript, extensions=(".js", ".mjs", ".cjs", ".jsx"),
                   skip_types=frozenset({"import_statement"}), patterns=_JS_PATTERNS, **_JS_COMMON)
_TS = LanguageSpec(name="typescript", loader=_typescript, extensions=(".ts", ".tsx", ".mts", ".cts"),
                   declaration_suffixes=(".d.ts", ".d.mts", ".d.cts"), dialects={".tsx": ("tsx", _tsx)},
                   skip_types=frozenset({"import_statement", "type_annotation", "type_arguments",
                                         "type_parameters", "interface_declaration", "type_alias_declaration"}),
                   patterns=_JS_PATTERNS | {"required_parameter", "optional_parameter"}, **_JS_COMMON)

_JAVA = LanguageSpec(
    name="java",
    loader=_java,
    extensions=(".java",),
    literal_types=frozenset({"string_literal", "character_literal"}),
    comment_types=frozenset({"line_comment", "block_comment"}),
    function_types=frozenset({"method_declaration", "constructor_declaration"}),
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
    branch_arm_types=frozenset({"catch_clause", "finally_clause", "switch_block", "switch_block_statement_group"}),
    switch_types=frozenset({"switch_expression"}),
    case_container_types=frozenset({"switch_block"}),
    never_exhaustive=frozenset({"try_statement"}),
    functions={"method_declaration": ("", "parameters", "body"),
               "constructor_declaration": ("", "parameters", "body"),
               "lambda_expression": ("", "parameters", "body")},
    patterns=frozenset({"formal_parameters", "formal_parameter", "spread_parameter", "inferred_parameters",
                        "catch_formal_parameter"}),
)

_GO = LanguageSpec(
    name="go",
    loader=_go,
    extensions=(".go",),
    literal_types=frozenset({"interpreted_string_literal", "raw_string_literal", "rune_literal"}),
    function_types=frozenset({"function_declaration", "method_declaration"}),
    skip_types=frozenset({"import_declaration", "package_clause"}),
    assignment={"assignment_statement": ("left", "right"), "short_var_declaration": ("left", "right"),
                "var_spec": ("name", "value"), "const_spec": ("name", "value"),
                "range_clause": ("left", "right")},
    operator_assignment=frozenset({"assignment_statement"}),
    update={"inc_statement": "", "dec_statement": ""},
    loops=frozenset({"for_statement"}),
    branches=frozenset({"if_statement", "expression_switch_statement", "type_switch_statement"}),
    branch_arm_types=frozenset({"default_case", "expression_case", "type_case"}),
    switch_types=frozenset({"expression_switch_statement", "type_switch_statement"}),
    exhaustive_arm_types=frozenset({"default_case"}),
    functions={"function_declaration": ("name", "parameters", "body"),
               "method_declaration": ("", "parameters", "body"),
               "func_literal": ("", "parameters", "body")},
    patterns=frozenset({"expression_list", "parameter_list", "parameter_declaration",
                        "variadic_parameter_declaration"}),
)

LANGUAGES: dict[str, LanguageSpec] = {s.name: s for s in (_PY, _JS, _TS, _JAVA, _GO)}
SUPPORTED_LANGUAGES = tuple(sorted(LANGUAGES))
_ALIASES = {"py": "python", "js": "javascript", "ts": "typescript", "golang": "go"}
# grammar keys: every language name plus its dialects (`tsx`)
_GRAMMARS: dict[str, Callable[[], object]] = {s.name: s.loader for s in LANGUAGES.values()}
_GRAMMARS.update({key: loader for s in LANGUAGES.values() for key, loader in s.dialects.values()})


def get_spec(language: str) -> LanguageSpec:
    """Spec for `language` (case-insensitive, common aliases accepted); ValueError names the supported ones."""
    key = str(language).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        raise ValueError(
            f"unsupported language {language!r}: expected one of {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return LANGUAGES[key]


def language_of(path: str, languages=None) -> str | None:
    """Language of a file name (among `languages`, default all), or None; declaration files carry no code."""
    name = os.path.basename(path).lower()
    for spec in LANGUAGES.values():
        if languages is not None and spec.name not in languages:
            continue
        if name.endswith(spec.extensions) and not name.endswith(spec.declaration_suffixes):
            return spec.name
    return None


def grammar_key(language: str, path: str = "") -> str:
    """Grammar to parse a file of `language` with: a dialect for its extension (`.tsx` -> `tsx`) or the language."""
    spec = get_spec(language)
    name = os.path.basename(path).lower()
    for ext, (key, _) in spec.dialects.items():
        if name.endswith(ext):
            return key
    return spec.name


def _grammar(grammar: str) -> str:
    return grammar if grammar in _GRAMMARS else get_spec(grammar).name


def get_language(grammar: str) -> tree_sitter.Language:
    """The tree-sitter grammar of a language (aliases accepted) or of a dialect key such as `tsx`."""
    return _language(_grammar(grammar))


def get_parser(grammar: str) -> tree_sitter.Parser:
    """The one cached tree-sitter parser per grammar (language name, alias or dialect key)."""
    return _parser(_grammar(grammar))


class TimeBudget:
    """An allowance of this thread's CPU time, with a wall-clock backstop.

    Limits on parsing are CPU time (`time.thread_time`), what the work itself costs: on a loaded machine an
    input that needs 0.3 s of CPU may take seconds of wall time, and a wall-clock limit would skip it there
    and keep it elsewhere. The backstop (`wall_seconds`, default max(30 s, 10 x the CPU allowance)) only
    stops a thread that gets no CPU at all. `expired()` is cheap enough for progress callbacks.
    """

    def __init__(self, cpu_seconds: float, wall_seconds: float | None = None):
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall_seconds if wall_seconds is not None else max(30.0, 10.0 * cpu_seconds)
        self._cpu_end = time.thread_time() + cpu_seconds
        self._wall_end = time.perf_counter() + self.wall_seconds

    def expired(self) -> bool:
        return time.thread_time() > self._cpu_end or time.perf_counter() > self._wall_end

    def describe(self) -> str:
        """Which allowance ran out, e.g. 'over 1.5 s of CPU time'."""
        if time.thread_time() > self._cpu_end:
            return f"over {self.cpu_seconds:g} s of CPU time"
        return f"over {self.wall_seconds:g} s of wall-clock time"


def parse_within(grammar: str, src: bytes, seconds: float | TimeBudget) -> tree_sitter.Tree:
    """tree-sitter's parse of `src`, halted with a `TimeoutError` once `seconds` of this thread's CPU time (or
    a `TimeBudget` shared with later steps) are spent.

    Some grammars take exponential time on some broken inputs (a mutated 3 KB TypeScript function parsed
    for minutes), and only tree-sitter's progress callback can stop the C parser. The source is handed over
    in bytes slices (a memoryview chunk would be freed under the parser's feet); a halted parser is reset,
    or its next parse would resume this one.
    """
    parser = get_parser(grammar)
    budget = seconds if isinstance(seconds, TimeBudget) else TimeBudget(seconds)
    try:
        return parser.parse(lambda offset, _point: src[offset:offset + 65536],
                            progress_callback=lambda _offset, _has_error: budget.expired())
    except ValueError:  # "Parsing failed": halted by the callback
        parser.reset()
        raise TimeoutError(f"tree-sitter ({grammar}) gave up on {len(src):,} bytes: {budget.describe()}") from None


@functools.lru_cache(maxsize=None)
def _language(key: str) -> tree_sitter.Language:
    return tree_sitter.Language(_GRAMMARS[key]())


@functools.lru_cache(maxsize=None)
def _parser(key: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(_language(key))


__all__ = ["LANGUAGES", "LanguageSpec", "SUPPORTED_LANGUAGES", "TimeBudget", "get_language", "get_parser", "get_spec",
           "parse_within", "grammar_key", "language_of"]
