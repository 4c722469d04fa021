#!/usr/bin/env python
"""Probe what encoders know about code: AST distance, AST siblings and data-flow edges, per layer.

Example (two models on the same sampled pairs):
    python scripts/probe.py --model_name_or_path runs/ssm --model_name_or_path runs/rocoder \
        --language python --source_dir /path/to/src --output_dir probe_out
Writes <output_dir>/probe_set.json (the pairs; reused if present), probe_report.json, probe_report.png.
An output_dir that already holds a report is refused before any work unless --overwrite. Every table says
on how many pairs each task was probed and which model's truncation dropped the others.
"""

import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mambacode.corpus import read_snippets
from mambacode.devices import default_device
from mambacode.languages import SUPPORTED_LANGUAGES
from mambacode.probing import TASKS, ProbeSet, build_probe_set, probe_models, save_report, summary_table
from mambacode.probing.report import existing_report

PROBES = ["directprobe", "linear"]


@dataclass
class ProbeArguments:
    language: str = field(metadata={"help": f"One of {', '.join(SUPPORTED_LANGUAGES)}."})
    output_dir: str = field(metadata={"help": "Where the probe set, report and feature cache go."})
    model_name_or_path: list[str] = field(default_factory=list, metadata={
        "help": "A model folder or name; repeat (or list several) to compare models.", "action": "extend"})
    corpus_dir: str | None = field(default=None, metadata={
        "help": "Corpus folder with a `retrieval/` dataset (columns code, language); or --source_dir."})
    source_dir: str | None = field(default=None, metadata={"help": "Folder of source files (split into functions)."})
    probe_set: str | None = field(default=None, metadata={"help": "Load this saved probe set instead of sampling one."})
    tasks: list[str] = field(default_factory=lambda: list(TASKS), metadata={"choices": list(TASKS)})
    layers: list[int] | None = field(default=None, metadata={
        "help": "Hidden-state indices (0 = embeddings); default: all."})
    probes: list[str] = field(default_factory=lambda: list(PROBES), metadata={"choices": PROBES})
    max_snippets: int | None = field(default=None)
    max_tokens: int = field(default=256, metadata={"help": "Code tokens kept per snippet."})
    pairs_per_class: int | None = field(default=None, metadata={
        "help": "Default: 1300 (distance), 1500 (siblings, dfg)."})
    seed: int = field(default=0)
    batch_size: int = field(default=8)
    max_length: int = field(default=512, metadata={"help": "Model tokens per snippet."})
    cache_dir: str | None = field(default=None, metadata={"help": "Feature cache (default: <output_dir>/feature_cache)."})
    use_cpu: bool = field(default=False, metadata={"help": "Run the models on the CPU even if CUDA is available."})
    merge_candidates: int | None = field(default=None, metadata={
        "help": "DirectProbe: nearest same-label clusters tried per merge pass (default: all)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace the report of an earlier run in output_dir (default: refuse; the probe set and the "
                "feature cache there are reused either way)."})


def parse_args(argv=None) -> ProbeArguments:
    parser = HfArgumentParser(ProbeArguments)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    if not args.model_name_or_path:
        parser.error("--model_name_or_path is required (repeat it to compare models)")
    if args.corpus_dir and args.source_dir:
        parser.error("give one of --corpus_dir and --source_dir, not both")
    return args


def main(argv=None):
    args = parse_args(argv)
    earlier = existing_report(args.output_dir)
    if earlier and not args.overwrite:
        sys.exit(f"error: {earlier[0]} exists (an earlier probe run); pass --overwrite to replace it, or choose "
                 "another --output_dir")
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
                           batch_size=args.batch_size, max_length=args.max_length, device=default_device(args.use_cpu),
                           seed=args.seed, directprobe_kwargs={"merge_candidates": args.merge_candidates})
    paths = save_report(results, args.output_dir, overwrite=args.overwrite)
    for probe in args.probes:
        print(f"\n{probe}:\n" + summary_table(results, probe))
    print(f"\nwrote {paths['json']} and {paths['png']}")
    for name, st in results["extraction"].items():
        print(f"  {name}: {st['tokens_per_second']:.0f} model tokens/s{' (cached)' if st.get('cached') else ''}")
    return results


if __name__ == "__main__":
    main()
