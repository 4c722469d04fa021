"""Labels on hand-built snippets, one or more per language; every number below was worked out by hand
from the grammar's tree (depths counted from the root = 0), not read off the implementation."""

import numpy as np
import pytest

from mambacode.probing import code_graph
from mambacode.probing.code_graph import COMES_FROM as CF, COMPUTED_FROM as CP


def _texts(g):
    return [t.text for t in g.tokens]


def _sibling_pairs(g):
    n = len(g)
    return {(i, j) for i in range(n) for j in range(i + 1, n) if g.is_sibling(i, j)}


def _check_distance_matrix(g):
    D = g.distance_matrix()
    assert (D == D.T).all() and (np.diag(D) == 0).all()
    for i in range(len(g)):
        for j in range(len(g)):
            assert D[i, j] == g.tree_distance(i, j)


def test_python_assignment_chain():
    # module(0) > expression_statement(1) > assignment(2) > x(3) =(3) binary_operator(3) > a(4) +(4) 1(4)
    # module(0) > expression_statement(1) > assignment(2) > y(3) =(3) x(3)
    g = code_graph("x = a + 1\ny = x\n", "python")
    assert _texts(g) == ["x", "=", "a", "+", "1", "y", "=", "x"]
    assert [(t.start_byte, t.end_byte) for t in g.tokens][:3] == [(0, 1), (2, 3), (4, 5)]
    text, start, end = g.tokens[7]
    assert (text, start, end) == ("x", 14, 15)
    assert g.tree_distance(0, 1) == 2  # x, = : siblings under assignment
    assert g.tree_distance(0, 2) == 3  # x (3), a (4), LCA assignment (2)
    assert g.tree_distance(2, 4) == 2
    assert g.tree_distance(1, 4) == 3
    assert g.tree_distance(0, 5) == 6  # LCA is the module
    assert g.tree_distance(2, 7) == 7
    assert g.tree_distance(3, 3) == 0
    _check_distance_matrix(g)
    assert _sibling_pairs(g) == {(0, 1), (2, 3), (2, 4), (3, 4), (5, 6), (5, 7), (6, 7)}
    assert g.dfg_edges == sorted([(0, 2, CP), (5, 7, CP), (7, 0, CF)])
    assert g.variables == [0, 2, 5, 7]
    assert g.dfg_kind(7, 0) == CF and g.dfg_kind(0, 7) is None
    M = g.dfg_matrix()
    assert M[0, 2] == 2 and M[7, 0] == 1 and M.sum() == 2 + 2 + 1


def test_python_loop_carried_flow_and_branches():
    # for: i computedFrom xs; the body runs twice, so s on the right also comesFrom the s of the body
    g = code_graph("s = 0\nfor i in xs:\n    s = s + i\n", "python")
    assert _texts(g) == ["s", "=", "0", "for", "i", "in", "xs", ":", "s", "=", "s", "+", "i"]
    assert set(g.dfg_edges) == {(4, 6, CP), (8, 10, CP), (8, 12, CP), (10, 0, CF), (10, 8, CF), (12, 4, CF)}
    # if without else: y may come from the definition before the if or from the one inside it
    g = code_graph("y = 1\nif c:\n    y = 2\nz = y\n", "python")
    t = _texts(g)
    assert t == ["y", "=", "1", "if", "c", ":", "y", "=", "2", "z", "=", "y"]
    assert set(g.dfg_edges) == {(9, 11, CP), (11, 0, CF), (11, 6, CF)}
    # if / else: both branches redefine y, so only those reach the use
    g = code_graph("y = 1\nif c:\n    y = 2\nelse:\n    y = 3\nz = y\n", "python")
    t = _texts(g)
    y_uses = [i for i, s in enumerate(t) if s == "y"]
    last = y_uses[-1]
    assert {e for e in g.dfg_edges if e[0] == last} == {(last, y_uses[1], CF), (last, y_uses[2], CF)}


def test_python_attribute_names_and_with():
    g = code_graph("with open(p) as f:\n    d = f.read()\n", "python")
    t = _texts(g)
    assert t == ["with", "open", "(", "p", ")", "as", "f", ":", "d", "=", "f", ".", "read", "(", ")"]
    assert 12 not in g.variables  # `read` is an attribute name, not a variable
    assert set(g.dfg_edges) == {(6, 1, CP), (6, 3, CP), (8, 10, CP), (10, 6, CF)}
    # tuple assignment pairs element-wise
    g = code_graph("a, b = c, d\n", "python")
    assert set(g.dfg_edges) == {(0, 4, CP), (2, 6, CP)}


def test_javascript():
    # program(0) > lexical_declaration(1) > let(2) variable_declarator(2) > x(3) =(3) a(3) ; ;(2)
    # program(0) > expression_statement(1) > augmented_assignment_expression(2) > x(3) +=(3) 1(3) ; ;(2)
    g = code_graph("let x = a;\nx += 1;\n", "javascript")
    assert _texts(g) == ["let", "x", "=", "a", ";", "x", "+=", "1", ";"]
    assert g.tree_distance(0, 1) == 3
    assert g.tree_distance(1, 3) == 2
    assert g.tree_distance(0, 4) == 2
    assert g.tree_distance(1, 5) == 6
    assert g.tree_distance(4, 8) == 4
    _check_distance_matrix(g)
    assert _sibling_pairs(g) == {(0, 4), (1, 2), (1, 3), (2, 3), (5, 6), (5, 7), (6, 7)}
    assert set(g.dfg_edges) == {(1, 3, CP), (5, 1, CF)}  # x += 1 reads the old x


def test_javascript_destructuring_and_for_of():
    g = code_graph("const {p, q} = o;\nfor (const v of p) { q = v; }\n", "javascript")
    t = _texts(g)
    p, q, o = t.index("p"), t.index("q"), t.index("o")
    v_def = t.index("v")
    p_use = len(t) - 1 - t[::-1].index("p")
    q_def = len(t) - 1 - t[::-1].index("q")
    v_use = len(t) - 1 - t[::-1].index("v")
    assert set(g.dfg_edges) == {(p, o, CP), (q, o, CP), (v_def, p_use, CP), (p_use, p, CF), (q_def, v_use, CP),
                                (v_use, v_def, CF)}


def test_typescript():
    # program(0) > lexical_declaration(1) > let(2), variable_declarator(2) > n(3),
    #   type_annotation(3) > :(4), predefined_type(4) > number(5); =(3), k(3); ;(2)
    # program(0) > expression_statement(1) > update_expression(2) > n(3) ++(3); ;(2)
    g = code_graph("let n: number = k;\nn++;", "typescript")
    assert _texts(g) == ["let", "n", ":", "number", "=", "k", ";", "n", "++", ";"]
    assert g.tree_distance(1, 3) == 4   # n (3) to number (5), LCA variable_declarator (2)
    assert g.tree_distance(2, 3) == 3   # : (4) to number (5), LCA type_annotation (3)
    assert g.tree_distance(0, 3) == 5
    assert g.tree_distance(7, 8) == 2
    assert g.tree_distance(3, 7) == 8
    _check_distance_matrix(g)
    assert _sibling_pairs(g) == {(0, 6), (1, 4), (1, 5), (4, 5), (7, 8)}
    assert 3 not in g.variables  # type names are not variables
    assert set(g.dfg_edges) == {(1, 5, CP), (7, 1, CF)}


def test_java():
    code = "class A { void f(int a) { int b = a; b++; } }"
    g = code_graph(code, "java")
    t = _texts(g)
    assert t == ["class", "A", "{", "void", "f", "(", "int", "a", ")", "{", "int", "b", "=", "a", ";", "b", "++",
                 ";", "}", "}"]
    # local_variable_declaration (D) > integral_type (D+1) > int (D+2); variable_declarator (D+1) > b = a (D+2);
    # ; (D+1)
    assert g.tree_distance(10, 11) == 4
    assert g.tree_distance(11, 13) == 2
    assert g.tree_distance(14, 11) == 3
    assert g.tree_distance(11, 15) == 6  # b (D+2) and b in b++ (update_expression D+1 > b D+2), LCA block D-1
    _check_distance_matrix(g)
    assert g.is_sibling(11, 12) and g.is_sibling(12, 13) and g.is_sibling(15, 16) and not g.is_sibling(10, 11)
    assert set(g.dfg_edges) == {(11, 13, CP), (13, 7, CF), (15, 11, CF)}
    assert 4 not in g.variables and 1 not in g.variables  # method and class names


def test_java_field_access_and_enhanced_for():
    g = code_graph("class C { void m() { for (int i : xs) { this.y = i; } } }", "java")
    t = _texts(g)
    i_def, xs, y = t.index("i"), t.index("xs"), t.index("y")
    i_use = len(t) - 1 - t[::-1].index("i")
    assert y not in g.variables
    assert set(g.dfg_edges) == {(i_def, xs, CP), (i_use, i_def, CF)}


def test_go():
    g = code_graph("func f(a int) {\n\tb := a\n\tb++\n}", "go")
    t = _texts(g)
    assert t == ["func", "f", "(", "a", "int", ")", "{", "b", ":=", "a", "b", "++", "}"]
    # short_var_declaration (S) > expression_list (S+1) > b (S+2); := (S+1); expression_list (S+1) > a (S+2)
    assert g.tree_distance(7, 9) == 4
    assert g.tree_distance(7, 8) == 3
    # inc_statement (S) > b (S+1), ++ (S+1); both statements under statement_list (S-1)
    assert g.tree_distance(7, 10) == 5
    assert g.tree_distance(10, 11) == 2
    _check_distance_matrix(g)
    assert g.is_sibling(3, 4) and g.is_sibling(10, 11) and not g.is_sibling(7, 9)
    assert set(g.dfg_edges) == {(7, 9, CP), (9, 3, CF), (10, 7, CF)}


def test_go_range_and_augmented():
    g = code_graph("func f(xs []int) int {\n\ts := 0\n\tfor _, v := range xs {\n\t\ts += v\n\t}\n\treturn s\n}", "go")
    t = _texts(g)
    xs_def, s_def = t.index("xs"), t.index("s")
    v_def = t.index("v")
    xs_use = len(t) - 1 - t[::-1].index("xs")
    s_aug = [i for i, x in enumerate(t) if x == "s"][1]
    v_use = len(t) - 1 - t[::-1].index("v")
    s_ret = len(t) - 1 - t[::-1].index("s")
    under = t.index("_")
    expected = {(xs_use, xs_def, CF), (v_def, xs_use, CP), (under, xs_use, CP), (s_aug, s_def, CF),
                (s_aug, v_use, CP), (v_use, v_def, CF), (s_ret, s_def, CF), (s_ret, s_aug, CF)}
    # the loop body runs twice: s += v also reads the s it wrote in the previous iteration
    assert set(g.dfg_edges) == expected


def test_unsupported_language_names_supported():
    with pytest.raises(ValueError) as e:
        code_graph("x", "cobol")
    for lang in ("go", "java", "javascript", "python", "typescript"):
        assert lang in str(e.value)


def test_syntax_error_keeps_well_formed_part():
    good = "x = a + 1\n"
    g_ok = code_graph(good, "python")
    g = code_graph(good + "y = = (\n", "python")
    assert g.has_error and g.n_error_tokens > 0
    assert _texts(g)[:5] == _texts(g_ok)
    assert (0, 2, CP) in g.dfg_edges
    assert not code_graph(good, "python").has_error


def test_comments_dropped_strings_atomic_and_unicode_offsets():
    code = "s = 'héllo wörld'  # comment\nt = s\n"
    g = code_graph(code, "python")
    assert _texts(g) == ["s", "=", "'héllo wörld'", "t", "=", "s"]
    tok = g.tokens[3]
    assert code[tok.start_char:tok.end_char] == "t"
    assert code.encode()[tok.start_byte:tok.end_byte] == b"t"
    assert tok.start_byte == tok.start_char + 2  # two 2-byte characters before it
