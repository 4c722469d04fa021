"""Conventions at the edges of the package (issue 24): what a saved or shipped folder tells its users.

- the tokenizer's limit is the model's, with no loader flags or leftover truncation state in its files;
- cards: no local absolute paths, the folder's own name, the shipped base model, plain hyper-parameter values,
  the Auto class that loads the folder's head; sentence-transformers' own card keeps the licence, the
  `custom_code` tag and `trust_remote_code=True`;
- `--push_to_hub` with the Hub out of reach: one line, exit status 3, before training;
- `run_retrieval.py` reads JSON-lines / CSV files and `--dataset_name` as well as `save_to_disk` folders;
- the docs' tiny-run tables (`docs/tiny-run-results.md`) are the committed tiny run's (`docs/tiny-run/`).
References are independent of the code under test: config.json read as JSON, token counts, hand-written
expectations, the same rows through another data path."""

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys

import datasets
import pytest
import torch

import mambacode
from mambacode import pretrained as shipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--intermediate_size", "64", "--state_size", "8",
         "--max_position_embeddings", "96", "--max_query_length", "32", "--max_code_length", "64"]
TRAIN = ["--per_device_train_batch_size", "8", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
         "--dataloader_num_workers", "0", "--save_strategy", "no"]
SHIPPED = ("rocoder-mlm", "s4d-hf-codesearch", "s4d-hf-mlm", "s4d-minilm-codesearch", "s4d-mlm")  # fixed: a missing one fails
LONG_FUNCTION = "def f(x):\n" + "".join(f"    y{i} = x * {i} + len(str(x))\n" for i in range(300)) + "    return x\n"
STRAY = ("is_local", "local_files_only", "max_length")
ABSOLUTE_PATH = re.compile(r"(?<![\w./~-])/(?:[\w.+~-]+/)+[\w.+~-]+")


def script(name):
    spec = importlib.util.spec_from_file_location(f"_conv_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tokenizer (model_max_length 1024, as the corpus trains them) and 48 query/code rows, saved three ways:
    a save_to_disk DatasetDict, JSON-lines files and CSV files, and a folder of data files."""
    from mambacode.corpus import train_tokenizer

    root = tmp_path_factory.mktemp("conventions")
    rng = random.Random(0)
    words = ["add", "sum", "list", "parse", "file", "read", "write", "value", "count", "sort", "merge", "split"]
    rows = []
    for _ in range(48):
        a, b = rng.sample(words, 2)
        rows.append({"query": f"{a} the {b} items", "code": f"def {a}_{b}(x):\n    return {a}(x, {b})\n"})
    splits = {"train": rows[:32], "validation": rows[32:40], "test": rows[40:]}
    datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in splits.items()}).save_to_disk(
        str(root / "retrieval"))
    (root / "files").mkdir()
    for split, part in splits.items():
        with open(root / "files" / f"{split}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in part)
        datasets.Dataset.from_list(part).to_csv(str(root / "files" / f"{split}.csv"), index=False)
    (root / "named").mkdir()
    for split in splits:
        shutil.copy(root / "files" / f"{split}.jsonl", root / "named" / f"{split}.jsonl")
    tok = train_tokenizer([r["query"] for r in rows] + [r["code"] for r in rows], vocab_size=300, min_frequency=1,
                          output_dir=str(root / "tok"))
    assert tok.model_max_length == 1024  # the tokenizer's own default, longer than the models below accept
    return {"root": root, "retrieval": str(root / "retrieval"), "files": root / "files", "named": str(root / "named"),
            "tok": str(root / "tok")}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """run_retrieval on the save_to_disk folder: a model accepting 96 positions, tokenizer trained for 1024."""
    out = str(tmp_path_factory.mktemp("trained") / "retrieval-model")
    assert script("run_retrieval")(["--tokenizer_name_or_path", data["tok"], "--dataset_path", data["retrieval"],
                                    *SMALL, "--output_dir", out, "--do_train", "--do_predict", "--max_steps", "2",
                                    *TRAIN]) == 0
    return out


# ------------------------------------------------------------------------------------------ tokenizers
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tokenizer_cuts_long_inputs_to_what_the_model_accepts(name):
    folder = mambacode.pretrained_path(name)
    limit = _json(os.path.join(folder, "config.json"))["max_position_embeddings"]
    config = _json(os.path.join(folder, "tokenizer_config.json"))
    assert config["model_max_length"] == limit
    assert not set(STRAY) & set(config), sorted(set(STRAY) & set(config))
    fast = _json(os.path.join(folder, "tokenizer.json"))
    assert fast.get("truncation") is None and fast.get("padding") is None
    model, tok = shipped.load_for_task(folder, shipped.shipped_info(name)["task"])
    enc = tok(LONG_FUNCTION, truncation=True, return_tensors="pt")
    assert len(tok(LONG_FUNCTION)["input_ids"]) > limit  # the text is longer than the model reads
    assert enc["input_ids"].shape == (1, limit)
    with torch.no_grad():
        out = model(**enc)
    assert out[0].shape[:2] == (1, limit)


@pytest.mark.skipif("s4d-hf-codesearch" not in SHIPPED, reason="the code-search checkpoint is not shipped")
def test_feature_extraction_pipeline_reads_a_long_function():
    from transformers import pipeline

    folder = mambacode.pretrained_path("s4d-hf-codesearch")
    limit = _json(os.path.join(folder, "config.json"))["max_position_embeddings"]
    pipe = pipeline("feature-extraction", model=folder, trust_remote_code=True, device="cpu")
    features = pipe(LONG_FUNCTION, truncation=True)
    width = _json(os.path.join(folder, "config.json"))["hidden_size"]
    assert len(features[0]) == limit and len(features[0][0]) == width


def test_tidy_tokenizer_files_keep_the_tokenization_and_drop_the_leftovers(data, tmp_path):
    from transformers import AutoTokenizer

    from mambacode.tokenizer_files import tidy_tokenizer_files

    tok = AutoTokenizer.from_pretrained(data["tok"])
    tok(["a b c " * 50, "x"], truncation=True, max_length=7, padding=True)  # leaves truncation state behind
    tok.save_pretrained(tmp_path)
    assert _json(tmp_path / "tokenizer.json")["truncation"] is not None  # the leftover this removes
    expected = [tok(t)["input_ids"] for t in ("def add(a, b): return a + b", LONG_FUNCTION)]
    assert sorted(tidy_tokenizer_files(str(tmp_path), 96)) == ["tokenizer.json", "tokenizer_config.json"]
    config = _json(tmp_path / "tokenizer_config.json")
    assert config["model_max_length"] == 96 and not set(STRAY) & set(config)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert [again(t)["input_ids"] for t in ("def add(a, b): return a + b", LONG_FUNCTION)] == expected
    assert len(again(LONG_FUNCTION, truncation=True)["input_ids"]) == 96
    assert tidy_tokenizer_files(str(tmp_path), 96) == []  # a second pass changes nothing


def test_trained_folder_tokenizer_has_the_models_limit(trained):
    config = _json(os.path.join(trained, "tokenizer_config.json"))
    assert config["model_max_length"] == 96 and not set(STRAY) & set(config)
    assert _json(os.path.join(trained, "tokenizer.json")).get("truncation") is None
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained)
    model = AutoModel.from_pretrained(trained, trust_remote_code=True)
    enc = tok(LONG_FUNCTION, truncation=True, return_tensors="pt")
    assert enc["input_ids"].shape == (1, 96)
    with torch.no_grad():
        model(**enc)


# ------------------------------------------------------------------------------------------ cards
def test_card_shows_no_path_no_enum_repr_and_the_heads_auto_class(tmp_path, tiny):
    from transformers.trainer_utils import SchedulerType

    from mambacode.training.model_card import Evaluation, render_model_card

    secret = str(tmp_path / "very" / "private")
    for task, auto in (("mlm", "AutoModelForMaskedLM"), ("retrieval", "AutoModel"),
                       ("token_classification", "AutoModelForTokenClassification")):
        text = render_model_card(tiny("s4d"), task, "tiny", [Evaluation(f"{secret}/corpus", "test", {"mrr": 0.5})],
                                 dataset=f"{secret}/corpus", base_model=f"{secret}/runs/pretrain/s4d-hf",
                                 data_description=f"Pairs from `{secret}/corpus/retrieval`, split `train`.",
                                 training={"lr_scheduler_type": SchedulerType.LINEAR, "seed": 42,
                                           "legacy": "SchedulerType.COSINE"})
        assert str(tmp_path) not in text and not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text)
        assert "SchedulerType" not in text and "| lr_scheduler_type | `linear` |" in text
        assert "| legacy | `cosine` |" in text
        assert "Fine-tuned from `s4d-hf`" in text and "Pairs from `retrieval`" in text
        assert f"model = {auto}.from_pretrained(path, trust_remote_code=True)" in text
        assert "base_model" not in text.split("\n---\n", 1)[0]  # a local folder is no Hub id
    rocoder = {"model_type": "roformer", "hidden_size": 32}
    assert "model = AutoModelForMaskedLM.from_pretrained(path)\n" in render_model_card(rocoder, "mlm", "r")


def test_read_model_card_gives_back_what_rendered_it(tiny):
    from mambacode.training.model_card import Evaluation, read_model_card, render_model_card

    args = dict(evaluations=[Evaluation("retrieval", "test", {"mrr": 0.123456, "recall@1": 0.5, "num_queries": 8}),
                             Evaluation("retrieval_adv", "test", {"mrr": 0.25, "pool_size": 7})],
                data_description="Query/code pairs from `retrieval`.", base_model="s4d-hf",
                training={"learning_rate": "0.0005", "lr_scheduler_type": "linear"}, num_parameters=12345,
                probe_summary="Last of 2 probe runs.", spectrum_summary=None, sentence_transformers=True)
    text = render_model_card(tiny("s4d"), "retrieval", "named", **args)
    back = read_model_card(text)
    assert back["task"] == "retrieval" and back["model_name"] == "named"
    assert [(e.dataset, e.split, e.metrics) for e in back["evaluations"]] == [
        (e.dataset, e.split, e.metrics) for e in args["evaluations"]]
    assert back["num_parameters"] == 12345 and back["base_model"] == "s4d-hf"
    back.pop("task"), back.pop("model_name")
    assert render_model_card(tiny("s4d"), "retrieval", "named", **back) == text


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_names_its_folder_its_base_and_its_loader(name):
    from huggingface_hub import ModelCard

    folder = mambacode.pretrained_path(name)
    text = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    card = ModelCard(text)
    info = shipped.shipped_info(name)
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text).group(0)
    assert "SchedulerType." not in text
    assert re.search(r"^# (.+)$", card.text, re.M).group(1) == name
    assert card.data.to_dict()["model-index"][0]["name"] == name
    assert card.data.license == "apache-2.0"
    is_ssm = _json(os.path.join(folder, "config.json"))["model_type"] == "mambacode"
    assert ("custom_code" in card.data.tags) == is_ssm
    if info["task"] == "mlm":
        assert "AutoModelForMaskedLM.from_pretrained(path" in text and "AutoModel.from_pretrained" not in text
    elif info.get("teacher"):  # distilled from a teacher, not fine-tuned from a base: the card names the teacher
        assert card.data.to_dict().get("base_model") is None and info["teacher"].split("/")[-1] in text
    else:  # fine-tuned from the MLM encoder of the same variant, shipped beside it
        base = card.data.to_dict().get("base_model")
        assert base == f"{info['source']}-mlm" and info.get("base_model") == base
        if base in SHIPPED:
            assert shipped.shipped_info(base)["task"] == "mlm"


def test_shipped_folders_are_what_refresh_writes(tmp_path):
    """Re-rendering every shipped card and tokenizer with today's code changes nothing (weights left out of the
    copy: a refresh never reads them)."""
    copy = tmp_path / "pretrained"
    shutil.copytree(shipped.pretrained_root(), copy, ignore=shutil.ignore_patterns("*.safetensors", "__pycache__"))
    for name in SHIPPED:
        assert shipped.refresh_shipped_folder(str(copy / name)) == [], name


def test_refresh_fixes_an_old_card_and_never_touches_the_weights(tmp_path):
    from mambacode.modeling.checksums import sha256

    if not {"s4d-hf-codesearch", "s4d-hf-mlm"} <= set(SHIPPED):
        pytest.skip("needs the shipped code-search model and its encoder")
    root = tmp_path / "pretrained"
    for name in ("s4d-hf-codesearch", "s4d-hf-mlm"):
        shutil.copytree(mambacode.pretrained_path(name), root / name)
    folder = root / "s4d-hf-codesearch"
    weights = sha256(str(folder / "model.safetensors"))
    old = (folder / "README.md").read_text()  # as shipped before: a path, the run's name, an enum repr
    (folder / "README.md").write_text(old.replace("# s4d-hf-codesearch", "# mambacode-s4d-hf-advtest").replace(
        "- name: s4d-hf-codesearch", "- name: mambacode-s4d-hf-advtest").replace(
        "| lr_scheduler_type | `linear` |", "| lr_scheduler_type | `SchedulerType.LINEAR` |").replace(
        "Query/code pairs from `retrieval`", "Query/code pairs from `/work/main/runs/cpu/corpus/retrieval`"))
    info = _json(folder / "shipped.json")
    del info["base_model"]
    (folder / "shipped.json").write_text(json.dumps(info))
    tok_config = _json(folder / "tokenizer_config.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config, "model_max_length": 1024,
                                                              "is_local": True, "max_length": 256}))
    changed = shipped.refresh_shipped_folder(str(folder))
    assert set(changed) == {"README.md", "shipped.json", "tokenizer_config.json"}
    assert (folder / "README.md").read_text() == old
    assert _json(folder / "shipped.json")["base_model"] == "s4d-hf-mlm"
    assert _json(folder / "tokenizer_config.json") == tok_config
    assert sha256(str(folder / "model.safetensors")) == weights


def test_push_names_a_shipped_base_model_in_the_namespace_pushed_to(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import ModelCard, constants

    from mambacode.training.hub import push_folder

    if "s4d-hf-codesearch" not in SHIPPED:
        pytest.skip("the code-search checkpoint is not shipped")
    folder = mambacode.pretrained_path("s4d-hf-codesearch")
    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(os.path.relpath(os.path.join(d, f), folder_path) for d, _, fs in os.walk(folder_path)
                       for f in fs)
        same = all(open(os.path.join(folder_path, f), "rb").read() == open(os.path.join(folder, f), "rb").read()
                   for f in files if f != "README.md")
        uploads.append((repo_id, files, same, open(os.path.join(folder_path, "README.md")).read()))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    push_folder(folder, "someone/s4d-hf-codesearch")
    ((repo, files, same, card),) = uploads
    on_disk = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
    assert repo == "someone/s4d-hf-codesearch" and files == on_disk and same
    assert ModelCard(card).data.base_model == "someone/s4d-hf-mlm"
    local = open(os.path.join(folder, "README.md")).read()
    assert card.split("\n---\n", 1)[1] == local.split("\n---\n", 1)[1]  # only the metadata line differs


def test_sentence_transformers_trainer_card_keeps_licence_custom_code_and_remote_code(tmp_path, tiny, tokenizer):
    from datasets import Dataset
    from huggingface_hub import ModelCard
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from mambacode import MambaCodeForRetrieval
    from mambacode.training.model_card import sentence_transformers_card_data, write_model_card

    folder = str(tmp_path / "model")
    model = MambaCodeForRetrieval(tiny("s4d", vocab_size=len(tokenizer)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_model_card(folder, model.config, "retrieval")
    st = SentenceTransformer(folder, trust_remote_code=True, device="cpu",
                             model_card_data=sentence_transformers_card_data(folder))
    pairs = Dataset.from_dict({"anchor": ["sum two numbers", "loop ten times"] * 2,
                               "positive": ["def add(a, b): return a + b", "for i in range(10): pass"] * 2})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1,
                                                per_device_train_batch_size=2, report_to="none", use_cpu=True,
                                                save_strategy="no")
    SentenceTransformerTrainer(model=st, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(st)).train()
    st.save(str(tmp_path / "st"))
    text = open(tmp_path / "st" / "README.md", encoding="utf-8").read()
    card = ModelCard(text)
    assert "generated_from_trainer" in card.data.tags  # sentence-transformers wrote this card, not us
    assert card.data.license == "apache-2.0" and "custom_code" in card.data.tags
    loads = [line for line in text.splitlines() if line.startswith("model = SentenceTransformer(")]
    assert loads and all(line.endswith(", trust_remote_code=True)") for line in loads)


# ------------------------------------------------------------------------------------------ the Hub out of reach
def test_push_to_hub_with_the_network_down_stops_before_training_in_one_line(data, tmp_path):
    out = tmp_path / "pushed"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_not_a_real_token", HF_HUB_DISABLE_TELEMETRY="1")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "run_retrieval.py"), "--tokenizer_name_or_path",
                          data["tok"], "--dataset_path", data["retrieval"], *SMALL, "--output_dir", str(out),
                          "--do_train", "--max_steps", "1", "--push_to_hub", "--hub_model_id", "me/tiny", *TRAIN],
                         env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Traceback" not in run.stderr + run.stdout
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "127.0.0.1:9" in errors[0], run.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing saved


# ------------------------------------------------------------------------------------------ retrieval data sources
def _retrieval(data, out, *source):
    return script("run_retrieval")(["--tokenizer_name_or_path", data["tok"], *source, *SMALL, "--output_dir", str(out),
                                    "--do_train", "--do_predict", "--max_steps", "2", *TRAIN])


def _files(data, ext):
    return ["--train_file", str(data["files"] / f"train.{ext}"), "--validation_file",
            str(data["files"] / f"validation.{ext}"), "--test_file", str(data["files"] / f"test.{ext}")]


def test_run_retrieval_reads_files_and_named_datasets_as_it_reads_saved_ones(data, trained, tmp_path):
    """The same rows through JSON lines, CSV and --dataset_name (a folder of data files) train and rank as
    through the save_to_disk folder: the same test metrics, to the last digit (same seed, same order)."""
    reference = _json(os.path.join(trained, "all_results.json"))
    for source, tag in ((_files(data, "jsonl"), "jsonl"), (_files(data, "csv"), "csv"),
                        (["--dataset_name", data["named"]], "named")):
        out = tmp_path / tag
        assert _retrieval(data, out, *source) == 0, tag
        results = _json(out / "all_results.json")
        for key in ("test_mrr", "test_recall@1", "test_bm25_mrr", "test_hybrid_mrr", "test_pool_size"):
            assert results[key] == pytest.approx(reference[key], abs=1e-9), (tag, key)
        card = (out / "README.md").read_text()
        assert str(data["root"]) not in card and not ABSOLUTE_PATH.search(card)


def test_run_retrieval_names_the_file_and_the_columns_it_found(data, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    datasets.Dataset.from_dict({"question": ["sum"], "code": ["def s(): pass"]}).to_csv(str(bad), index=False)
    good = str(data["files"] / "train.jsonl")
    assert _retrieval(data, tmp_path / "a", "--train_file", good, "--validation_file", str(bad)) == 2
    err = capsys.readouterr().err
    assert f"--validation_file {bad}" in err and "['query']" in err and "['question', 'code']" in err
    assert _retrieval(data, tmp_path / "b", "--train_file", str(tmp_path / "missing.jsonl")) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    assert _retrieval(data, tmp_path / "c", "--train_file", str(tmp_path / "pairs.txt")) == 2
    assert "expected a .json / .jsonl (JSON lines) or .csv file" in capsys.readouterr().err
    assert _retrieval(data, tmp_path / "d", "--dataset_path", data["retrieval"], "--train_file", good) == 2
    assert "exactly one of --dataset_path" in capsys.readouterr().err
    assert _retrieval(data, tmp_path / "e") == 2
    assert "got none" in capsys.readouterr().err
    script_dir = tmp_path / "scripted"
    script_dir.mkdir()
    (script_dir / "scripted.py").write_text("import datasets\n")
    assert _retrieval(data, tmp_path / "f", "--dataset_name", str(script_dir)) == 2
    err = capsys.readouterr().err
    assert "--dataset_name" in err and "loading script" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------- the docs' tiny run
TINY_RUN = os.path.join(ROOT, "docs", "tiny-run")


def _tables(text: str) -> list[str]:
    """Every Markdown table in `text`, as its block of lines."""
    blocks, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


def test_docs_tiny_run_tables_are_the_committed_run():
    """Every table of the tiny run's results page (`docs/tiny-run-results.md`) is a table of the committed tiny
    run's report, and that report's Table 1 and BM25 table are what `results.json` of the same run renders to."""
    from mambacode.training.reproduction_report import results_table, retrieval_table

    section = open(os.path.join(ROOT, "docs", "tiny-run-results.md"), encoding="utf-8").read()
    report = open(os.path.join(TINY_RUN, "report.md"), encoding="utf-8").read()
    rows = _json(os.path.join(TINY_RUN, "results.json"))
    report_tables = _tables(report)
    assert results_table(rows) in report_tables and retrieval_table(rows) in report_tables
    shown = _tables(section)
    assert len(shown) >= 4
    for table in shown:
        assert table in report_tables, "docs/tiny-run-results.md table not in docs/tiny-run/report.md:\n" + table
    assert results_table(rows) in shown and retrieval_table(rows) in shown


def test_readme_is_a_front_door_whose_links_stay_in_the_repository():
    """README.md stays short (a front door of about 250 lines) and every link in it is a relative path to a file
    of this repository, mostly the pages under docs/; the rest is the documentation site (`mkdocs build --strict`
    in .ci/run checks the links and anchors of docs/)."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme.splitlines()) <= 260
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets
    for target in targets:
        assert "://" not in target and not target.startswith(("/", "..")), target
        path = target.split("#", 1)[0]
        assert path and os.path.isfile(os.path.join(ROOT, path)), target
