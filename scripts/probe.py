#!/usr/bin/env python
"""Probe what encoders know about code: AST distance, AST siblings and data-flow edges, per layer.

Example (two models on the same sampled pairs):
    python scripts/probe.py --model_name_or_path runs/ssm --model_name_or_path runs/rocoder \
        --language python --source_dir /path/to/src --output_dir probe_out
Writes <output_dir>/probe_set.json (the pairs; reused if present), probe_report.json, probe_report.png.
"""

from __future__ import annotations

import argparse
import os
import sys

from mambacode.corpus import read_snippets
from mambacode.languages import SUPPORTED_LANGUAGES
from mambacode.probing import TASKS, ProbeSet, build_probe_set, probe_models, save_report, summary_table


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", action="extend", nargs="+", required=True,
                   help="a model folder or name; repeat (or list several) to compare models")
    p.add_argument("--language", required=True, help=f"one of {', '.join(SUPPORTED_LANGUAGES)}")
    p.add_argument("--output_dir", required=True)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus_dir", help="corpus folder with a `retrieval/` dataset (columns code, language)")
    src.add_argument("--source_dir", help="folder of source files (split into functions)")
    p.add_argument("--probe_set", help="load this saved probe set instead of sampling one")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--layers", nargs="+", type=int, default=None,
                   help="hidden-state indices (0 = embeddings); default: all")
    p.add_argument("--probes", nargs="+", default=["directprobe", "linear"], choices=["directprobe", "linear"])
    p.add_argument("--max_snippets", type=int, default=None)
    p.add_argument("--max_tokens", type=int, default=256, help="code tokens kept per snippet")
    p.add_argument("--pairs_per_class", type=int, default=None,
                   help="default: 1300 (distance), 1500 (siblings, dfg)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_length", type=int, default=512, help="model tokens per snippet")
    p.add_argument("--cache_dir", default=None, help="feature cache (default: <output_dir>/feature_cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--merge_candidates", type=int, default=None,
                   help="DirectProbe: nearest same-label clusters tried per merge pass (default: all)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    set_path = args.probe_set or os.path.join(args.output_dir, "probe_set.json")
    if os.path.exists(set_path) and (args.probe_set or not (args.corpus_dir or args.source_dir)):
        probe_set = ProbeSet.load(set_path)
        print(f"loaded probe set {set_path}")
    else:
        if not (args.corpus_dir or args.source_dir):
            sys.exit("error: give --corpus_dir, --source_dir or --probe_set")
        snippets = read_snippets(args.corpus_dir, source_dir=args.source_dir, language=args.language,
                                 max_snippets=args.max_snippets, seed=args.seed)
        probe_set = build_probe_set(snippets, args.language, tasks=args.tasks, n_per_class=args.pairs_per_class,
                                    seed=args.seed, max_tokens=args.max_tokens)
        probe_set.save(set_path)
        print(f"sampled probe set -> {set_path}: {probe_set.meta}")
    if probe_set.language != args.language.lower() and args.language.lower() not in ("py", "js", "ts", "golang"):
        sys.exit(f"error: {set_path} is a {probe_set.language} probe set, --language is {args.language}")
    tasks = [t for t in args.tasks if t in probe_set.tasks]
    for t in tasks:
        tp = probe_set.tasks[t]
        print(f"  {t}: {len(tp)} pairs; candidates per class {tp.available}")
    results = probe_models(args.model_name_or_path, probe_set, tasks, layers=args.layers, probes=args.probes,
                           cache_dir=args.cache_dir or os.path.join(args.output_dir, "feature_cache"),
                           batch_size=args.batch_size, max_length=args.max_length, device=args.device,
                           seed=args.seed, directprobe_kwargs={"merge_candidates": args.merge_candidates})
    paths = save_report(results, args.output_dir)
    for probe in args.probes:
        print(f"\n{probe}:\n" + summary_table(results, probe))
    print(f"\nwrote {paths['json']} and {paths['png']}")
    for name, st in results["extraction"].items():
        print(f"  {name}: {st['tokens_per_second']:.0f} model tokens/s{' (cached)' if st.get('cached') else ''}")
    return results


if __name__ == "__main__":
    main()
