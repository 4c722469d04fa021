"""Hugging Face integration of the retrieval model: sentence-transformers out of the box, eval loss and
retrieval metrics in `Trainer`, the feature-extraction pipeline, tuple outputs, LoRA through AutoPeftModel,
the tokenizer without remote code, and the one embedding loop."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mambacode import (
    SENTENCE_TRANSFORMERS_TAGS,
    MambaCodeForMaskedLM,
    MambaCodeForRetrieval,
    MambaCodeForSequenceClassification,
    MambaCodeForTokenClassification,
    MambaCodeModel,
)

TEXTS = ["def add(a, b): return a + b", "x", "for i in range(10): print(i)", "class A: pass",
         "def add(a, b):\n    return a + b\n" * 3]


def _saved(tmp_path, tokenizer, tiny, name="model", **overrides):
    """A randomly initialised retrieval model saved with its tokenizer (as the training scripts save it)."""
    config = tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, initializer_range=0.3,
                  **overrides)
    model = MambaCodeForRetrieval(config).eval()
    folder = tmp_path / name
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, folder


def _naive_embedding(model, tokenizer, text, pooling):
    """Pool one unpadded text by hand in float64 and L2-normalise it: the reference for both encoders."""
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        h = model.mambacode(ids["input_ids"], ids["attention_mask"]).last_hidden_state[0].double()
    v = {"mean": h.mean(0), "cls": h[0], "max": h.max(0).values}[pooling]
    return v / v.norm()


# ------------------------------------------------------------------------------ sentence-transformers
def test_saved_folder_has_the_sentence_transformers_files(tmp_path, tokenizer, tiny):
    _, folder = _saved(tmp_path, tokenizer, tiny, pooling="cls", max_position_embeddings=300)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 300
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32
    assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_cls_token"]
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    assert "sentence-transformers" in SENTENCE_TRANSFORMERS_TAGS


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_sentence_transformer_encode_equals_model_encode(tmp_path, tokenizer, tiny, pooling):
    from sentence_transformers import SentenceTransformer

    model, folder = _saved(tmp_path, tokenizer, tiny, pooling=pooling)
    ours = model.encode(TEXTS, tokenizer, batch_size=2)
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    theirs = st.encode(TEXTS, batch_size=2, convert_to_tensor=True).cpu()
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    for i, text in enumerate(TEXTS):  # both against a hand-pooled float64 reference
        torch.testing.assert_close(ours[i].double(), _naive_embedding(model, tokenizer, text, pooling),
                                   atol=1e-5, rtol=0)
    assert st.similarity_fn_name == "cosine"
    assert st.max_seq_length == model.config.max_position_embeddings


def test_sentence_transformers_trainer_trains_it(tmp_path, tokenizer, tiny):
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    _, folder = _saved(tmp_path, tokenizer, tiny)
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    before = {n: p.detach().clone() for n, p in st.named_parameters()}
    pairs = Dataset.from_dict({"anchor": ["sum two numbers", "loop ten times", "empty class", "add values"] * 2,
                               "positive": TEXTS[:4] * 2})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3,
                                                per_device_train_batch_size=4, learning_rate=1e-2,
                                                report_to="none", use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=pairs,
                                         loss=MultipleNegativesRankingLoss(st))
    result = trainer.train()
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    changed = [n for n, p in st.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("layers.0" in n for n in changed) and any("embeddings" in n for n in changed)
    # sentence-transformers' own save (which calls our save_pretrained inside) keeps its files and reloads
    st.prompts = {"query": "query: "}
    st.save(str(tmp_path / "st"))
    again = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    assert again.prompts.get("query") == "query: " and again.similarity_fn_name == "cosine"
    torch.testing.assert_close(again.encode(TEXTS, convert_to_tensor=True), st.encode(TEXTS, convert_to_tensor=True),
                               atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ Trainer: eval loss, MRR
def test_retrieval_compute_metrics_matches_a_hand_computed_mrr():
    """Three queries, four rows whose codes repeat (pool of 3): ranks worked out by hand."""
    from transformers import EvalPrediction

    from mambacode.training.evaluation import retrieval_compute_metrics

    codes = ["c0", "c1", "c0", "c2"]  # rows 0 and 2 share a code: pool = [c0, c1, c2], gold = [0, 1, 0, 2]
    code_emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 0.0]])  # row 2's own copy is never used
    queries = np.array([[1.0, 0.1],    # scores c0 1.0, c1 0.1, c2 -1.0 -> gold c0 rank 1
                        [1.0, 0.2],    # c0 1.0, c1 0.2, c2 -1.0 -> gold c1 rank 2
                        [-1.0, 0.0],   # c0 -1.0, c1 0.0, c2 1.0 -> gold c0 rank 3
                        [0.0, 1.0]])   # c0 0.0, c1 1.0, c2 0.0 -> gold c2 rank 3 (tie with c0 counts against)
    metrics = retrieval_compute_metrics(codes)(EvalPrediction(predictions=(queries, code_emb), label_ids=None))
    ranks = [1, 2, 3, 3]
    assert metrics["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 4)
    assert metrics["recall@1"] == pytest.approx(0.25) and metrics["recall@5"] == 1.0
    assert metrics["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in ranks) / 4)


def test_trainer_evaluate_reports_eval_loss_and_mrr(tmp_path, tokenizer, tiny):
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    from mambacode.training.collators import DataCollatorForRetrieval, tokenize_retrieval_pairs
    from mambacode.training.evaluation import evaluate_retrieval, retrieval_compute_metrics

    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                       retrieval_temperature=0.1, initializer_range=0.3))
    rows = {"query": ["sum two numbers", "loop ten times", "empty class", "add values", "print loop"],
            "code": TEXTS[:4] + [TEXTS[2]]}  # the last code repeats row 2's: a pool of 4
    ds = Dataset.from_dict(rows).map(tokenize_retrieval_pairs, batched=True, remove_columns=["query", "code"],
                                     fn_kwargs=dict(tokenizer=tokenizer, query_column="query", code_column="code",
                                                    max_query_length=32, max_code_length=64))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_eval_batch_size=2,
                             per_device_train_batch_size=5, max_steps=2, eval_strategy="steps", eval_steps=1,
                             save_strategy="steps", save_steps=1, metric_for_best_model="mrr",
                             load_best_model_at_end=True, report_to="none", use_cpu=True,
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ds,
                      data_collator=DataCollatorForRetrieval(tokenizer.pad_token_id),
                      compute_metrics=retrieval_compute_metrics(rows["code"]),
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=5)])
    trainer.train()
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    # eval_loss: the in-batch InfoNCE of each eval batch (of 2, 2 and 1 rows), computed here by hand and
    # averaged over rows as Trainer does (a batch's loss counts once per row)
    model.eval()
    losses = []
    with torch.no_grad():
        for start in (0, 2, 4):
            batch = DataCollatorForRetrieval(tokenizer.pad_token_id)([ds[i] for i in range(start, min(start + 2, 5))])
            out = model(**batch)
            sims = (out.embeddings.double() @ out.code_embeddings.double().T / 0.1).numpy()
            loss = -np.mean([sims[i, i] - np.log(np.exp(sims[i]).sum()) for i in range(len(sims))])
            losses += [loss] * len(sims)
    assert metrics["eval_loss"] == pytest.approx(np.mean(losses), abs=1e-4)
    # eval_mrr is the whole-pool MRR that evaluate_retrieval computes
    whole = evaluate_retrieval(model, tokenizer, Dataset.from_dict(rows), max_query_length=32, max_code_length=64,
                               batch_size=2, prefix="test")
    assert metrics["eval_mrr"] == pytest.approx(whole["test_mrr"], abs=1e-6)
    assert whole["test_pool_size"] == 4
    assert trainer.state.best_metric is not None  # metric_for_best_model="mrr" found eval_mrr


def test_return_loss_false_skips_the_loss(tiny):
    model = MambaCodeForRetrieval(tiny()).eval()
    q, c = torch.randint(3, 96, (3, 7)), torch.randint(3, 96, (3, 9))
    with torch.no_grad():
        assert model(q, code_input_ids=c).loss is not None
        out = model(q, code_input_ids=c, return_loss=False)
    assert out.loss is None and out.logits.shape == (3, 3)


# ------------------------------------------------------------------------------ pipeline and tuples
def test_feature_extraction_pipeline_returns_token_states(tokenizer, tiny):
    from transformers import pipeline

    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)).eval()
    extractor = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device="cpu")
    text = TEXTS[2]
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        states = model.mambacode(ids["input_ids"], ids["attention_mask"]).last_hidden_state
    got = torch.tensor(extractor(text))
    assert got.shape == (1, ids["input_ids"].shape[1], 32)  # one vector per token, not the pooled one
    torch.testing.assert_close(got, states, atol=1e-6, rtol=0)
    torch.testing.assert_close(extractor(text, return_tensors=True), states, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", [MambaCodeModel, MambaCodeForRetrieval, MambaCodeForMaskedLM,
                                 MambaCodeForTokenClassification, MambaCodeForSequenceClassification])
def test_return_dict_false_returns_tuples(cls, tiny):
    model = cls(tiny(num_labels=3)).eval()
    ids = torch.randint(3, 96, (2, 9))
    kwargs = {"output_hidden_states": True}
    if cls is MambaCodeForRetrieval:
        kwargs["code_input_ids"] = torch.randint(3, 96, (2, 5))
    elif cls is MambaCodeForSequenceClassification:
        kwargs["labels"] = torch.tensor([0, 2])
    elif cls is not MambaCodeModel:
        kwargs["labels"] = torch.randint(0, 3, (2, 9))
    with torch.no_grad():
        as_dict = model(ids, **kwargs)
        as_tuple = model(ids, return_dict=False, **kwargs)
    assert type(as_tuple) is tuple
    expected = [v for v in as_dict.values()]
    assert len(as_tuple) == len(expected) and len(as_tuple) >= 2
    for got, want in zip(as_tuple, expected):
        if isinstance(want, tuple):
            assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want))
        else:
            assert torch.equal(got, want)
    model.config.return_dict = False  # the config default applies too
    with torch.no_grad():
        assert type(model(ids, **kwargs)) is tuple


# ------------------------------------------------------------------------------ LoRA through AutoPeftModel
def test_lora_with_task_type_round_trips_through_auto_peft_model(tmp_path, tokenizer, tiny):
    """peft 0.21's task-free `AutoPeftModel` refuses every adapter with a task type; the auto class of a
    FEATURE_EXTRACTION adapter is `AutoPeftModelForFeatureExtraction` (base model through `AutoModel`)."""
    from peft import AutoPeftModelForFeatureExtraction, LoraConfig, PeftModelForFeatureExtraction, TaskType, get_peft_model

    base, folder = _saved(tmp_path, tokenizer, tiny)
    # the LoRA example of docs/models.md
    lora = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=8, lora_alpha=16,
                      target_modules=["proj_uf", "proj_ub", "proj_cf", "proj_cb"], init_lora_weights=False)
    peft_model = get_peft_model(MambaCodeForRetrieval.from_pretrained(folder), lora).eval()
    ids = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        adapted = peft_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).embeddings
        plain = base(ids["input_ids"], ids["attention_mask"]).embeddings
    assert not torch.allclose(adapted, plain, atol=1e-4)  # the adapter does something
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["base_model_name_or_path"] == str(folder)
    loaded = AutoPeftModelForFeatureExtraction.from_pretrained(str(tmp_path / "adapter")).eval()
    assert isinstance(loaded, PeftModelForFeatureExtraction)
    assert type(loaded.get_base_model()) is MambaCodeForRetrieval
    with torch.no_grad():
        again = loaded(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).embeddings
    torch.testing.assert_close(again, adapted, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ one embedding loop
def test_evaluation_embeds_with_the_same_loop_as_encode(tokenizer, tiny):
    from mambacode.training.evaluation import embed_texts

    model = MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                       initializer_range=0.3)).eval()
    texts = TEXTS + ["a + b " * 40]
    got = embed_texts(model, tokenizer, texts, max_length=12, batch_size=2)
    torch.testing.assert_close(got, model.encode(texts, tokenizer, batch_size=2, max_length=12), atol=0, rtol=0)
    for i, text in enumerate(texts):  # truncation keeps the first max_length tokens; padding changes nothing
        ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=12)
        with torch.no_grad():
            alone = model(ids["input_ids"], ids["attention_mask"]).embeddings[0]
        torch.testing.assert_close(got[i], alone, atol=1e-5, rtol=1e-5)


def test_embedding_loop_serves_the_transformer_baseline(tokenizer):
    from transformers import RoFormerConfig

    from mambacode.training.evaluation import embed_texts
    from mambacode.training.rocoder import RoCoderForRetrieval

    config = RoFormerConfig(vocab_size=len(tokenizer), embedding_size=32, hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                            pad_token_id=tokenizer.pad_token_id)
    model = RoCoderForRetrieval(config).eval()
    got = embed_texts(model, tokenizer, TEXTS, max_length=64, batch_size=3)
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            torch.testing.assert_close(got[i], model(ids["input_ids"], ids["attention_mask"]).embeddings[0],
                                       atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ without mambacode installed
def test_tokenizer_and_sentence_transformer_load_without_mambacode(tmp_path, tiny):
    """In a process where `mambacode` cannot be imported: `AutoTokenizer` gets the tokenizer class the folder
    names without executing any of its code, and sentence-transformers loads the model as remote code, offline,
    with the embeddings of `model.encode`."""
    from mambacode.corpus import train_tokenizer

    corpus = [t for t in TEXTS for _ in range(5)] + ["def sub(a, b):\n    return a - b"] * 5
    tok_dir = tmp_path / "tokenizer"
    tokenizer = train_tokenizer(corpus, vocab_size=300, min_frequency=1, output_dir=str(tok_dir))
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    model, folder = _saved(tmp_path, tokenizer, tiny, pooling="max")
    expected_ids = tokenizer(TEXTS)["input_ids"]
    expected = model.encode(TEXTS, tokenizer)
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["mambacode"] = None          # make the package unimportable
        from transformers import AutoTokenizer

        def remote_modules():
            return [m for m in sys.modules if m.startswith("transformers_modules")]

        ids = {{}}
        for name, path, kwargs in (("tokenizer folder", {str(tok_dir)!r}, {{}}),
                                   ("model folder, trust_remote_code=False", {str(folder)!r},
                                    {{"trust_remote_code": False}}),
                                   ("model folder", {str(folder)!r}, {{}})):
            tok = AutoTokenizer.from_pretrained(path, **kwargs)
            assert type(tok).__name__ == "TokenizersBackend", (name, type(tok))
            assert not remote_modules(), (name, remote_modules())
            ids[name] = tok({TEXTS!r})["input_ids"]
        json.dump(ids, open("ids.json", "w"))

        import torch
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer({str(folder)!r}, trust_remote_code=True, device="cpu")
        assert remote_modules(), "the model should have been loaded as remote code"
        torch.save(st.encode({TEXTS!r}, convert_to_tensor=True), "st.pt")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, ids in json.loads((tmp_path / "ids.json").read_text()).items():
        assert ids == expected_ids, name
    torch.testing.assert_close(torch.load(tmp_path / "st.pt"), expected, atol=1e-5, rtol=0)


def test_run_retrieval_evaluates_with_loss_and_mrr(tmp_path, tokenizer, tiny):
    """The entry point wires the whole-pool compute_metrics in: eval_loss and eval_mrr reach the results, and
    best-model selection by MRR works; the saved folder is a sentence-transformers model."""
    from datasets import Dataset, DatasetDict
    from transformers import TrainingArguments

    from mambacode.training.entry_points import RetrievalDataArguments, run_retrieval
    from mambacode.training.models import ModelArguments
    from mambacode.training.script_utils import RunArguments

    _, folder = _saved(tmp_path, tokenizer, tiny)
    rows = Dataset.from_dict({"query": ["sum two numbers", "loop ten times", "empty class", "add values"] * 2,
                              "code": TEXTS[:4] * 2})
    DatasetDict({"train": rows, "validation": rows, "test": rows}).save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "out"
    args = TrainingArguments(output_dir=str(out), do_train=True, do_eval=True, max_steps=2, eval_strategy="steps",
                             eval_steps=1, save_steps=1, metric_for_best_model="mrr", load_best_model_at_end=True,
                             per_device_train_batch_size=4, per_device_eval_batch_size=3, report_to="none",
                             use_cpu=True)
    run_retrieval(ModelArguments(model_name_or_path=str(folder)),
                  RetrievalDataArguments(dataset_path=str(tmp_path / "data"), max_query_length=16,
                                         max_code_length=32, max_eval_samples=6), args, RunArguments())
    results = json.loads((out / "eval_results.json").read_text())
    assert math.isfinite(results["eval_loss"]) and 0 < results["eval_mrr"] <= 1
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] == max(h["eval_mrr"] for h in state["log_history"] if "eval_mrr" in h)
    assert (out / "modules.json").exists() and (out / "1_Pooling" / "config.json").exists()
