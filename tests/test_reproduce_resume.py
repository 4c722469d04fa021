"""`scripts/reproduce.py` really killed (SIGKILL, no clean-up) partway through a shrunken cpu-like preset (two
seeds, s4d and RoCoder, AdvTest retrieval only, bf16 where the CPU has it, sizes cut to seconds), then run
again: it finishes, the stages done before the kill are not run again (their markers, timestamps and logs
untouched), and the report has mean ± std cells, the Claims section and every stage's wall time."""

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the cpu preset with every size cut to seconds of training; registered by the wrapper below
MINI = dict(vocab_size=400, hidden_size=32, num_hidden_layers=2, intermediate_size=64, state_size=8, mamba_head_dim=8,
            mlm_seq=64, mlm_steps=8, mlm_batch=4, ft_steps=6, ft_batch=4, query_len=16, code_len=64, long_code_len=64,
            type_len=64, eval_samples=24, probe_pairs=8, probe_snippets=30, spectrum_length=256, warmup=2,
            max_train_rows=64, seeds=(0, 1), variants=("s4d", "rocoder"), tasks=("advtest",))
WRAPPER = """
import dataclasses, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("reproduce", sys.argv[1])
rp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rp)
sizes = json.loads(sys.argv[2])
sizes["seeds"], sizes["variants"], sizes["tasks"] = (tuple(sizes[k]) for k in ("seeds", "variants", "tasks"))
rp.PRESETS["cpu-mini"] = dataclasses.replace(rp.PRESETS["cpu"], **sizes)
rp.PRESET_THREADS["cpu-mini"] = 1
sys.exit(rp.main(sys.argv[3:]))
"""


@pytest.fixture()
def run_dir(tmp_path):
    """A run folder whose corpus is already built (from a copy of a few standard-library packages, < 1 s), so the
    corpus stage is skipped as in a resumed run; everything after it trains for real."""
    from mambacode.corpus import build_corpus

    stdlib, src = sysconfig.get_paths()["stdlib"], tmp_path / "src"
    for pkg in ("json", "email", "http", "urllib", "logging", "html", "xmlrpc", "concurrent", "wsgiref", "sqlite3"):
        shutil.copytree(os.path.join(stdlib, pkg), src / pkg, ignore=shutil.ignore_patterns("test*", "__pycache__"))
    out = tmp_path / "run"
    build_corpus(str(out / "corpus"), source_dirs=[str(src)], include_stdlib=False, packages=(), num_workers=1,
                 show_progress=False)
    return str(out)


def _command(out):
    sizes = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in MINI.items()})
    return [sys.executable, "-c", WRAPPER, os.path.join(ROOT, "scripts", "reproduce.py"), sizes,
            "--preset", "cpu-mini", "--output_dir", out]


def _snapshot(path):
    with open(path) as f:
        return f.read(), os.stat(path).st_mtime_ns


def test_killed_reproduce_resumes_without_rerunning_finished_stages(run_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    first_marker = os.path.join(run_dir, "pretrain", "s4d", ".done")
    with open(os.path.join(os.path.dirname(run_dir), "first.log"), "w") as log:
        proc = subprocess.Popen(_command(run_dir), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not os.path.exists(first_marker) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        finished_early = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = open(log.name).read()
    assert not finished_early and os.path.exists(first_marker), first[-3000:]
    assert not os.path.exists(os.path.join(run_dir, "report.md"))  # killed before the end
    done_before = {os.path.join(d, ".done") for d in ("tokenizer", "pretrain/s4d")}
    before = {m: _snapshot(os.path.join(run_dir, m)) for m in done_before}
    logs_before = {m: _snapshot(os.path.join(run_dir, "logs", m)) for m in ("tokenizer.log", "pretrain-s4d.log")}

    second = subprocess.run(_command(run_dir), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    # the finished stages were skipped: markers (with their timestamps) and logs as they were
    assert "[skip] tokenizer" in second.stdout and "[skip] pretrain-s4d" in second.stdout
    assert "[run ] pretrain-s4d" not in second.stdout and "[run ] finetune-advtest-rocoder-seed1" in second.stdout
    assert {m: _snapshot(os.path.join(run_dir, m)) for m in done_before} == before
    assert {m: _snapshot(os.path.join(run_dir, "logs", m)) for m in logs_before} == logs_before
    marker = json.loads(before["pretrain/s4d/.done"][0])
    assert marker["seconds"] > 0 and marker["started"] < marker["finished"]
    for stage in ("finetune/advtest/s4d", "finetune/advtest/s4d-seed1", "finetune/advtest/rocoder-seed1"):
        assert os.path.exists(os.path.join(run_dir, stage, ".done")), stage

    lines = open(os.path.join(run_dir, "report.md")).read().splitlines()
    table1 = lines[lines.index("## Table 1: downstream results"):lines.index("## Retrieval against BM25")]
    for model in ("s4d", "rocoder"):
        (row,) = [line for line in table1 if line.startswith(f"| {model} |")]
        assert row.count(" ± ") == 2, row  # AdvTest-style and plain MRR; no long-context or type runs
    # the probe table says how many held-out pairs each task has: the probe set's test pairs, less any the
    # model's inputs truncate away
    probe_set = json.load(open(os.path.join(run_dir, "probes", "pretrained", "probe_set.json")))
    (held_out,) = [line for line in lines if line.startswith("Held-out test pairs per task: ")]
    for task, t in probe_set["tasks"].items():
        flagged = sum(1 for pair in t["pairs"] if pair[4])
        assert abs(flagged / len(t["pairs"]) - 0.5) <= 0.15, (task, flagged)  # the cpu preset holds out half
        count = int(held_out.split(f"{task} ")[1].split(" ")[0].rstrip(",.").replace(",", ""))
        assert 0 < count <= flagged, (task, count, flagged, held_out)
    claims = lines[lines.index("## Claims"):lines.index("## Wall time per stage")]
    (search,) = [line for line in claims if line.startswith("| s4d > rocoder | AdvTest-style MRR (%)")]
    assert search.rstrip(" |").rsplit("| ", 1)[1] in (
        "exceeds the spread, paper's direction", "within the spread", "exceeds the spread, other direction")
    assert any(line.startswith("| s4d > rocoder, pretrained |") and "one run: no spread" in line for line in claims)
    timing = lines[lines.index("## Wall time per stage"):]
    assert any(line.startswith("| pretrain-s4d |") and line.endswith("| earlier run |") for line in timing)
    assert any(line.startswith("| finetune-advtest-s4d-seed1 |") and line.endswith("| this run |") for line in timing)
    results = json.load(open(os.path.join(run_dir, "results.json")))
    assert set(results["s4d"]["advtest"]["seeds"]) == {"0", "1"}
