#!/usr/bin/env python
"""Build the MambaCode corpora offline from installed source code.

    python scripts/build_corpus.py --output_dir data/corpus [--max_functions N]
        [--languages python,javascript,typescript] [--source_dir PATH ...]

Writes DIR/retrieval, DIR/retrieval_adv, DIR/long_context and DIR/type_inference (each a DatasetDict
for `datasets.load_from_disk`, with a README.md dataset card), DIR/corpus_stats.json (sizes, skips with
every skipped file named) and, last, DIR/corpus_manifest.json (every file's size and hash, rows per split,
the exact sources). DIR is checked before parsing and replaced in one step: it must lie apart from every
source (not a source, not inside one, not holding one), and a folder the builder did not write is refused
(--overwrite replaces only an earlier build, one with corpus_manifest.json). Symlinks that leave a
--source_dir are skipped and named unless --follow.
"""

import sys
from collections import defaultdict
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mambacode.corpus import CORPUS_PACKAGES, LongContextConfig, PairFilters, build_corpus


@dataclass
class CorpusArguments:
    output_dir: str = field(metadata={"help": "Folder that receives the four datasets (replaced atomically)."})
    max_functions: int | None = field(default=None, metadata={"help": "Stop after this many retrieval pairs (small runs)."})
    languages: str = field(default="python", metadata={"help": "Comma-separated: python, javascript, typescript."})
    source_dir: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra source folders or npm tarballs (.tgz); repeatable.", "action": "extend"},
    )
    no_stdlib: bool = field(default=False, metadata={"help": "Leave out the Python standard library."})
    packages: str = field(
        default="corpus",
        metadata={"help": "Installed distributions to read: 'corpus' (the [corpus] extra), 'none', or a comma list."},
    )
    num_workers: int = field(default=2, metadata={"help": "Parsing processes (results are merged in a fixed order)."})
    seed: int = field(default=42, metadata={"help": "Seed of the package-level split."})
    max_file_bytes: int = field(default=1_000_000, metadata={"help": "Larger files are skipped as huge_file."})
    keep_test_files: bool = field(default=False, metadata={"help": "Also read tests/ folders and test_*.py files."})
    min_query_words: int = field(default=3, metadata={"help": "Shortest docstring first paragraph kept."})
    min_body_lines: int = field(default=3, metadata={"help": "Functions with fewer body lines are skipped."})
    max_code_lines: int = field(default=256, metadata={"help": "Functions with more lines are skipped as too_long."})
    max_code_chars: int = field(default=16_000, metadata={"help": "Functions with more characters are skipped as too_long."})
    long_context_max_tokens: int = field(default=4096, metadata={"help": "Token budget of a long-context document."})
    long_context_min_tokens: int = field(default=256, metadata={"help": "Shortest long-context document."})
    type_top_k: int = field(default=100, metadata={"help": "Type labels: the k most frequent train types + 'other'."})
    type_max_words: int = field(default=512, metadata={"help": "Words per type-inference example."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})
    overwrite: bool = field(
        default=False, metadata={"help": "Replace an earlier build (a folder with corpus_manifest.json) even if files "
                                         "were added to it. Never replaces any other folder, nor a source."}
    )
    follow: bool = field(
        default=False, metadata={"help": "Follow symlinks that leave a --source_dir (default: skip and name them); "
                                         "links to a folder holding the link (e.g. /) are skipped even so."}
    )
    max_named: int = field(default=10, metadata={"help": "Skipped files named per reason here (all in corpus_stats.json)."})


def main(argv=None):
    (args,) = HfArgumentParser(CorpusArguments).parse_args_into_dataclasses(args=argv)
    if args.packages == "corpus":
        packages = CORPUS_PACKAGES
    elif args.packages in ("", "none"):
        packages = ()
    else:
        packages = tuple(p.strip() for p in args.packages.split(",") if p.strip())
    try:
        build = build_corpus(
            args.output_dir,
            max_functions=args.max_functions,
            languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
            source_dirs=args.source_dir,
            include_stdlib=not args.no_stdlib,
            packages=packages,
            num_workers=args.num_workers,
            show_progress=False if args.quiet else None,
            seed=args.seed,
            max_file_bytes=args.max_file_bytes,
            skip_test_files=not args.keep_test_files,
            filters=PairFilters(
                min_query_words=args.min_query_words,
                min_body_lines=args.min_body_lines,
                max_code_lines=args.max_code_lines,
                max_code_chars=args.max_code_chars,
            ),
            long_context=LongContextConfig(
                max_tokens=args.long_context_max_tokens,
                min_tokens=args.long_context_min_tokens,
                min_query_words=args.min_query_words,
            ),
            type_top_k=args.type_top_k,
            type_max_words=args.type_max_words,
            overwrite=args.overwrite,
            follow_symlinks=args.follow,
        )
    except (OSError, ValueError) as exc:  # bad settings, missing sources, an output it must not or cannot write
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(build, args.max_named)
    return 0


def print_summary(build, max_named: int = 10) -> None:
    """Rows per split, throughput, the sources read, and every skip reason with the files it left out."""
    print(f"{'task':<16}{'train':>9}{'validation':>12}{'test':>9}")
    for task, sizes in build.sizes.items():
        print(f"{task:<16}{sizes.get('train', 0):>9}{sizes.get('validation', 0):>12}{sizes.get('test', 0):>9}")
    print(f"files: {build.files_processed}/{build.num_files}  functions seen: {build.functions_seen}  "
          f"parse: {build.parse_seconds} s  total: {build.total_seconds} s  ({build.functions_per_second} functions/s)")
    print("sources: " + ", ".join(f"{s['name']} {s['version']}" for s in build.sources))
    for what, names in (("not installed", build.missing_packages), ("not at the pinned version", build.off_pin_packages)):
        if names:
            print(f"warning: [corpus] packages {what}: {', '.join(names)}; this corpus differs from the pinned one "
                  "(pip install -e '.[corpus]')")
    named = defaultdict(list)
    for item in build.skipped_files:
        named[item["reason"]].append(item["path"])
    print("skipped (by reason):")
    for reason, count in build.skipped.items():
        print(f"  {reason}: {count}")
        files = named.get(reason, [])
        for path in files[:max_named]:
            print(f"    {path}")
        if len(files) > max_named:
            print(f"    ... and {len(files) - max_named} more (corpus_stats.json: skipped_files)")
        if reason == "file_symlink_outside_root":
            print("    (links out of a --source_dir are not followed; pass --follow to read them)")
    print(f"written to {build.output_dir}")


if __name__ == "__main__":
    sys.exit(main())
