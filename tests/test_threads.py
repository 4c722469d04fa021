"""mambacode.threads: the thread choice against hand-computed cases (mocked cores and load), overrides, and
the OpenMP wait policy reaching libgomp only when set before torch loads it. No timing assertions."""

import os
import subprocess
import sys

import pytest
import torch

from mambacode import threads
from mambacode.threads import busy_cores, choose_threads, configure_threads, read_cpu_times, usable_cores

STAT_BEFORE = """cpu  100 50 20 1000 5 0 1 2 0 0
cpu0 10 0 10 100 0 0 0 0 0 0
cpu1 20 40 0 60 0 0 0 0 0 0
cpu2 0 0 0 100 0 0 0 0 0 0
intr 12345
"""
# cpu0: +60 user, +20 system, +20 idle of 100 -> 0.8 busy; cpu1: +50 nice (niced work: not counted), +10 user,
# +40 idle of 100 -> 0.1 busy; cpu2: +100 idle -> 0.0
STAT_AFTER = """cpu  200 100 40 1100 5 0 1 2 0 0
cpu0 70 0 30 120 0 0 0 0 0 0
cpu1 30 90 0 100 0 0 0 0 0 0
cpu2 0 0 0 200 0 0 0 0 0 0
"""


def test_read_cpu_times_and_busy_cores_by_hand():
    before, after = read_cpu_times(STAT_BEFORE), read_cpu_times(STAT_AFTER)
    assert before == {0: (20, 120), 1: (20, 120), 2: (0, 100)}  # the "cpu" total line and others skipped
    assert busy_cores(before, after, {0, 1}) == pytest.approx(0.9)
    assert busy_cores(before, after, {0, 1, 2}) == pytest.approx(0.9)
    assert busy_cores(before, after, {2}) == pytest.approx(0.0)
    assert busy_cores(before, after, {7}) is None  # not an affinity CPU of the samples


def test_usable_cores_affinity_and_cgroup_quota():
    assert usable_cores({0, 1, 2, 3}, "max 100000") == 4
    assert usable_cores({0, 1, 2, 3}, "150000 100000") == 2  # 1.5 CPUs of quota -> 2
    assert usable_cores({0, 1, 2, 3}, "50000 100000") == 1
    assert usable_cores({0, 1}, "800000 100000") == 2  # the quota does not add cores
    assert usable_cores({5}, "garbage") == 1
    assert usable_cores(set(), "") == 1


@pytest.mark.parametrize("usable,busy,load,cpus,procs,expected", [
    (2, 0.0, None, 2, 1, 2),    # quiet: every core
    (2, 0.4, None, 2, 1, 2),    # 1.6 free -> 2
    (2, 0.6, None, 2, 1, 1),    # 1.4 free -> 1
    (2, 2.0, None, 2, 1, 1),    # all busy: still one thread
    (2, 5.0, None, 2, 1, 1),
    (8, 3.2, None, 8, 1, 5),    # 4.8 free -> 5
    (8, 3.2, None, 8, 2, 2),    # two ranks share the 5 free cores
    (8, 0.0, None, 8, 16, 1),   # more ranks than cores: one each
    (4, None, 6.0, 16, 1, 3),   # no /proc/stat: load 6 over 16 CPUs, 4 of them ours -> 1.5 busy -> 2.5 free -> 3
    (4, None, None, 4, 1, 4),
])
def test_choose_threads_by_hand(usable, busy, load, cpus, procs, expected):
    assert choose_threads(usable, busy, load, cpus, procs) == expected


@pytest.fixture
def machine(monkeypatch):
    """2 usable cores, 1.7 of them busy; no real sampling; thread count restored afterwards."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "sample_busy_cores", lambda seconds: 1.7)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    saved = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(saved)


def test_measured_choice_sets_torch_threads(machine):
    plan = configure_threads()
    assert (plan.num_threads, plan.source, plan.usable_cores, plan.busy_cores) == (1, "measured", 2, 1.7)
    assert torch.get_num_threads() == 1
    machine.setattr(threads, "sample_busy_cores", lambda seconds: 0.1)
    assert configure_threads().num_threads == 2 and torch.get_num_threads() == 2


def test_user_settings_win(machine):
    machine.setenv("OMP_NUM_THREADS", "2")
    plan = configure_threads(default=1)  # the environment beats a default (reproduce's preset count)
    assert (plan.num_threads, plan.source, plan.busy_cores) == (2, "OMP_NUM_THREADS", None)
    plan = configure_threads(num_threads="1")  # an explicit flag beats the environment
    assert (plan.num_threads, plan.source, torch.get_num_threads()) == (1, "argument", 1)
    assert configure_threads(num_threads="auto").source == "measured"  # explicit auto measures
    machine.delenv("OMP_NUM_THREADS")
    plan = configure_threads(default=2)
    assert (plan.num_threads, plan.source) == (2, "fixed default")
    machine.setenv("LOCAL_WORLD_SIZE", "2")
    machine.setattr(threads, "sample_busy_cores", lambda seconds: 0.0)
    assert configure_threads().num_threads == 1  # two ranks on two free cores


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_counts_are_named(machine, bad):
    with pytest.raises(ValueError, match=r"num_threads='.*': expected a positive whole number"):
        configure_threads(num_threads=bad)
    machine.setenv("OMP_NUM_THREADS", bad)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        configure_threads()


def test_wait_policy_after_torch_is_reported_not_applied(machine):
    machine.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.openmp_loaded()  # torch is imported: libgomp is mapped
    plan = configure_threads(num_threads=1)
    assert plan.wait_policy == "PASSIVE" and not plan.wait_policy_in_effect
    assert "OMP_WAIT_POLICY" not in os.environ  # not written where it cannot count
    assert "not in effect" in plan.describe()
    machine.setenv("OMP_WAIT_POLICY", "passive")  # as the scripts set it before their imports
    plan = configure_threads(num_threads=1)
    assert plan.wait_policy == "PASSIVE" and plan.wait_policy_in_effect
    with pytest.raises(ValueError, match="wait policy 'sleepy': expected one of"):
        configure_threads(num_threads=1, wait_policy="sleepy")


_CHILD = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("threads_alone", {path!r})  # without mambacode/__init__ (torch)
mod = sys.modules["threads_alone"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
assert not mod.openmp_loaded()
plan = mod.configure_threads(num_threads=1)
print("PLAN", plan.wait_policy, plan.wait_policy_in_effect, os.environ.get("OMP_WAIT_POLICY"), flush=True)
import torch
print("THREADS", torch.get_num_threads(), flush=True)
"""


@pytest.mark.parametrize("preset,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_wait_policy_before_torch_reaches_libgomp(preset, expected):
    """libgomp prints the values it read at start-up under OMP_DISPLAY_ENV: the policy set by configure_threads
    before `import torch` is among them; a user's OMP_WAIT_POLICY is kept."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mambacode", "threads.py")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["OMP_DISPLAY_ENV"] = "TRUE"
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(path=path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"PLAN {expected} True {expected}" in proc.stdout
    assert "THREADS 1" in proc.stdout
    shown = proc.stdout + proc.stderr
    assert f"OMP_WAIT_POLICY = '{expected}'" in shown, shown[-2000:]


def test_run_script_flag_and_log(monkeypatch, tmp_path, capsys):
    """--num_threads reaches configure_threads through the scripts' shared main; a bad value is exit status 2."""
    from mambacode.training import MLMDataArguments
    from mambacode.training.script_utils import run_script

    seen = {}
    saved = torch.get_num_threads()
    try:
        def entry(model_args, data_args, training_args, run_args):
            seen["threads"] = torch.get_num_threads()
        argv = ["--output_dir", str(tmp_path), "--dataset_path", "unused", "--report_to", "none", "--num_threads"]
        assert run_script(entry, MLMDataArguments, argv + ["1"]) == 0
        assert seen["threads"] == 1
        assert run_script(entry, MLMDataArguments, argv + ["lots"]) == 2
        assert "num_threads='lots'" in capsys.readouterr().err
    finally:
        torch.set_num_threads(saved)
