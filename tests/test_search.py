"""`mambacode index` / `mambacode search` end to end on a tiny random retrieval model and a hand-written tree.

References are independent of the code under test: the functions' names and lines are written out by hand,
dense ranks come from `model.encode` cosines computed here, RRF from the formula in float64 by hand.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mambacode import MambaCodeForRetrieval
from mambacode.cli import main
from mambacode.search import (CodeIndex, Fusion, SearchIndexError, Searcher, build_index, code_tokens,
                              reciprocal_rank_fusion, scan_sources)
from mambacode.search.model import PROBE_TEXT

GEOMETRY = '''import math


def circle_area(radius):
    """Area of a circle."""
    return math.pi * radius ** 2


class Vector:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm(self):
        return math.hypot(self.x, self.y)
'''
SERVER = '''// a tiny router
function parseConfig(text) {
  return JSON.parse(text);
}

class Router {
  route(path) {
    return path.split("/");
  }
}
'''
GREET = 'def greet(name):\n    return "hello " + name\n'
# (path, line, end_line, name, language), written out by hand
EXPECTED = [
    ("pkg/geometry.py", 4, 6, "circle_area", "python"),
    ("pkg/geometry.py", 10, 11, "Vector.__init__", "python"),
    ("pkg/geometry.py", 13, 14, "Vector.norm", "python"),
    ("pkg/greet.py", 1, 2, "greet", "python"),
    ("web/server.js", 2, 4, "parseConfig", "javascript"),
    ("web/server.js", 7, 9, "Router.route", "javascript"),
]


def _write(root, rel, content):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content.encode("utf-8") if isinstance(content, str) else content)


def _tree(root):
    _write(root, "pkg/geometry.py", GEOMETRY)
    _write(root, "pkg/greet.py", GREET)
    _write(root, "web/server.js", SERVER)
    _write(root, "pkg/broken.py", "def broken(:\n    return )\n")  # unparseable
    _write(root, "pkg/latin1.py", b"def caf\xe9():\n    pass\n")  # not UTF-8
    _write(root, "README.md", "# not code\n")
    _write(root, ".git/config.py", "def hidden(): pass\n")  # never walked
    return root


def _model(tiny, tokenizer, path, seed):
    torch.manual_seed(seed)
    model = MambaCodeForRetrieval(tiny("s4d", vocab_size=len(tokenizer), max_position_embeddings=512,
                                      pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny, tokenizer):
    base = tmp_path_factory.mktemp("search")
    model_dir = _model(tiny, tokenizer, base / "model", seed=0)
    src = _tree(str(base / "src"))
    index = str(base / "index")
    report = build_index(src, index, model_dir, progress=False)
    return dict(base=base, model_dir=model_dir, src=src, index=index, report=report)


def test_metadata_table_matches_the_hand_written_functions(setup):
    idx = CodeIndex.load(setup["index"])
    got = [(r["path"], r["line"], r["end_line"], r["name"], r["language"]) for r in idx.rows]
    assert got == EXPECTED
    assert idx.dense.ntotal == len(EXPECTED)
    report = setup["report"]
    assert report.skipped == {"pkg/broken.py": "syntax errors", "pkg/latin1.py": "not UTF-8"}
    assert report.summary["ignored_files"] == 1 and report.summary["functions_with_syntax_errors"] == 1
    assert report.embedded == len(EXPECTED) and report.reused == 0
    assert idx.rows[0]["snippet"].splitlines()[0] == "def circle_area(radius):"


def _cut_by_hand(src, entries):
    """Each function's text cut from its file by the hand-written line numbers."""
    texts = []
    for path, line, end, *_ in entries:
        with open(os.path.join(src, *path.split("/")), encoding="utf-8") as fh:
            texts.append("\n".join(fh.read().split("\n")[line - 1:end]).strip())
    return texts


def test_dense_ranking_equals_cosines_of_model_encode(setup, tokenizer):
    model = MambaCodeForRetrieval.from_pretrained(setup["model_dir"])
    query = "area of a circle"
    searcher = Searcher(setup["index"])
    texts = _cut_by_hand(setup["src"], EXPECTED)
    assert texts[0] == GEOMETRY.split("\n\n\n")[1].strip()
    emb = model.encode(texts, tokenizer, max_length=256).double()
    q = model.encode([query], tokenizer, max_length=64).double()[0]
    cos = (emb @ q / (emb.norm(dim=1) * q.norm())).numpy()
    hits = searcher.search(query, k=6, mode="dense")
    assert [h.line for h in hits] == [EXPECTED[i][1] for i in np.argsort(-cos, kind="stable")]
    np.testing.assert_allclose([h.score for h in hits], np.sort(cos)[::-1], atol=1e-5)


def test_bm25_ranks_the_exact_name_first(setup):
    searcher = Searcher(setup["index"])
    for name in ("circle_area", "parseConfig", "greet"):
        hits = searcher.search(name, k=3, mode="bm25")
        assert hits[0].name == name and hits[0].bm25_rank == 1 and hits[0].dense_rank is None
    assert searcher.search("zzzz_unknown_word", mode="bm25") == []


def test_python_files_are_read_in_their_declared_encoding(tmp_path):
    _write(str(tmp_path), "latin.py", "# -*- coding: latin-1 -*-\ndef caf\u00e9():\n    pass\n".encode("latin-1"))
    _write(str(tmp_path), "bad.py", b"# coding: no-such-codec\ndef f(): pass\n")
    _write(str(tmp_path), "web.js", b"function caf\xe9() {}\n")
    scan = scan_sources(str(tmp_path))
    assert [(f.path, f.line, f.name) for f in scan.functions] == [("latin.py", 2, "caf\u00e9")]
    assert scan.skipped["web.js"] == "not UTF-8" and scan.skipped["bad.py"].startswith("bad encoding declaration")


def test_code_tokens_split_identifiers():
    assert code_tokens("parseConfig(the_file_path)") == ["parseconfig", "parse", "config", "the_file_path", "file",
                                                          "path"]


def test_rrf_against_hand_computation(setup):
    fused = reciprocal_rank_fusion([[3, 1, 2], [1, 4]], k=60)
    expected = {1: 1 / 62 + 1 / 61, 3: 1 / 61, 2: 1 / 63, 4: 1 / 62}
    assert [d for d, _ in fused] == [1, 3, 4, 2]
    for doc, score in fused:
        assert score == pytest.approx(expected[doc], abs=1e-15)
    # hybrid search = RRF of the dense and BM25 lists, recomputed here from their ranks
    searcher = Searcher(setup["index"])
    query = "circle area radius"
    dense, _ = searcher.dense_ranking(query, 100)
    bm25, _ = searcher.bm25_ranking(query, 100)
    score = {}
    for ranking in (dense, bm25):
        for r, doc in enumerate(ranking):
            score[doc] = score.get(doc, 0.0) + 1.0 / (60 + r + 1)
    hits = searcher.search(query, k=4, mode="hybrid")
    want = sorted(score, key=lambda d: -score[d])[:4]
    assert [(h.path, h.line) for h in hits] == [(EXPECTED[d][0], EXPECTED[d][1]) for d in want]
    np.testing.assert_allclose([h.score for h in hits], [score[d] for d in want], rtol=1e-12)
    assert hits[0].name == "circle_area"  # first in BM25, so first or tied-first after fusion
    # a fine-tuned model's config carries the fusion its validation split chose: the searcher weighs by it
    model, tokenizer = searcher.model, searcher.tokenizer
    model.config.hybrid_fusion = {"dense_weight": 0.3, "k": 10, "chosen_on": "retrieval:validation"}
    try:
        weighted = Searcher(setup["index"], model=model, tokenizer=tokenizer)
        assert weighted.fusion == Fusion(0.3, 10)
        score = {}
        for ranking, weight in ((dense, 0.3), (bm25, 1.0)):
            for r, doc in enumerate(ranking):
                score[doc] = score.get(doc, 0.0) + weight / (10 + r + 1)
        hits = weighted.search(query, k=4, mode="hybrid")
        want = sorted(score, key=lambda d: -score[d])[:4]
        assert [(h.path, h.line) for h in hits] == [(EXPECTED[d][0], EXPECTED[d][1]) for d in want]
        np.testing.assert_allclose([h.score for h in hits], [score[d] for d in want], rtol=1e-12)
    finally:
        del model.config.hybrid_fusion


def test_incremental_reindex_embeds_only_the_changed_function_and_drops_deleted_files(setup, tmp_path, tiny,
                                                                                        tokenizer, monkeypatch):
    import shutil

    src = str(tmp_path / "src")
    shutil.copytree(setup["src"], src)
    index = str(tmp_path / "index")
    first = build_index(src, index, setup["model_dir"], progress=False)
    before = CodeIndex.load(index)
    old_vectors = {r["name"]: v for r, v in zip(before.rows, before.vectors())}

    encoded = []
    original = MambaCodeForRetrieval.encode

    def counting(self, texts, *args, **kwargs):
        encoded.extend(t for t in texts if t != PROBE_TEXT)
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(MambaCodeForRetrieval, "encode", counting)
    new_area = 'def circle_area(radius):\n    """Area."""\n    return 3.14159 * radius * radius'
    _write(src, "pkg/geometry.py", GEOMETRY.replace(GEOMETRY.split("\n\n\n")[1].strip(), new_area))
    os.remove(os.path.join(src, "web", "server.js"))
    report = build_index(src, index, setup["model_dir"], progress=False)
    assert first.embedded == len(EXPECTED)
    assert encoded == [new_area]
    assert report.embedded == 1 and report.reused == 3
    assert report.changed_files == ["pkg/geometry.py"] and report.deleted_files == ["web/server.js"]
    assert report.new_files == [] and report.unchanged_files == 1
    after = CodeIndex.load(index)
    assert [(r["path"], r["name"]) for r in after.rows] == [(p, n) for p, _, _, n, lang in EXPECTED
                                                            if lang == "python"]
    for row, vec in zip(after.rows, after.vectors()):
        if row["name"] != "circle_area":
            np.testing.assert_array_equal(vec, old_vectors[row["name"]])
    assert not np.allclose(after.vectors()[0], old_vectors["circle_area"])

    # another model: every function is embedded again, and the old index refuses the other model
    encoded.clear()
    other = _model(tiny, tokenizer, tmp_path / "other", seed=1)
    with pytest.raises(SearchIndexError, match="built with another model"):
        Searcher(index, other)
    report = build_index(src, index, other, progress=False)
    assert report.model_changed and report.embedded == 4
    assert sorted(encoded) == sorted(_cut_by_hand(src, [e for e in EXPECTED if e[4] == "python"][1:]) + [new_area])


def test_clear_errors(setup, tmp_path, capsys):
    with pytest.raises(SearchIndexError, match="no index folder"):
        CodeIndex.load(str(tmp_path / "missing"))
    assert main(["search", "x", "--index", str(tmp_path / "missing")]) == 2
    assert "no index folder" in capsys.readouterr().err
    assert main(["search", "  ", "--index", setup["index"]]) == 2
    assert "empty query" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    assert main(["index", setup["src"], "--model", setup["model_dir"], "--output", str(tmp_path / "notes")]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    assert main(["index", str(tmp_path / "nope"), "--model", setup["model_dir"], "--output", str(tmp_path / "i")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_index_and_search_json(setup, tmp_path, capsys):
    index = str(tmp_path / "index")
    assert main(["index", setup["src"], "--model", setup["model_dir"], "--output", index, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "indexed 6 functions from 3 files" in out and "pkg/broken.py: syntax errors" in out
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for mode in ("hybrid", "dense", "bm25"):
        script = os.path.join(os.path.dirname(sys.executable), "mambacode")  # setup.cfg's console script
        launcher = [script] if os.path.exists(script) else [sys.executable, "-m", "mambacode.cli"]
        cmd = launcher + ["search", "greet", "--index", index, "-k", "3", "--mode", mode,
                          "--json"] if mode == "hybrid" else None
        if cmd:  # the console script once, in a fresh process
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
        else:
            assert main(["search", "greet", "--index", index, "-k", "3", "--mode", mode, "--json"]) == 0
            result = json.loads(capsys.readouterr().out)
        assert result["mode"] == mode and len(result["hits"]) == (1 if mode == "bm25" else 3)
        assert {"path", "line", "name", "snippet", "score", "file"} <= set(result["hits"][0])
        if mode != "dense":
            assert result["hits"][0]["name"] == "greet" and result["hits"][0]["line"] == 1
    assert main(["search", "greet", "--index", index, "-k", "2"]) == 0
    text = capsys.readouterr().out
    assert "greet.py:1:1: greet" in text  # path:line:col first (issue 24: quickfix-readable)


@pytest.mark.parametrize("language, path, code, expected", [
    ("go", "m.go", "package m\n\ntype T struct{}\n\nfunc (t *T) Get() int {\n\treturn 1\n}\n\nfunc Free() {}\n",
     [(5, 7, "Get"), (9, 9, "Free")]),
    ("java", "C.java", "class C {\n  C() {}\n  int size() {\n    return 0;\n  }\n}\n",
     [(2, 2, "C.C"), (3, 5, "C.size")]),
    ("typescript", "a.ts", "export class Box {\n  open(): void {}\n}\nfunction wrap(x: number) { return x; }\n",
     [(2, 2, "Box.open"), (4, 4, "wrap")]),
])
def test_extract_functions_lines_and_qualified_names(language, path, code, expected):
    from mambacode.corpus import extract_functions, split_functions

    spans = extract_functions(code, language, path)
    assert [(s.line, s.end_line, s.name) for s in spans] == expected
    assert [s.code for s in spans] == split_functions(code, language, path)
    lines = code.split("\n")
    for s, (line, end, _) in zip(spans, expected):  # the text is exactly the hand-given lines (first one trimmed)
        assert s.code == "\n".join(lines[line - 1:end]).strip()
