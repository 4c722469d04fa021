"""Walk a source tree and cut every supported-language file into functions (the corpus extractor).

The walk is the corpus builder's (`mambacode.corpus.sources`): iterative (no depth limit), sorted, each real
folder and file taken once, with its limits: regular files only (a FIFO or device is never opened for a
blocking read), `MAX_FILE_BYTES` per file, no minified code (`looks_minified`), `PARSE_SECONDS` of CPU
per parse. Symlinks that stay inside the tree are followed; symlinks leading out of it are skipped unless
`follow` is set (and even then never to a folder above the link: a loop). Nothing is dropped silently: every file or
folder left out is named in `SourceScan.skipped` with its reason (a name that is not UTF-8 is shown with
`\\xNN` escapes); functions with syntax errors inside are dropped and counted. Files of unsupported
languages are counted as ignored. Hidden folders, virtual environments and installed packages (`SKIP_DIRS`)
are not walked.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

from ..corpus.parsing import PARSE_SECONDS
from ..corpus.snippets import extract_functions
from ..corpus.sources import (MAX_FILE_BYTES, MAX_LINE_CHARS, FileSkipped, SkipLog, _Walker, is_utf8_text,
                              looks_minified, printable, read_regular_file)
from ..languages import language_of

#: folders never walked (version control, caches, virtual environments, installed dependencies)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox",
                       ".mypy_cache", ".pytest_cache", "site-packages", "dist-packages"})
#: the walk's skip reasons (`mambacode.corpus.sources`) as the index reports them
WALK_REASONS = {
    "symlink_outside_root": "symlink leading out of the tree (not followed; use --follow)",
    "symlink_to_ancestor": "symlink to a folder that holds it (a loop; not followed, even with --follow)",
    "symlink_loop": "symlink loop (folder already on the path)",
    "duplicate_real_dir": "folder already indexed under another path (a symlink)",
    "duplicate_real_path": "file already indexed under another path (a symlink or hard link)",
    "unreadable_dir": "unreadable folder (permissions, or its path is over the system's limit)",
    "broken_symlink": "broken symlink",
    "not_regular_file": "not a regular file (a FIFO, device or socket)",
}
SYMLINK_REASONS = frozenset({"symlink_outside_root", "symlink_to_ancestor"})
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


def _decode(data: bytes, language: str) -> str:
    """Text of a source file: UTF-8, or for Python the encoding its PEP 263 `coding:` line declares."""
    if language == "python" and b"coding" in b"\n".join(data.split(b"\n", 2)[:2]):
        import io
        import tokenize

        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    return data.decode("utf-8")


def scan_sources(root: str, progress: bool = False, follow: bool = False) -> SourceScan:
    """Every function and method of every supported-language file below `root` (sorted walk; the module
    docstring has the rules). `follow`: also follow symlinks that lead out of the tree."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: not a directory (expected the source tree to index)")
    root = os.path.abspath(root)
    scan = SourceScan(root)
    log = SkipLog()
    label = "\0"  # the walker names skips `label/relpath`: stripped below
    walker = _Walker(log, MAX_FILE_BYTES, skip_tests=False, skip_dirs=SKIP_DIRS, confine=True, follow=follow)
    paths = walker.walk(root, label)
    if progress:
        from tqdm.auto import tqdm

        paths = tqdm(paths, desc="parse", unit="file")
    for full, rel in paths:
        language = language_of(full)
        if language is None:
            scan.ignored_files += 1
            continue
        if not is_utf8_text(rel):
            scan.skipped[printable(rel)] = "file name is not UTF-8 (it could not be stored or shown)"
            continue
        try:
            st = os.stat(full)
            if (st.st_dev, st.st_ino) in walker.seen.files:
                scan.skipped[rel] = WALK_REASONS["duplicate_real_path"]
                continue
            walker.seen.files.add((st.st_dev, st.st_ino))
            data = read_regular_file(full)
        except OSError as exc:
            scan.skipped[rel] = f"unreadable ({exc.strerror or exc})"
            continue
        except FileSkipped as exc:
            scan.skipped[rel] = str(exc)
            continue
        if looks_minified(data, language, rel):
            scan.skipped[rel] = f"minified (a .min.js file, or lines over {MAX_LINE_CHARS:,} characters on average)"
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
        try:
            spans = extract_functions(text, language, full, PARSE_SECONDS)
        except TimeoutError:
            scan.skipped[rel] = f"parse timeout (tree-sitter spent over {PARSE_SECONDS:g} s of CPU time on it)"
            continue
        clean = [s for s in spans if not s.has_error]
        scan.broken_functions += len(spans) - len(clean)
        if spans and not clean:
            scan.skipped[rel] = "syntax errors"
            continue
        scan.files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "language": language, "functions": len(clean)}
        scan.functions.extend(SourceFunction(rel, s.line, s.end_line, s.name, language, s.code) for s in clean)
    for reason, where in log.named:
        if reason != "empty_dir":  # nothing is lost in an empty folder
            scan.skipped[where[len(label) + 1:] or "."] = WALK_REASONS.get(reason, reason)
    scan.skipped = dict(sorted(scan.skipped.items()))
    return scan


def symlinks_not_followed(scan: SourceScan) -> int:
    """How many entries the walk skipped because they are symlinks leading out of the tree."""
    return sum(reason == WALK_REASONS["symlink_outside_root"] for reason in scan.skipped.values())


__all__ = ["SKIP_DIRS", "SourceFunction", "SourceScan", "WALK_REASONS", "scan_sources", "symlinks_not_followed"]
