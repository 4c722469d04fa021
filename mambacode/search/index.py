"""The on-disk code index: FAISS (dense), bm25s (lexical) and a metadata table, built and updated atomically.

Layout of an index folder:
    manifest.json    format, model (path or id) and its fingerprint, embedding size, lengths, source root,
                     counts, skipped files with their reasons
    metadata.jsonl   one row per function, row i = vector i = BM25 document i:
                     path, line, end_line, name, language, sha256 (of the function text), snippet
    files.json       path -> sha256 of the file, language, functions kept
    dense.faiss      `IndexFlatIP` over the L2-normalised embeddings (inner product = cosine)
    bm25/            `bm25s.BM25.save` of the code words (`mambacode.search.tokenize.code_tokens`)

Re-indexing re-embeds only functions whose text is new (keyed by its sha256, so an unchanged file costs
no model call), drops functions of deleted files, and rebuilds BM25 (its statistics are corpus-wide).
A different model invalidates every vector: all functions are re-embedded. The folder is replaced as a whole
(`mambacode.atomic.atomic_directory`), so an interrupted run leaves the previous index intact.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..atomic import atomic_directory
from .model import embed, fingerprint, load_retrieval_model, same_model
from .sources import SourceScan, scan_sources
from .tokenize import code_tokens

FORMAT = "mambacode-search-index"
VERSION = 1
FILES = ("manifest.json", "metadata.jsonl", "files.json", "dense.faiss", "bm25")
NAME_WEIGHT = 3  # the qualified name counts as this many extra occurrences for BM25 (a poor man's BM25F)
EMBED_CHUNK = 1024  # texts per `encode` call: bounds memory and drives the progress bar


class SearchIndexError(ValueError):
    """A missing, incomplete or incompatible index folder (the message names the folder and what is wrong)."""


@dataclass
class IndexReport:
    """What one `build_index` call did."""

    output: str
    functions: int = 0
    embedded: int = 0
    reused: int = 0
    files: int = 0
    new_files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    unchanged_files: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    model_changed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _is_local(name: str) -> bool:
    return os.path.isdir(name)


class CodeIndex:
    """A loaded index folder: `manifest`, `rows` (metadata), `dense` (faiss) and `bm25` (bm25s)."""

    def __init__(self, path: str, manifest: dict, rows: list[dict], files: dict, dense, bm25):
        self.path, self.manifest, self.rows, self.files = path, manifest, rows, files
        self.dense, self.bm25 = dense, bm25

    @classmethod
    def load(cls, path: str) -> "CodeIndex":
        import bm25s
        import faiss

        if not os.path.isdir(path):
            raise SearchIndexError(f"{path}: no index folder here (build one with `mambacode index SRC_DIR "
                                   f"--model MODEL --output {path}`)")
        manifest = read_manifest(path)
        missing = [f for f in FILES if not os.path.exists(os.path.join(path, f))]
        if missing:
            raise SearchIndexError(f"{path}: incomplete index, missing {', '.join(missing)} (re-run `mambacode index`)")
        with open(os.path.join(path, "metadata.jsonl"), encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        with open(os.path.join(path, "files.json"), encoding="utf-8") as fh:
            files = json.load(fh)
        dense = faiss.read_index(os.path.join(path, "dense.faiss"))
        bm25 = bm25s.BM25.load(os.path.join(path, "bm25"), show_progress=False)
        if dense.ntotal != len(rows) or dense.d != manifest["dim"]:
            raise SearchIndexError(f"{path}: dense.faiss holds {dense.ntotal} vectors of size {dense.d} but "
                                   f"metadata.jsonl has {len(rows)} rows of size {manifest['dim']} "
                                   "(re-run `mambacode index`)")
        return cls(path, manifest, rows, files, dense, bm25)

    def vectors(self) -> np.ndarray:
        """The stored embeddings, (n, d) float32, row i = metadata row i."""
        if not self.dense.ntotal:
            return np.zeros((0, self.dense.d), "float32")
        return self.dense.reconstruct_n(0, self.dense.ntotal)


def read_manifest(path: str) -> dict:
    file = os.path.join(path, "manifest.json")
    if not os.path.exists(file):
        raise SearchIndexError(f"{path}: no manifest.json, so not a `mambacode index` folder")
    with open(file, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("format") != FORMAT:
        raise SearchIndexError(f"{file}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise SearchIndexError(f"{file}: index version {manifest.get('version')}, this mambacode reads version "
                               f"{VERSION} (re-run `mambacode index`)")
    return manifest


def _embed_all(model, tokenizer, texts: list[str], max_length: int, batch_size: int, progress: bool) -> np.ndarray:
    """Embeddings of `texts` in order; long-first chunks keep the padding of each batch small."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="embed", unit="fn")
    for start in range(0, len(order), EMBED_CHUNK):
        idx = order[start:start + EMBED_CHUNK]
        vec = embed(model, tokenizer, [texts[i] for i in idx], max_length, batch_size)
        if out is None:
            out = np.zeros((len(texts), vec.shape[1]), np.float32)
        out[idx] = vec
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def build_index(source_dir: str | SourceScan, output: str, model_name_or_path: str, *, model=None, tokenizer=None,
                batch_size: int = 32, max_length: int = 256, query_max_length: int = 64, device: str | None = None,
                progress: bool = True) -> IndexReport:
    """Index (or update the index of) `source_dir` into the folder `output` with the retrieval model
    `model_name_or_path` (loaded here unless `model` and `tokenizer` are given; the name is recorded so that
    `search` can load it again). `source_dir` may also be a ready `SourceScan` (functions from elsewhere,
    e.g. a benchmark's candidate pool)."""
    import bm25s
    import faiss

    t0 = time.perf_counter()
    report = IndexReport(output)
    old = None
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise SearchIndexError(f"--output {output}: exists and is not a folder")
        if os.listdir(output):
            if not os.path.exists(os.path.join(output, "manifest.json")):
                raise SearchIndexError(f"--output {output}: a non-empty folder that is not a `mambacode index` "
                                       "folder (refusing to replace it)")
            old = CodeIndex.load(output)
    if model is None or tokenizer is None:
        model, tokenizer = load_retrieval_model(model_name_or_path, device)
    probe = fingerprint(model, tokenizer, max_length)
    scan = source_dir if isinstance(source_dir, SourceScan) else scan_sources(source_dir, progress=progress)
    if not scan.functions:
        raise SearchIndexError(f"{scan.root}: no functions found in supported-language files "
                               f"({scan.summary()})")

    cache: dict[str, np.ndarray] = {}
    if old is not None:
        if same_model(old.manifest["model_fingerprint"], probe):
            vectors = old.vectors()
            cache = {row["sha256"]: vectors[i] for i, row in enumerate(old.rows)}
        else:
            report.model_changed = True
        for path, info in scan.files.items():
            before = old.files.get(path)
            if before is None:
                report.new_files.append(path)
            elif before["sha256"] != info["sha256"]:
                report.changed_files.append(path)
            else:
                report.unchanged_files += 1
        report.deleted_files = sorted(set(old.files) - set(scan.files))
    else:
        report.new_files = list(scan.files)

    hashes = [f.sha256 for f in scan.functions]
    todo = sorted({h: i for i, h in reversed(list(enumerate(hashes))) if h not in cache}.values())
    new_vectors = _embed_all(model, tokenizer, [scan.functions[i].code for i in todo], max_length, batch_size,
                             progress) if todo else None
    for j, i in enumerate(todo):
        cache[hashes[i]] = new_vectors[j]
    matrix = np.stack([cache[h] for h in hashes]).astype(np.float32)  # unit rows (`embed`), reused bit for bit
    dense = faiss.IndexFlatIP(matrix.shape[1])
    dense.add(matrix)

    corpus_tokens = [code_tokens(f.name) * NAME_WEIGHT + code_tokens(f.code) for f in scan.functions]
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=progress)

    report.functions, report.embedded, report.reused = len(hashes), len(todo), len(hashes) - len(todo)
    report.files, report.skipped, report.summary = len(scan.files), dict(scan.skipped), scan.summary()
    manifest = {
        "format": FORMAT, "version": VERSION,
        "model": os.path.abspath(model_name_or_path) if _is_local(model_name_or_path) else model_name_or_path,
        "model_fingerprint": probe, "dim": int(matrix.shape[1]), "max_length": max_length,
        "query_max_length": query_max_length, "source_root": scan.root, "summary": scan.summary(),
        "skipped": scan.skipped, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_directory(output) as tmp:
        with open(os.path.join(tmp, "metadata.jsonl"), "w", encoding="utf-8") as fh:
            for f, h in zip(scan.functions, hashes):
                fh.write(json.dumps({"path": f.path, "line": f.line, "end_line": f.end_line, "name": f.name,
                                     "language": f.language, "sha256": h, "snippet": f.snippet},
                                    ensure_ascii=False) + "\n")
        with open(os.path.join(tmp, "files.json"), "w", encoding="utf-8") as fh:
            json.dump(scan.files, fh, indent=0, sort_keys=True)
        faiss.write_index(dense, os.path.join(tmp, "dense.faiss"))
        bm25.save(os.path.join(tmp, "bm25"), show_progress=False)
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
    report.seconds = time.perf_counter() - t0
    return report


def index_size_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names)


__all__ = ["CodeIndex", "FILES", "IndexReport", "SearchIndexError", "build_index", "index_size_bytes", "read_manifest"]
