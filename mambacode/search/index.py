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

Integrity (docs/search-index-robustness.md): manifest.json, written last, records the size and SHA-256 of every
other file of the folder and ends with the SHA-256 of its own text before that field. `CodeIndex.load` reads
each file once, checks it against the manifest, and parses the checked bytes; damage gives a one-line
`SearchIndexError` naming the file. `build_index` over a damaged index rebuilds it, reusing the stored vectors
only when metadata.jsonl and dense.faiss check out. A reader whose files changed under it (a rebuild swapped a
new folder in) sees the manifest change and reads again, once; so it sees one version or says to retry.
Indexes written before checksums (no `checksums` in the manifest) still load, unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from ..atomic import atomic_directory
from .model import embed, fingerprint, load_retrieval_model, same_model
from .tokenize import code_tokens

FORMAT = "mambacode-search-index"
VERSION = 1
FILES = ("manifest.json", "metadata.jsonl", "files.json", "dense.faiss", "bm25")
MANIFEST = "manifest.json"
#: files an index folder may also hold (the query encoder export, `mambacode.search.encoder.FILE`)
OPTIONAL_FILES = ("query_encoder.npz",)
SELF_CHECKSUM = "manifest_sha256"  # the manifest's last field: SHA-256 of its text before that field
REPAIR = "re-run `mambacode index` to repair it"
NAME_WEIGHT = 3  # the qualified name counts as this many extra occurrences for BM25 (a poor man's BM25F)
EMBED_CHUNK = 1024  # texts per `encode` call: bounds memory and drives the progress bar
#: texts of `max_length` tokens per batch (shorter texts: as many as fit the same token budget). 16 x 256 =
#: 4,096 tokens measured 1.1-1.2x faster than 32 x 256 for the s4d student on CPU (bf16, 1 and 2 threads)
DEFAULT_BATCH_SIZE = 16
PRECISIONS = ("auto", "float32", "bf16")


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
    repaired: list[str] = field(default_factory=list)  # the damage found in the previous index, now rebuilt
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _is_local(name: str) -> bool:
    return os.path.isdir(name)


class CodeIndex:
    """A loaded index folder: `manifest`, `rows` (metadata), `files`, `dense` (faiss) and `bm25` (the bm25s files,
    read by `lexical.LexicalIndex`);
    `extra` holds the checked bytes of the folder's other files (e.g. the query encoder export)."""

    def __init__(self, path: str, manifest: dict, rows: list[dict], files: dict, dense, bm25, extra=None):
        self.path, self.manifest, self.rows, self.files = path, manifest, rows, files
        self.dense, self.bm25 = dense, bm25
        self.extra: dict[str, bytes] = extra or {}
        self.damaged: list[str] = []  # with `load(..., tolerate_damage=True)`: what could not be read

    @classmethod
    def load(cls, path: str, tolerate_damage: bool = False) -> "CodeIndex":
        """The index of the folder `path`, every file checked against the manifest's checksums.

        Raises `SearchIndexError` naming the first damaged or missing file. If the manifest changed while the
        files were read (a rebuild swapped a new folder in), reads again once. `tolerate_damage`: return what
        checks out instead, with `damaged` listing the rest (a damaged manifest still raises: nothing can be
        checked without it); `build_index` uses it to reuse intact vectors.
        """
        if not os.path.isdir(path):
            raise SearchIndexError(f"{path}: no index folder here (build one with `mambacode index SRC_DIR "
                                   f"--model MODEL --output {path}`)")
        for _ in range(2):
            raw = _manifest_bytes(path)
            try:
                index = cls._read(path, raw, tolerate_damage)
            except SearchIndexError:
                if _manifest_bytes(path, missing_ok=True) == raw:
                    raise  # the same version throughout: the damage is real
                continue
            if _manifest_bytes(path, missing_ok=True) == raw:
                return index
        raise SearchIndexError(f"{path}: the index changed while it was read, twice (another `mambacode index` is "
                               "rebuilding it); try again when it has finished")

    @classmethod
    def _read(cls, path: str, raw: bytes, tolerate_damage: bool) -> "CodeIndex":
        import faiss

        from .lexical import LexicalIndex  # numpy only: importing bm25s would import scipy for nothing

        manifest = parse_manifest(path, raw)
        sums = manifest.get("checksums")  # None: an index written before checksums
        damaged = []

        def part(name, parse):
            try:
                return parse(_checked_bytes(path, name, sums))
            except SearchIndexError as exc:
                if not tolerate_damage:
                    raise
                damaged.append(str(exc))
                return None

        def parse_rows(data):
            return _parse(path, "metadata.jsonl", lambda: [json.loads(line) for line in
                                                           data.decode("utf-8").splitlines() if line.strip()])

        def parse_dense(data):
            index = _parse(path, "dense.faiss", lambda: faiss.deserialize_index(np.frombuffer(data, np.uint8)))
            if index.d != manifest["dim"]:
                raise SearchIndexError(f"{os.path.join(path, 'dense.faiss')}: vectors of size {index.d}, but "
                                       f"manifest.json says {manifest['dim']} ({REPAIR})")
            return index

        rows = part("metadata.jsonl", parse_rows)
        files = part("files.json", lambda data: _parse(path, "files.json", lambda: json.loads(data.decode("utf-8"))))
        dense = part("dense.faiss", parse_dense)
        if rows is not None and dense is not None and dense.ntotal != len(rows):
            msg = (f"{os.path.join(path, 'dense.faiss')}: {dense.ntotal} vectors, but metadata.jsonl has {len(rows)} "
                   f"rows ({REPAIR})")
            if not tolerate_damage:
                raise SearchIndexError(msg)
            damaged.append(msg)
            rows = dense = None
        bm25_names = [n for n in sums if n.startswith("bm25/")] if sums is not None else []
        bm25_ok = True
        for name in bm25_names:
            bm25_ok = part(name, lambda data: True) is not None and bm25_ok
        bm25 = None
        if bm25_ok:
            folder = os.path.join(path, "bm25")
            bm25 = part("bm25", lambda _: _parse(path, "bm25", lambda: LexicalIndex.load(folder)))
        extra = {}
        for name in sorted(sums or ()):
            if name not in FILES and not name.startswith("bm25/"):
                data = part(name, lambda data: data)
                if data is not None:
                    extra[name] = data
        index = cls(path, manifest, rows, files, dense, bm25, extra)
        index.damaged = damaged
        return index

    def vectors(self) -> np.ndarray:
        """The stored embeddings, (n, d) float32, row i = metadata row i."""
        if not self.dense.ntotal:
            return np.zeros((0, self.dense.d), "float32")
        return self.dense.reconstruct_n(0, self.dense.ntotal)


def _manifest_bytes(path: str, missing_ok: bool = False) -> bytes | None:
    file = os.path.join(path, MANIFEST)
    try:
        with open(file, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise SearchIndexError(f"{path}: no manifest.json, so not a `mambacode index` folder (or a damaged one: "
                               f"{REPAIR})") from None
    except OSError as exc:
        if missing_ok:
            return None
        raise SearchIndexError(f"{file}: unreadable ({exc.strerror or exc})") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked_bytes(path: str, name: str, sums: dict | None) -> bytes:
    """The bytes of `path/name` ('bm25' alone: nothing, its files are checked one by one), checked against the
    manifest's `sums` (not checked when None: an index from before checksums)."""
    file = os.path.join(path, *name.split("/"))
    if name == "bm25":
        if not os.path.isdir(file):
            raise SearchIndexError(f"{file}: missing (the index is damaged; {REPAIR})")
        return b""
    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SearchIndexError(f"{file}: missing (the index is damaged; {REPAIR})") from None
    except OSError as exc:
        raise SearchIndexError(f"{file}: unreadable ({exc.strerror or exc}; {REPAIR})") from None
    if sums is None:
        return data
    want = sums.get(name)
    if not isinstance(want, dict):
        raise SearchIndexError(f"{file}: manifest.json records no checksum for it ({REPAIR})")
    if len(data) != want.get("bytes"):
        raise SearchIndexError(f"{file}: {len(data):,} bytes, manifest.json records {want.get('bytes'):,} "
                               f"(truncated or damaged; {REPAIR})")
    if _sha256(data) != want.get("sha256"):
        raise SearchIndexError(f"{file}: its SHA-256 differs from the one manifest.json records (damaged; {REPAIR})")
    return data


def _parse(path: str, name: str, parse):
    """`parse()`, with any failure as a one-line `SearchIndexError` naming `path/name`."""
    try:
        return parse()
    except Exception as exc:  # noqa: BLE001  (json, faiss and bm25s each raise their own kinds)
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SearchIndexError(f"{os.path.join(path, name)}: cannot be read ({detail[:200]}; {REPAIR})") from None


def parse_manifest(path: str, raw: bytes) -> dict:
    """The manifest of the index folder `path` from its bytes `raw`: checked against its own checksum, then its
    format and version."""
    file = os.path.join(path, MANIFEST)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SearchIndexError(f"{file}: not valid JSON ({exc}; damaged? {REPAIR})") from None
    if not isinstance(manifest, dict):
        raise SearchIndexError(f"{file}: expected a JSON object, got {type(manifest).__name__} ({REPAIR})")
    if SELF_CHECKSUM in manifest or "checksums" in manifest:
        end = raw.rfind(b',\n "' + SELF_CHECKSUM.encode() + b'": "')
        if (end < 0 or _sha256(raw[:end]) != manifest.get(SELF_CHECKSUM)
                or not isinstance(manifest.get("checksums"), dict)):
            raise SearchIndexError(f"{file}: its text differs from the checksum it records (damaged; {REPAIR})")
    if manifest.get("format") != FORMAT:
        raise SearchIndexError(f"{file}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise SearchIndexError(f"{file}: index version {manifest.get('version')}, this mambacode reads version "
                               f"{VERSION} (re-run `mambacode index`)")
    return manifest


def read_manifest(path: str) -> dict:
    """The checked manifest of the index folder `path`."""
    return parse_manifest(path, _manifest_bytes(path))


def write_manifest(folder: str, manifest: dict) -> None:
    """Write `folder/manifest.json`: `manifest`, a fresh `build_id`, the size and SHA-256 of every other file
    below `folder` (`checksums`), and last `manifest_sha256`, the SHA-256 of the text before that field."""
    sums = {}
    for base, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(base, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if rel == MANIFEST:
                continue
            digest, size = hashlib.sha256(), 0
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
            sums[rel] = {"bytes": size, "sha256": digest.hexdigest()}
    body = json.dumps(dict(manifest, build_id=uuid.uuid4().hex, checksums=sums), indent=1, ensure_ascii=True)
    head = body[:-2]  # without the closing "\n}"
    text = head + f',\n "{SELF_CHECKSUM}": "{_sha256(head.encode())}"\n}}\n'
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as fh:
        fh.write(text)


def _is_index_folder(folder: str) -> bool:
    """Whether a non-empty folder is an index (possibly damaged) that `build_index` may replace: its manifest
    says so, or it holds only the files an index holds."""
    names = set(os.listdir(folder))
    if names <= set(FILES) | set(OPTIONAL_FILES) and names & {"manifest.json", "metadata.jsonl", "dense.faiss"}:
        return True
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as fh:
            return json.loads(fh.read().decode("utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def configure_index_threads(num_threads: int | str | None = None):
    """Threads for `mambacode index` (call before torch loads): `mambacode.threads.configure_threads`, i.e. the
    OpenMP wait policy PASSIVE and `num_threads`, else OMP_NUM_THREADS, else the cores other work leaves free.
    Measured on 2 busy cores (load average 5-8): spinning OpenMP threads wait out scheduler slices beside
    other work. Returns the `ThreadPlan`."""
    from ..threads import configure_threads

    return configure_threads(num_threads, default="auto")


def index_precision(model, precision: str = "auto") -> str:
    """"float32" or "bf16": the precision `build_index` embeds functions in. "auto": bf16 for a MambaCode model
    on a CPU with native bfloat16 (AVX512-BF16 or AMX), float32 otherwise (GPUs, sentence-transformers
    models). Measured on 3,000 random functions of the standard library with the distilled s4d student: cosine
    to the float32 embedding min 0.99991, mean 0.999996, at 3x the speed (docs/benchmarks.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from ..devices import cpu_bf16_supported
    from .model import is_sentence_transformer

    if is_sentence_transformer(model) or next(model.parameters()).device.type != "cpu":
        return "float32"
    return "bf16" if cpu_bf16_supported() else "float32"


def _batch_for(tokenizer, texts: list[str], max_length: int, batch_size: int) -> int:
    """Texts per batch for `texts` (of similar length): as many as fit the token budget of `batch_size` texts
    of `max_length` tokens, so short functions go in larger batches (fewer per-batch costs: measured 1.07x at
    one thread, 1.9x at two contended threads for 50-token functions) while peak memory stays that of a batch
    of the longest texts."""
    try:
        longest = max(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])
    except Exception:  # noqa: BLE001  (a tokenizer without the batch call: the plain batch size)
        return batch_size
    return max(batch_size, min(len(texts), batch_size * max_length // max(longest, 1)))


def _embed_all(model, tokenizer, texts: list[str], max_length: int, batch_size: int, progress: bool,
               precision: str = "float32") -> np.ndarray:
    """Embeddings of `texts` in order; long-first chunks keep the padding of each batch small, and each batch
    holds up to `batch_size * max_length` padded tokens (a MambaCode model: `encode`'s `max_tokens`, per batch;
    others: `_batch_for`, per chunk). `precision` "bf16": CPU bfloat16 autocast (`index_precision`)."""
    from .model import is_sentence_transformer

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="embed", unit="fn")
    for start in range(0, len(order), EMBED_CHUNK):
        idx = order[start:start + EMBED_CHUNK]
        chunk = [texts[i] for i in idx]
        if is_sentence_transformer(model):
            vec = embed(model, tokenizer, chunk, max_length, _batch_for(tokenizer, chunk, max_length, batch_size))
        else:
            vec = embed(model, tokenizer, chunk, max_length, len(chunk), bf16=precision == "bf16",
                        max_tokens=batch_size * max_length)
        if out is None:
            out = np.zeros((len(texts), vec.shape[1]), np.float32)
        out[idx] = vec
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out


def build_index(source_dir: str | SourceScan, output: str, model_name_or_path: str, *, model=None, tokenizer=None,
                batch_size: int = DEFAULT_BATCH_SIZE, max_length: int = 256, query_max_length: int = 64,
                device: str | None = None,
                progress: bool = True, follow_symlinks: bool = False, precision: str = "float32") -> IndexReport:
    """Index (or update the index of) `source_dir` into the folder `output` with the retrieval model
    `model_name_or_path` (loaded here unless `model` and `tokenizer` are given; the name is recorded so that
    `search` can load it again). `source_dir` may also be a ready `SourceScan` (functions from elsewhere,
    e.g. a benchmark's candidate pool). `follow_symlinks`: follow symlinks that lead out of the tree too.
    `precision` ("float32", "bf16" or "auto", see `index_precision`; `mambacode index` passes "auto") is what
    the functions are embedded in (recorded in the manifest); the fingerprint and the query encoder stay float32.
    A damaged index in `output` is rebuilt (`IndexReport.repaired` says what was wrong)."""
    import bm25s
    import faiss

    from .encoder import export_query_encoder
    from .sources import SourceScan, scan_sources, symlinks_not_followed  # imports the corpus tools: not at search

    t0 = time.perf_counter()
    report = IndexReport(output)
    old = None
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise SearchIndexError(f"--output {output}: exists and is not a folder")
        if os.listdir(output):
            if not _is_index_folder(output):
                raise SearchIndexError(f"--output {output}: a non-empty folder that is not a `mambacode index` "
                                       "folder (refusing to replace it)")
            try:
                old = CodeIndex.load(output, tolerate_damage=True)
            except SearchIndexError as exc:  # its manifest: nothing in it can be checked, so nothing is reused
                report.repaired.append(str(exc))
            else:
                report.repaired.extend(old.damaged)
    if model is None or tokenizer is None:
        model, tokenizer = load_retrieval_model(model_name_or_path, device)
    precision = index_precision(model, precision)
    probe = fingerprint(model, tokenizer, max_length)
    scan = source_dir if isinstance(source_dir, SourceScan) else scan_sources(source_dir, progress=progress,
                                                                              follow=follow_symlinks)
    if not scan.functions:
        links = symlinks_not_followed(scan)
        hint = (f"; {links} symlinks lead out of the tree and were not followed: add --follow to index what they "
                "point to" if links else "")
        raise SearchIndexError(f"{scan.root}: no functions found in supported-language files "
                               f"({scan.summary()}){hint}")

    cache: dict[str, np.ndarray] = {}
    if old is not None:
        if not same_model(old.manifest["model_fingerprint"], probe):
            report.model_changed = True
        elif old.rows is not None and old.dense is not None:  # both checked out: their vectors are reused
            vectors = old.vectors()
            cache = {row["sha256"]: vectors[i] for i, row in enumerate(old.rows)}
        for path, info in scan.files.items():
            before = (old.files or {}).get(path)
            if before is None:
                report.new_files.append(path)
            elif before["sha256"] != info["sha256"]:
                report.changed_files.append(path)
            else:
                report.unchanged_files += 1
        report.deleted_files = sorted(set(old.files or ()) - set(scan.files))
    else:
        report.new_files = list(scan.files)

    hashes = [f.sha256 for f in scan.functions]
    todo = sorted({h: i for i, h in reversed(list(enumerate(hashes))) if h not in cache}.values())
    new_vectors = _embed_all(model, tokenizer, [scan.functions[i].code for i in todo], max_length, batch_size,
                             progress, precision) if todo else None
    for j, i in enumerate(todo):
        cache[hashes[i]] = new_vectors[j]
    matrix = np.stack([cache[h] for h in hashes]).astype(np.float32)  # unit rows (`embed`), reused bit for bit
    dense = faiss.IndexFlatIP(matrix.shape[1])
    dense.add(matrix)

    corpus_tokens = [code_tokens(f.name) * NAME_WEIGHT + code_tokens(f.code) for f in scan.functions]
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)  # seconds, and bm25s shows four bars for it

    report.functions, report.embedded, report.reused = len(hashes), len(todo), len(hashes) - len(todo)
    report.files, report.skipped, report.summary = len(scan.files), dict(scan.skipped), scan.summary()
    manifest = {
        "format": FORMAT, "version": VERSION,
        "model": os.path.abspath(model_name_or_path) if _is_local(model_name_or_path) else model_name_or_path,
        "model_fingerprint": probe, "dim": int(matrix.shape[1]), "max_length": max_length,
        "query_max_length": query_max_length, "precision": precision, "source_root": scan.root,
        "summary": scan.summary(),
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
        export_query_encoder(tmp, model, tokenizer, max(max_length, query_max_length))  # search without torch
        write_manifest(tmp, manifest)  # last: its checksums cover every file written above
    report.seconds = time.perf_counter() - t0
    return report


def index_size_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names)


__all__ = ["CodeIndex", "DEFAULT_BATCH_SIZE", "FILES", "IndexReport", "PRECISIONS", "SearchIndexError", "build_index",
           "configure_index_threads", "index_precision", "index_size_bytes", "parse_manifest", "read_manifest",
           "write_manifest"]
