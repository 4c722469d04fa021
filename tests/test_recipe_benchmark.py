"""`benchmarks/recipe.py` end to end on a corpus of a few standard-library packages and a cpu-like preset cut
to seconds: three arms (the reference, MLM on all code, and a contrastive batch of 8 that reuses the reference's
MLM stage) under budgets of a few CPU seconds. Checks the
JSONL records against the budgets, that a second invocation skips the finished stages, that a stage cut off
after its budget's checkpoint resumes without training further, and the table against values computed here
from the raw records."""

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import sys
import sysconfig

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = dict(vocab_size=400, hidden_size=32, num_hidden_layers=2, intermediate_size=64, state_size=8, mamba_head_dim=8,
            mlm_seq=64, mlm_batch=4, ft_batch=4, query_len=16, code_len=64, long_code_len=64, type_len=64,
            max_train_rows=200, bf16=False)
BUDGET = 0.04  # CPU minutes per stage (2.4 s)
EVERY = 0.015


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recipe():
    return _load("recipe_benchmark", os.path.join(ROOT, "benchmarks", "recipe.py"))


@pytest.fixture(scope="module")
def presets():
    reproduce = _load("reproduce_for_recipe", os.path.join(ROOT, "scripts", "reproduce.py"))
    return {"cpu-mini": dataclasses.replace(reproduce.PRESETS["cpu"], **MINI)}


@pytest.fixture()
def corpus(tmp_path):
    from mambacode.corpus import build_corpus

    stdlib, src = sysconfig.get_paths()["stdlib"], tmp_path / "src"
    for pkg in ("json", "email", "http", "urllib", "logging", "html", "xmlrpc", "concurrent", "wsgiref", "sqlite3"):
        shutil.copytree(os.path.join(stdlib, pkg), src / pkg, ignore=shutil.ignore_patterns("test*", "__pycache__"))
    out = tmp_path / "corpus"
    build_corpus(str(out), source_dirs=[str(src)], include_stdlib=False, packages=(), num_workers=1,
                 show_progress=False)
    return str(out)


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_recipe_ablation_records_skips_resumes_and_tabulates(recipe, presets, corpus, tmp_path, capsys):
    out, results = str(tmp_path / "recipe"), str(tmp_path / "recipe_cpu.json")
    argv = ["--output_dir", out, "--preset", "cpu-mini", "--arms", "reference,all-code,batch128",
            "--corpus_dir", corpus,
            "--mlm_minutes", str(BUDGET), "--ft_minutes", str(BUDGET), "--eval_minutes", str(EVERY),
            "--val_queries", "24", "--num_threads", "1", "--results", results]
    assert recipe.main(argv, presets=presets) == 0, capsys.readouterr().out[-3000:]
    first = capsys.readouterr().out
    # batch128 fine-tunes the reference's MLM: that stage ran once, and batch128 has none of its own
    assert first.count("[run ] reference-mlm") == 1 and "batch128-mlm" not in first, first[-3000:]
    assert "[skip] reference-mlm" in first and not os.path.exists(os.path.join(out, "batch128", "mlm"))
    log = os.path.join(out, "records.jsonl")
    records = _records(log)
    assert not [r for r in records if r["arm"] == "batch128" and r["stage"] == "mlm"]
    for arm, stages in (("reference", ("mlm", "retrieval")), ("all-code", ("mlm", "retrieval")),
                        ("batch128", ("retrieval",))):
        for stage, metric in (("mlm", "loss"), ("retrieval", "mrr")):
            if stage not in stages:
                continue
            mine = [r for r in records if r["arm"] == arm and r["stage"] == stage and r["metric"] == metric]
            assert len({r["step"] for r in mine}) >= 2, (arm, stage, mine)  # regular points, then the budget
            steps = [r["step"] for r in mine]
            assert steps == sorted(steps) and [r["cpu_minutes"] for r in mine] == sorted(r["cpu_minutes"] for r in mine)
            final = max(mine, key=lambda r: r["step"])
            assert final["cpu_minutes"] >= BUDGET and all(r["cpu_minutes"] < BUDGET for r in mine if r is not final
                                                          and r["step"] < final["step"])
            assert all(r["wall_minutes"] > 0 and math.isfinite(r["value"]) for r in mine)
            assert os.path.exists(os.path.join(out, arm, stage, ".done"))
            assert 0 < final["value"] <= 1 if metric == "mrr" else final["value"] > 0
    # the all-code arm's MLM data holds the long-context documents as well as the retrieval code
    import datasets

    all_code = datasets.load_from_disk(os.path.join(out, "data", "mlm-all-code"))
    retrieval = datasets.load_from_disk(os.path.join(corpus, "retrieval"))
    assert len(all_code["train"]) > min(len(retrieval["train"]), MINI["max_train_rows"])
    assert all_code["validation"]["code"] == retrieval["validation"]["code"]

    # a second invocation runs nothing again
    with open(log) as f:
        before = f.read()
    assert recipe.main(argv, presets=presets) == 0
    second = capsys.readouterr().out
    for name in ("reference-mlm", "reference-retrieval", "all-code-mlm", "all-code-retrieval", "batch128-retrieval"):
        assert f"[skip] {name}" in second and f"[run ] {name}" not in second
    assert open(log).read() == before

    # a stage killed after its budget's checkpoint (before its marker) resumes, and its one step the Trainer
    # cannot skip leaves the weights as the checkpoint has them
    from safetensors.torch import load_file

    folder = os.path.join(out, "all-code", "retrieval")
    (checkpoint,) = [d for d in os.listdir(folder) if d.startswith("checkpoint-")]
    saved_weights = load_file(os.path.join(folder, checkpoint, "model.safetensors"))
    os.remove(os.path.join(folder, ".done"))
    os.remove(os.path.join(folder, "model.safetensors"))
    assert recipe.main(argv, presets=presets) == 0
    third = capsys.readouterr().out
    assert "[run ] all-code-retrieval" in third and "[skip] all-code-mlm" in third
    final = load_file(os.path.join(folder, "model.safetensors"))
    assert final.keys() == saved_weights.keys() and all(torch.equal(final[k], saved_weights[k]) for k in final)
    again = _records(log)[len(records):]
    last = max((r for r in records if r["arm"] == "all-code" and r["stage"] == "retrieval"), key=lambda r: r["step"])
    assert again and all(r["arm"] == "all-code" and r["stage"] == "retrieval" and r["step"] == last["step"] + 1
                         and r["cpu_minutes"] == last["cpu_minutes"] for r in again), (last, again)
    (mrr_before,) = [r["value"] for r in records if (r["arm"], r["stage"], r["step"], r["metric"]) == (
        "all-code", "retrieval", last["step"], "mrr")][-1:]
    assert [r["value"] for r in again if r["metric"] == "mrr"] == [mrr_before]

    # the table, from the records by hand: last point of each stage, CPU minutes of both, deltas to the reference
    def last(arm, stage, metric):
        mine = [r for r in _records(log) if (r["arm"], r["stage"], r["metric"]) == (arm, stage, metric)]
        return mine[-1]  # appended in step order; a re-evaluated step repeats the same value

    expected = {}
    for arm, mlm_arm in (("reference", "reference"), ("all-code", "all-code"), ("batch128", "reference")):
        loss, mrr = last(mlm_arm, "mlm", "loss"), last(arm, "retrieval", "mrr")
        mlm_minutes = max(r["cpu_minutes"] for r in _records(log) if r["arm"] == mlm_arm and r["stage"] == "mlm")
        expected[arm] = (loss["value"], mrr["value"], mlm_minutes, mrr["cpu_minutes"],
                         mrr["value"] / (mlm_minutes + mrr["cpu_minutes"]), loss["step"], mrr["step"])
    ref = expected["reference"]
    for arm, (loss, mrr, mlm_min, ft_min, per_minute, mlm_steps, ft_steps) in expected.items():
        row = [line for line in third.splitlines() if line.startswith(f"| {arm} |")][-1]  # the last table printed
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{loss:.4f}" and cells[4] == f"{mrr:.4f}"
        assert cells[3] == f"{loss - ref[0]:+.4f}" and cells[5] == f"{mrr - ref[1]:+.4f}"
        assert cells[6] == f"{mlm_min:.1f} + {ft_min:.1f}" and cells[7] == f"{per_minute:.5f}"
        assert cells[8] == f"{mlm_steps:,} + {ft_steps:,}" and cells[9] == "done"
    saved = json.load(open(results))
    assert [r["arm"] for r in saved["table"]] == ["reference", "all-code", "batch128"]
    assert saved["table"][1]["mrr_per_cpu_minute"] == pytest.approx(expected["all-code"][4], rel=1e-12)
    assert saved["settings"]["clock"].startswith("process CPU time")
    assert os.path.exists(str(tmp_path / "recipe_cpu.png")) == (saved["figure"] is not None)

    # --test_pools: each finished arm's model on the whole test pools, against a ranking done here one text at a
    # time (no batching, no padding) with float64 cosines and ranks counted by hand (ties against the model)
    assert recipe.main([*argv, "--report", "--test_pools"], presets=presets) == 0
    tested = capsys.readouterr().out
    assert "| test MRR (AdvTest-style / plain) |" in tested
    from transformers import AutoModel, AutoTokenizer

    folder = os.path.join(out, "all-code", "retrieval")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def embed(text, length):
        enc = tokenizer(text, truncation=True, max_length=length, return_tensors="pt")
        with torch.no_grad():
            vec = model.embed(enc["input_ids"], enc["attention_mask"])[0][0].double()
        return vec / vec.norm()

    def mrr(split):
        test = datasets.load_from_disk(os.path.join(corpus, split))["test"]
        pool = list(dict.fromkeys(test["code"]))
        codes = torch.stack([embed(c, MINI["code_len"]) for c in pool])
        total = 0.0
        for query, code in zip(test["query"], test["code"]):
            scores = codes @ embed(query, MINI["query_len"])
            gold = scores[pool.index(code)]
            total += 1.0 / int((scores >= gold - 1e-6).sum())
        return total / len(test)

    cached = json.load(open(os.path.join(folder, "test_pools.json")))
    assert (cached["max_query_length"], cached["max_code_length"]) == (MINI["query_len"], MINI["code_len"])
    assert cached["test_adv_mrr"] == pytest.approx(mrr("retrieval_adv"), abs=2e-3)
    assert cached["test_mrr"] == pytest.approx(mrr("retrieval"), abs=2e-3)
    row = [line for line in tested.splitlines() if line.startswith("| all-code |")][-1]
    assert row.rstrip().endswith(f"| {cached['test_adv_mrr']:.4f} / {cached['test_mrr']:.4f} |")
    assert [r["test_mrr"] for r in json.load(open(results))["table"]][1] == cached["test_mrr"]


def test_lr_factor_matches_transformers_schedules_at_step_fractions(recipe):
    """The budget-time schedule at progress = step / total equals transformers' step schedules."""
    import torch
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    total, warmup = 200, 20
    for kind, make in (("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt, warmup, total)
        for step in range(total):
            assert recipe.lr_factor(kind, warmup / total, step / total) == pytest.approx(sched.get_last_lr()[0],
                                                                                          abs=1e-12), (kind, step)
            opt.step()
            sched.step()
    with pytest.raises(ValueError, match="schedule 'step'"):
        recipe.lr_factor("step", 0.1, 0.5)


def test_preset_mlm_on_all_code(presets, corpus):
    """`Preset.mlm_data = 'all'`: the MLM trains on the retrieval train code (first max_train_rows) then every
    distinct long-context train document, built once inside the corpus; 'retrieval' keeps the retrieval split."""
    import datasets

    from mambacode.training.pipeline import pretrain_arguments

    preset = dataclasses.replace(presets["cpu-mini"], mlm_data="all")
    _, data_args, _, _ = pretrain_arguments(preset, "s4d", "unused-tokenizer", corpus, "unused-out")
    assert data_args.dataset_path == os.path.join(corpus, "mlm_all_code") and data_args.max_train_samples is None
    built = datasets.load_from_disk(data_args.dataset_path)
    retrieval = datasets.load_from_disk(os.path.join(corpus, "retrieval"))
    documents = datasets.load_from_disk(os.path.join(corpus, "long_context"))["train"]["code"]
    distinct = []
    for d in documents:
        if d not in distinct:
            distinct.append(d)
    assert built["train"]["code"] == retrieval["train"]["code"][:MINI["max_train_rows"]] + distinct
    assert built["validation"]["code"] == retrieval["validation"]["code"]
    plain = pretrain_arguments(dataclasses.replace(preset, mlm_data="retrieval"), "s4d", "t", corpus, "o")[1]
    assert plain.dataset_path == os.path.join(corpus, "retrieval") and plain.max_train_samples == MINI["max_train_rows"]
    with pytest.raises(ValueError, match="mlm_data='both'"):
        pretrain_arguments(dataclasses.replace(preset, mlm_data="both"), "s4d", "t", corpus, "o")


def test_an_mlm_stopped_early_is_compared_with_the_reference_at_its_cpu_minutes(recipe):
    def rec(arm, stage, step, minutes, metric, value):
        return {"arm": arm, "stage": stage, "step": step, "cpu_minutes": minutes, "wall_minutes": minutes,
                "metric": metric, "value": value}

    records = [rec("reference", "mlm", 10, 4.0, "loss", 4.5), rec("reference", "mlm", 20, 8.0, "loss", 4.1),
               rec("reference", "mlm", 30, 12.0, "loss", 3.8),
               rec("reference", "retrieval", 5, 4.0, "mrr", 0.25),
               rec("float32", "mlm", 5, 4.1, "loss", 5.25), rec("float32", "mlm", 9, 7.9, "loss", 4.5),
               rec("all-code", "mlm", 31, 11.8, "loss", 3.7)]  # within 0.5 CPU min of the budget: the end
    ref, f32, all_code = recipe.summarise(records, ["reference", "float32", "all-code"])
    assert ref["mlm_loss"] == 3.8 and ref["mlm_loss_delta_at"] is None
    # float32 stopped at 7.9 CPU minutes: against the reference's 8.0-minute record (4.1), not its end (3.8)
    assert f32["mlm_loss_delta"] == pytest.approx(4.5 - 4.1) and f32["mlm_loss_delta_at"] == 7.9
    assert f32["mrr"] is None and f32["mrr_delta"] is None
    assert all_code["mlm_loss_delta"] == pytest.approx(3.7 - 3.8) and all_code["mlm_loss_delta_at"] is None
    row = [line for line in recipe.table([ref, f32, all_code], {"reference": True}).splitlines()
           if line.startswith("| float32 |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:10] == ["4.5000", "+0.4000 (both at 8 CPU min)", "-", "-", "7.9 + -", "-", "9 + -",
                           "running / not run"]
