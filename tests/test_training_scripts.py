"""The run_*.py scripts end to end on tiny models and data: training, resume, NaN guard, bad inputs,
RoCoder, saved folders loading through AutoModel (remote code), and two-process training with accelerate."""

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys

import datasets
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--intermediate_size", "64", "--state_size", "8",
         "--max_position_embeddings", "256"]
TRAIN = ["--per_device_train_batch_size", "8", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
         "--dataloader_num_workers", "0"]


def script(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tokenizer, a retrieval DatasetDict and a word-level type DatasetDict, all tiny."""
    from mambacode.corpus import train_tokenizer

    root = tmp_path_factory.mktemp("training_data")
    rng = random.Random(0)
    words = ["add", "sum", "list", "parse", "file", "read", "write", "value", "count", "sort", "merge", "split"]
    rows = []
    for i in range(48):
        a, b = rng.sample(words, 2)
        rows.append({"query": f"{a} the {b} items", "code": f"def {a}_{b}(x):\n    return {a}(x, {b})\n"})
    ret = datasets.DatasetDict({s: datasets.Dataset.from_list(rows[i:j])
                                for s, i, j in (("train", 0, 32), ("validation", 32, 40), ("test", 40, 48))})
    ret.save_to_disk(str(root / "retrieval"))
    names = ["other", "int", "str"]
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "labels": datasets.Sequence(datasets.ClassLabel(names=names))})
    ex = {"tokens": [], "labels": []}
    for i in range(24):
        toks, labs = [], []
        for _ in range(8):
            kind = rng.choice(["int", "str", None])
            name = rng.choice(words)
            toks += [name, ":", kind or "x", "="]
            labs += [names.index(kind) if kind else -1, -1, -1, -1]
        ex["tokens"].append(toks)
        ex["labels"].append(labs)
    types = datasets.Dataset.from_dict(ex, features=feats)
    datasets.DatasetDict({"train": types.select(range(16)), "validation": types.select(range(16, 20)),
                          "test": types.select(range(20, 24))}).save_to_disk(str(root / "types"))
    tok = train_tokenizer([r["query"] for r in rows] + [r["code"] for r in rows] + [" ".join(t) for t in ex["tokens"]],
                          vocab_size=300, min_frequency=1, output_dir=str(root / "tok"))
    return {"root": root, "retrieval": str(root / "retrieval"), "types": str(root / "types"), "tok": str(root / "tok"),
            "vocab": len(tok)}


def test_mlm_then_retrieval_resume_and_remote_code_load(data, tmp_path):
    mlm = str(tmp_path / "mlm")
    assert script("run_mlm")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"],
                              "--text_column", "query,code", "--max_seq_length", "32", *SMALL, "--output_dir", mlm,
                              "--do_train", "--do_eval", "--max_steps", "3", *TRAIN]) == 0
    assert json.load(open(os.path.join(mlm, "eval_results.json")))["perplexity"] > 1
    out = str(tmp_path / "ret")
    argv = ["--model_name_or_path", mlm, "--dataset_path", data["retrieval"], "--output_dir", out, "--do_train",
            "--do_predict", "--test_dataset_path", data["retrieval"], "--save_steps", "2", "--max_steps", "2", *TRAIN]
    assert script("run_retrieval")(argv) == 0
    assert os.path.isdir(os.path.join(out, "checkpoint-2"))
    # resume: a larger max_steps continues from checkpoint-2 instead of starting over
    argv[argv.index("--max_steps") + 1] = "4"
    assert script("run_retrieval")(argv) == 0
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    assert state["global_step"] == 4
    first_logged = [h for h in state["log_history"] if "train_runtime" in h]
    assert first_logged, "the resumed run finished training"
    results = json.load(open(os.path.join(out, "all_results.json")))
    assert 0 < results["test_mrr"] <= 1 and results["test_pool_size"] == 8
    assert "retrieval_mrr" in results  # the extra test set, named after its folder
    # the baselines on the same pools: BM25 (no model) and the dense + BM25 hybrid, the pool's size given once
    assert 0 < results["test_bm25_mrr"] <= 1 and 0 < results["retrieval_hybrid_mrr"] <= 1
    assert results["test_bm25_mrr"] == results["retrieval_bm25_mrr"] and "test_bm25_pool_size" not in results
    # the saved folder loads without mambacode through remote code and embeds like the trained model
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    remote = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert type(remote).__name__ == "MambaCodeForRetrieval"
    emb = remote.encode(["sum the list items"], tok)
    assert emb.shape == (1, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(1))
    from huggingface_hub import ModelCard

    card = ModelCard.load(os.path.join(out, "README.md")).data.to_dict()
    assert "base_model" not in card and "datasets" not in card  # a local folder and a local dataset
    (index,) = card["model-index"]
    test_mrr = [m["value"] for r in index["results"] if r["dataset"] == {"name": "retrieval", "type": "retrieval",
                                                                         "split": "test"}
                for m in r["metrics"] if m["type"] == "mrr"]
    assert test_mrr == [round(results["test_mrr"], 6)]  # the extra set is the same split: listed once
    assert "custom_code" in card["tags"] and "## Interpretability" in open(os.path.join(out, "README.md")).read()


def test_type_inference_and_rocoder(data, tmp_path):
    out = str(tmp_path / "types")
    assert script("run_type_inference")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["types"], *SMALL,
                                         "--mixer", "s4d", "--num_kernels", "4", "--output_dir", out, "--do_train",
                                         "--do_eval", "--do_predict", "--max_steps", "3",
                                         "--spectral_anchor_weight", "0.5", *TRAIN]) == 0
    res = json.load(open(os.path.join(out, "all_results.json")))
    assert {"test_accuracy", "test_micro_f1", "test_macro_f1"} <= set(res) and res["test_num_tokens"] > 0
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["id2label"]["1"] == "int" and cfg["spectral_anchor_weight"] == 0.5 and cfg["num_kernels"] == 4
    from safetensors import safe_open

    with safe_open(os.path.join(out, "model.safetensors"), "pt") as fh:  # the anchor travels with the weights
        assert bool(fh.get_tensor("mambacode.spectral_anchor.recorded"))
    rc = str(tmp_path / "rocoder")
    assert script("run_retrieval")(["--model_type", "roformer", "--tokenizer_name_or_path", data["tok"], "--dataset_path",
                                    data["retrieval"], *SMALL[:6], "--output_dir", rc, "--do_train", "--do_predict",
                                    "--max_steps", "2", *TRAIN]) == 0
    cfg = json.load(open(os.path.join(rc, "config.json")))
    assert cfg["model_type"] == "roformer" and cfg["hidden_size"] == 32 and cfg["num_hidden_layers"] == 2
    from transformers import AutoModel

    assert type(AutoModel.from_pretrained(rc)).__name__ == "RoFormerModel"
    # the regulariser has no kernels to anchor on RoCoder: refused, not ignored
    assert script("run_retrieval")(["--model_name_or_path", rc, "--dataset_path", data["retrieval"], "--output_dir",
                                    str(tmp_path / "x"), "--do_train", "--spectral_anchor_weight", "1",
                                    *TRAIN]) == 2


@pytest.mark.parametrize("family", ["mambacode", "roformer"])
def test_long_context_trains_on_function_windows_and_reads_whole_documents(data, tmp_path, family):
    """The cpu preset's long-context settings end to end: training pairs cropped to their function, pools read
    past the model's position limit (raised in the saved config; RoCoder's longer rotary table saved and
    loaded back), and the test MRR equal to an independent ranking of the saved model at that length."""
    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    from mambacode.training.evaluation import embed_texts, retrieval_pool
    from mambacode.training.metrics_loader import retrieval_metrics

    rng = random.Random(1)
    words = ["parse", "merge", "split", "count", "sort", "write", "read", "value", "items", "table", "cache", "path"]
    rows = []
    for d in range(12):
        names = rng.sample(words, 4)
        body = "".join(f"    def {n}_{d}(self, x):\n        return {n}(x, {rng.choice(words)})\n\n" for n in names)
        doc = f"class Doc{d}:\n" + "    # " + " ".join(rng.choice(words) for _ in range(60)) + "\n" + body
        rows += [{"query": f"{n} the {rng.choice(words)}", "code": doc, "func_name": f"Doc{d}.{n}_{d}"} for n in names]
    root = tmp_path / "long_context"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:32]),
                          "validation": datasets.Dataset.from_list(rows[32:40]),
                          "test": datasets.Dataset.from_list(rows[40:])}).save_to_disk(str(root))
    out = str(tmp_path / family)
    model_flags = (["--model_type", "roformer", *SMALL[:6]] if family == "roformer" else SMALL[:8])
    assert script("run_retrieval")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", str(root), *model_flags,
                                    "--max_position_embeddings", "64", "--max_code_length", "32",
                                    "--crop_train_to_function", "true", "--eval_max_code_length", "200",
                                    "--output_dir", out, "--do_train", "--do_predict", "--max_steps", "2",
                                    *TRAIN]) == 0
    assert json.load(open(os.path.join(out, "config.json")))["max_position_embeddings"] == 200
    model = AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    test = datasets.load_from_disk(str(root))["test"]
    pool, gold = retrieval_pool(list(test["query"]), list(test["code"]))
    assert max(len(ids) for ids in tokenizer(pool)["input_ids"]) > 64  # the documents are longer than the limit
    if family == "roformer":
        from mambacode.training.rocoder import mean_pool

        def embed(texts):
            rows = []
            for text in texts:  # one at a time, no padding: an independent path through the base model
                enc = tokenizer(text, truncation=True, max_length=200, return_tensors="pt")
                with torch.no_grad():
                    hidden = model(**enc).last_hidden_state
                rows.append(torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]).float(), dim=-1)[0])
            return torch.stack(rows)
        queries, codes = embed(list(test["query"])), embed(pool)
    else:
        queries, codes = embed_texts(model, tokenizer, list(test["query"]), 64), embed_texts(model, tokenizer, pool, 200)
    want = retrieval_metrics((queries @ codes.T).numpy().astype(np.float64), gold)["mrr"]
    assert json.load(open(os.path.join(out, "all_results.json")))["test_mrr"] == pytest.approx(want, abs=1e-4)


def test_bad_inputs_are_named(data, tmp_path, capsys):
    run = script("run_retrieval")
    assert run(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"], "--code_column", "body",
                *SMALL, "--output_dir", str(tmp_path / "a"), "--do_train", *TRAIN]) == 2
    assert "missing the column(s) ['body']" in capsys.readouterr().err
    # a model built for another vocabulary
    from mambacode import MambaCodeConfig, MambaCodeForRetrieval

    other = str(tmp_path / "other")
    MambaCodeForRetrieval(MambaCodeConfig(vocab_size=data["vocab"] + 37, hidden_size=32, num_hidden_layers=1,
                                          intermediate_size=64, state_size=8)).save_pretrained(other)
    assert run(["--model_name_or_path", other, "--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"],
                "--output_dir", str(tmp_path / "b"), "--do_train", *TRAIN]) == 2
    assert "vocabulary mismatch" in capsys.readouterr().err


def test_nan_guard_names_step_and_keeps_last_good_checkpoint(data, tmp_path, monkeypatch):
    from mambacode import MambaCodeForRetrieval

    original = MambaCodeForRetrieval.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:  # the third optimizer step
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(MambaCodeForRetrieval, "forward", poisoned)
    out = str(tmp_path / "nan")
    assert script("run_retrieval")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"], *SMALL,
                                    "--output_dir", out, "--do_train", "--max_steps", "5", "--save_steps", "2",
                                    *TRAIN]) == 1
    assert sorted(d for d in os.listdir(out) if d.startswith("checkpoint-")) == ["checkpoint-2"]
    assert not os.path.exists(os.path.join(out, "model.safetensors"))  # no final model saved after the NaN

    from mambacode.training.callbacks import NonFiniteLossError

    calls["n"] = 0
    from transformers import TrainingArguments

    from mambacode.training.callbacks import GuardedTrainer
    from mambacode.training.collators import DataCollatorForRetrieval, tokenize_retrieval_pairs
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(data["tok"])
    ds = datasets.load_from_disk(data["retrieval"])["train"]
    ds = ds.map(tokenize_retrieval_pairs, batched=True, remove_columns=ds.column_names,
                fn_kwargs=dict(tokenizer=tok, query_column="query", code_column="code", max_query_length=32,
                               max_code_length=64))
    model = MambaCodeForRetrieval.from_pretrained(os.path.join(out, "checkpoint-2"))
    args = TrainingArguments(output_dir=out, max_steps=5, save_steps=100, report_to="none", disable_tqdm=True,
                             per_device_train_batch_size=8, remove_unused_columns=False)
    trainer = GuardedTrainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorForRetrieval(1))
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 3 .*micro-batch 3.*checkpoint-2") as err:
        trainer.train()
    assert err.value.step == 3


def test_two_processes_with_accelerate(data, tmp_path):
    out = str(tmp_path / "ddp")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    # `accelerate launch --cpu --num_processes 2` uses the simple launcher, which starts ONE process unless
    # mpirun is configured; the torchrun launcher (--multi_gpu) with --use_cpu gives two gloo ranks on CPU.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           os.path.join(ROOT, "scripts", "run_retrieval.py"), "--tokenizer_name_or_path", data["tok"], "--dataset_path",
           data["retrieval"], *SMALL, "--output_dir", out, "--do_train", "--do_predict", "--max_steps", "3",
           "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
           "--use_cpu", "true"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "process 0 of 2 finished (distributed backend: gloo)" in log
    assert "process 1 of 2 finished (distributed backend: gloo)" in log
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    assert state["global_step"] == 3
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    emb = model.encode(["read the file items", "def f(): pass"], AutoTokenizer.from_pretrained(out))
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


_KILL_AT_FIRST_SAVE = """
import os, sys
from transformers import TrainerCallback
import mambacode.training.entry_points as ep
from mambacode.training.script_utils import run_script

class KillAfterSave(TrainerCallback):  # a hard kill right after the first checkpoint is on disk
    def on_save(self, args, state, control, **kwargs):
        os._exit(3)

make = ep.make_callbacks
ep.make_callbacks = lambda run_args, tokenizer: make(run_args, tokenizer) + [KillAfterSave()]
entry, data_args = {"mlm": (ep.run_mlm, ep.MLMDataArguments), "retrieval": (ep.run_retrieval, ep.RetrievalDataArguments),
                    "type_inference": (ep.run_type_inference, ep.TypeInferenceDataArguments)}[sys.argv[1]]
sys.exit(run_script(entry, data_args, sys.argv[2:]))
"""


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


@pytest.mark.parametrize("task", ["mlm", "retrieval", "type_inference"])
def test_killed_run_resumes_to_the_same_weights(data, tmp_path, task):
    """A real kill (os._exit in a subprocess right after checkpoint-3 of 7 steps, inside the second of several
    epochs) then a resume gives bit-identical weights and metrics, and a train_loss over all 7 steps, equal
    to an uninterrupted run. (MLM masking used to draw from the global generator: resumes differed.)"""
    def argv(out):
        task_args = {"mlm": ["--text_column", "query,code", "--max_seq_length", "16", "--do_eval"],
                     "retrieval": ["--max_code_length", "32", "--do_predict"],
                     "type_inference": ["--do_predict", "--spectral_anchor_weight", "0.5"]}[task]  # + the anchor
        data_path = data["types"] if task == "type_inference" else data["retrieval"]
        return ["--tokenizer_name_or_path", data["tok"], "--dataset_path", data_path, *task_args, *SMALL,
                "--output_dir", out, "--do_train", "--max_steps", "7", "--save_steps", "3", "--logging_steps", "2",
                "--max_train_samples", "12" if task == "mlm" else "8", *TRAIN, "--per_device_train_batch_size", "4", "--learning_rate", "5e-3",
                "--num_threads", "1"]  # one count for all three runs: the count changes the last bits

    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    assert script(f"run_{task}")(argv(whole)) == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_FIRST_SAVE, task, *argv(killed)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert [d for d in os.listdir(killed) if not d.endswith(".safetensors")] == ["checkpoint-3"]
    state = json.load(open(os.path.join(killed, "checkpoint-3", "trainer_state.json")))
    assert state["num_train_epochs"] > 2 and 1 < state["epoch"] < 2, "the kill must fall inside the second epoch"
    assert script(f"run_{task}")(argv(killed)) == 0  # resumes from checkpoint-3
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.load(open(os.path.join(f, "all_results.json"))) for f in (whole, killed))
    for key in ("eval_loss", "test_mrr", "test_micro_f1"):
        assert ra.get(key) == rb.get(key)
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
    # Trainer's own figure (its log) averages the 4 resumed steps only
    resumed_only = [h["train_loss"] for h in json.load(open(os.path.join(killed, "trainer_state.json")))["log_history"]
                    if "train_loss" in h][-1]
    assert resumed_only != pytest.approx(ra["train_loss"], rel=1e-4)


def test_retrieval_killed_after_its_last_checkpoint_evaluates_without_training_and_tunes_its_fusion(data, tmp_path):
    """A run killed after its final checkpoint (during the test pools) resumes at the last step: no training,
    the same weights, metrics and whole-run train_loss (transformers alone would say 0.0 after 0 steps). The
    hybrid's fusion is chosen on the validation pool: the config records the grid's best by a brute-force
    reference (per-row `reciprocal_rank_fusion`), and the test hybrid metrics are that fusion's."""
    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    from mambacode.search.fusion import fusion_grid, reciprocal_rank_fusion
    from mambacode.training.baselines import bm25_scores, ranking
    from mambacode.training.evaluation import embed_texts, retrieval_pool

    def argv(out):
        return ["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"], "--max_code_length",
                "32", "--do_predict", *SMALL, "--output_dir", out, "--do_train", "--max_steps", "6", "--save_steps",
                "3", "--logging_steps", "2", *TRAIN, "--learning_rate", "5e-3", "--num_threads", "1"]

    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    assert script("run_retrieval")(argv(whole)) == 0
    shutil.copytree(os.path.join(whole, "checkpoint-6"), os.path.join(killed, "checkpoint-6"))  # what the kill left
    assert script("run_retrieval")(argv(killed)) == 0
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.load(open(os.path.join(f, "all_results.json"))) for f in (whole, killed))
    assert ra["train_loss"] > 0 and rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
    assert {k: v for k, v in ra.items() if k.startswith(("test_", "fusion_"))} == \
        {k: v for k, v in rb.items() if k.startswith(("test_", "fusion_"))}

    # the fusion: brute force over the grid on the validation pool, with the model as saved
    config = json.load(open(os.path.join(whole, "config.json")))
    model = AutoModel.from_pretrained(whole, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(whole)
    ds = datasets.load_from_disk(data["retrieval"])

    def mrr_of(split, fusion):
        queries, codes = list(ds[split]["query"]), list(ds[split]["code"])
        pool, gold = retrieval_pool(queries, codes)
        dense = (embed_texts(model, tokenizer, queries, 64) @ embed_texts(model, tokenizer, pool, 32).T).numpy()
        lexical = bm25_scores(queries, pool)
        reciprocal = []
        for row, g in enumerate(gold):
            fused = [doc for doc, _ in reciprocal_rank_fusion(
                [ranking(dense[row]), ranking(lexical[row], positive_only=True)], fusion.k, [fusion.dense_weight, 1])]
            reciprocal.append(1.0 / (fused.index(g) + 1))
        return float(np.mean(reciprocal))

    scores = [mrr_of("validation", f) for f in fusion_grid()]
    best = fusion_grid()[int(np.argmax(scores))]  # the first of equal bests, as the grid is ordered
    fusion = config["hybrid_fusion"]
    assert (fusion["dense_weight"], fusion["k"]) == (best.dense_weight, best.k)
    assert fusion["validation_mrr"] == pytest.approx(max(scores)) == pytest.approx(ra["fusion_validation_hybrid_mrr"])
    assert fusion["validation_mrr_equal_weights"] == pytest.approx(scores[0])
    assert ra["test_hybrid_mrr"] == pytest.approx(mrr_of("test", best))


def test_resume_from_a_checkpoint_that_lost_its_spectral_anchor(data, tmp_path):
    """The anchor is a function of the base weights, recorded before training: a checkpoint whose anchor
    buffers were stripped resumes with the same anchor (bit for bit) as the one it lost."""
    from safetensors.torch import save_file

    out = str(tmp_path / "anchored")
    argv = ["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["types"], *SMALL, "--output_dir", out,
            "--do_train", "--save_steps", "2", "--spectral_anchor_weight", "0.5", *TRAIN]
    run = script("run_type_inference")
    assert run([*argv, "--max_steps", "2"]) == 0
    ckpt = os.path.join(out, "checkpoint-2")
    weights = _weights(ckpt)
    anchor = {k: v for k, v in weights.items() if "spectral_anchor." in k}
    assert anchor and any(k.endswith("spectral_anchor.recorded") and bool(v) for k, v in anchor.items())
    save_file({k: v for k, v in weights.items() if k not in anchor}, os.path.join(ckpt, "model.safetensors"),
              metadata={"format": "pt"})
    for name in os.listdir(ckpt):
        if name.startswith("checksums"):
            os.remove(os.path.join(ckpt, name))  # the file was edited on purpose
    assert run([*argv, "--max_steps", "3"]) == 0
    resumed = _weights(out)
    assert all(torch.equal(resumed[k], v) for k, v in anchor.items())
    assert json.load(open(os.path.join(out, "trainer_state.json")))["global_step"] == 3


def test_push_to_hub_uploads_our_card_and_fails_in_one_line_offline(data, tmp_path, monkeypatch):
    """--push_to_hub uploads the folder with OUR card (model-index, interpretability, custom_code), not the
    generic one Trainer.push_to_hub would write; offline the script stops before training with one line."""
    import huggingface_hub
    from huggingface_hub import ModelCard, constants

    out = str(tmp_path / "pushed")
    argv = ["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"], *SMALL, "--output_dir", out,
            "--do_train", "--do_predict", "--max_steps", "1", "--save_strategy", "no", "--push_to_hub",
            "--hub_model_id", "me/tiny-retrieval", *TRAIN]
    offline = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_retrieval.py"), *argv],
                             env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    assert offline.returncode == 3, offline.stderr[-2000:]
    assert "Traceback" not in offline.stderr
    errors = [line for line in offline.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0]
    assert not os.path.exists(os.path.join(out, "model.safetensors"))  # refused before training

    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploads.append((repo_id, open(os.path.join(folder_path, "README.md")).read()))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert script("run_retrieval")(argv) == 0
    assert [repo for repo, _ in uploads] == ["me/tiny-retrieval"]  # one upload, at the end
    uploaded = uploads[0][1]
    assert uploaded == open(os.path.join(out, "README.md")).read()
    card = ModelCard(uploaded)
    assert "custom_code" in card.data.tags and "## Interpretability" in card.text
    (result,) = card.data.to_dict()["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test" and result["metrics"][0]["type"] == "mrr"


def test_bf16_autocast_training_on_cpu_saves_float32_weights(data, tmp_path):
    """`--bf16` (transformers' flag) trains under CPU bf16 autocast; the weights and the saved folder stay
    float32 (autocast changes only the matmuls' precision), so the folder loads like any other."""
    from safetensors import safe_open

    out = str(tmp_path / "mlm_bf16")
    assert script("run_mlm")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"],
                              "--text_column", "query,code", "--max_seq_length", "32", *SMALL, "--output_dir", out,
                              "--do_train", "--do_eval", "--max_steps", "2", "--bf16", "true", "--use_cpu", "true",
                              *TRAIN]) == 0
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in state["log_history"] if "loss" in h)
    assert 1 < json.load(open(os.path.join(out, "eval_results.json")))["perplexity"] < float("inf")
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}


def test_torch_compile_is_opt_in_and_the_saved_folder_loads_without_it(data, tmp_path):
    """`--torch_compile` (transformers' flag; measured +45% tokens/s at L = 256 with bf16 on CPU, slower beyond
    1,024, see the throughput benchmark in docs/benchmarks.md) trains a compiled
    model, and the folder it saves is the plain model: every weight under its own name (no compiler
    wrapper prefix), loadable through AutoModel without compiling anything."""
    out = str(tmp_path / "mlm_compiled")
    assert script("run_mlm")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"],
                              "--text_column", "query,code", "--max_seq_length", "32", *SMALL, "--output_dir", out,
                              "--do_train", "--max_steps", "2", "--torch_compile", "true", *TRAIN]) == 0
    from safetensors import safe_open
    from transformers import AutoModelForMaskedLM

    from mambacode import MambaCodeConfig, MambaCodeForMaskedLM

    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    fresh = MambaCodeForMaskedLM(MambaCodeConfig.from_pretrained(out))
    assert not any(k.startswith("_orig_mod") for k in saved)
    assert saved <= set(fresh.state_dict()) and len(saved) >= len(fresh.state_dict()) - 1  # tied decoder
    loaded = AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True)
    assert not hasattr(loaded, "_orig_mod") and type(loaded) is MambaCodeForMaskedLM
    ids = torch.randint(5, data["vocab"], (2, 16))
    assert torch.isfinite(loaded(input_ids=ids, labels=ids).loss)
