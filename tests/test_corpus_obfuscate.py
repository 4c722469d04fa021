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
