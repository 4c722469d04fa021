"""The one language table: every name it holds exists in its grammar, every file maps back to its language."""

import pytest

from mambacode.corpus import parsing, split_functions
from mambacode.languages import (LANGUAGES, SUPPORTED_LANGUAGES, get_language, get_parser, get_spec, grammar_key,
                                 language_of)

_NODE_SETS = ("literal_types", "joined_literal_types", "comment_types", "function_types", "variable_types",
              "skip_types", "operator_assignment", "loop_else_types", "loops", "branches", "branch_arm_types",
              "switch_types", "case_container_types", "exhaustive_arm_types", "never_exhaustive", "patterns",
              "comprehensions")
_NODE_DICTS = ("assignment", "augmented", "update", "for_in", "functions", "single_parameter_fields")


def _grammar_names(language):
    lang = get_language(language)
    named = {lang.node_kind_for_id(i) for i in range(lang.node_kind_count) if lang.node_kind_is_named(i)}
    anonymous = {lang.node_kind_for_id(i) for i in range(lang.node_kind_count) if not lang.node_kind_is_named(i)}
    fields = {lang.field_name_for_id(i) for i in range(1, lang.field_count + 1)}
    return named, anonymous, fields


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_node_type_and_field_in_the_table_exists_in_the_grammar(language):
    spec = LANGUAGES[language]
    named, anonymous, fields = _grammar_names(language)
    node_types, field_names = {}, {}
    for attr in _NODE_SETS:
        for t in getattr(spec, attr):
            node_types[t] = attr
    for attr in _NODE_DICTS:
        for t, value in getattr(spec, attr).items():
            node_types[t] = attr
            for f in (value,) if isinstance(value, str) else value:
                if f:
                    field_names[f] = attr
    for attr in ("non_variable_fields", "exhaustive_fields", "pattern_skip_fields"):
        for t, f in getattr(spec, attr):
            node_types[t], field_names[f] = attr, attr
    for f in spec.branch_arm_fields | spec.pattern_value_fields:
        field_names[f] = "fields"
    if spec.operator_assignment:
        field_names["operator"] = "operator_assignment"
    missing = {t: attr for t, attr in node_types.items() if t not in named}
    assert not missing, f"{language}: node types not in the grammar: {missing}"
    # generic field names (value, body, ...) need not all exist in every grammar, but those tied to a node do
    tied = {f: a for f, a in field_names.items() if a != "fields" and f not in fields}
    assert not tied, f"{language}: fields not in the grammar: {tied}"
    assert spec.plain_operators & anonymous, f"{language}: no plain assignment operator is a grammar token"
    assert spec.literal_types and spec.function_types and spec.extensions


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_extension_maps_back_to_its_language(language):
    spec = LANGUAGES[language]
    for ext in spec.extensions:
        assert language_of(f"pkg/Module{ext}") == language
        assert language_of(f"pkg/MODULE{ext.upper()}") == language
        assert language_of(f"pkg/m{ext}", languages=[o for o in SUPPORTED_LANGUAGES if o != language]) is None
    for suffix in spec.declaration_suffixes:
        assert language_of(f"types/index{suffix}") is None
    # no extension is claimed twice, and a dialect extension belongs to its language
    owners = [e for s in LANGUAGES.values() for e in s.extensions]
    assert len(owners) == len(set(owners))
    for ext, (key, _) in spec.dialects.items():
        assert ext in spec.extensions and grammar_key(language, f"a{ext}") == key
        assert get_parser(key).parse(b"const x = <div/>;").root_node.has_error is False


def test_corpus_languages_and_token_rules_come_from_the_table():
    assert parsing.language_of("a.py") == "python" and parsing.language_of("a.tsx") == "typescript"
    assert parsing.language_of("A.java") is None and parsing.language_of("x.d.ts") is None  # not mined
    assert parsing.grammar_key("typescript", "src/App.tsx") == "tsx"
    assert parsing.grammar_key("typescript", "src/app.ts") == "typescript"
    assert parsing.ATOMIC_TYPES == {"string", "template_string", "regex"}
    assert parsing.COMMENT_TYPES == {"comment", "hash_bang_line", "html_comment"}


def test_one_parser_cache_for_aliases_corpus_and_probing():
    import importlib

    cg = importlib.import_module("mambacode.probing.code_graph")
    from mambacode.languages import parse_within

    assert get_parser("py") is get_parser("python") is parsing.get_parser("python") is get_parser("PYTHON")
    assert cg.parse_within is parsing.parse_within is parse_within  # both parse through the one cache
    assert get_spec("golang") is LANGUAGES["go"]
    with pytest.raises(ValueError, match="unsupported language 'cobol'.*go, java"):
        get_parser("cobol")


@pytest.mark.parametrize("language,code,names", [
    ("python", "import os\ndef a(x):\n    def inner():\n        pass\nclass C:\n    def b(self):\n        return 1\n",
     ["def a", "def b"]),
    ("javascript", "function a() { function inner() {} }\nclass C { b() { return 1; } }\nconst f = () => 1;\n",
     ["function a", "b()"]),
    ("typescript", "function a(x: number): number { return x; }\nclass C { b(): void {} }\n", ["function a", "b()"]),
    ("java", "class C { C() {} int b() { return 1; } }", ["C()", "int b"]),
    ("go", "package m\nfunc a() {}\nfunc (s *S) b() {}\n", ["func a", "func (s *S) b"]),
])
def test_split_functions_cuts_the_function_nodes_of_the_table(language, code, names):
    got = split_functions(code, language)
    assert len(got) == len(names)
    for snippet, start in zip(got, names):
        assert snippet.startswith(start)


def test_parse_within_halts_and_leaves_the_cached_parser_usable():
    """A parse over its time budget raises TimeoutError; the shared parser is reset, so the next parse of
    other code gives the same tree as a fresh tree_sitter.Parser would (not a continuation of the halted one)."""
    import tree_sitter

    from mambacode.languages import parse_within

    big = ("def f(a):\n    return [a, (a + 1), {'k': a}]\n" * 2000).encode()
    with pytest.raises(TimeoutError, match="gave up"):
        parse_within("python", big, -1.0)
    small = b"def g(x):\n    return x * 2\n"
    tree = parse_within("python", small, 5.0)
    fresh = tree_sitter.Parser(get_language("python")).parse(small)
    assert str(tree.root_node) == str(fresh.root_node) and not tree.root_node.has_error
