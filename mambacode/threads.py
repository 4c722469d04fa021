"""Intra-op threads and the OpenMP wait policy for a machine that other work shares.

Why: torch's CPU wheels run on GNU OpenMP (libgomp), whose idle threads spin before they sleep. Beside other
CPU-bound work a spinning thread holds a core that the thread it waits for needs, and each of the thousands of
small parallel regions of a training step waits out a scheduler slice: measured here (2 cores, load average
about 4), 20 MLM steps of the tiny preset took 58 s with torch's defaults (2 threads, spinning), 5.8 s with
`OMP_WAIT_POLICY=PASSIVE` and 5.3 s with one thread. Two levers follow:

* the wait policy, read by libgomp once, when torch is imported: setting `OMP_WAIT_POLICY` later changes
  nothing (measured: 47.7 s, as without it), so the scripts put it in the environment before their imports
  and `configure_threads` sets it only where the OpenMP runtime is not loaded yet;
* the thread count, which `torch.set_num_threads` changes at any time: the usable cores (affinity, cgroup
  quota) minus the cores that other processes keep busy, sampled from /proc/stat. Work at positive niceness
  (`nice 19`) is not counted: the scheduler gives it way to ours.

The thread count changes the last bits of results (matrix products split their sums across threads:
20 MLM steps at 1 and 2 threads differ by up to 2e-7 in the weights), so a run that must be bit-identical to
another passes the same count (`--num_threads N` or `OMP_NUM_THREADS`); the wait policy changes no result.
An explicit count beats `OMP_NUM_THREADS`, which beats the default.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

logger = logging.getLogger("mambacode.threads")

WAIT_POLICIES = ("PASSIVE", "ACTIVE")
DEFAULT_WAIT_POLICY = "PASSIVE"
_OPENMP_LIBRARIES = ("libgomp", "libiomp", "libomp.so")


@dataclass
class ThreadPlan:
    """What `configure_threads` chose and why (logged by the scripts, kept by the benchmark)."""

    num_threads: int
    source: str  # "argument", "OMP_NUM_THREADS", "fixed default" or "measured"
    usable_cores: int
    busy_cores: float | None  # cores other processes kept busy during the sample (None: not measured)
    load_average: float | None
    wait_policy: str  # the OMP_WAIT_POLICY wanted (argument, environment, else PASSIVE)
    wait_policy_in_effect: bool  # whether it was in the environment before the OpenMP runtime loaded (as far as
    #                              can be told: set by this call before the load, or present with the runtime loaded)

    def describe(self) -> str:
        busy = "" if self.busy_cores is None else f", {self.busy_cores:.2f} of them busy with other work"
        load = "" if self.load_average is None else f", load average {self.load_average:.2f}"
        policy = self.wait_policy
        if not self.wait_policy_in_effect:
            policy += (" wanted, not in effect (the OpenMP runtime loaded first: put OMP_WAIT_POLICY in the "
                       "environment before importing torch)")
        return (f"{self.num_threads} intra-op thread(s) ({self.source}; {self.usable_cores} usable core(s){busy}"
                f"{load}); OpenMP wait policy {policy}")

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ measurements
def usable_cores(affinity: set | None = None, cpu_max: str | None = None) -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup v2 quota (`cpu.max`,
    "QUOTA PERIOD" or "max PERIOD"), at least 1. Arguments replace the reads (for tests)."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            affinity = set(range(os.cpu_count() or 1))
    cores = max(1, len(affinity))
    if cpu_max is None:
        try:
            with open("/sys/fs/cgroup/cpu.max") as f:
                cpu_max = f.read()
        except OSError:
            cpu_max = ""
    parts = cpu_max.split()
    if len(parts) == 2 and parts[0] != "max":
        try:
            cores = min(cores, max(1, math.ceil(int(parts[0]) / int(parts[1]))))
        except (ValueError, ZeroDivisionError):
            pass
    return cores


def read_cpu_times(stat_text: str | None = None) -> dict:
    """Per-CPU jiffies from /proc/stat: {cpu index: (busy at nice <= 0, total)}. Time of niced processes and
    idle/iowait time count only in the total. Empty where /proc/stat cannot be read."""
    if stat_text is None:
        try:
            with open("/proc/stat") as f:
                stat_text = f.read()
        except OSError:
            return {}
    times = {}
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        v = [int(x) for x in rest.split()] + [0] * 8
        user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
        # user includes guest time, nice includes guest_nice (the kernel counts them in both)
        times[int(name[3:])] = (user + system + irq + softirq + steal, user + nice + system + idle + iowait
                                + irq + softirq + steal)
    return times


def busy_cores(before: dict, after: dict, cpus) -> float | None:
    """How many of `cpus` were busy (at nice <= 0) between two `read_cpu_times` samples."""
    busy = 0.0
    count = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            d_total = after[cpu][1] - before[cpu][1]
            if d_total > 0:
                busy += (after[cpu][0] - before[cpu][0]) / d_total
                count += 1
    return busy if count else None


def sample_busy_cores(seconds: float = 0.3) -> float | None:
    """Cores of this process's affinity kept busy by others over `seconds` (this process sleeps meanwhile)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = range(os.cpu_count() or 1)
    before = read_cpu_times()
    if not before:
        return None
    time.sleep(seconds)
    return busy_cores(before, read_cpu_times(), cpus)


def choose_threads(usable: int, busy: float | None, load_average: float | None = None, cpu_count: int = 1,
                   processes: int = 1) -> int:
    """Threads for one of `processes` ranks: the usable cores left free by other work, rounded to the nearest
    whole core, at least 1. `busy` (sampled, niceness-aware) decides; without it the load average, scaled to
    the usable share of `cpu_count` CPUs, stands in."""
    if busy is None:
        busy = 0.0 if load_average is None else load_average * usable / max(cpu_count, usable)
    free = max(0.0, usable - busy)
    return max(1, min(usable, math.floor(free + 0.5)) // max(1, processes))


def openmp_loaded() -> bool:
    """Whether an OpenMP runtime is mapped into this process (it then has read OMP_WAIT_POLICY already)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "torch" in sys.modules  # no /proc: assume torch brought its runtime
    return any(name in maps for name in _OPENMP_LIBRARIES)


def _parse_count(value, where: str) -> int | None:
    """An integer thread count from an argument or variable; None for None / "" / "auto"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r}: expected a positive whole number of threads or 'auto'") from None
    if count < 1:
        raise ValueError(f"{where}={value!r}: expected a positive whole number of threads or 'auto'")
    return count


# ------------------------------------------------------------------------------------------ the one call
def configure_threads(num_threads: int | str | None = None, wait_policy: str | None = None,
                      default: int | str = "auto", sample_seconds: float = 0.3, apply: bool = True) -> ThreadPlan:
    """Choose and set torch's intra-op threads and the OpenMP wait policy; returns the `ThreadPlan`.

    Thread count: `num_threads` (an int, or "auto") if given, else `OMP_NUM_THREADS`, else `default`;
    "auto" measures the free cores (`choose_threads`), dividing them among `LOCAL_WORLD_SIZE` ranks.
    Wait policy: `wait_policy`, else `OMP_WAIT_POLICY`, else PASSIVE; written to the environment while no
    OpenMP runtime is loaded (call this before importing torch for it to count; the scripts also set it at
    their top). `apply=False` only plans (no torch import, no environment change)."""
    explicit = _parse_count(num_threads, "num_threads")
    env = _parse_count(os.environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    fixed = _parse_count(default, "default")
    usable = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    busy = None
    if explicit is not None:
        count, source = explicit, "argument"
    elif num_threads is None and env is not None:
        count, source = env, "OMP_NUM_THREADS"
    elif num_threads is None and fixed is not None:
        count, source = fixed, "fixed default"
    else:
        busy = sample_busy_cores(sample_seconds)
        processes = _parse_count(os.environ.get("LOCAL_WORLD_SIZE"), "LOCAL_WORLD_SIZE") or 1
        count, source = choose_threads(usable, busy, load, os.cpu_count() or usable, processes), "measured"

    policy = wait_policy or os.environ.get("OMP_WAIT_POLICY") or DEFAULT_WAIT_POLICY
    if policy.upper() not in WAIT_POLICIES:
        raise ValueError(f"OpenMP wait policy {policy!r}: expected one of {WAIT_POLICIES}")
    policy = policy.upper()
    loaded = openmp_loaded()
    in_effect = os.environ.get("OMP_WAIT_POLICY", "").upper() == policy  # the scripts set it before torch
    if apply:
        if not loaded:
            os.environ["OMP_WAIT_POLICY"] = policy
            in_effect = True
        import torch

        torch.set_num_threads(count)
    plan = ThreadPlan(num_threads=count, source=source, usable_cores=usable, busy_cores=busy,
                      load_average=None if load is None else round(load, 2),
                      wait_policy=policy, wait_policy_in_effect=in_effect or not loaded)
    logger.debug("threads: %s", plan.describe())
    return plan


__all__ = ["ThreadPlan", "configure_threads", "choose_threads", "usable_cores", "read_cpu_times", "busy_cores",
           "sample_busy_cores", "openmp_loaded", "WAIT_POLICIES", "DEFAULT_WAIT_POLICY"]
