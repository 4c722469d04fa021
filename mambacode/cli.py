"""The `mambacode` console script: one command, verbs as subcommands (git style).

    mambacode index SRC_DIR --output INDEX_DIR [--model DIR_OR_NAME]   (default: the distilled s4d-minilm-codesearch)
    mambacode search "QUERY" --index INDEX_DIR [-k 10] [--mode hybrid|dense|bm25] [--json | --vimgrep] [--explain]
    mambacode convert bigs SRC_DIR DST_DIR [--overwrite]

Errors a user can fix (missing index, another model, empty query, bad folders) print one line to stderr
and exit with status 2; nothing else is caught. Later verbs join this parser rather than new scripts.

Start-up is part of the interface: this module and the parser import nothing heavy (`mambacode --help` takes a
fraction of a second), and `search` imports what its mode needs: no torch or transformers for `bm25`, nor for
`dense` / `hybrid` on an index with an exported query encoder (`mambacode.search.encoder`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _index(args) -> int:
    from .search.index import build_index, configure_index_threads

    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None  # an in-process caller's (tests) count
    configure_index_threads(args.num_threads)  # before torch loads (the OpenMP wait policy); imports torch
    from .devices import default_device
    from .model_names import shipped_code_length

    max_length = args.max_length or shipped_code_length(args.model)
    try:
        report = build_index(args.src_dir, args.output, args.model, batch_size=args.batch_size,
                             max_length=max_length, query_max_length=args.query_max_length,
                             device=default_device(args.use_cpu), progress=not args.quiet,
                             follow_symlinks=args.follow, precision=args.precision)
    finally:
        if previous is not None:
            torch.set_num_threads(previous)
    s = report.summary
    print(f"indexed {report.functions} functions from {report.files} files into {args.output} "
          f"({report.embedded} embedded, {report.reused} reused; {len(report.new_files)} new, "
          f"{len(report.changed_files)} changed, {len(report.deleted_files)} deleted, "
          f"{report.unchanged_files} unchanged files) in {report.seconds:.1f}s")
    if report.model_changed:
        print("the model differs from the one the previous index was built with: every function was re-embedded")
    for damage in report.repaired:
        print(f"repaired the previous index: {damage}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} files or folders: {s['skipped_by_reason']}")
        for path, reason in list(report.skipped.items())[:args.show_skipped]:
            print(f"  {path}: {reason}")
        if len(report.skipped) > args.show_skipped:
            print(f"  ... and {len(report.skipped) - args.show_skipped} more (all listed in "
                  f"{os.path.join(args.output, 'manifest.json')})")
    if s["functions_with_syntax_errors"]:
        print(f"dropped {s['functions_with_syntax_errors']} functions with syntax errors")
    print(f"ignored {s['ignored_files']} files of unsupported languages")
    return 0


def _search(args) -> int:
    from .search import display
    from .search.query import FUSION_DEPTH, Searcher, check_query

    check_query(args.query)
    searcher = Searcher(args.index, args.model, device="cpu" if args.use_cpu else None)
    hits = searcher.search(args.query, args.k, args.mode, explain=args.explain)
    if searcher.note:
        print(f"mambacode search: note: {searcher.note}", file=sys.stderr)
    columns = [display.hit_column(h.file, h.line, h.snippet) for h in hits]
    fusion = searcher.fusion if args.mode == "hybrid" else None
    if args.json:
        out = {"query": args.query, "mode": args.mode, "index": args.index,
               "source_root": searcher.index.manifest["source_root"], "query_encoder": searcher.encoder,
               "hits": [dict(h.to_dict(), column=c) for h, c in zip(hits, columns)]}
        if fusion is not None:
            out["fusion"] = fusion.to_dict()
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    if args.vimgrep:
        for h, c in zip(hits, columns):
            print(display.vimgrep_line(h, c))
        return 0
    if not hits:
        print(f"no hits for {display.escape_controls(repr(args.query))} ({args.mode})")
    colour = display.use_colour(args.color, sys.stdout)
    for h, c in zip(hits, columns):
        why = display.explanation(h, args.mode, fusion, max(args.k, FUSION_DEPTH)) if args.explain else None
        print("\n".join(display.human_lines(h, c, colour, why)))
    return 0


def _convert(args) -> int:
    from .convert import CONVERTERS

    model = CONVERTERS[args.source_format](args.src_dir, args.dst_dir, overwrite=args.overwrite)
    c = model.config
    print(f"converted {args.src_dir} ({args.source_format}: {c.num_hidden_layers} layers x {c.hidden_size}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters) into {args.dst_dir} "
          f"({type(model).__name__}; load it with AutoModelForMaskedLM)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .model_names import DEFAULT_SEARCH_MODEL, available_pretrained
    from .search.fusion import MODES, RRF_K
    from .search.index import DEFAULT_BATCH_SIZE

    shipped = ", ".join(available_pretrained()) or "none"

    parser = argparse.ArgumentParser(prog="mambacode", description="MambaCode command line: code search and more.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("index", help="index the functions of a source tree for `search`",
                         description="Cut every supported-language file under SRC_DIR into functions (tree-sitter), "
                                     "embed them with a MambaCode retrieval model and store FAISS + BM25 indexes "
                                     "and a metadata table in INDEX_DIR. Re-running updates it: only new or "
                                     "changed functions are embedded, deleted files are dropped.")
    p.add_argument("src_dir", metavar="SRC_DIR")
    p.add_argument("--model", default=DEFAULT_SEARCH_MODEL, metavar="DIR_OR_NAME",
                   help=f"default: {DEFAULT_SEARCH_MODEL}, the shipped code-search model distilled from "
                        f"all-MiniLM-L6-v2. A MambaCode retrieval model: a saved folder, a shipped name ({shipped}) or "
                        "a Hub id; "
                        "or any sentence-transformers model (a folder or Hub id with modules.json), to compare "
                        "with the embedder you already use")
    p.add_argument("--output", required=True, metavar="INDEX_DIR")
    p.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="texts of --max_length tokens per batch; shorter functions go in larger batches of the same "
                        "token budget")
    p.add_argument("--max_length", type=int, default=None,
                   help="tokens of code embedded per function (default: the length a shipped model was evaluated "
                        "with, its shipped.json's max_code_length; 256 for any other model)")
    p.add_argument("--query_max_length", type=int, default=64, help="tokens of a query embedded at search time")
    p.add_argument("--use_cpu", action="store_true", help="run the model on the CPU (default: the GPU when there is one)")
    p.add_argument("--precision", choices=("auto", "float32", "bf16"), default="auto",
                   help="what the functions are embedded in (auto: bf16 autocast for a MambaCode model on a CPU "
                        "with native bfloat16, measured within cosine 0.999 of float32 and several times faster; "
                        "float32 otherwise). Queries and the fingerprint are float32 either way")
    p.add_argument("--num_threads", default=None, metavar="N",
                   help="CPU threads (default: OMP_NUM_THREADS, else the cores other work leaves free)")
    p.add_argument("--show_skipped", type=int, default=20, help="skipped files named in the summary")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one per long step otherwise: parse, embed)")
    p.add_argument("--follow", action="store_true",
                   help="also follow symlinks that lead out of SRC_DIR (each real folder is walked once; links to a "
                        "folder above the link are never followed). Default: such links are skipped and named")
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
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="hits as JSON (every field, each ranker's rank)")
    out.add_argument("--vimgrep", action="store_true",
                     help="one line per hit, path:line:col:name (...), for editors' quickfix lists")
    s.add_argument("--explain", action="store_true",
                   help="show where each ranker (dense, bm25) put every hit, and the hybrid's fused sum")
    s.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the hits (auto: when stdout is a terminal and NO_COLOR is unset)")
    s.add_argument("--model", default=None, metavar="DIR_OR_NAME",
                   help="embed queries with this model (folder, shipped name or Hub id) through torch, checked "
                        "against the index's fingerprint (default: the index's own query encoder, no torch)")
    s.add_argument("--use_cpu", action="store_true",
                   help="run a torch model on the CPU (default: the GPU when there is one)")
    s.set_defaults(run=_search)
    c = verbs.add_parser("convert", help="convert a published SSM checkpoint into a MambaCode folder",
                         description="Convert a checkpoint folder of another SSM implementation into a MambaCode "
                                     "folder whose forward is the source's, exactly. `bigs`: a BiGS / CodeSSM "
                                     "PyTorch checkpoint (config.json with BiGS's fields, model.safetensors or "
                                     "pytorch_model.bin) -> MambaCodeForMaskedLM (AutoModelForMaskedLM).")
    c.add_argument("source_format", choices=("bigs",), metavar="FORMAT", help="the source's format: bigs")
    c.add_argument("src_dir", metavar="SRC_DIR")
    c.add_argument("dst_dir", metavar="DST_DIR")
    c.add_argument("--overwrite", action="store_true", help="replace DST_DIR if it exists")
    c.set_defaults(run=_convert)
    return parser


def _few_threads_for_search() -> None:
    """One BLAS / OpenMP thread for a query (unless the environment says otherwise): its matrices are tiny,
    and on a shared machine a second thread only waits (numpy's OpenBLAS measured 0.35 ms with one thread,
    8.7 ms with two, for one query's projection on two busy cores). Read when numpy / faiss load, so set first."""
    if "numpy" in sys.modules:  # called in a process that has them loaded already: too late, change nothing
        return
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "search":
        _few_threads_for_search()
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as exc:  # SearchIndexError is a ValueError
        print(f"mambacode {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
