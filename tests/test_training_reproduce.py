"""reproduce.py's machinery without training: stages skip when done, a failing stage is named, and the
report's tables come from the files the stages write."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def rp():
    spec = importlib.util.spec_from_file_location("_test_reproduce", os.path.join(ROOT, "scripts", "reproduce.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stages_skip_when_done_and_failures_are_named(rp, tmp_path):
    pl = rp.Pipeline(str(tmp_path), "tiny")
    calls = []
    folder = str(tmp_path / "a")
    pl.stage("a", folder, lambda log: calls.append(1))
    pl.stage("a", folder, lambda log: calls.append(2))
    assert calls == [1] and os.path.exists(os.path.join(folder, ".done"))

    def boom(log):
        print("halfway")
        raise ValueError("bad data")

    with pytest.raises(rp.StageError, match=r"stage 'b' failed \(ValueError: bad data\); see .*b\.log"):
        pl.stage("b", str(tmp_path / "b"), boom)
    log = open(tmp_path / "logs" / "b.log").read()
    assert "halfway" in log and "Traceback" in log
    assert not os.path.exists(tmp_path / "b" / ".done")  # not marked done: the next run retries it
    with pytest.raises(rp.StageError, match=r"stage 'c' failed \(exit status 2\)"):
        pl.stage("c", str(tmp_path / "c"), lambda log: (_ for _ in ()).throw(SystemExit(2)))


def test_report_tables_from_stage_outputs(rp, tmp_path):
    pl = rp.Pipeline(str(tmp_path), "tiny")
    def put(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        json.dump(data, open(path, "w"))

    put(str(tmp_path / "finetune/advtest/s4d/all_results.json"), {"retrieval_adv_mrr": 0.1234, "test_mrr": 0.5})
    put(str(tmp_path / "finetune/longctx/s4d/all_results.json"), {"test_mrr": 0.25})
    put(str(tmp_path / "finetune/types/s4d/all_results.json"), {"test_micro_f1": 0.4, "test_accuracy": 0.6})
    put(str(tmp_path / "finetune/types/s4d+anchor/all_results.json"), {"test_micro_f1": 0.45})
    put(str(tmp_path / "probes/pretrained/probe_report.json"), {"results": {
        str(tmp_path / "pretrain/s4d"): {"ast_distance": {"1": {"directprobe": {"accuracy": 0.5}, "linear": {"accuracy": 0.4}}}}}})
    put(str(tmp_path / "spectra/types/s4d/spectral_shift.json"), {
        "class_changes": {"kernels": 4, "total": 1, "transitions": {"low-pass -> band-pass": 1}},
        "layer_mean_abs_delta_log10_lhfr": {"layers": [0, 1], "values": {"forward": [0.5, 0.25]}}})
    rp.write_report(pl)
    md = open(tmp_path / "report.md").read()
    row = next(line for line in md.splitlines() if line.startswith("| s4d |"))
    assert "12.34" in row and "50.00" in row and "25.00" in row and "40.00" in row and "60.00" in row
    assert any(line.startswith("| s4d+anchor |") and "45.00" in line for line in md.splitlines())
    assert "| s4d (pretrained) | 0.500 |" in md and "| s4d (pretrained) | 0.400 |" in md
    assert "1 / 4" in md and "low-pass -> band-pass (1)" in md
    page = open(tmp_path / "report.html").read()
    assert page.count("<table>") >= 3 and "data:image/png;base64," in page  # the results plot is embedded
    assert json.load(open(tmp_path / "results.json"))["s4d"]["types"] == 0.4
