"""The reproduction pipeline without training: the stage runner (skip via markers that carry the typed
result, failures named with their log), the driver's resume after a failing stage (library calls replaced
by fakes that count their calls), and the report rendered from hand-built typed results."""

import importlib.util
import json
import logging
import os
import time

import pytest

from mambacode.training import MLMResult, RetrievalResult, TypeInferenceResult
from mambacode.training.pipeline import ProbeResult, SpectrumResult, StageError, StageRunner
from mambacode.training.reproduction_report import markdown_to_html, write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def rp():
    spec = importlib.util.spec_from_file_location("_test_reproduce", os.path.join(ROOT, "scripts", "reproduce.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_runs_once_and_hands_its_typed_result_on(tmp_path):
    stage, calls = StageRunner(str(tmp_path / "logs")), []

    def fn():
        calls.append(1)
        print("to the log")
        logging.getLogger("transformers").warning("library record")
        return MLMResult(str(tmp_path / "m"), train_loss=1.5, perplexity=7.25, encoder_parameters=12)

    first = stage("a", str(tmp_path / "a"), fn, MLMResult)
    again = StageRunner(str(tmp_path / "logs"))("a", str(tmp_path / "a"), fn, MLMResult)  # a resumed run
    assert calls == [1] and again == first and isinstance(again, MLMResult) and again.perplexity == 7.25
    log = open(tmp_path / "logs" / "a.log").read()
    assert "to the log" in log and "library record" in log
    # a marker without a result (an older version's) runs the stage again
    json.dump({"stage": "a", "seconds": 1}, open(tmp_path / "a" / ".done", "w"))
    stage("a", str(tmp_path / "a"), fn, MLMResult)
    assert calls == [1, 1]


def test_stage_wall_times_are_kept_in_markers_and_read_back_on_resume(tmp_path, monkeypatch):
    import mambacode.training.pipeline as pipeline

    clock = iter([100.0, 103.25, 200.0, 200.5])  # start / end of stage a, then of the `done=` stage b
    monkeypatch.setattr(pipeline.time, "time", lambda: next(clock))
    monkeypatch.setattr(pipeline.logger, "disabled", True)  # its records would read the clock too
    stage = StageRunner(str(tmp_path / "logs"))
    stage("a", str(tmp_path / "a"), lambda: MLMResult("m"), MLMResult)
    stage("b", str(tmp_path / "b"), lambda: None, done=lambda: False)
    assert stage.timings == {"a": 3.2, "b": 0.5} and stage.earlier == set()
    marker = json.load(open(tmp_path / "a" / ".done"))
    assert marker["seconds"] == 3.2 and marker["started"] == "1970-01-01T00:01:40.000+00:00"
    assert marker["finished"] == "1970-01-01T00:01:43.250+00:00" and marker["result"]["output_dir"] == "m"
    assert json.load(open(tmp_path / "logs" / "b.done"))["seconds"] == 0.5  # not in b's folder: not ours
    # a resumed run skips both and still knows their times, marked as an earlier run's
    again = StageRunner(str(tmp_path / "logs"))
    again("a", str(tmp_path / "a"), lambda: pytest.fail("ran again"), MLMResult)
    again("b", str(tmp_path / "b"), lambda: pytest.fail("ran again"), done=lambda: True)
    assert again.timings == {"a": 3.2, "b": 0.5} and again.earlier == {"a", "b"}


def test_a_stage_killed_and_resumed_counts_the_time_of_every_piece(tmp_path):
    logs = tmp_path / "logs"
    seen = []

    def slow():
        time.sleep(0.35)  # several heartbeats: the file holds this piece's seconds so far
        seen.append(json.load(open(logs / "a.pieces.json")))
        return MLMResult("m")

    stage = StageRunner(str(logs), heartbeat=0.05)
    stage("a", str(tmp_path / "a"), slow, MLMResult)
    assert len(seen[0]) == 1 and 0.05 <= seen[0][0] <= 0.35  # written while it ran
    assert not (logs / "a.pieces.json").exists()  # finished: the marker holds the pieces
    marker = json.load(open(tmp_path / "a" / ".done"))
    assert len(marker["pieces"]) == 1 and marker["seconds"] == pytest.approx(0.35, abs=0.1)
    # a piece killed after 1234.5 s left its heartbeat file behind; the resumed stage adds its own time
    (logs / "b.pieces.json").write_text("[600.0, 1234.5]")
    stage("b", str(tmp_path / "b"), lambda: MLMResult("m"), MLMResult)
    marker = json.load(open(tmp_path / "b" / ".done"))
    assert marker["pieces"][:2] == [600.0, 1234.5] and len(marker["pieces"]) == 3
    assert 1834.5 <= marker["seconds"] <= 1835.0 and stage.timings["b"] == marker["seconds"]
    (logs / "c.pieces.json").write_text("not json")  # unreadable: counted as no earlier piece
    stage("c", str(tmp_path / "c"), lambda: MLMResult("m"), MLMResult)
    assert json.load(open(tmp_path / "c" / ".done"))["seconds"] < 1


def test_training_arguments_seed_and_bf16(rp):
    import dataclasses

    from mambacode.training.pipeline import cpu_bf16_supported, seed_suffix, split_seed, training_arguments

    tiny = rp.PRESETS["tiny"]
    args = training_arguments(tiny, 10, 4, 1e-3, "/tmp/unused")
    assert args.seed == 42 and args.bf16 is False and args.use_cpu is False  # as before seeds and bf16 existed
    args = training_arguments(dataclasses.replace(tiny, bf16=True), 10, 4, 1e-3, "/tmp/unused", seed=2)
    assert args.seed == 44 and args.use_cpu is True and args.bf16 is cpu_bf16_supported()
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    assert cpu_bf16_supported() == ("avx512_bf16" in flags or "amx_tile" in flags)
    assert [seed_suffix(s) for s in (0, 1, 12)] == ["", "-seed1", "-seed12"]
    assert split_seed("s4d+anchor-seed2") == ("s4d+anchor", 2) and split_seed("s4d-hf") == ("s4d-hf", 0)
    # tiny: warm-up in steps, two checkpoints, one step count for every task (its tables stay as they were)
    assert (args.warmup_steps, args.save_steps) == (tiny.warmup, 5) and tiny.task_steps == ()
    assert {tiny.finetune_steps(t) for t in ("advtest", "longctx", "types")} == {tiny.ft_steps}
    # cpu: warm-up as a fraction of each stage, four checkpoints, steps per task
    cpu = rp.PRESETS["cpu"]
    args = training_arguments(cpu, 1000, 32, 5e-4, "/tmp/unused")
    assert (args.warmup_steps, args.save_steps) == (round(cpu.warmup_ratio * 1000), 250)
    assert args.lr_scheduler_type == cpu.lr_schedule == "linear" and tiny.lr_schedule == "cosine"
    assert cpu.finetune_steps("advtest") == cpu.ft_steps
    assert cpu.finetune_steps("types") == dict(cpu.task_steps)["types"]
    # cpu: retrieval fine-tuning batches grouped by length (the ablation's winner); type inference and tiny not
    from mambacode.training.pipeline import finetune_arguments

    def sampling(preset, task):
        return finetune_arguments(preset, task, "s4d", "m", "c", "/tmp/unused")[3].train_sampling_strategy

    assert [sampling(cpu, t) for t in ("advtest", "longctx", "types")] == ["group_by_length", "group_by_length",
                                                                             "random"]
    assert sampling(tiny, "advtest") == "random"


def test_cpu_preset_is_three_variants_three_tasks_three_seeds_in_bf16(rp, tmp_path, capsys):
    from mambacode.training.pipeline import TASKS, VARIANTS

    cpu, tiny = rp.PRESETS["cpu"], rp.PRESETS["tiny"]
    assert cpu.variants == ("s4d", "s4d-hf", "rocoder") and set(cpu.variants) <= set(VARIANTS)
    assert cpu.tasks == TASKS == ("advtest", "longctx", "types") and cpu.seeds == (0, 1, 2) and cpu.bf16 is True
    assert rp.PRESET_THREADS["cpu"] == 2
    # the tiny preset keeps one seed, float32 and every variant: its tables stay as they were
    assert tiny.seeds == (0,) and tiny.bf16 is False and tiny.variants is None and tiny.tasks == TASKS
    # long-context: training pairs read the queried function, pools whole documents up to 4,096 tokens;
    # AdvTest keeps one length and whole codes
    from mambacode.training.pipeline import finetune_arguments

    _, _, longctx, _, _ = finetune_arguments(cpu, "longctx", "s4d", "m", "corpus", str(tmp_path))
    assert (longctx.crop_train_to_function, longctx.max_code_length, longctx.eval_max_code_length) == (True, 512, 4096)
    _, _, advtest, _, _ = finetune_arguments(cpu, "advtest", "s4d", "m", "corpus", str(tmp_path))
    assert (advtest.crop_train_to_function, advtest.eval_max_code_length) == (False, None)
    _, _, tiny_longctx, _, _ = finetune_arguments(tiny, "longctx", "s4d", "m", "corpus", str(tmp_path))
    assert (tiny_longctx.crop_train_to_function, tiny_longctx.eval_max_code_length) == (False, None)
    with pytest.raises(SystemExit) as exc:
        rp.main(["--preset", "huge", "--output_dir", str(tmp_path)])
    assert exc.value.code == 2 and "--preset: unknown 'huge'; choose from ['tiny', 'small', 'base', 'cpu']" in (
        capsys.readouterr().err)


def test_failing_stage_is_named_with_its_log_and_not_marked_done(tmp_path):
    stage = StageRunner(str(tmp_path / "logs"))

    def boom():
        print("halfway")
        raise ValueError("bad data")

    with pytest.raises(StageError, match=r"stage 'b' failed \(ValueError: bad data\); see .*b\.log"):
        stage("b", str(tmp_path / "b"), boom)
    log = open(tmp_path / "logs" / "b.log").read()
    assert "halfway" in log and "Traceback" in log
    assert not os.path.exists(tmp_path / "b" / ".done")
    with pytest.raises(StageError, match=r"stage 'c' failed \(exit status 2\)"):
        stage("c", str(tmp_path / "c"), lambda: (_ for _ in ()).throw(SystemExit(2)))
    # the loggers' handlers are back after a failure
    assert all(not isinstance(h, logging.StreamHandler) or getattr(h.stream, "name", "") != str(tmp_path / "logs" / "b.log")
               for h in logging.getLogger().handlers)


MANIFEST = {"python": "3.11.7", "missing_packages": [], "off_pin_packages": ["sympy==1.14.0 (installed: 1.13.3)"],
            "sources": [{"name": "python-stdlib", "version": "3.11.7", "license": "PSF-2.0", "num_files": 707},
                        {"name": "attrs", "version": "26.1.0", "license": "MIT", "num_files": 19}]}


def _fake_library(rp, monkeypatch, calls, fail=None):
    """Replace the driver's library calls by fakes writing nothing but their folders; `fail`: a stage name."""
    def record(name, result):
        calls.append(name)
        if name == fail:
            raise RuntimeError(f"{name} broke")
        return result

    def build_corpus(output_dir, **kw):
        record("corpus", None)
        os.makedirs(output_dir, exist_ok=True)
        open(os.path.join(output_dir, "corpus_manifest.json"), "w").close()

    monkeypatch.setattr(rp, "build_corpus", build_corpus)
    monkeypatch.setattr(rp, "corpus_is_complete", lambda d: os.path.exists(os.path.join(d, "corpus_manifest.json")))
    monkeypatch.setattr(rp, "read_manifest", lambda d: MANIFEST)
    monkeypatch.setattr(rp, "missing_corpus_packages", lambda: [])
    monkeypatch.setattr(rp, "corpus_texts", lambda corpus: [])
    monkeypatch.setattr(rp, "train_tokenizer", lambda texts, **kw: record("tokenizer", None))
    monkeypatch.setattr(rp, "pretrain", lambda p, v, tok, corpus, out: record(
        f"pretrain-{v}", MLMResult(out, perplexity=10.0 + len(v), encoder_parameters=1000 + len(v))))

    def finetune(p, task, name, model_dir, corpus, out, seed=0):
        label = f"finetune-{task}-{name}" + (f"-seed{seed}" if seed else "")
        assert os.path.basename(out) == name + (f"-seed{seed}" if seed else "")
        if task == "types":
            return record(label, TypeInferenceResult(out, test_metrics={"micro_f1": 0.5, "accuracy": 0.75}))
        return record(label, RetrievalResult(out, test_metrics={
            "test": {"mrr": 0.25}, "retrieval_adv": {"mrr": 0.125}}, bm25_metrics={"test": {"mrr": 0.5}},
            hybrid_metrics={"test": {"mrr": 0.375}}))

    monkeypatch.setattr(rp, "finetune", finetune)
    monkeypatch.setattr(rp, "export_models", lambda folders, root: record("export", sorted(folders)))
    monkeypatch.setattr(rp, "probe", lambda p, models, out, corpus, probe_set=None: record(
        f"probe-{os.path.basename(out)}", ProbeResult({m: {"ast_distance": {"1": {"linear": 0.5}}} for m in models})))
    monkeypatch.setattr(rp, "spectrum", lambda p, pre, post, out, tok, corpus: record(
        f"spectrum-{os.path.basename(out)}", SpectrumResult(4, 1, {"low-pass -> band-pass": 1}, [0], {"forward": [0.5]})))


def test_driver_names_a_failing_stage_and_resumes_after_it(rp, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    calls = []
    _fake_library(rp, monkeypatch, calls, fail="finetune-types-s4d+anchor")
    argv = ["--preset", "tiny", "--output_dir", out, "--variants", "s4d,rocoder"]
    assert rp.main(argv) == 1
    assert "stage 'finetune-types-s4d+anchor' failed (RuntimeError: finetune-types-s4d+anchor broke)" in capsys.readouterr().out
    done_before = list(calls)
    calls.clear()
    _fake_library(rp, monkeypatch, calls)
    assert rp.main(argv) == 0
    # only the failed stage and those after it ran again
    assert calls[0] == "finetune-types-s4d+anchor" and not set(calls) & set(done_before[:-1])
    assert calls == ["finetune-types-s4d+anchor", "finetune-types-rocoder", "export", "probe-finetuned",
                     "spectrum-s4d", "spectrum-s4d", "spectrum-s4d+anchor"]
    md = open(os.path.join(out, "report.md")).read()
    # results handed on from skipped stages (markers) and fresh ones alike
    assert "| s4d | 1,003 | 13.0 | 12.50 | 25.00 | 25.00 | 50.00 | 75.00 |" in md
    assert "| rocoder | 1,007 | 17.0 | 12.50 | 25.00 | 25.00 | 50.00 | 75.00 |" in md
    assert "| BM25 (bm25s, no model) | – | – | – | 50.00 | 50.00 | – | – |" in md  # BM25 once, not per model
    assert "| rocoder + BM25 (hybrid) | – | 37.50 | 37.50 |" in md
    calls.clear()
    assert rp.main(argv) == 0 and calls == []  # everything done: nothing but the report
    # the corpus' exact sources, from its manifest
    md = open(os.path.join(out, "report.md")).read()
    assert "| python-stdlib | 3.11.7 | PSF-2.0 | 707 |" in md and "| attrs | 26.1.0 | MIT | 19 |" in md
    assert "**Not as pinned** (this corpus differs from the README's): sympy==1.14.0 (installed: 1.13.3)" in md


def test_driver_refuses_a_corpus_that_would_differ_from_the_readme(rp, tmp_path, monkeypatch, capsys):
    calls = []
    _fake_library(rp, monkeypatch, calls)
    monkeypatch.setattr(rp, "missing_corpus_packages", lambda: ["rich==15.0.0 (not installed)"])
    argv = ["--preset", "tiny", "--output_dir", str(tmp_path / "run"), "--variants", "s4d"]
    assert rp.main(argv) == 2 and calls == []
    err = capsys.readouterr().err
    assert "rich==15.0.0 (not installed)" in err and 'pip install -e ".[corpus]"' in err
    assert rp.main([*argv, "--allow_unpinned_corpus"]) == 0 and calls[0] == "corpus"


def test_report_from_typed_results(tmp_path):
    out = str(tmp_path)
    pre = {"s4d": MLMResult(out + "/pretrain/s4d", perplexity=123.456, encoder_parameters=1234567)}
    ft = {("advtest", "s4d"): RetrievalResult("x", test_metrics={"test": {"mrr": 0.5}, "retrieval_adv": {"mrr": 0.1234}},
                                              bm25_metrics={"test": {"mrr": 0.75}, "retrieval_adv": {"mrr": 0.0625}},
                                              hybrid_metrics={"test": {"mrr": 0.625}, "retrieval_adv": {"mrr": 0.1}},
                                              fusion={"dense_weight": 0.2, "k": 10, "chosen_on": "retrieval:validation",
                                                      "validation_mrr": 0.478, "validation_mrr_equal_weights": 0.4097}),
          ("advtest", "rocoder"): RetrievalResult("v", test_metrics={"test": {"mrr": 0.375}},
                                                  bm25_metrics={"test": {"mrr": 0.75}, "retrieval_adv": {"mrr": 0.0625}}),
          ("longctx", "s4d"): RetrievalResult("y", test_metrics={"test": {"mrr": 0.25}},
                                              bm25_metrics={"test": {"mrr": 0.3}}, hybrid_metrics={"test": {"mrr": 0.35}}),
          ("longctx", "rocoder"): RetrievalResult("u", test_metrics={"test": {"mrr": 0.125}},
                                                  bm25_metrics={"test": {"mrr": 0.2}}),  # another pool
          ("types", "s4d"): TypeInferenceResult("z", test_metrics={"micro_f1": 0.4, "accuracy": 0.6}),
          ("types", "s4d+anchor"): TypeInferenceResult("w", test_metrics={"micro_f1": 0.45})}
    probes = {"pretrained": ProbeResult({out + "/pretrain/s4d": {"ast_distance": {"0": {"directprobe": 0.5, "linear": 0.4},
                                                                                  "1": {"linear": 0.375}}}},
                                         test_pairs={"ast_distance": 520, "dfg": 0}),
              "finetuned": ProbeResult({out + "/finetune/types/s4d": {"dfg": {"1": {"directprobe": 0.875}}}})}
    spectra = {("types", "s4d"): SpectrumResult(4, 1, {"low-pass -> band-pass": 1}, [0, 1],
                                                {"forward": [0.5, None], "backward": [0.25, 0.125]})}
    from mambacode.training.pipeline import Preset

    preset = Preset(**{f: 1 for f in ("max_functions", "vocab_size", "hidden_size", "num_hidden_layers",
                                       "intermediate_size", "state_size", "mamba_head_dim", "mlm_seq", "mlm_steps",
                                       "mlm_batch", "mlm_lr", "ft_steps", "ft_batch", "ft_lr", "query_len",
                                       "code_len", "long_code_len", "type_len", "eval_samples", "probe_pairs",
                                       "probe_snippets", "spectrum_length", "anchor_weight", "warmup")},
                    probe_kinds="linear")
    write_report(out, "tiny", preset, pre, ft, probes, spectra, {"corpus": 1.5})
    lines = open(tmp_path / "report.md").read().splitlines()
    assert "| s4d | 1,234,567 | 123.5 | 12.34 | 50.00 | 25.00 | 40.00 | 60.00 |" in lines
    assert "| s4d+anchor | 1,234,567 | 123.5 | – | – | – | 45.00 | – |" in lines
    # BM25 in Table 1 and beside every model's dense and hybrid MRR; the two long-context runs' BM25 disagree
    # (different pools), so that cell stays empty and a note names both
    assert "| BM25 (bm25s, no model) | – | – | 6.25 | 75.00 | – | – | – |" in lines
    table = lines[lines.index("## Retrieval against BM25"):lines.index("## Probing (DirectProbe accuracy per task and layer)")]
    assert [line for line in table if line.startswith("| ")] == [
        "| ranker | AdvTest-style MRR | (non-obfuscated MRR) | long-context MRR |",
        "| BM25 (bm25s, no model) | 6.25 | 75.00 | – |",
        "| s4d (dense) | 12.34 | 50.00 | 25.00 |",
        "| s4d + BM25 (hybrid) | 10.00 | 62.50 | 35.00 |",
        "| rocoder (dense) | – | 37.50 | 12.50 |",
        "| rocoder + BM25 (hybrid) | – | – | – |",
        "| model | task | seed | w | k | validation hybrid MRR | with w = 1, k = 60 |",  # only s4d chose one
        "| s4d | advtest | 0 | 0.2 | 10 | 47.80 | 40.97 |"]
    assert ("**Note:** BM25 differs between the longctx runs on the `test` pool (rocoder: 20.00, s4d: 30.00): they "
            "were tested on different pools, so the BM25 cell is left empty.") in lines
    # probing: one row per model over both runs, columns task x layer in order of appearance
    assert "| model | ast_distance L0 | ast_distance L1 | dfg L0 | dfg L1 |" in lines
    assert "| s4d (pretrained) | 0.500 | – | – | – |" in lines          # DirectProbe
    assert "| s4d (after types FT) | – | – | – | 0.875 |" in lines
    assert "| s4d (pretrained) | 0.400 | 0.375 | – | – |" in lines      # linear
    assert "Held-out test pairs per task: ast_distance 520 (one pair = 0.19 points), dfg 0." in lines
    assert "| s4d | types | 1 / 4 | low-pass -> band-pass (1) | forward: 0.50, –; backward: 0.25, 0.12 |" in lines
    # claims: single runs have no spread; only comparisons with both sides present are listed
    claims = lines[lines.index("## Claims"):lines.index("## Targets")]
    assert [line for line in claims if line.startswith("| ") and "claim" not in line] == [
        "| s4d > rocoder | long-context MRR (%) | §1: the SSM learns code better than RoCoder trained alike (no number) "
        "| 25.00 | 12.50 | +12.50 | – | one run: no spread (paper's direction) |",
        "| s4d+anchor > s4d | type-inference F1 (%) | not in the paper: this project's regulariser (§5), hoped > "
        "| 45.00 | 40.00 | +5.00 | – | one run: no spread (paper's direction) |"]
    # targets: the best type-inference variant (no s4d-hf retrieval run, no distance / siblings probe here)
    targets = lines[lines.index("## Targets"):lines.index("## Wall time per stage")]
    assert [line for line in targets if line.startswith("| ") and "| target |" not in line] == [
        "| type inference, best variant (s4d+anchor) | micro-F1 over real types (%) | ≥ 30.00 | 45.00 | – | met |",
        "| held-out probe pairs | points one pair moves an accuracy (100 / pairs; fewest: ast_distance, 520) "
        "| < 0.500 | 0.192 | – | met |"]
    assert [t["status"] for t in json.load(open(tmp_path / "targets.json"))] == ["met", "met"]
    assert "| corpus | 1.5 | 0.0 | this run |" in lines and "| **all stages** | 1.5 | 0.0 |  |" in lines
    rows = json.load(open(tmp_path / "results.json"))
    assert rows["s4d"] == {"advtest": 0.1234, "advtest_clean": 0.5, "params": 1234567, "longctx": 0.25,
                           "types": 0.4, "types_acc": 0.6, "mlm_ppl": 123.456, "advtest_hybrid": 0.1,
                           "advtest_clean_hybrid": 0.625, "longctx_hybrid": 0.35}
    assert rows["bm25"] == {"advtest": 0.0625, "advtest_clean": 0.75, "longctx": None}
    page = open(tmp_path / "report.html").read()
    assert page.count("<table>") == 9 and "data:image/png;base64," in page  # the results plot is embedded


def test_markdown_to_html_tables_code_and_figures(tmp_path):
    (tmp_path / "f.png").write_bytes(b"\x89PNG fake")
    page = markdown_to_html("# T `x<y`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](f.png)\n\n![gone](g.png)\n",
                            str(tmp_path))
    assert "<h1>T <code>x&lt;y</code></h1>" in page
    assert "<th>a</th>" in page and "<td>2</td>" in page
    import base64

    encoded = base64.b64encode(b"\x89PNG fake").decode()
    assert f'src="data:image/png;base64,{encoded}"' in page
    assert "(missing figure g.png)" in page


def test_export_models_replaces_whole_folders_without_checkpoints(tmp_path):
    from mambacode.atomic import atomic_directory
    from mambacode.training.pipeline import export_models

    src = tmp_path / "finetune" / "s4d"
    (src / "checkpoint-5").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", ".done", "training_args.bin", "checkpoint-5/x"):
        (src / name).write_text(name)
    root = tmp_path / "models"
    (root / "s4d").mkdir(parents=True)
    (root / "s4d" / "stale.txt").write_text("from an older export")
    assert export_models({"s4d": str(src)}, str(root)) == [str(root / "s4d")]
    assert sorted(os.listdir(root / "s4d")) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(root)) == ["s4d"]  # no temporary or old folders left
    with pytest.raises(RuntimeError):  # a failed export leaves the previous folder as it was
        with atomic_directory(str(root / "s4d")) as tmp:
            open(os.path.join(tmp, "half"), "w").close()
            raise RuntimeError("disk full")
    assert sorted(os.listdir(root / "s4d")) == ["config.json", "model.safetensors"] and os.listdir(root) == ["s4d"]


def test_spread_rule_by_hand():
    """|mean(A) - mean(B)| against the larger sample std (n - 1): values worked out on paper."""
    from mambacode.training.claims import NO_SPREAD, OTHER_DIRECTION, PAPER_DIRECTION, WITHIN, verdict

    # stds 0.02 and 0.02 (squares of +-0.02 sum to 0.0008, / 2, sqrt), means 0.32 and 0.12
    found, diff, spread = verdict([0.30, 0.32, 0.34], [0.10, 0.12, 0.14])
    assert found == PAPER_DIRECTION and diff == pytest.approx(0.20) and spread == pytest.approx(0.02)
    # means 2 and 2.5, std 1 on both sides: 0.5 <= 1
    assert verdict([1, 2, 3], [1.5, 2.5, 3.5])[0] == WITHIN
    # equal to the spread is not beyond it: mean 2 (std 1) against 1 (std 0)
    assert verdict([1, 2, 3], [1, 1, 1]) == (WITHIN, 1.0, 1.0)
    # no spread at all, B higher: the other direction
    assert verdict([0, 0, 0], [1, 1, 1]) == (OTHER_DIRECTION, -1.0, 0.0)
    # unequal spreads: the larger one counts (std of [0, 10] is 7.07; of [10, 12] 1.41)
    assert verdict([0, 10], [5, 5.2, 5.4])[0] == WITHIN
    assert verdict([10, 12], [5, 5.5, 6])[0] == PAPER_DIRECTION
    # one run against three: the three runs' std (0.05) is the spread; 0.60 - 0.45 = 0.15
    assert verdict([0.60], [0.40, 0.45, 0.50])[0] == PAPER_DIRECTION
    assert verdict([0.46], [0.40, 0.45, 0.50])[0] == WITHIN
    # one run each: no spread to compare with, the direction named
    found, diff, spread = verdict([0.3], [0.4])
    assert found == f"{NO_SPREAD} (other direction)" and spread is None and diff == pytest.approx(-0.1)


# per-seed numbers of the seeded driver test: (value at seed 0, step per seed)
SEEDED = {("advtest", "s4d"): (0.10, 0.02), ("advtest", "s4d-hf"): (0.20, 0.02), ("advtest", "rocoder"): (0.11, 0.02),
          ("longctx", "s4d"): (0.30, 0.01), ("longctx", "s4d-hf"): (0.30, 0.01), ("longctx", "rocoder"): (0.50, 0.10),
          ("types", "s4d"): (0.40, 0.0), ("types", "s4d+anchor"): (0.45, 0.0), ("types", "s4d-hf"): (0.50, 0.01),
          ("types", "s4d-hf+anchor"): (0.50, 0.01), ("types", "rocoder"): (0.30, 0.0)}


def _seeded_fakes(rp, monkeypatch, calls):
    """Fakes whose numbers depend on the seed (SEEDED; probes and spectra below), read from the folder names
    the driver gives them, parsed here independently of the code under test."""
    import re

    _fake_library(rp, monkeypatch, calls)

    def seed_of(folder):
        match = re.match(r"^(.*)-seed(\d+)$", os.path.basename(folder))
        return (match.group(1), int(match.group(2))) if match else (os.path.basename(folder), 0)

    def finetune(p, task, name, model_dir, corpus, out, seed=0):
        assert seed_of(out) == (name, seed)
        base, step = SEEDED[(task, name)]
        calls.append(f"finetune-{task}-{name}" + (f"-seed{seed}" if seed else ""))
        if task == "types":
            return TypeInferenceResult(out, test_metrics={"micro_f1": base + step * seed, "accuracy": 0.75})
        key = "retrieval_adv" if task == "advtest" else "test"
        return RetrievalResult(out, test_metrics={"test": {"mrr": 0.25}, key: {"mrr": base + step * seed}},
                               bm25_metrics={"test": {"mrr": 0.5}}, hybrid_metrics={"test": {"mrr": 0.375}})

    def accuracy(model):
        parts = model.split(os.sep)
        if "pretrain" in parts:
            top = {"s4d": (0.60, 0.70), "s4d-hf": (0.60, 0.60), "rocoder": (0.55, 0.55)}[parts[-1]]
        else:
            name, seed = seed_of(model)
            top = {("types", "s4d"): (0.50 + 0.01 * seed,) * 2, ("types", "s4d-hf"): (0.58, 0.58)}.get(
                (parts[-2], name), (0.5, 0.5))
        return {"distance": {"0": {"directprobe": 0.99}, "1": {"directprobe": top[0]}, "2": {"directprobe": top[1]}}}

    def probe(p, models, out, corpus, probe_set=None):
        calls.append(f"probe-{os.path.basename(out)}")
        return ProbeResult({m: accuracy(m) for m in models})

    def spectrum(p, pre, post, out, tok, corpus):
        calls.append(f"spectrum-{os.path.basename(out)}")
        seed = seed_of(out)[1]
        return SpectrumResult(4, seed, {"low-pass -> band-pass": 1}, [0], {"forward": [0.5 + 0.1 * seed]})

    monkeypatch.setattr(rp, "finetune", finetune)
    monkeypatch.setattr(rp, "probe", probe)
    monkeypatch.setattr(rp, "spectrum", spectrum)


def test_driver_runs_every_fine_tuning_once_per_seed_and_reports_mean_std_and_claims(rp, tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(rp.PRESETS, "seeded", dataclasses.replace(
        rp.PRESETS["tiny"], seeds=(0, 1, 2), variants=("s4d", "s4d-hf", "rocoder")))
    monkeypatch.setitem(rp.PRESET_THREADS, "seeded", 1)
    calls, out = [], str(tmp_path / "run")
    _seeded_fakes(rp, monkeypatch, calls)
    assert rp.main(["--preset", "seeded", "--output_dir", out]) == 0
    seed0 = ["finetune-advtest-s4d", "finetune-advtest-s4d-hf", "finetune-advtest-rocoder",
             "finetune-longctx-s4d", "finetune-longctx-s4d-hf", "finetune-longctx-rocoder",
             "finetune-types-s4d", "finetune-types-s4d+anchor", "finetune-types-s4d-hf",
             "finetune-types-s4d-hf+anchor", "finetune-types-rocoder"]
    assert calls == ["corpus", "tokenizer", "pretrain-s4d", "pretrain-s4d-hf", "pretrain-rocoder",  # pretrained once
                     "probe-pretrained", *seed0, *(n + "-seed1" for n in seed0), *(n + "-seed2" for n in seed0),
                     "export", "probe-finetuned", "probe-finetuned-seed1", "probe-finetuned-seed2",
                     "spectrum-s4d", "spectrum-s4d", "spectrum-s4d+anchor", "spectrum-s4d-hf", "spectrum-s4d-hf",
                     "spectrum-s4d-hf+anchor", *(f"spectrum-{n}-seed{s}" for s in (1, 2) for n in
                                                ("s4d", "s4d", "s4d+anchor", "s4d-hf", "s4d-hf", "s4d-hf+anchor"))]
    assert os.path.exists(os.path.join(out, "finetune", "types", "s4d+anchor-seed2", ".done"))
    assert os.path.exists(os.path.join(out, "spectra", "longctx", "s4d-hf-seed1", ".done"))
    lines = open(os.path.join(out, "report.md")).read().splitlines()
    # Table 1: mean ± sample std over the three seeds (0.10, 0.12, 0.14 -> 12.00 ± 2.00)
    assert "| s4d | 1,003 | 13.0 | 12.00 ± 2.00 | 25.00 ± 0.00 | 31.00 ± 1.00 | 40.00 ± 0.00 | 75.00 ± 0.00 |" in lines
    assert "| rocoder | 1,007 | 17.0 | 13.00 ± 2.00 | 25.00 ± 0.00 | 60.00 ± 10.00 | 30.00 ± 0.00 | 75.00 ± 0.00 |" in lines
    assert "| BM25 (bm25s, no model) | – | – | – | 50.00 | 50.00 | – | – |" in lines  # one pool: one BM25 number
    assert "| s4d + BM25 (hybrid) | – | 37.50 ± 0.00 | 37.50 ± 0.00 |" in lines
    # probes: a fine-tuned model's seeds in one row; pretrained models are single runs
    assert "| s4d (pretrained) | 0.990 | 0.600 | 0.700 |" in lines
    assert "| s4d (after types FT) | 0.990 ± 0.000 | 0.510 ± 0.010 | 0.510 ± 0.010 |" in lines
    # spectra: kernels changing class (0, 1, 2) and the shift (0.5, 0.6, 0.7) as mean ± std, transitions summed
    assert ("| s4d | types | 1.0 ± 1.0 / 4 | low-pass -> band-pass (3) (over 3 seeds) | forward: 0.60 ± 0.10 |"
            in lines)
    claims = {line.split(" | ")[0][2:] + " / " + line.split(" | ")[1]: line.split(" | ")[3:]
              for line in lines[lines.index("## Claims"):lines.index("## Wall time per stage")] if line.startswith("| ")}
    assert claims["s4d-hf > s4d / AdvTest-style MRR (%)"] == [
        "22.00 ± 2.00", "12.00 ± 2.00", "+10.00", "2.00", "exceeds the spread, paper's direction |"]
    assert claims["s4d > rocoder / AdvTest-style MRR (%)"][2:] == ["-1.00", "2.00", "within the spread |"]
    assert claims["s4d > rocoder / long-context MRR (%)"][2:] == ["-29.00", "10.00", "exceeds the spread, other direction |"]
    assert claims["s4d-hf > s4d / long-context MRR (%)"][2:] == ["+0.00", "1.00", "within the spread |"]
    assert claims["s4d+anchor > s4d / type-inference F1 (%)"][2:] == [
        "+5.00", "0.00", "exceeds the spread, paper's direction |"]
    # probe claims over layers 1..2 (layer 0 left out): s4d pretrained 0.65, after types FT 0.50 / 0.51 / 0.52
    measure = "distance: directprobe accuracy, mean of layers 1..L"
    assert claims[f"s4d > rocoder, pretrained / {measure}"] == [
        "0.650", "0.550", "+0.100", "–", "one run: no spread (paper's direction) |"]
    assert claims[f"forgetting: s4d pretrained > s4d after types FT / {measure}"] == [
        "0.650", "0.510 ± 0.010", "+0.140", "0.010", "exceeds the spread, paper's direction |"]
    # drops: s4d 0.15 / 0.14 / 0.13, s4d-hf 0.02 at every seed
    assert claims[f"types-FT accuracy drop: s4d > s4d-hf / {measure}"] == [
        "0.140 ± 0.010", "0.020 ± 0.000", "+0.120", "0.010", "exceeds the spread, paper's direction |"]
    rows = json.load(open(os.path.join(out, "results.json")))
    cell = rows["s4d"]["advtest"]
    assert cell["seeds"] == pytest.approx({"0": 0.10, "1": 0.12, "2": 0.14})
    assert cell["mean"] == pytest.approx(0.12) and cell["std"] == pytest.approx(0.02)
    assert rows["s4d"]["params"] == 1003 and rows["bm25"]["advtest_clean"] == 0.5
    (hf,) = [c for c in json.load(open(os.path.join(out, "claims.json")))
             if c["claim"] == "s4d-hf > s4d" and c["measure"].startswith("AdvTest")]
    assert hf["a"]["seeds"] == pytest.approx({"0": 0.20, "1": 0.22, "2": 0.24}) and hf["spread"] == pytest.approx(0.02)
    assert hf["verdict"] == "exceeds the spread, paper's direction"


def test_tasks_subset_fine_tunes_those_then_stops_and_a_full_run_finishes_the_rest(rp, tmp_path, monkeypatch, capsys):
    import dataclasses

    monkeypatch.setitem(rp.PRESETS, "seeded", dataclasses.replace(
        rp.PRESETS["tiny"], seeds=(0, 1), variants=("s4d", "rocoder")))
    monkeypatch.setitem(rp.PRESET_THREADS, "seeded", 1)
    calls, out = [], str(tmp_path / "run")
    _seeded_fakes(rp, monkeypatch, calls)
    assert rp.main(["--preset", "seeded", "--output_dir", out, "--tasks", "advtest,types"]) == 0
    first = ["finetune-advtest-s4d", "finetune-advtest-rocoder", "finetune-types-s4d", "finetune-types-s4d+anchor",
             "finetune-types-rocoder"]
    assert calls == ["corpus", "tokenizer", "pretrain-s4d", "pretrain-rocoder", "probe-pretrained", *first,
                     *(n + "-seed1" for n in first)]  # no long-context stage, no probes after FT, no report
    assert not os.path.exists(os.path.join(out, "report.md"))
    calls.clear()
    assert rp.main(["--preset", "seeded", "--output_dir", out]) == 0  # the rest: long-context, probes, spectra, report
    assert [c for c in calls if c.startswith("finetune")] == [
        "finetune-longctx-s4d", "finetune-longctx-rocoder", "finetune-longctx-s4d-seed1", "finetune-longctx-rocoder-seed1"]
    assert "probe-finetuned" in calls and os.path.exists(os.path.join(out, "report.md"))
    with pytest.raises(SystemExit):
        rp.main(["--preset", "seeded", "--output_dir", out, "--tasks", "advtest,nope"])
    assert "--tasks: ['nope'] not among the preset's tasks" in capsys.readouterr().err


def test_loss_curves_read_trainer_state_and_plot_one_panel_per_stage(tmp_path):
    from mambacode.training.reproduction_report import curves_plot, loss_curve, loss_panels

    def run(folder, losses):
        os.makedirs(folder)
        history = [{"step": 10 * (i + 1), "loss": v, "learning_rate": 1e-3} for i, v in enumerate(losses)]
        history += [{"step": 10 * len(losses), "eval_loss": 9.0}, {"step": 10 * len(losses), "train_loss": 1.0}]
        with open(os.path.join(folder, "trainer_state.json"), "w") as fh:
            json.dump({"log_history": history}, fh)
        return str(folder)

    mlm = run(tmp_path / "mlm", [5.0, 4.0, 3.5])
    assert loss_curve(mlm) == [(10, 5.0), (20, 4.0), (30, 3.5)]  # eval and summary entries are not training loss
    assert loss_curve(str(tmp_path)) == []
    pre = {"s4d": MLMResult(mlm)}
    ft = {("types", "s4d", 1): TypeInferenceResult(run(tmp_path / "t1", [2.0])),
          ("types", "s4d", 0): TypeInferenceResult(run(tmp_path / "t0", [3.0, 2.5])),
          ("advtest", "s4d", 0): RetrievalResult(str(tmp_path / "no-history"))}
    assert loss_panels(pre, ft) == {"MLM": {"s4d": [(10, 5.0), (20, 4.0), (30, 3.5)]},
                                    "type-inference fine-tuning": {"s4d": [(10, 3.0), (20, 2.5)]}}  # seed 0's
    path = curves_plot(pre, ft, str(tmp_path / "curves.png"))
    assert path and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    # two panels (MLM, types; the run without a history has none): the figure is twice a panel's width
    assert matplotlib.image.imread(path).shape[1] == round(2 * 4.4 * 110)
    assert curves_plot({}, {("advtest", "s4d", 0): RetrievalResult(str(tmp_path / "no-history"))},
                       str(tmp_path / "none.png")) is None
