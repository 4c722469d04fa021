"""Build the four corpora (retrieval, retrieval_adv, long_context, type_inference) and save them.

One pass over the source files (in a fixed order, optionally with worker processes whose results are
consumed in that same order) extracts pairs, documents and type examples; the builder then deduplicates,
splits by package with a fixed seed, obfuscates the retrieval test split, picks the type label set from
the train split, and writes each ``DatasetDict`` plus its card into a temporary folder that is renamed
into place, so a reader never sees a half-written corpus.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable

from tqdm.auto import tqdm

from .card import render_card
from .extract import ExtractConfig, FileResult, process_batch, process_file
from .long_context import LongContextConfig
from .obfuscate import obfuscate
from .pairs import PairFilters
from .parsing import LANGUAGES, grammar_key
from .sources import CORPUS_PACKAGES, collect_tasks
from .splits import SPLITS, assign_splits
from .types import OTHER, encode_labels, top_k_labels

TASKS = ("retrieval", "retrieval_adv", "long_context", "type_inference")


@dataclass
class BuildConfig:
    """Everything that decides the content of a build (recorded in the cards)."""

    languages: tuple[str, ...] = ("python",)
    include_stdlib: bool = True
    packages: tuple[str, ...] = CORPUS_PACKAGES
    source_dirs: tuple[str, ...] = ()
    max_functions: int | None = None
    max_file_bytes: int = 1_000_000
    skip_test_files: bool = True
    filters: PairFilters = field(default_factory=PairFilters)
    long_context: LongContextConfig = field(default_factory=LongContextConfig)
    type_top_k: int = 100
    type_max_words: int = 512
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42
    num_workers: int = 2

    def validate(self) -> None:
        bad = [x for x in self.languages if x not in LANGUAGES]
        if bad or not self.languages:
            raise ValueError(f"languages: expected a non-empty subset of {list(LANGUAGES)}, got {list(self.languages)}")
        if self.max_functions is not None and self.max_functions <= 0:
            raise ValueError(f"max_functions: expected a positive integer or None, got {self.max_functions}")
        if self.type_top_k < 1:
            raise ValueError(f"type_top_k: expected >= 1, got {self.type_top_k}")
        if self.long_context.min_tokens > self.long_context.max_tokens:
            raise ValueError(
                f"long_context: min_tokens ({self.long_context.min_tokens}) exceeds max_tokens ({self.long_context.max_tokens})"
            )

    def card_settings(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("filters", "long_context", "num_workers", "source_dirs")}
        d["source_dirs"] = [os.path.basename(os.path.normpath(x)) for x in self.source_dirs]
        d.update({f"filters.{k}": v for k, v in asdict(self.filters).items()})
        d.update({f"long_context.{k}": v for k, v in asdict(self.long_context).items()})
        return d


def _results(tasks, extract: ExtractConfig, num_workers: int, batch: int = 8) -> Iterable[FileResult]:
    """Results in task order; worker processes when the job is big enough to pay for them."""
    if num_workers <= 1 or len(tasks) < 4 * batch:
        for t in tasks:
            yield process_file(t, extract)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    chunks = [(tasks[i : i + batch], extract) for i in range(0, len(tasks), batch)]
    pool = mp.get_context(method).Pool(num_workers)
    try:
        for out in pool.imap(process_batch, chunks):
            yield from out
    finally:
        pool.terminate()
        pool.join()


def build_corpus(
    output_dir: str,
    max_functions: int | None = None,
    languages: Iterable[str] = ("python",),
    source_dirs: Iterable[str] | None = None,
    include_stdlib: bool = True,
    packages: Iterable[str] | None = CORPUS_PACKAGES,
    num_workers: int | None = None,
    show_progress: bool | None = None,
    **options,
) -> dict:
    """Build and save the corpora under ``output_dir``; return statistics (sizes, skips, timings).

    ``options`` are further :class:`BuildConfig` fields (``seed``, ``type_top_k``, ``filters=PairFilters(...)``,
    ``long_context=LongContextConfig(...)``, ...). Raises ``FileNotFoundError`` for a missing source dir.
    """
    config = BuildConfig(
        languages=tuple(languages),
        include_stdlib=include_stdlib,
        packages=tuple(packages or ()),
        source_dirs=tuple(source_dirs or ()),
        max_functions=max_functions,
        num_workers=num_workers if num_workers is not None else min(2, os.cpu_count() or 1),
        **options,
    )
    config.validate()
    t0 = time.perf_counter()
    sources, tasks, skipped_files, missing = collect_tasks(
        config.languages, config.include_stdlib, config.packages, config.source_dirs, config.max_file_bytes,
        config.skip_test_files,
    )
    if missing:
        print(f"note: {len(missing)} corpus package(s) not installed, left out: {', '.join(missing)} "
              "(pip install 'mambacode[corpus]')", file=sys.stderr)
    if not tasks:
        print("warning: no source files found for languages " + ",".join(config.languages), file=sys.stderr)

    extract = ExtractConfig(config.filters, config.long_context, config.type_max_words)
    skipped = Counter({f"file_{k}": v for k, v in skipped_files.items()})
    pairs, docs, types = [], [], []
    seen_code, seen_docs = set(), set()
    files_done = functions_seen = 0
    done = False
    bar = tqdm(total=len(tasks), desc="parsing", unit="file", disable=(not show_progress) if show_progress is not None else None)
    for res in _results(tasks, extract, config.num_workers):
        task = tasks[res.index]
        files_done += 1
        bar.update(1)
        if res.skip:
            skipped[f"file_{res.skip}"] += 1
            continue
        skipped.update(res.counts)
        functions_seen += sum(v for k, v in res.counts.items() if k.startswith("function_")) + len(res.pairs)
        base = {"package": task.package, "language": task.language, "path": task.path, "source": task.source}
        for p in res.pairs:
            if p["hash"] in seen_code:
                skipped["function_duplicate"] += 1
                continue
            seen_code.add(p["hash"])
            pairs.append({**base, **p, "_grammar": grammar_key(task.language, task.path)})
            if config.max_functions is not None and len(pairs) >= config.max_functions:
                done = True
                break
        for d in res.docs:
            if d["hash"] in seen_docs:
                skipped["long_context_duplicate_document"] += 1
                continue
            seen_docs.add(d["hash"])
            docs.append({**base, **d})
        for words, tags in res.types:
            types.append({**base, "tokens": words, "tags": tags})
        if done:
            break
    bar.close()
    parse_seconds = time.perf_counter() - t0

    # ---- splits by package, balanced for every task at once
    weights: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in pairs:
        weights[p["package"]][0] += 1
    for d in docs:
        weights[d["package"]][1] += len(d["queries"])
    for t in types:
        weights[t["package"]][2] += 1
    split_of = assign_splits(dict(weights), config.split_fractions, config.seed)

    datasets = _make_datasets(pairs, docs, types, split_of, config, skipped)
    stats = _save(output_dir, datasets, sources, skipped, config, split_of, missing)
    total = time.perf_counter() - t0
    stats.update(
        num_files=len(tasks),
        files_processed=files_done,
        functions_seen=functions_seen,
        parse_seconds=round(parse_seconds, 2),
        total_seconds=round(total, 2),
        functions_per_second=round(functions_seen / parse_seconds, 1) if parse_seconds else None,
    )
    return stats


# ------------------------------------------------------------------------------------------------- rows
def show_progress_of_saves() -> bool:
    """datasets' own "Saving the dataset" bars are noise next to ours; keep them only if asked."""
    return os.environ.get("MAMBACODE_CORPUS_VERBOSE", "") not in ("", "0")


def _make_datasets(pairs, docs, types, split_of, config: BuildConfig, skipped: Counter) -> dict:
    import datasets as hf

    if not show_progress_of_saves():
        hf.disable_progress_bars()
    rows = {task: {s: [] for s in SPLITS} for task in TASKS}
    for p in pairs:
        split = split_of[p["package"]]
        rows["retrieval"][split].append({
            "id": f"{p['package']}::{p['path']}::{p['func_name']}::{p['start_line']}",
            "package": p["package"], "language": p["language"], "source": p["source"], "path": p["path"],
            "func_name": p["func_name"], "start_line": p["start_line"], "query": p["query"],
            "docstring": p["docstring"], "code": p["code"],
        })
        if split == "test":
            obf = obfuscate(p["code"], p["_grammar"], is_method=p["is_method"])
            if obf is None:
                skipped["retrieval_adv_obfuscation_failed"] += 1
                continue
            rows["retrieval_adv"]["test"].append({
                "id": rows["retrieval"]["test"][-1]["id"], "package": p["package"], "language": p["language"],
                "path": p["path"], "func_name": p["func_name"], "query": p["query"], "code": obf,
                "original_code": p["code"],
            })
    for d in docs:
        split = split_of[d["package"]]
        doc_id = f"{d['package']}::{d['path']}" + (f"::{d['name']}" if d["name"] else "")
        for i, (func, query) in enumerate(d["queries"]):
            rows["long_context"][split].append({
                "id": f"{doc_id}::{i}", "doc_id": doc_id, "package": d["package"], "language": d["language"],
                "path": d["path"], "kind": d["kind"], "func_name": func, "query": query, "code": d["code"],
                "num_tokens": d["num_tokens"],
            })
    type_counts: Counter = Counter()
    for t in types:
        if split_of[t["package"]] == "train":
            type_counts.update(x for x in t["tags"] if x is not None)
    if not type_counts:  # tiny builds with no train types: fall back to all splits
        for t in types:
            type_counts.update(x for x in t["tags"] if x is not None)
    label_names = top_k_labels(type_counts, config.type_top_k)
    for i, t in enumerate(types):
        split = split_of[t["package"]]
        rows["type_inference"][split].append({
            "id": f"{t['package']}::{t['path']}::{i}", "package": t["package"], "language": t["language"],
            "path": t["path"], "tokens": t["tokens"], "labels": encode_labels(t["tags"], label_names),
            "raw_types": [x or "" for x in t["tags"]],
        })

    s = hf.Value("string")
    features = {
        "retrieval": hf.Features({
            "id": s, "package": s, "language": s, "source": s, "path": s, "func_name": s,
            "start_line": hf.Value("int32"), "query": s, "docstring": s, "code": s,
        }),
        "retrieval_adv": hf.Features({
            "id": s, "package": s, "language": s, "path": s, "func_name": s, "query": s, "code": s, "original_code": s,
        }),
        "long_context": hf.Features({
            "id": s, "doc_id": s, "package": s, "language": s, "path": s, "kind": s, "func_name": s, "query": s,
            "code": s, "num_tokens": hf.Value("int32"),
        }),
        "type_inference": hf.Features({
            "id": s, "package": s, "language": s, "path": s, "tokens": hf.Sequence(s),
            "labels": hf.Sequence(hf.ClassLabel(names=label_names)), "raw_types": hf.Sequence(s),
        }),
    }
    out = {}
    for task in TASKS:
        splits = ("test",) if task == "retrieval_adv" else SPLITS
        feats = features[task]
        out[task] = hf.DatasetDict({
            sp: hf.Dataset.from_dict({k: [r[k] for r in rows[task][sp]] for k in feats}, features=feats)
            for sp in splits
        })
    out["_label_names"] = label_names
    out["_type_counts"] = type_counts
    return out


# ------------------------------------------------------------------------------------------------- saving
def _save(output_dir, dsets, sources, skipped: Counter, config: BuildConfig, split_of, missing) -> dict:
    os.makedirs(output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".building-", dir=output_dir)
    source_dicts = [s.to_dict() for s in sources]
    for s in source_dicts:
        s.pop("path", None)
    stats: dict = {"sizes": {}, "skipped": dict(sorted(skipped.items())), "sources": source_dicts,
                   "missing_packages": list(missing), "packages": {}}
    settings = config.card_settings()
    try:
        for task in TASKS:
            dd = dsets[task]
            sizes = {sp: len(ds) for sp, ds in dd.items()}
            pkgs = {sp: len(set(ds["package"])) for sp, ds in dd.items()}
            stats["sizes"][task] = sizes
            stats["packages"][task] = pkgs
            relevant = {k: v for k, v in skipped.items() if k.startswith(("file_",) + _prefixes(task))}
            extra = None
            if task == "type_inference":
                counts = dsets["_type_counts"]
                covered = sum(counts[n] for n in dsets["_label_names"] if n != OTHER)
                extra = {
                    "labels": f"{len(dsets['_label_names'])} ({len(dsets['_label_names']) - 1} types + `other`)",
                    "annotated identifiers in train": sum(counts.values()),
                    "share covered by the top types": f"{covered / max(1, sum(counts.values())):.3f}",
                    "languages": ", ".join(sorted({x for ds in dd.values() for x in ds["language"]})) or "none",
                }
            if task == "long_context":
                extra = {
                    "documents": {sp: len(set(ds["doc_id"])) for sp, ds in dd.items()},
                    "token budget": f"{config.long_context.min_tokens}..{config.long_context.max_tokens} code tokens",
                }
            # one shard per split: empty splits need it to load again, and it keeps file layout stable
            dd.save_to_disk(os.path.join(tmp, task), num_shards={sp: 1 for sp in dd})
            card = render_card(task, sizes, pkgs, source_dicts, relevant, settings, extra)
            with open(os.path.join(tmp, task, "README.md"), "w", encoding="utf-8") as fh:
                fh.write(card)
        stats_path = os.path.join(tmp, "corpus_stats.json")
        with open(stats_path, "w", encoding="utf-8") as fh:
            json.dump({**stats, "split_of_package": dict(sorted(split_of.items())), "settings": settings}, fh,
                      indent=1, sort_keys=True, default=str)
        for name in TASKS + ("corpus_stats.json",):
            final = os.path.join(output_dir, name)
            old = os.path.join(tmp, f".old-{name}")
            if os.path.lexists(final):
                os.replace(final, old)
            os.replace(os.path.join(tmp, name), final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _prefixes(task: str) -> tuple[str, ...]:
    return {
        "retrieval": ("function_",),
        "retrieval_adv": ("function_", "retrieval_adv_"),
        "long_context": ("long_context_",),
        "type_inference": ("type_inference_",),
    }[task]
