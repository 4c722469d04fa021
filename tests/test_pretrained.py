"""Shipped checkpoints (`mambacode.pretrained`, `scripts/ship_pretrained.py`).

`export_pretrained` is run on tiny random models; the slice metrics its `shipped.json` and card claim are then
recomputed here by independent loops (one text at a time, python-float cosine ranks; per-position float64
log-softmax), the folder is checked file by file and loaded in a process where `mambacode` cannot be imported.
Every checkpoint actually shipped under `pretrained/` must reproduce its card the same way."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

import mambacode
from mambacode import MambaCodeForMaskedLM, MambaCodeForRetrieval
from mambacode import pretrained as shipped
from mambacode.model_names import DEFAULT_SEARCH_MODEL
from mambacode.modeling.checksums import verify_folder

CODES = ["def add(a, b):\n    return a + b", "for i in range(10): print(i)", "class A: pass",
         "x = '\u00e9'", "def sub(a, b): return a - b", "print(add(1, 2))", "class B(A):\n    y = 1",
         "for j in range(3):\n    x = j"]
#: the checkpoints that ship: a fixed list, so that a folder missing from a checkout fails instead of testing nothing
SHIPPED_NAMES = ("rocoder-mlm", "s4d-hf-codesearch", "s4d-hf-mlm", "s4d-minilm-codesearch", "s4d-mlm")
MODELING_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modeling")
QUERIES = ["add two numbers", "print numbers", "empty class", "a string", "subtract", "call add", "subclass",
           "loop and assign"]


def naive_retrieval(model, tokenizer, rows, max_query_length, max_code_length):
    """MRR and R@1 with each text embedded alone and ranks counted in python floats (ties against the answer)."""
    def embed(text, limit):
        return model.encode([text], tokenizer, batch_size=1, max_length=limit)[0].tolist()

    q = [embed(r["query"], max_query_length) for r in rows]
    c = [embed(r["code"], max_code_length) for r in rows]

    def cos(a, b):
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
        return sum(x * y for x, y in zip(a, b)) / (na * nb)

    rr, top1 = [], []
    for i in range(len(rows)):
        scores = [cos(q[i], c[j]) for j in range(len(rows))]
        rank = sum(1 for s in scores if s >= scores[i] - 1e-12)
        rr.append(1.0 / rank)
        top1.append(rank == 1)
    return {"mrr": sum(rr) / len(rr), "recall@1": sum(top1) / len(top1)}


def naive_mlm(model, tokenizer, texts, max_length):
    """Masked-token accuracy and loss: the positions of `mask_positions`, each scored by its own float64
    log-softmax."""
    special = set(tokenizer.all_special_ids)
    correct = total = 0
    nll = 0.0
    with torch.no_grad():
        for index, text in enumerate(texts):
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            positions = shipped.mask_positions(ids, special, index)
            masked = [tokenizer.mask_token_id if i in positions else t for i, t in enumerate(ids)]
            logits = model(input_ids=torch.tensor([masked])).logits[0]
            for p in positions:
                logp = torch.log_softmax(logits[p].double(), dim=-1)
                nll -= float(logp[ids[p]])
                correct += int(int(logits[p].argmax()) == ids[p])
                total += 1
    return {"masked_accuracy": correct / total, "loss": nll / total}


def test_mask_positions_are_fixed_non_special_and_about_15_percent():
    ids = list(range(5, 4005))
    special = {7, 8, 9}
    first = shipped.mask_positions(ids, special, index=3)
    assert first == shipped.mask_positions(ids, special, index=3)  # the same every time
    assert first != shipped.mask_positions(ids, special, index=4)  # and differs between texts
    assert not {ids[p] for p in first} & special
    assert abs(len(first) / (len(ids) - 3) - 0.15) < 0.03
    assert len(shipped.mask_positions([1, 2], {1}, index=0)) == 1  # at least one, never the special one
    assert shipped.mask_positions([1], {1}, index=0) == []


@pytest.fixture(scope="module")
def code_tokenizer(tmp_path_factory):
    """A tokenizer as the corpus trains them (its folder names the class, so AutoTokenizer runs no remote code)."""
    from mambacode.corpus import train_tokenizer

    return train_tokenizer(CODES * 5 + QUERIES * 5, vocab_size=300, min_frequency=1,
                           output_dir=str(tmp_path_factory.mktemp("tok")))


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _dtypes(folder):
    with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as fh:
        return {fh.get_tensor(k).dtype for k in fh.keys()}


def test_export_writes_a_folder_that_reproduces_its_card(tmp_path, tiny, code_tokenizer):
    tokenizer = code_tokenizer
    model = MambaCodeForRetrieval(tiny("s4d", vocab_size=len(tokenizer), max_position_embeddings=64)).eval()
    source = _save(model, tokenizer, tmp_path / "trained")
    rows = [{"query": q, "code": c, "extra": 1} for q, c in zip(QUERIES, CODES)]
    target = str(tmp_path / "ship" / "tiny-codesearch")
    info = shipped.export_pretrained(source, target, task="retrieval", slice_rows=rows,
                                     commands=["python make.py --x 1"], test_metrics={"advtest_mrr": 0.25},
                                     description="A tiny test model.", max_query_length=16, max_code_length=32,
                                     base_model="tiny-mlm")
    # the folder: Hub layout, checksums that verify, float32 on load, the slice as given
    config = json.load(open(os.path.join(target, "config.json")))
    assert config["dtype"] == "float32" and "AutoModel" in config["auto_map"]
    for f in ("modeling_mambacode.py", "configuration_mambacode.py", "tokenizer.json", "modules.json", "README.md"):
        assert os.path.exists(os.path.join(target, f)), f
    verify_folder(target)
    assert _dtypes(target) == {torch.float16 if info["weights_dtype"] == "float16" else torch.float32}
    assert [json.loads(line) for line in open(os.path.join(target, "eval_slice.jsonl"))] == [
        {"query": q, "code": c} for q, c in zip(QUERIES, CODES)]
    assert not [p for p in os.listdir(tmp_path / "ship") if p != "tiny-codesearch"]  # no staging left
    # what the card claims, recomputed from the shipped weights by the naive loops
    loaded, tok = shipped.load_for_task(target, "retrieval")
    assert next(loaded.parameters()).dtype == torch.float32
    expected = naive_retrieval(loaded, tok, rows, 16, 32)
    for key, value in expected.items():
        assert abs(info["slice_metrics"][key] - value) <= info["slice_tolerance"][key], (key, info, expected)
    card = open(os.path.join(target, "README.md")).read()
    assert card.startswith("---\n") and "## Shipped checkpoint" in card and "python make.py --x 1" in card
    assert f"| mrr | {info['slice_metrics']['mrr']:.3f} | {info['slice_tolerance']['mrr']:.4f} |" in card
    assert "| advtest_mrr | 0.250 |" in card
    # named as its folder, based on the shipped encoder; the tokenizer cuts at the model's 64 positions, not 1024
    from huggingface_hub import ModelCard

    assert ModelCard(card).data.base_model == "tiny-mlm" and "\n# tiny-codesearch\n" in card
    assert json.load(open(os.path.join(target, "tokenizer_config.json")))["model_max_length"] == 64
    assert len(tok("x = 1\n" * 200, truncation=True)["input_ids"]) == 64
    # the float16 weights were kept only if they move no metric by half a unit of the card's precision
    if info["weights_dtype"] == "float16":
        original, _ = shipped.load_for_task(source, "retrieval")
        assert all(abs(v - info["slice_metrics"][k]) < 5e-4
                   for k, v in naive_retrieval(original, tok, rows, 16, 32).items())

    # loads and ranks where mambacode cannot be imported (the README's quick start, with this folder)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mambacode"] = None
        import torch
        from transformers import AutoModel, AutoTokenizer
        path = {target!r}
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        model = AutoModel.from_pretrained(path, trust_remote_code=True)
        query = model.encode(["add two numbers"], tokenizer)
        codes = model.encode(["def add(a, b):\\n    return a + b", "class A: pass"], tokenizer)
        print("SCORES", (query @ codes.T).tolist())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                            HF_MODULES_CACHE=str(tmp_path / "modules")))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Do you wish to run the custom code" not in out.stdout + out.stderr  # nothing asks the user
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("SCORES ")]
    assert len(lines) == 1, out.stdout[-1500:] + out.stderr[-1500:]
    line = lines[0]
    scores = json.loads(line[len("SCORES "):])
    with torch.no_grad():
        q = loaded.encode(["add two numbers"], tok)
        c = loaded.encode(["def add(a, b):\n    return a + b", "class A: pass"], tok)
    assert torch.allclose(torch.tensor(scores), q @ c.T, atol=1e-5)


def test_export_keeps_float32_when_float16_would_move_the_metrics(tmp_path, tiny, code_tokenizer, monkeypatch):
    tokenizer = code_tokenizer
    model = MambaCodeForMaskedLM(tiny("s4d", vocab_size=len(tokenizer), max_position_embeddings=64)).eval()
    source = _save(model, tokenizer, tmp_path / "mlm")
    rows = [{"code": c} for c in CODES]
    monkeypatch.setattr(shipped, "REPORTED_DECIMALS", 12)  # no float16 rounding survives 12 decimals
    strict = shipped.export_pretrained(source, str(tmp_path / "strict"), task="mlm", slice_rows=rows, commands=[],
                                       max_length=32)
    assert strict["weights_dtype"] == "float32" and _dtypes(str(tmp_path / "strict")) == {torch.float32}
    loaded, tok = shipped.load_for_task(str(tmp_path / "strict"), "mlm")
    expected = naive_mlm(loaded, tok, CODES, 32)
    assert strict["slice_metrics"]["masked_accuracy"] == pytest.approx(expected["masked_accuracy"], abs=1e-6)
    assert strict["slice_metrics"]["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert strict["slice_tolerance"]["masked_accuracy"] == pytest.approx(2 / strict["slice_metrics"]["masked_tokens"])
    with pytest.raises(ValueError, match="slice row 1 lacks string field"):
        shipped.export_pretrained(source, str(tmp_path / "bad"), task="mlm", slice_rows=[{"code": "x"}, {}],
                                  commands=[])
    assert not os.path.exists(tmp_path / "bad")


def test_pretrained_path_names_what_is_shipped():
    names = mambacode.available_pretrained()
    with pytest.raises(ValueError, match=r"no shipped checkpoint 'no-such-model'; shipped: "):
        mambacode.pretrained_path("no-such-model")
    for name in names:
        assert os.path.isfile(os.path.join(mambacode.pretrained_path(name), "shipped.json"))
    assert names == sorted(SHIPPED_NAMES), "pretrained/ holds another set of checkpoints than this test names"
    total = shipped.folder_megabytes(shipped.pretrained_root())
    # 100 MB for the study's checkpoints, plus at most 30 MB for the distilled code-search model (issue 21)
    assert total <= 130, f"pretrained/ holds {total:.1f} MB, over the 130 MB budget"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_remote_code_is_the_installed_code(name):
    """One source of truth: every remote-code file of a shipped folder equals `modeling/`'s byte for byte
    (`python scripts/ship_pretrained.py --refresh` rewrites them), so `trust_remote_code=True` runs the classes the
    slice test below measures."""
    folder = mambacode.pretrained_path(name)
    for file in sorted(os.listdir(folder)):
        if file.endswith(".py"):
            with open(os.path.join(folder, file), "rb") as a, open(os.path.join(MODELING_DIR, file), "rb") as b:
                assert a.read() == b.read(), f"pretrained/{name}/{file} differs from modeling/{file}"


def test_sync_remote_code_rewrites_drifted_copies_and_refuses_foreign_ones(tmp_path):
    import shutil

    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copyfile(os.path.join(MODELING_DIR, "s4d.py"), folder / "s4d.py")
    (folder / "modeling_mambacode.py").write_text("# an old copy\n")
    (folder / "model.safetensors").write_bytes(b"weights stay")
    assert shipped.remote_code_drift(str(folder)) == ["modeling_mambacode.py"]
    assert shipped.sync_remote_code(str(folder)) == ["modeling_mambacode.py"]
    with open(os.path.join(MODELING_DIR, "modeling_mambacode.py"), "rb") as fh:
        assert (folder / "modeling_mambacode.py").read_bytes() == fh.read()
    assert (folder / "model.safetensors").read_bytes() == b"weights stay" and shipped.remote_code_drift(str(folder)) == []
    (folder / "evil.py").write_text("import os\n")
    with pytest.raises(ValueError, match=r"evil.py.*no counterpart"):
        shipped.sync_remote_code(str(folder))


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_checkpoint_reproduces_its_card(name):
    folder = mambacode.pretrained_path(name)
    info = shipped.shipped_info(name)
    verify_folder(folder)
    rows = shipped.read_slice(folder)
    assert len(rows) == info["slice_rows"]
    model, tok = shipped.load_for_task(folder, info["task"])
    if info["task"] == "retrieval":
        measured = naive_retrieval(model, tok, rows, info["max_query_length"], info["max_code_length"])
    else:
        measured = naive_mlm(model, tok, [r["code"] for r in rows], info["max_length"])
    card = open(os.path.join(folder, "README.md")).read()
    for key, value in measured.items():
        assert abs(value - info["slice_metrics"][key]) <= info["slice_tolerance"][key], (name, key, value, info)
        assert f"| {key} | {info['slice_metrics'][key]:.3f} |" in card



def readme_quick_start() -> str:
    """The first python block under the README's `## Quick start` heading."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    section = readme.split("\n## Quick start\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_quick_start_ranks_two_snippets_with_the_shipped_model(tmp_path):
    """The quick start runs offline as printed; its scores are the cosines of each text embedded alone (python
    floats), and the snippet that does what the query says comes first."""
    code = readme_quick_start()
    assert f'pretrained_path("{DEFAULT_SEARCH_MODEL}")' in code  # the model `mambacode index` uses by default
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, cwd=str(tmp_path),
                         env=dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules")))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Do you wish to run the custom code" not in out.stdout + out.stderr
    printed = [line.split(None, 1) for line in out.stdout.splitlines() if line.strip()]
    assert len(printed) == 2, out.stdout
    namespace: dict = {}
    exec(code.split("scores =", 1)[0], namespace)  # the query and snippets as the README defines them
    query, snippets = namespace["query"], namespace["snippets"]
    model, tok = shipped.load_for_task(mambacode.pretrained_path(DEFAULT_SEARCH_MODEL), "retrieval")
    q = model.encode([query], tok, batch_size=1)[0].tolist()
    expected = []
    for snippet in snippets:
        c = model.encode([snippet], tok, batch_size=1)[0].tolist()
        expected.append(sum(x * y for x, y in zip(q, c)) / math.sqrt(sum(x * x for x in q) * sum(x * x for x in c)))
    assert expected[0] > expected[1], expected  # the README's first snippet is the one the query describes
    assert [line[1] for line in printed] == [s.splitlines()[0] for s in snippets]
    assert [float(line[0]) for line in printed] == pytest.approx(expected, abs=2e-3)
