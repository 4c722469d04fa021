"""One argument style and one naming scheme across every command-line script: HfArgumentParser dataclasses
(no hand-built argparse), transformers' names (--model_name_or_path, --tokenizer_name_or_path, --use_cpu)."""

import dataclasses
import importlib.util
import os
import sys

import pytest
from transformers import HfArgumentParser, TrainingArguments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["build_corpus", "train_tokenizer", "run_mlm", "run_retrieval", "run_type_inference", "probe", "spectrum",
           "push_to_hub", "reproduce"]
OLD_NAMES = {"tokenizer_name", "device", "folder", "model", "model_path", "tokenizer"}


def _module(name):
    spec = importlib.util.spec_from_file_location(f"_args_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses of `from __future__ import annotations` modules look it up
    spec.loader.exec_module(mod)
    return mod


def _argument_classes(name):
    if name.startswith("run_"):
        from mambacode.training import entry_points, models, script_utils

        data = {"run_mlm": entry_points.MLMDataArguments, "run_retrieval": entry_points.RetrievalDataArguments,
                "run_type_inference": entry_points.TypeInferenceDataArguments}[name]
        return [models.ModelArguments, data, script_utils.RunArguments]
    if name == "spectrum":
        from mambacode.spectral.cli import SpectrumArguments

        return [SpectrumArguments]
    mod = _module(name)
    return [v for v in vars(mod).values() if dataclasses.is_dataclass(v) and isinstance(v, type)
            and v.__module__ == mod.__name__]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_use_hf_argument_parser_and_transformers_names(name):
    source = open(os.path.join(ROOT, "scripts", f"{name}.py"), encoding="utf-8").read()
    assert "import argparse" not in source and "ArgumentParser(" not in source.replace("HfArgumentParser(", "")
    classes = _argument_classes(name)
    assert classes, f"{name}: no argument dataclass"
    fields = {f.name for c in classes for f in dataclasses.fields(c)}
    assert not fields & OLD_NAMES, f"{name}: old flag names {fields & OLD_NAMES}"
    HfArgumentParser(classes)  # builds without clashes
    if name.startswith("run_"):
        assert not fields & {f.name for f in dataclasses.fields(TrainingArguments)}


def test_probe_and_push_flags():
    probe = _module("probe")
    args = probe.parse_args(["--model_name_or_path", "a", "b", "--model_name_or_path", "c", "--language", "python",
                             "--output_dir", "o", "--use_cpu"])
    assert args.model_name_or_path == ["a", "b", "c"] and args.use_cpu is True
    for bad in (["--device", "cpu"], ["--corpus_dir", "x", "--source_dir", "y"], []):
        with pytest.raises((SystemExit, ValueError)):  # HfArgumentParser: ValueError for an unknown flag
            probe.parse_args(["--language", "python", "--output_dir", "o", *(["--model_name_or_path", "a"] if bad else []),
                              *bad])
    push = _module("push_to_hub")
    with pytest.raises((SystemExit, ValueError)):  # the folder is a named flag now, not positional
        push.main(["some/folder", "--repo_id", "me/x"])


def test_retrieval_takes_data_as_the_transformers_examples_do():
    """--dataset_name / --dataset_config_name / --train_file / --validation_file / --test_file, the names of
    transformers' examples, beside --dataset_path (no longer required)."""
    from mambacode.training.entry_points import RetrievalDataArguments

    names = {f.name for f in dataclasses.fields(RetrievalDataArguments)}
    assert {"dataset_name", "dataset_config_name", "train_file", "validation_file", "test_file"} <= names
    (args,) = HfArgumentParser(RetrievalDataArguments).parse_args_into_dataclasses(
        args=["--train_file", "a.jsonl", "--validation_file", "b.csv"])
    assert args.dataset_path is None and (args.train_file, args.validation_file) == ("a.jsonl", "b.csv")
