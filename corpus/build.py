"""Build the four corpora (retrieval, retrieval_adv, long_context, type_inference) and save them.

One pass over the source files (in a fixed order, each real file once, optionally with worker processes
whose results are consumed in that same order) extracts pairs, documents and type examples; the builder
then deduplicates, splits by package with a fixed seed, obfuscates the retrieval test split, picks the type
label set from the train split, and writes everything into a temporary sibling of the output folder that
replaces it in one step.

Safety, in order: the output location is checked before any parsing (writable; a folder the builder did
not write is refused unless ``overwrite=True``); every skipped file is named with its reason; the datasets,
cards and ``corpus_stats.json`` are followed by ``corpus_manifest.json``, written last, which lists every
file with its size and SHA-256, the row count of every split and the exact sources (package versions, the
Python standard library's version). :func:`corpus_is_complete` checks a folder against it.
"""

from __future__ import annotations

import hashlib
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

from mambacode.atomic import remove_stale_temporaries, swap_directory, temp_prefix

from .card import dataset_info, render_card
from .extract import ExtractConfig, FileResult, process_batch, process_file
from .long_context import LongContextConfig
from .obfuscate import obfuscate
from .pairs import PairFilters
from .parsing import LANGUAGES, grammar_key
from .sources import (CORPUS_PACKAGES, CORPUS_PINS, collect_tasks, corpus_package_versions, pin_problems, printable,
                      source_roots)
from .splits import SPLITS, assign_splits
from .types import OTHER, encode_labels, top_k_labels

TASKS = ("retrieval", "retrieval_adv", "long_context", "type_inference")
STATS_FILE = "corpus_stats.json"
MANIFEST_FILE = "corpus_manifest.json"
MANIFEST_FORMAT = "mambacode-corpus/1"
#: top-level entries a build writes; a folder holding anything else was not written by the builder
BUILD_ENTRIES = frozenset(TASKS + (STATS_FILE, MANIFEST_FILE))


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
    follow_symlinks: bool = False  # source_dirs: follow links that leave the folder (never to its ancestors)

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


@dataclass
class CorpusBuild:
    """What :func:`build_corpus` made: sizes, skips (each file named), and the exact sources it read."""

    output_dir: str
    sizes: dict[str, dict[str, int]]  # task -> split -> rows
    packages: dict[str, dict[str, int]]  # task -> split -> number of packages
    skipped: dict[str, int]  # reason -> count (files: ``file_*``; functions, documents, examples: by stage)
    skipped_files: list[dict[str, str]]  # every skipped file or folder: {"reason": "file_...", "path": ...}
    sources: list[dict]  # name, version, license, kind, num_files (stdlib: version = the Python version)
    python_version: str  # the standard library's version (``sys.version_info``)
    missing_packages: list[str]  # requested distributions that are not installed
    off_pin_packages: list[str]  # requested ``[corpus]`` packages installed at another version than pinned
    num_files: int = 0
    files_processed: int = 0
    functions_seen: int = 0
    parse_seconds: float = 0.0
    total_seconds: float = 0.0
    functions_per_second: float | None = None

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.output_dir, MANIFEST_FILE)

    def to_dict(self) -> dict:
        return asdict(self)


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
    overwrite: bool = False,
    **options,
) -> CorpusBuild:
    """Build the corpora and put them at ``output_dir`` in one step; return what was built.

    ``options`` are further :class:`BuildConfig` fields (``seed``, ``type_top_k``, ``filters=PairFilters(...)``,
    ``long_context=LongContextConfig(...)``, ``follow_symlinks``, ...). Before any parsing, raises
    ``FileExistsError`` when ``output_dir`` holds files the builder did not write (``overwrite`` allows that
    only in a folder holding a corpus manifest, i.e. an earlier build), ``ValueError`` when ``output_dir`` is,
    contains or lies inside a source (a source dir, the standard library, a package's install folder), an
    ``OSError`` naming the folder when it cannot be written, ``FileNotFoundError`` for a missing source dir
    and ``ValueError`` for bad settings. On any failure the previous build at ``output_dir`` (if any) is left as it was; only if
    the no-exchange fallback of the final swap cannot even move it back does the error say where it went.
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
    _check_apart_from_sources(os.path.realpath(os.path.abspath(output_dir)), config)
    out = _checked_output(output_dir, overwrite)
    staging = _staging_folder(out)
    try:
        result = _build_into(staging, config, show_progress)
        swap_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.output_dir = out
    return result


def _build_into(folder: str, config: BuildConfig, show_progress: bool | None) -> CorpusBuild:
    t0 = time.perf_counter()
    sources, tasks, log, missing = collect_tasks(
        config.languages, config.include_stdlib, config.packages, config.source_dirs, config.max_file_bytes,
        config.skip_test_files, config.follow_symlinks,
    )
    if missing:
        print(f"note: {len(missing)} corpus package(s) not installed, left out: {', '.join(missing)} "
              "(pip install 'mambacode[corpus]')", file=sys.stderr)
    if not tasks:
        print("warning: no source files found for languages " + ",".join(config.languages), file=sys.stderr)

    extract = ExtractConfig(config.filters, config.long_context, config.type_max_words)
    items: Counter = Counter()  # per-function / document / example skips (files go to `log`)
    pairs, docs, types = [], [], []
    seen_code, seen_docs, seen_types = set(), set(), set()
    files_done = functions_seen = 0
    done = False
    bar = tqdm(total=len(tasks), desc="parsing", unit="file", disable=(not show_progress) if show_progress is not None else None)
    for res in _results(tasks, extract, config.num_workers):
        task = tasks[res.index]
        files_done += 1
        bar.update(1)
        if res.skip:
            log.add(res.skip, f"{task.source}/{task.path}")
            continue
        items.update(res.counts)
        functions_seen += sum(v for k, v in res.counts.items() if k.startswith("function_")) + len(res.pairs)
        base = {"package": task.package, "language": task.language, "path": task.path, "source": task.source}
        for p in res.pairs:
            if p["hash"] in seen_code:
                items["function_duplicate"] += 1
                continue
            seen_code.add(p["hash"])
            pairs.append({**base, **p, "_grammar": grammar_key(task.language, task.path)})
            if config.max_functions is not None and len(pairs) >= config.max_functions:
                done = True
                break
        for d in res.docs:
            if d["hash"] in seen_docs:
                items["long_context_duplicate_document"] += 1
                continue
            seen_docs.add(d["hash"])
            docs.append({**base, **d})
        for words, tags in res.types:
            # identical examples (copied files, vendored code) would sit in two splits: keep the first
            key = hashlib.sha1(json.dumps([words, tags], ensure_ascii=False).encode("utf-8")).digest()
            if key in seen_types:
                items["type_inference_duplicate"] += 1
                continue
            seen_types.add(key)
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

    skipped = Counter({f"file_{k}": v for k, v in log.counts.items()})
    skipped.update(items)
    datasets = _make_datasets(pairs, docs, types, split_of, config, skipped)
    skipped_files = [{"reason": f"file_{r}", "path": p} for r, p in log.named]
    requested = corpus_package_versions(config.packages)
    off_pin = pin_problems({n: v for n, v in requested.items() if v is not None})
    if off_pin:
        print(f"note: {len(off_pin)} corpus package(s) at other versions than pinned: {', '.join(off_pin)} "
              "(pip install 'mambacode[corpus]')", file=sys.stderr)
    result = CorpusBuild(
        output_dir=folder, sizes={}, packages={}, skipped=dict(sorted(skipped.items())), skipped_files=skipped_files,
        sources=[{k: v for k, v in s.to_dict().items() if k != "path"} for s in sources],
        python_version=".".join(map(str, sys.version_info[:3])), missing_packages=list(missing),
        off_pin_packages=off_pin,
    )
    _write(folder, datasets, result, config, split_of, requested)
    total = time.perf_counter() - t0
    result.num_files = len(tasks)
    result.files_processed = files_done
    result.functions_seen = functions_seen
    result.parse_seconds = round(parse_seconds, 2)
    result.total_seconds = round(total, 2)
    result.functions_per_second = round(functions_seen / parse_seconds, 1) if parse_seconds else None
    return result


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
            try:
                obf = obfuscate(p["code"], p["_grammar"], is_method=p["is_method"])
            except RecursionError:  # the walks are iterative; this guards tree-sitter bindings on extreme nesting
                skipped["retrieval_adv_too_deep"] += 1
                continue
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
def _write(folder: str, dsets: dict, result: CorpusBuild, config: BuildConfig, split_of: dict, requested: dict) -> None:
    """Datasets, cards and stats into ``folder``; the manifest (sizes and hashes of all of them) last."""
    settings = config.card_settings()
    skipped = result.skipped
    for task in TASKS:
        dd = dsets[task]
        sizes = {sp: len(ds) for sp, ds in dd.items()}
        pkgs = {sp: len(set(ds["package"])) for sp, ds in dd.items()}
        result.sizes[task] = sizes
        result.packages[task] = pkgs
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
        info = dataset_info(task, result.sources)
        for ds in dd.values():  # description and licence travel with the data (dataset_info.json)
            ds.info.description, ds.info.license, ds.info.dataset_name = info.description, info.license, info.dataset_name
        # one shard per split: empty splits need it to load again, and it keeps file layout stable
        dd.save_to_disk(os.path.join(folder, task), num_shards={sp: 1 for sp in dd})
        card = render_card(task, sizes, pkgs, result.sources, relevant, settings, extra, dsets=dd)
        with open(os.path.join(folder, task, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(card)
    stats = {
        "sizes": result.sizes, "packages": result.packages, "skipped": skipped, "skipped_files": result.skipped_files,
        "sources": result.sources, "missing_packages": result.missing_packages,
        "split_of_package": dict(sorted(split_of.items())), "settings": settings,
    }
    _write_json(os.path.join(folder, STATS_FILE), stats)
    files = {}
    for dirpath, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            files[rel] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "rows": result.sizes,
        "files": files,
        "sources": result.sources,
        "python": result.python_version,
        "packages": {n: {"pinned": CORPUS_PINS.get(n), "installed": v} for n, v in sorted(requested.items())},
        "missing_packages": result.missing_packages,
        "off_pin_packages": result.off_pin_packages,
        "settings": settings,
    }
    _write_json(os.path.join(folder, MANIFEST_FILE), manifest)  # last: its presence means the rest is there


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- output folder
def _checked_output(output_dir: str, overwrite: bool) -> str:
    """The folder to build (absolute, symlinks resolved), refused early when it must not be replaced."""
    out = os.path.realpath(os.path.abspath(output_dir))
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise NotADirectoryError(f"output_dir {printable(out)!r} exists and is not a folder")
        foreign = _foreign_entries(out)
        if foreign:
            shown = ", ".join(repr(printable(x)) for x in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            held = (f"output_dir {printable(out)!r} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                    f"this builder did not write ({shown}); a build replaces the whole folder.")
            if not overwrite:
                raise FileExistsError(f"{held} Choose an empty or new folder, or pass overwrite=True (--overwrite) "
                                      "to replace an earlier corpus build.")
            if not _holds_manifest(out):
                raise FileExistsError(f"{held} overwrite (--overwrite) only replaces a folder holding an earlier "
                                      f"build's {MANIFEST_FILE}, and this one has none: choose an empty or new "
                                      "folder, or remove this one yourself.")
    return out


def _holds_manifest(folder: str) -> bool:
    """Whether ``folder`` holds a readable corpus manifest of this format (an earlier build)."""
    try:
        read_manifest(folder)
    except (OSError, ValueError):
        return False
    return True


def _check_apart_from_sources(out: str, config: BuildConfig) -> None:
    """ValueError when the output folder (real path) is, contains or lies inside anything the build reads."""
    for what, root in source_roots(config.languages, config.include_stdlib, config.packages, config.source_dirs):
        if out == root:
            relation = "is"
        elif os.path.commonpath([out, root]) == out:
            relation = "contains"
        elif os.path.commonpath([out, root]) == root:
            relation = "lies inside"
        else:
            continue
        raise ValueError(f"output_dir {printable(out)!r} {relation} a source of the build ({what}: "
                         f"{printable(root)!r}); a build replaces its whole output folder, so it must lie apart "
                         "from every source. Choose another output_dir.")


def _foreign_entries(folder: str) -> list[str]:
    """Top-level entries of ``folder`` that are not part of a corpus build (all of them without stats)."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        raise type(exc)(f"output_dir {printable(folder)!r} cannot be listed ({exc.strerror or exc})") from None
    if not entries:
        return []
    if STATS_FILE not in entries and MANIFEST_FILE not in entries:
        return entries
    # builds before the manifest staged inside the folder as .building-*
    return [e for e in entries if e not in BUILD_ENTRIES and not e.startswith(".building-")]


def _staging_folder(out: str) -> str:
    """A fresh sibling of ``out`` to build in; creating it is the writability check, before any parsing."""
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale_temporaries(parent)  # what killed builds left here
        staging = tempfile.mkdtemp(prefix=temp_prefix(f".{os.path.basename(out)}.building-"), dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the output gets a plain folder's mode
        return staging
    except OSError as exc:
        raise type(exc)(
            f"output_dir {printable(out)!r} cannot be written: creating a folder in {printable(parent)!r} failed "
            f"({exc.strerror or exc}); choose a writable location"
        ) from None


def read_manifest(path: str) -> dict:
    """The manifest of the build at ``path``: rows, files, sources (name, version, licence, files), the
    Python version and which ``[corpus]`` pins were missing or at other versions."""
    manifest_path = os.path.join(path, MANIFEST_FILE)
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{manifest_path}: no corpus manifest (build the corpus with "
                                "scripts/build_corpus.py)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{manifest_path}: expected format {MANIFEST_FORMAT!r}")
    return manifest


def corpus_is_complete(path: str, verify_checksums: bool = False) -> bool:
    """True when ``path`` holds a whole build: its manifest, every file it lists at the listed size (and
    SHA-256, if asked) and every split with the listed number of rows. False for partial or foreign folders.

    Files added later (``datasets`` cache files beside the data) do not matter.
    """
    try:
        manifest = read_manifest(path)
        for rel, info in manifest["files"].items():
            full = os.path.join(path, rel)
            if os.path.getsize(full) != info["bytes"] or (verify_checksums and _sha256(full) != info["sha256"]):
                return False
        for task, splits in manifest["rows"].items():
            for split, rows in splits.items():
                shards = [r for r in manifest["files"] if r.startswith(f"{task}/{split}/") and r.endswith(".arrow")]
                if not shards or sum(_arrow_rows(os.path.join(path, r)) for r in shards) != rows:
                    return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _arrow_rows(path: str) -> int:
    """Rows of one ``datasets`` Arrow shard, read from its record-batch headers (memory-mapped)."""
    import pyarrow as pa

    with pa.memory_map(path) as src:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(src))


def _prefixes(task: str) -> tuple[str, ...]:
    return {
        "retrieval": ("function_",),
        "retrieval_adv": ("function_", "retrieval_adv_"),
        "long_context": ("long_context_",),
        "type_inference": ("type_inference_",),
    }[task]
