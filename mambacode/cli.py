"""The `mambacode` console script: one command, verbs as subcommands (git style).

    mambacode index SRC_DIR --model DIR_OR_NAME --output INDEX_DIR
    mambacode search "QUERY" --index INDEX_DIR [-k 10] [--mode hybrid|dense|bm25] [--json]

Errors a user can fix (missing index, another model, empty query, bad folders) print one line to stderr
and exit with status 2; nothing else is caught. Later verbs join this parser rather than new scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .devices import default_device


def _index(args) -> int:
    from .search import build_index

    report = build_index(args.src_dir, args.output, args.model, batch_size=args.batch_size,
                         max_length=args.max_length, query_max_length=args.query_max_length, device=default_device(args.use_cpu),
                         progress=not args.quiet)
    s = report.summary
    print(f"indexed {report.functions} functions from {report.files} files into {args.output} "
          f"({report.embedded} embedded, {report.reused} reused; {len(report.new_files)} new, "
          f"{len(report.changed_files)} changed, {len(report.deleted_files)} deleted, "
          f"{report.unchanged_files} unchanged files) in {report.seconds:.1f}s")
    if report.model_changed:
        print("the model differs from the one the previous index was built with: every function was re-embedded")
    if report.skipped:
        print(f"skipped {len(report.skipped)} files: {s['skipped_by_reason']}")
        for path, reason in list(report.skipped.items())[:args.show_skipped]:
            print(f"  {path}: {reason}")
        if len(report.skipped) > args.show_skipped:
            print(f"  ... and {len(report.skipped) - args.show_skipped} more (all listed in "
                  f"{os.path.join(args.output, 'manifest.json')})")
    if s["functions_with_syntax_errors"]:
        print(f"dropped {s['functions_with_syntax_errors']} functions with syntax errors")
    print(f"ignored {s['ignored_files']} files of unsupported languages")
    return 0


def _display_path(file: str) -> str:
    rel = os.path.relpath(file)
    return file if rel.startswith("..") else rel


def _search(args) -> int:
    from .search.query import Searcher, check_query

    check_query(args.query)
    searcher = Searcher(args.index, args.model, device=default_device(args.use_cpu))
    hits = searcher.search(args.query, args.k, args.mode)
    if args.json:
        print(json.dumps({"query": args.query, "mode": args.mode, "index": args.index,
                          "source_root": searcher.index.manifest["source_root"],
                          "hits": [h.to_dict() for h in hits]}, indent=1, ensure_ascii=False))
        return 0
    if not hits:
        print(f"no hits for {args.query!r} ({args.mode})")
    for h in hits:
        print(f"{h.rank:>3}. {_display_path(h.file)}:{h.line}  {h.name or '<anonymous>'}  [{h.language}, "
              f"score {h.score:.4f}]")
        for line in h.snippet.splitlines():
            print(f"       {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .search import MODES
    from .search.fusion import RRF_K

    parser = argparse.ArgumentParser(prog="mambacode", description="MambaCode command line: code search and more.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("index", help="index the functions of a source tree for `search`",
                         description="Cut every supported-language file under SRC_DIR into functions (tree-sitter), "
                                     "embed them with a MambaCode retrieval model and store FAISS + BM25 indexes "
                                     "and a metadata table in INDEX_DIR. Re-running updates it: only new or "
                                     "changed functions are embedded, deleted files are dropped.")
    p.add_argument("src_dir", metavar="SRC_DIR")
    p.add_argument("--model", required=True, metavar="DIR_OR_NAME",
                   help="a saved MambaCode retrieval folder (or Hub id)")
    p.add_argument("--output", required=True, metavar="INDEX_DIR")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_length", type=int, default=256, help="tokens of code embedded per function")
    p.add_argument("--query_max_length", type=int, default=64, help="tokens of a query embedded at search time")
    p.add_argument("--use_cpu", action="store_true", help="run the model on the CPU (default: the GPU when there is one)")
    p.add_argument("--show_skipped", type=int, default=20, help="skipped files named in the summary")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_index)
    s = verbs.add_parser("search", help="rank the indexed functions for a query",
                         description=f"Rank the functions of INDEX_DIR for QUERY: dense (cosine of the MambaCode "
                                     f"embeddings), bm25, or hybrid (reciprocal-rank fusion of both: the weights the "
                                     f"model's validation split chose, config.hybrid_fusion, else equal weights "
                                     f"and k={RRF_K}).")
    s.add_argument("query", metavar="QUERY")
    s.add_argument("--index", required=True, metavar="INDEX_DIR")
    s.add_argument("-k", type=int, default=10, help="number of hits")
    s.add_argument("--mode", choices=MODES, default="hybrid")
    s.add_argument("--json", action="store_true", help="hits as JSON")
    s.add_argument("--model", default=None, metavar="DIR_OR_NAME",
                   help="the index's model at another location (default: the one recorded in the index)")
    s.add_argument("--use_cpu", action="store_true", help="run the model on the CPU (default: the GPU when there is one)")
    s.set_defaults(run=_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .search import SearchIndexError

    try:
        return args.run(args)
    except (SearchIndexError, FileNotFoundError, ValueError) as exc:
        print(f"mambacode {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
