"""Type-inference labels for hand-written annotated snippets (labels written out by hand)."""

from mambacode.corpus.parsing import parse
from mambacode.corpus.types import (
    OTHER,
    UNLABELLED,
    align_labels_with_tokens,
    encode_labels,
    examples,
    normalise_type,
    top_k_labels,
)


def labelled(source, language):
    exs, _ = examples(parse(source.encode(), language).root_node, language)
    assert len(exs) == 1
    words, tags = exs[0]
    return words, [(w, t) for w, t in zip(words, tags) if t is not None]


def test_python_labels_and_stripped_annotations():
    src = (
        "def area(w: float, h: 'Optional[int]' = None, *rest: typing.Any) -> float:\n"
        "    scale: int = 2\n"
        "    self.cache: Dict[str, int] = {}\n"
        "    return w * scale\n"
    )
    words, labels = labelled(src, "python")
    assert labels == [
        ("area", "float"),
        ("w", "float"),
        ("h", "Optional[int]"),
        ("rest", "Any"),
        ("scale", "int"),
        ("cache", "Dict[str,int]"),
    ]
    assert words == [
        "def", "area", "(", "w", ",", "h", "=", "None", ",", "*", "rest", ")", ":",
        "scale", "=", "2",
        "self", ".", "cache", "=", "{", "}",
        "return", "w", "*", "scale",
    ]


def test_typescript_labels_and_stripped_annotations():
    src = (
        "function greet(name: string, times?: number): string {\n"
        "  const msg: Array<string> = [];\n"
        "  return msg.join(name);\n"
        "}\n"
        "class Point { x: number = 0; norm(): number { return this.x; } }\n"
    )
    words, labels = labelled(src, "typescript")
    assert labels == [
        ("greet", "string"),
        ("name", "string"),
        ("times", "number"),
        ("msg", "Array<string>"),
        ("x", "number"),
        ("norm", "number"),
    ]
    assert ":" not in words and "string" not in words and "number" not in words


def test_unannotated_code_gives_no_example():
    exs, _ = examples(parse(b"def f(x):\n    return x\n", "python").root_node, "python")
    assert exs == []


def test_top_k_and_encoding():
    names = top_k_labels({"int": 5, "str": 5, "bool": 1, "List[int]": 3}, k=2)
    assert names == ["int", "str", OTHER]
    assert encode_labels([None, "str", "bool", "int"], names) == [UNLABELLED, 1, 2, 0]
    # first sub-word of a labelled word keeps the label; specials and unlabelled words are ignored
    assert align_labels_with_tokens([None, 0, 0, 1, 2, None], [UNLABELLED, 1, 0]) == [-100, -100, -100, 1, 0, -100]


def test_normalise_type():
    assert normalise_type("typing.Optional[ int ]", "python") == "Optional[int]"
    assert normalise_type('"Node"', "python") == "Node"
    assert normalise_type(": Promise<void>", "typescript") == "Promise<void>"
