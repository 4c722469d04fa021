"""Hostile inputs for `code_graph`: a seeded mutator of real snippets and the extreme families of issue 11.

Used by `tests/test_probing_limits.py` (a few hundred cases) and `benchmarks/fuzz_parser.py` (>= 10,000).
Every input is a (language, code) pair; the same seed gives the same inputs.
"""

from __future__ import annotations

import random

from ..languages import SUPPORTED_LANGUAGES

# tokens that stress a parser when spliced in: brackets, operators, keywords, quotes, odd characters
_SPLICES = ["(", ")", "[", "]", "{", "}", "'", '"', "`", "\\", ":", ";", ",", ".", "=", "+=", "++", "=>", "->",
            " if ", " else ", " for ", " while ", " in ", " return ", "\n", "\t", "    ", "\ud800", "\udfff",
            "\x00", "\u2028", "é", "🙂", "#", "//", "/*", "*/", '"""', "${", "<", ">", "0x", "1e999"]


def mutate(code: str, rng: random.Random, n_edits: int | None = None) -> str:
    """`code` after a few random edits: deletions, duplications, splices, line swaps, repeats."""
    for _ in range(n_edits if n_edits is not None else rng.randint(1, 6)):
        if not code:
            code = rng.choice(_SPLICES)
            continue
        i = rng.randrange(len(code) + 1)
        j = min(len(code), i + rng.randint(1, 40))
        op = rng.randrange(7)
        if op == 0:  # delete a span
            code = code[:i] + code[j:]
        elif op == 1:  # duplicate a span
            code = code[:j] + code[i:j] + code[j:]
        elif op == 2:  # splice a token
            code = code[:i] + rng.choice(_SPLICES) + code[i:]
        elif op == 3:  # swap two lines
            lines = code.split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            code = "\n".join(lines)
        elif op == 4:  # repeat a span many times (wide nodes)
            code = code[:j] + code[i:j] * rng.randint(2, 60) + code[j:]
        elif op == 5:  # wrap a span in brackets many times (deep nodes)
            k = rng.randint(2, 300)
            code = code[:i] + "(" * k + code[i:j] + ")" * k + code[j:]
        else:  # truncate
            code = code[:i]
    return code


def _nest(language: str, depth: int, head: str, body: str) -> str:
    if language == "python":  # one space per level: the text still grows as depth**2 / 2
        depth = min(depth, 4000)
        return "".join(" " * k + head + ":\n" for k in range(depth)) + " " * depth + body + "\n"
    if language == "go":
        return "package m\nfunc f(x int) {\n" + (head + " {\n") * depth + body + "\n" + "}\n" * depth + "}\n"
    wrapper = {"java": "class C { void f(int x) {\n%s\n} }", "javascript": "function f(x) {\n%s\n}",
               "typescript": "function f(x: number) {\n%s\n}"}[language]
    return wrapper % ((head + " {\n") * depth + body + ";\n" + "}\n" * depth)


def extreme(language: str, family: str, size: int) -> str:
    """One input of an extreme family: `parens` (nested brackets), `sum` (a long `a + a + ...`), `while`
    (nested loops), `if` (nested branches), `list` (a wide literal), `args` (a wide call), `surrogate`."""
    stmt_end = "" if language in ("python", "go") else ";"
    assign = {"python": "x = %s", "go": "x := %s", "java": "int x = %s;"}.get(language, "let x = %s;")
    if family == "parens":
        expr = "(" * size + "a" + ")" * size
    elif family == "sum":
        expr = " + ".join(["a"] * size)
    elif family == "list":
        expr = {"python": "[%s]", "go": "[]int{%s}", "java": "new int[]{%s}"}.get(language, "[%s]") \
            % ", ".join(["a"] * size)
    elif family == "args":
        expr = "g(" + ", ".join(f"a{k % 50}" for k in range(size)) + ")"
    elif family == "surrogate":
        expr = "'\ud800" + "\udc00x" * size + "'" if language != "go" else '"\ud800"'
    elif family in ("while", "if"):
        cond = "x" if language in ("python", "go") else "(x)"
        head = {"while": "for " + cond if language == "go" else "while " + cond, "if": "if " + cond}[family]
        body = {"python": "x = x + 1", "go": "x = x + 1"}.get(language, "x = x + 1")
        return _nest(language, size, head, body)
    else:
        raise ValueError(f"unknown extreme family {family!r}")
    line = assign % expr + stmt_end if language not in ("java", "go") else assign % expr
    if language == "java":
        return "class C { void f() { " + line + " } }"
    if language == "go":
        return "package m\nfunc f() {\n\t" + line + "\n}\n"
    return line


FAMILIES = ("parens", "sum", "while", "if", "list", "args", "surrogate")


def fuzz_inputs(seeds: dict[str, list[str]], n: int, seed: int = 0, extreme_share: float = 0.2):
    """`n` (language, code) pairs: mutations of `seeds` (language -> snippets) plus extreme-family inputs
    of random sizes (small to far beyond the parser's limits), languages in turn."""
    rng = random.Random(seed)
    languages = [lang for lang in SUPPORTED_LANGUAGES if seeds.get(lang)]
    for k in range(n):
        language = languages[k % len(languages)]
        if rng.random() < extreme_share:
            family = rng.choice(FAMILIES)
            size = int(10 ** rng.uniform(0.5, 4.7))  # 3 .. 50,000
            yield language, extreme(language, family, size)
        else:
            yield language, mutate(rng.choice(seeds[language]), rng)
