"""Walk a source tree and cut every supported-language file into functions (the corpus extractor).

Nothing is dropped silently: files that cannot be read or decoded, and files whose every function holds a
syntax error, are skipped and counted by reason; functions with syntax errors inside are dropped and counted.
Files of unsupported languages are counted as ignored. Hidden folders, virtual environments and installed
packages (`SKIP_DIRS`) are not walked.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

from ..corpus.snippets import extract_functions
from ..languages import language_of

#: folders never walked (version control, caches, virtual environments, installed dependencies)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox",
                       ".mypy_cache", ".pytest_cache", "site-packages", "dist-packages"})
SNIPPET_LINES = 4


@dataclass(frozen=True)
class SourceFunction:
    """One indexed function: where it is, what it is called, and a hash of its text (the embedding key)."""

    path: str  # relative to the source root, '/'-separated
    line: int
    end_line: int
    name: str
    language: str
    code: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.code.encode("utf-8", errors="surrogatepass")).hexdigest()

    @property
    def snippet(self) -> str:
        lines = [ln for ln in self.code.splitlines() if ln.strip()]
        return "\n".join(lines[:SNIPPET_LINES])


@dataclass
class SourceScan:
    """What a walk found: functions in (path, line) order, per-file content hashes and the counts."""

    root: str
    functions: list[SourceFunction] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)  # path -> {"sha256", "language", "functions"}
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    ignored_files: int = 0
    broken_functions: int = 0

    def summary(self) -> dict:
        return {"files": len(self.files), "functions": len(self.functions),
                "skipped_files": len(self.skipped), "skipped_by_reason": dict(Counter(self.skipped.values())),
                "functions_with_syntax_errors": self.broken_functions, "ignored_files": self.ignored_files}


def _walk(root: str):
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            yield os.path.join(folder, name)


def _decode(data: bytes, language: str) -> str:
    """Text of a source file: UTF-8, or for Python the encoding its PEP 263 `coding:` line declares."""
    if language == "python" and b"coding" in b"\n".join(data.split(b"\n", 2)[:2]):
        import io
        import tokenize

        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    return data.decode("utf-8")


def scan_sources(root: str, progress: bool = False) -> SourceScan:
    """Every function and method of every supported-language file below `root` (sorted walk)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: not a directory (expected the source tree to index)")
    root = os.path.abspath(root)
    scan = SourceScan(root)
    paths = list(_walk(root))
    if progress:
        from tqdm.auto import tqdm

        paths = tqdm(paths, desc="parse", unit="file")
    for full in paths:
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        language = language_of(full)
        if language is None:
            scan.ignored_files += 1
            continue
        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            scan.skipped[rel] = f"unreadable ({exc.strerror or exc})"
            continue
        try:
            text = _decode(data, language)
        except UnicodeDecodeError as exc:
            utf8 = exc.encoding.replace("-", "").lower() == "utf8"
            scan.skipped[rel] = "not UTF-8" if utf8 else f"not {exc.encoding} (its declared encoding)"
            continue
        except SyntaxError as exc:  # tokenize.detect_encoding: an unknown or inconsistent `coding:` line
            scan.skipped[rel] = f"bad encoding declaration ({exc.msg})"
            continue
        spans = extract_functions(text, language, full)
        clean = [s for s in spans if not s.has_error]
        scan.broken_functions += len(spans) - len(clean)
        if spans and not clean:
            scan.skipped[rel] = "syntax errors"
            continue
        scan.files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "language": language, "functions": len(clean)}
        scan.functions.extend(SourceFunction(rel, s.line, s.end_line, s.name, language, s.code) for s in clean)
    return scan


__all__ = ["SKIP_DIRS", "SourceFunction", "SourceScan", "scan_sources"]
