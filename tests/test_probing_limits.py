"""The parser on hostile input: deep, wide, loop-nested, oversized and surrogate-laden snippets.

Expectations are worked out from the grammar and the data-flow rules by hand (closed forms in the size),
never read off the implementation; times are bounds an order of magnitude above what we measure.
"""

import random
import time
import tracemalloc

import numpy as np
import pytest

from mambacode.probing import build_probe_set, code_graph
from mambacode.probing.code_graph import COMES_FROM as CF, COMPUTED_FROM as CP, ParseLimitError, ParseLimits
from mambacode.probing.fuzz import extreme, fuzz_inputs, mutate
from mambacode.spectral import DEFAULT_SNIPPETS


def test_nesting_past_the_old_recursion_limit():
    # module(0) > expression_statement(1) > assignment(2) > x(3); 494 parenthesized_expressions at depths
    # 3..496, a at 497. x computedFrom a; '(' k and ')' k are siblings under the k-th parenthesis.
    n = 494
    g = code_graph("x = " + "(" * n + "a" + ")" * n, "python")
    texts = g.token_texts()
    assert texts == ["x", "="] + ["("] * n + ["a"] + [")"] * n
    a = 2 + n
    assert g.dfg_edges == [(0, a, CP)] and g.variables == [0, a]
    assert g.tokens[a].depth == 3 + n and g.tokens[0].depth == 3
    assert g.tree_distance(0, a) == 3 + (3 + n) - 2 * 2
    assert g.tree_distance(2, 2 * n + 2) == 2  # outermost ( and ) share a parent
    assert g.is_sibling(2 + n - 1, a + 1) and not g.is_sibling(2, a + 1)
    D = g.distance_matrix()
    k = np.arange(n)  # the k-th '(' sits at depth 3 + k, its ')' too: distance 2; '(' k to ')' j: |k-j| + 2
    assert (D[2 + k, 2 * n + 2 - k] == 2).all()
    assert D[2, a + 1] == (n - 1) + 2


@pytest.mark.parametrize("language", ["python", "javascript", "typescript", "java", "go"])
def test_deep_nesting_in_every_language(language):
    g = code_graph(extreme(language, "parens", 1200), language)
    a = g.token_texts().index("a")
    x = g.token_texts().index("x")
    assert (x, a, CP) in g.dfg_edges and not g.has_error
    with pytest.raises(ParseLimitError) as info:
        code_graph(extreme(language, "parens", 5000), language)
    assert info.value.reason == "too_deep"


def test_long_sum():
    # x = a + a + ... (495 terms): the first a is the reference definition of a, every later a comesFrom it,
    # and x is computedFrom every a
    n = 495
    g = code_graph("x = " + " + ".join(["a"] * n), "python")
    a_idx = [i for i, t in enumerate(g.token_texts()) if t == "a"]
    assert len(a_idx) == n
    expected = {(0, i, CP) for i in a_idx} | {(i, a_idx[0], CF) for i in a_idx[1:]}
    assert set(g.dfg_edges) == expected


@pytest.mark.parametrize("depth", [17, 40])
def test_nested_while_loops_linear_and_exact(depth):
    # while x: (depth times) then x = x + 1. The first condition x_1 is the reference definition; the
    # body's definition x_d reaches every condition and the right-hand x_u around the loops:
    # each x_k (k >= 2) and x_u comesFrom x_1 and x_d, x_1 comesFrom x_d, x_d computedFrom x_u.
    code = "".join("    " * k + "while x:\n" for k in range(depth)) + "    " * depth + "x = x + 1\n"
    t0 = time.perf_counter()
    g = code_graph(code, "python")
    assert time.perf_counter() - t0 < 2.0
    xs = [i for i, t in enumerate(g.token_texts()) if t == "x"]
    conds, d, u = xs[:depth], xs[depth], xs[depth + 1]
    expected = {(c, conds[0], CF) for c in conds[1:] + [u]} | {(c, d, CF) for c in conds + [u]} | {(d, u, CP)}
    assert set(g.dfg_edges) == expected


def test_nested_loops_in_other_languages_stay_fast():
    for language in ("javascript", "java", "go"):
        t0 = time.perf_counter()
        g = code_graph(extreme(language, "while", 200), language)
        assert time.perf_counter() - t0 < 3.0 and not g.has_error


@pytest.mark.parametrize("language,code", [
    ("python", "x = [" + ", ".join(["a"] * 5000) + "]"),
    ("java", "class C { void f() { int[] x = {" + ", ".join(["a"] * 5000) + "}; } }"),
])
def test_wide_nodes_are_linear(language, code):
    # 5,000 uses of a: the first is the reference definition (4,999 comesFrom), x computedFrom all 5,000
    t0 = time.perf_counter()
    g = code_graph(code, language)
    assert time.perf_counter() - t0 < 3.0  # was 11.8 s (Python) before the cursor-based field lookups
    kinds = [k for _, _, k in g.dfg_edges]
    assert kinds.count(CF) == 4999 and kinds.count(CP) == 5000


def test_memory_stays_linear_in_depth():
    tracemalloc.start()
    with pytest.raises(ParseLimitError, match="too_deep"):
        code_graph("x = " + "(" * 20000 + "a" + ")" * 20000, "python")  # was 3.1 GB
    g = code_graph("x = " + "(" * 1900 + "a" + ")" * 1900, "python")
    g.truncated(256).distance_matrix()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20


def test_lone_surrogates_are_replaced_in_place():
    code = "x='\ud800'\ny = x"
    g = code_graph(code, "python")
    assert g.code == "x='\ufffd'\ny = x" and len(g.code) == len(code)
    assert g.token_texts() == ["x", "=", "'\ufffd'", "y", "=", "x"]
    assert (g.tokens[2].start_char, g.tokens[2].end_char) == (2, 5)  # same character offsets as the input
    assert (g.tokens[2].start_byte, g.tokens[2].end_byte) == (2, 7)  # U+FFFD is 3 UTF-8 bytes
    assert (5, 0, CF) in g.dfg_edges


def test_limits_raise_with_a_reason():
    with pytest.raises(ParseLimitError) as info:
        code_graph("x = 1\n" * 20, "python", limits=ParseLimits(max_bytes=50))
    assert info.value.reason == "too_large"
    with pytest.raises(ParseLimitError, match="too_large"):
        code_graph("x = 1\n" * 20, "python", limits=ParseLimits(max_tokens=30))
    with pytest.raises(ParseLimitError, match="too_complex"):
        code_graph("while a:\n    b = a\n", "python", limits=ParseLimits(work_per_node=0))
    with pytest.raises(ParseLimitError, match="too_slow"):
        code_graph("x = 1\n" * 20, "python", limits=ParseLimits(time_limit=-1.0))
    assert len(code_graph("x = 1\n" * 20, "python", limits=ParseLimits(max_bytes=120, max_tokens=60))) == 60


def test_build_probe_set_counts_skips():
    normal = ["def f(a, b):\n    c = a + b\n    return c * a\n"] * 3
    hostile = ["x = " + "(" * 5000 + "a" + ")" * 5000, "x = [" + ", ".join(["a"] * 12000) + "]",
               "def g(q):\n    s = '\udc80'\n    return q + s\n"]
    ps = build_probe_set(normal + hostile, "python", n_per_class=2, progress=False)
    assert ps.meta["n_skipped_too_deep"] == 1 and ps.meta["n_skipped_too_large"] == 1
    assert ps.meta["n_surrogates_replaced"] == 1 and ps.meta["n_snippets"] == 4
    assert "\ufffd" in ps.codes[-1] and "\udc80" not in ps.codes[-1]
    assert "n_skipped_too_deep" not in build_probe_set(normal, "python", n_per_class=2, progress=False).meta


def _check_graph(g):
    """Invariants any parsed snippet must satisfy, checked from the tokens and the source text."""
    n = len(g)
    starts = [t.start_byte for t in g.tokens]
    assert starts == sorted(starts)
    src = g.code.encode("utf-8")
    for t in g.tokens:
        assert src[t.start_byte:t.end_byte].decode("utf-8", errors="replace") == t.text
        assert g.code[t.start_char:t.end_char] == t.text
    assert all(0 <= u < n and 0 <= v < n and u != v for u, v, _ in g.dfg_edges)
    assert set(g.variables) >= {u for u, _, _ in g.dfg_edges}
    if n <= 200:
        D = g.distance_matrix()
        assert (D == D.T).all() and (np.diag(D) == 0).all() and (D[~np.eye(n, dtype=bool)] >= 2).all()


def test_seeded_fuzz_no_crash_no_slow_input():
    from mambacode.corpus import split_functions
    from mambacode.languages import SUPPORTED_LANGUAGES

    seeds = {lang: [s for text in DEFAULT_SNIPPETS if not code_graph(text, lang).has_error
                    for s in [text] + split_functions(text, lang)] for lang in SUPPORTED_LANGUAGES}
    assert all(len(seeds[lang]) >= 2 for lang in SUPPORTED_LANGUAGES)
    reasons = set()
    t_all = time.perf_counter()
    for language, code in fuzz_inputs(seeds, 300, seed=1):
        t0 = time.perf_counter()
        try:
            _check_graph(code_graph(code, language))
        except ParseLimitError as exc:
            reasons.add(exc.reason)
        assert time.perf_counter() - t0 < 2.0, (language, code[:200])
    assert reasons <= {"too_large", "too_deep"} and time.perf_counter() - t_all < 60


def test_mutate_is_seeded():
    a = [mutate("def f(x):\n    return x + 1\n", random.Random(3)) for _ in range(5)]
    b = [mutate("def f(x):\n    return x + 1\n", random.Random(3)) for _ in range(5)]
    assert a == b
