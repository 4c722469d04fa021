"""AdvTest-style obfuscation against hand-obfuscated expectations; every result must parse."""

from mambacode.corpus.obfuscate import obfuscate
from mambacode.corpus.parsing import parses_cleanly


def test_python_known_obfuscation():
    code = (
        "def scale_all(self, values, factor=2, *rest, **options):\n"
        "    import math\n"
        "    result = []\n"
        "    for i, v in enumerate(values):\n"
        "        result.append(math.floor(v * factor) + len(rest))\n"
        "    self.values = result\n"
        "    squares = [x * x for x in result]\n"
        "    with open(options['path']) as fh:\n"
        "        text = fh.read()\n"
        "    print(text, sep=GLOBAL_SEP)\n"
        "    return scale_all(self, squares, factor=factor)\n"
    )
    expected = (
        "def func(self, arg_0, arg_1=2, *arg_2, **arg_3):\n"
        "    import math\n"
        "    var_0 = []\n"
        "    for var_1, var_2 in enumerate(arg_0):\n"
        "        var_0.append(math.floor(var_2 * arg_1) + len(arg_2))\n"
        "    self.values = var_0\n"
        "    var_3 = [var_4 * var_4 for var_4 in var_0]\n"
        "    with open(arg_3['path']) as var_5:\n"
        "        var_6 = var_5.read()\n"
        "    print(var_6, sep=GLOBAL_SEP)\n"
        "    return func(self, var_3, factor=arg_1)\n"
    )
    out = obfuscate(code, "python")
    assert out == expected
    assert parses_cleanly(out, "python")


def test_python_attributes_globals_and_keywords_untouched():
    code = "def f(a):\n    global counter\n    counter = a.counter\n    b = dict(a=a)\n    return b.a\n"
    assert obfuscate(code, "python") == (
        "def func(arg_0):\n    global counter\n    counter = arg_0.counter\n    var_0 = dict(a=arg_0)\n    return var_0.a\n"
    )


def test_python_placeholder_clash_is_refused():
    # `var_0` is already a global name here: renaming a local to it would change the meaning
    assert obfuscate("def f(a):\n    b = a\n    return var_0(b)\n", "python") is None


def test_javascript_known_obfuscation():
    code = (
        "function total(items, {tax, rate = 1}) {\n"
        "  let sum = 0;\n"
        "  for (const it of items) { sum += it.price * rate; }\n"
        "  const out = {sum, tax};\n"
        "  try { check(out); } catch (err) { console.error(err.message); }\n"
        "  return total(out.sum);\n"
        "}"
    )
    expected = (
        "function func(arg_0, {tax: arg_1, rate: arg_2 = 1}) {\n"
        "  let var_0 = 0;\n"
        "  for (const var_1 of arg_0) { var_0 += var_1.price * arg_2; }\n"
        "  const var_2 = {sum: var_0, tax: arg_1};\n"
        "  try { check(var_2); } catch (var_3) { console.error(var_3.message); }\n"
        "  return func(var_2.sum);\n"
        "}"
    )
    out = obfuscate(code, "javascript")
    assert out == expected
    assert parses_cleanly(out, "javascript")


def test_typescript_method_and_arrow():
    method = "get(key: string, fallback?: number): number {\n  const v: number = this.map[key] ?? fallback;\n  return v;\n}"
    out = obfuscate(method, "typescript", is_method=True)
    assert out == "func(arg_0: string, arg_1?: number): number {\n  const var_0: number = this.map[arg_0] ?? arg_1;\n  return var_0;\n}"
    assert parses_cleanly(out, "typescript", wrap_method=True)
    arrow = "const pick = (xs: number[]) => { const first = xs[0]; return first; };"
    assert obfuscate(arrow, "typescript") == "const func = (arg_0: number[]) => { const var_0 = arg_0[0]; return var_0; };"


def test_unparseable_input_gives_none():
    assert obfuscate("def f(:\n  pass", "python") is None


def test_obfuscation_augmentation_of_training_pairs():
    """Rows are drawn by sha256(seed:row) below the fraction (recomputed here with hashlib); a drawn row gets the
    hand-obfuscated code, an undrawn one keeps its own, and a drawn row that cannot be obfuscated (a syntax
    error) stays plain and is counted."""
    import hashlib

    import pytest
    from datasets import Dataset

    from mambacode.corpus import obfuscate_training_codes

    plain = "def add(a, b):\n    total = a + b\n    return total\n"
    hand = "def func(arg_0, arg_1):\n    var_0 = arg_0 + arg_1\n    return var_0\n"
    broken = "def add(a, b):\n    return a +\n"
    rows = [{"query": f"q{i}", "code": broken if i == 7 else plain} for i in range(40)]
    ds = Dataset.from_list(rows)

    def drawn(seed, row, fraction):
        return int.from_bytes(hashlib.sha256(f"{seed}:{row}".encode()).digest()[:8], "big") / 2.0**64 < fraction

    for seed, fraction in ((0, 0.5), (3, 0.25), (1, 1.0)):
        out, counts = obfuscate_training_codes(ds, fraction, seed)
        want = [hand if drawn(seed, i, fraction) and i != 7 else rows[i]["code"] for i in range(40)]
        assert out["code"] == want and out["query"] == ds["query"]
        n_drawn = sum(drawn(seed, i, fraction) for i in range(40))
        assert counts == {"rows": 40, "drawn": n_drawn, "obfuscated": n_drawn - drawn(seed, 7, fraction),
                          "failed": int(drawn(seed, 7, fraction))}
        assert 0 < n_drawn < 40 or fraction == 1.0
    assert obfuscate_training_codes(ds, 0.0)[0]["code"] == ds["code"]
    with pytest.raises(ValueError, match="fraction=1.5"):
        obfuscate_training_codes(ds, 1.5)
    with pytest.raises(ValueError, match="no column 'body'"):
        obfuscate_training_codes(ds, 0.5, code_column="body")
