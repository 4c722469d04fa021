#!/usr/bin/env python
"""Fuzz `code_graph` with >= 10,000 hostile snippets across the five languages.

Inputs: seeded mutations of real functions (the Python standard library, the built-in spectral snippets,
and any --source_dir) plus the extreme families of `mambacode.probing.fuzz` (deep brackets, long sums,
nested loops and branches, wide literals and calls, lone surrogates) at sizes from 3 to 50,000.
Prints and writes benchmarks/results/fuzz_parser.json: crashes (any exception other than a documented
`ParseLimitError`; must be 0), inputs over 2 s of CPU time (must be 0; CPU time, as `code_graph`'s own limit,
so that a loaded machine judges the same inputs as an idle one: wall seconds are reported beside), peak
memory (must stay under 1 GB), skips by reason, the slowest inputs. Takes a few minutes on one core.

    nice -n 19 python benchmarks/fuzz_parser.py [--n 10500] [--seed 0] [--source_dir DIR ...]
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
import traceback
from collections import Counter

from mambacode.corpus import read_snippets, split_functions
from mambacode.languages import SUPPORTED_LANGUAGES
from mambacode.probing.code_graph import ParseLimitError, code_graph
from mambacode.probing.fuzz import fuzz_inputs
from mambacode.spectral import DEFAULT_SNIPPETS


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def seed_snippets(source_dirs, per_language: int = 400) -> dict:
    """Real code per language: functions of the standard library's json/email/asyncio, the built-in
    snippets (whole and split into functions; at least one program per language) and every --source_dir."""
    seeds = {lang: [] for lang in SUPPORTED_LANGUAGES}
    stdlib = os.path.dirname(os.__file__)
    for sub in ("json", "email", "asyncio"):
        seeds["python"] += read_snippets(source_dir=os.path.join(stdlib, sub), language="python",
                                         max_snippets=per_language)
    for text in DEFAULT_SNIPPETS:  # a built-in program is a seed of every language it parses cleanly in
        for lang in SUPPORTED_LANGUAGES:
            if not code_graph(text, lang).has_error:
                seeds[lang] += [text] + split_functions(text, lang)
    for d in source_dirs:
        for lang in SUPPORTED_LANGUAGES:
            try:
                seeds[lang] += read_snippets(source_dir=d, language=lang, max_snippets=per_language)
            except ValueError:  # no files of that language there
                pass
    if len(seeds["typescript"]) < 20:  # JavaScript is (nearly) TypeScript
        seeds["typescript"] += seeds["javascript"]
    return {lang: s[:4 * per_language] for lang, s in seeds.items() if s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_500, help="number of inputs (languages in turn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source_dir", nargs="*", default=[], help="more real source to mutate")
    ap.add_argument("--slow_seconds", type=float, default=2.0, help="CPU seconds over which an input counts as slow")
    ap.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                     "fuzz_parser.json"))
    args = ap.parse_args(argv)
    seeds = seed_snippets(args.source_dir)
    rss_start = _rss_mb()
    outcomes, per_language, crashes, slow, times, cpu_max = Counter(), Counter(), [], [], [], 0.0
    t_all = time.perf_counter()
    for k, (language, code) in enumerate(fuzz_inputs(seeds, args.n, seed=args.seed)):
        per_language[language] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            g = code_graph(code, language)
            if len(g) <= 512:  # the relations the probes read (build_probe_set cuts to 256 tokens)
                g.distance_matrix(), g.sibling_matrix(), g.dfg_matrix()
            outcomes["parsed_with_syntax_errors" if g.has_error else "parsed_clean"] += 1
        except ParseLimitError as exc:
            outcomes[f"skipped_{exc.reason}"] += 1
        except Exception as exc:  # a crash: what the fuzzer is for
            crashes.append({"index": k, "language": language, "error": f"{type(exc).__name__}: {exc}"[:300],
                            "code_head": code[:200], "traceback": traceback.format_exc()[-800:]})
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        times.append((dt, k, language, len(code)))
        cpu_max = max(cpu_max, cpu)
        if cpu > args.slow_seconds:  # CPU time: a busy machine stretches wall time, not the work
            slow.append({"index": k, "language": language, "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3),
                         "chars": len(code)})
        if (k + 1) % 1000 == 0:
            print(f"  {k + 1} inputs, {time.perf_counter() - t_all:.0f} s, peak RSS {_rss_mb():.0f} MB",
                  file=sys.stderr)
    times.sort(reverse=True)
    result = {
        "inputs": args.n, "seed": args.seed, "per_language": dict(per_language),
        "seed_snippets": {lang: len(s) for lang, s in seeds.items()},
        "crashes": len(crashes), "crash_examples": crashes[:10],
        "over_2s": len(slow), "slow_examples": slow[:10],
        "outcomes": dict(sorted(outcomes.items())),
        "seconds_total": round(time.perf_counter() - t_all, 1),
        "seconds_max": round(times[0][0], 3), "seconds_p99": round(times[len(times) // 100][0], 4),
        "slow_measure": "cpu_seconds",
        "cpu_seconds_max": round(cpu_max, 3),
        "slowest": [{"seconds": round(t, 3), "index": k, "language": lang, "chars": n} for t, k, lang, n in times[:5]],
        "peak_rss_mb": round(_rss_mb(), 1), "rss_after_imports_mb": round(rss_start, 1),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.output)
    print(f"{args.n} inputs in {result['seconds_total']} s: crashes {result['crashes']}, over "
          f"{args.slow_seconds:g} s of CPU {result['over_2s']}, slowest {result['seconds_max']} s wall (CPU max "
          f"{result['cpu_seconds_max']} s), peak RSS "
          f"{result['peak_rss_mb']} MB (after imports {result['rss_after_imports_mb']} MB)")
    for name, count in result["outcomes"].items():
        print(f"  {name:28s} {count}")
    print(f"wrote {args.output}")
    return 1 if crashes or slow or result["peak_rss_mb"] >= 1024 else 0


if __name__ == "__main__":
    sys.exit(main())
