"""Retrieval pairs from hand-written snippets: the expected query/code pairs are written out by hand."""

import textwrap

import pytest

from mambacode.corpus.pairs import PairFilters, comment_spans, find_functions, first_paragraph, make_pair
from mambacode.corpus.parsing import parse, parses_cleanly

PY = textwrap.dedent('''\
    import os


    def join_paths(base, *parts):
        """Join path parts onto a base directory.

        Longer explanation that is not part of the query.
        """
        out = base
        for p in parts:
            out = os.path.join(out, p)
        return out


    class Box:
        """A box."""

        def __init__(self, size):
            """Create a box of a given size."""
            self.size = size
            self.items = []
            self.open = False

        def volume(self, scale=1):
            """Return the scaled volume of the box."""
            # comments do not count as body lines
            side = self.size * scale
            cube = side ** 3
            return cube

        def test_volume(self):
            """Check that the volume is right."""
            assert self.volume() == self.size ** 3
            assert True
            assert True


    def short(x):
        """Too short a body here."""
        return x


    def tiny_doc(x):
        """Two words."""
        y = x + 1
        z = y * 2
        return z


    def undocumented(x):
        y = x + 1
        z = y * 2
        return z
    ''')


def pairs_of(source, language="python", filters=PairFilters()):
    data = source.encode()
    root = parse(data, language).root_node
    comments = comment_spans(root, language)
    kept, reasons = [], []
    for site in find_functions(root, data, language):
        rec, why = make_pair(site, data, language, filters, comments)
        (kept.append(rec) if rec else reasons.append((site.qualname, why)))
    return kept, reasons


def test_first_paragraph():
    assert first_paragraph("\n  Hello   there\n  world.\n\n  More.") == "Hello there world."
    assert first_paragraph("") == ""


def test_python_known_pairs_and_skip_reasons():
    kept, reasons = pairs_of(PY)
    assert [(r["func_name"], r["query"]) for r in kept] == [
        ("join_paths", "Join path parts onto a base directory."),
        ("Box.volume", "Return the scaled volume of the box."),
    ]
    assert kept[0]["code"] == (
        "def join_paths(base, *parts):\n"
        "    out = base\n"
        "    for p in parts:\n"
        "        out = os.path.join(out, p)\n"
        "    return out"
    )
    # the method is dedented to a valid top-level definition and keeps its comment
    assert kept[1]["code"].startswith("def volume(self, scale=1):\n    # comments")
    assert '"""' not in kept[1]["code"]
    assert all(parses_cleanly(r["code"], "python") for r in kept)
    assert dict(reasons) == {
        "Box.__init__": "dunder",
        "Box.test_volume": "test_function",
        "short": "short_body",
        "tiny_doc": "short_docstring",
        "undocumented": "no_docstring",
    }


def test_filters_are_configurable():
    kept, reasons = pairs_of(PY, filters=PairFilters(min_body_lines=1, skip_dunder=False, max_code_lines=4))
    names = {r["func_name"] for r in kept}
    assert "short" in names and "Box.__init__" in names
    assert ("join_paths", "too_long") in reasons  # 5 lines > max_code_lines=4


def test_dedup_hash_ignores_comments_and_layout():
    a = 'def f(x):\n    """Add one to the input value."""\n    y = x + 1  # note\n    z = y\n    return z\n'
    b = 'def f(x):\n    """A different docstring entirely here."""\n    y = x  +  1\n\n    z = y\n    return z\n'
    (ra,), _ = pairs_of(a)
    (rb,), _ = pairs_of(b)
    assert ra["hash"] == rb["hash"]


JS = textwrap.dedent('''\
    /**
     * Sum the numbers of an array quickly.
     * @param {number[]} xs the numbers
     */
    export function sum(xs) {
      let total = 0;
      for (const x of xs) total += x;
      return total;
    }

    class Stack {
      /** Push an item onto the stack. */
      push(item) {
        this.items.push(item);
        this.size += 1;
        return this;
      }
    }

    /** Double every element of the list. */
    const double = (xs) => {
      const out = xs.map((x) => x * 2);
      console.log(out);
      return out;
    };

    // not a JSDoc comment, so no docstring here
    function plain(a) {
      const b = a + 1;
      const c = b * 2;
      return c;
    }
    ''')


def test_javascript_known_pairs():
    kept, reasons = pairs_of(JS, "javascript")
    assert [(r["func_name"], r["query"]) for r in kept] == [
        ("sum", "Sum the numbers of an array quickly."),
        ("Stack.push", "Push an item onto the stack."),
        ("double", "Double every element of the list."),
    ]
    assert kept[0]["code"].startswith("function sum(xs) {")  # no `export`, no comment
    assert kept[1]["code"].startswith("push(item) {") and kept[1]["is_method"]
    assert kept[2]["code"].startswith("const double = (xs) => {")
    assert ("plain", "no_docstring") in reasons


def test_typescript_pairs():
    ts = "/** Greet a person by their name. */\nfunction greet(name: string): string {\n  const s = 'hi ' + name;\n  console.log(s);\n  return s;\n}\n"
    kept, _ = pairs_of(ts, "typescript")
    assert kept[0]["query"] == "Greet a person by their name."
    assert kept[0]["code"].startswith("function greet(name: string): string {")


@pytest.mark.parametrize("language", ["python", "javascript", "typescript"])
def test_garbage_does_not_crash(language):
    kept, reasons = pairs_of("def (((\n}}} function ::: \x7f", language)
    assert kept == []
