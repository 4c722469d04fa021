"""Where corpus source files come from: the standard library, installed packages, user directories.

A :class:`Source` records what the dataset card must say about an input (name, version, licence); a
:class:`FileTask` is one file to parse, tagged with the *package* it belongs to (the unit the splits keep
apart). Walking never crashes on bad input: unreadable, non-UTF-8 (content or name), huge, looping or
empty inputs, and files reached a second time through symlinks, are skipped, counted by reason and named in
a :class:`SkipLog`. :func:`missing_corpus_packages` says whether this machine has the pinned ``[corpus]``
sources, on which the corpus (and every table built from it) depends.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import tarfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Iterable, Iterator

from .parsing import language_of

#: Permissively licensed, pure-Python distributions whose installed sources feed the corpus, with the
#: versions the README's tables were built from. Keep equal to the ``corpus`` extra in setup.cfg (a test
#: checks it): the corpus depends on exactly which of them are installed, at which version.
CORPUS_PINS = {
    "anyio": "4.16.0",
    "attrs": "26.1.0",
    "babel": "2.18.0",
    "boltons": "26.2.0",
    "click": "8.5.1",
    "dask": "2026.8.0",
    "django": "5.2.19",
    "flask": "3.1.3",
    "h11": "0.16.0",
    "idna": "3.20",
    "itsdangerous": "2.2.0",
    "jinja2": "3.1.6",
    "markdown": "3.11.3",
    "markdown-it-py": "4.3.0",
    "more-itertools": "11.2.1",
    "mpmath": "1.3.0",
    "networkx": "3.6.1",
    "nltk": "3.10.4",
    "pydantic": "2.14.4",
    "pygments": "2.21.0",
    "pyparsing": "3.3.3",
    "pytest": "9.2.0",
    "requests": "2.34.2",
    "rich": "15.0.0",
    "sqlparse": "0.6.1",
    "sympy": "1.14.0",
    "toolz": "1.2.0",
    "tornado": "6.6.1",
    "typer": "0.29.2",
    "urllib3": "2.8.0",
    "werkzeug": "3.1.9",
    "xarray": "2026.9.0",
}
CORPUS_PACKAGES = tuple(CORPUS_PINS)

def corpus_package_versions(packages: Iterable[str] | None = None) -> dict[str, str | None]:
    """Installed version of each corpus package (default: the ``[corpus]`` pins), None when not installed."""
    out: dict[str, str | None] = {}
    for name in packages if packages is not None else CORPUS_PINS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _same_version(a: str, b: str) -> bool:
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with pip/transformers
        return a == b
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def pin_problems(versions: dict[str, str | None]) -> list[str]:
    """One line per ``[corpus]`` package of ``versions`` (name -> installed version or None) that is not
    installed at its pinned version; names without a pin are left out."""
    out = []
    for name, installed in versions.items():
        pinned = CORPUS_PINS.get(name)
        if pinned is None:
            continue
        if installed is None:
            out.append(f"{name}=={pinned} (not installed)")
        elif not _same_version(installed, pinned):
            out.append(f"{name}=={pinned} (installed: {installed})")
    return out


def missing_corpus_packages() -> list[str]:
    """The ``[corpus]`` pins this machine does not satisfy, one line each; empty when all are met.

    E.g. ``["rich==15.0.0 (not installed)", "sympy==1.14.0 (installed: 1.13.3)"]``. A build without them
    reads other sources and gives another corpus: run ``pip install -e '.[corpus]'``.
    """
    return pin_problems(corpus_package_versions())


#: the walk's limits, shared by the corpus builder, `mambacode index` and `read_snippets`: larger files are
#: skipped as ``huge_file`` (generated code, data), and so are files whose average line is longer (``minified``)
MAX_FILE_BYTES = 1_000_000
MAX_LINE_CHARS = 1000


def looks_minified(data: bytes, language: str, path: str, max_line_chars: int = MAX_LINE_CHARS) -> bool:
    """Minified or generated code: a ``.min.js`` file or, outside Python, an average line over ``max_line_chars``."""
    if language == "python":
        return False
    return path.endswith(".min.js") or len(data) / (data.count(b"\n") + 1) > max_line_chars


class FileSkipped(Exception):
    """A file the walk does not read; ``reason`` is its skip reason (``not_regular_file``, ``huge_file``,
    ``unreadable_file``) and the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def read_regular_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes``, else ``FileSkipped``.

    Opened without blocking and checked on the open descriptor, so a FIFO or device (or one swapped in after
    the walk looked) can neither hang the read nor fill memory; at most ``max_bytes + 1`` bytes are read.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise FileSkipped("unreadable_file", f"unreadable ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileSkipped("not_regular_file", "not a regular file (a FIFO, device or socket)")
        if st.st_size > max_bytes:
            raise FileSkipped("huge_file", f"{st.st_size:,} bytes, over the {max_bytes:,}-byte cap")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise FileSkipped("unreadable_file", f"unreadable ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileSkipped("huge_file", f"over the {max_bytes:,}-byte cap (it grew while read)")
    return data


#: directory names whose files are tests, examples or vendored copies, not library code
TEST_DIR_NAMES = frozenset({"test", "tests", "testing", "idle_test", "__tests__", "__mocks__", "spec"})
SKIP_DIR_NAMES = frozenset(
    {"site-packages", "dist-packages", "__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "venv"}
)
#: standard-library folders that are not library code (test suites, demos, the IDLE GUI's tests)
STDLIB_SKIP = frozenset({"turtledemo", "ensurepip"})


@dataclass
class Source:
    """One input of the corpus, as the dataset card lists it."""

    name: str
    version: str
    license: str
    kind: str  # "stdlib" | "package" | "directory" | "tarball"
    path: str
    num_files: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileTask:
    """One file for a worker: where it is (or its bytes, for tarball members) and what it belongs to."""

    index: int
    source: str
    package: str
    path: str  # the path shown in the dataset (relative to the source)
    language: str
    abspath: str | None = None
    data: bytes | None = field(default=None, repr=False)


def is_test_path(relpath: str) -> bool:
    """Test files are not library code: ``tests/`` folders, ``test_*.py``, ``*_test.py``, ``*.spec.js``..."""
    parts = relpath.replace("\\", "/").split("/")
    if any(p in TEST_DIR_NAMES for p in parts[:-1]):
        return True
    name = parts[-1].lower()
    stem = name.split(".", 1)[0]
    return (
        stem.startswith("test_")
        or stem.endswith("_test")
        or stem in {"test", "tests", "conftest"}
        or ".test." in name
        or ".spec." in name
    )


# ----------------------------------------------------------------------------------------------- licences
def _dist_license(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    classifiers = [c for c in classifiers if c and c != "OSI Approved"]
    if classifiers:
        return "; ".join(sorted(set(classifiers)))
    lic = (meta.get("License") or "").strip()
    if lic and "\n" not in lic and len(lic) < 80:
        return lic
    return "unknown"


def _package_json(data: bytes, where: str) -> dict:
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: package.json is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{where}: package.json must hold a JSON object, got {type(info).__name__}")
    lic = info.get("license") or info.get("licenses") or "unknown"
    if isinstance(lic, dict):
        lic = lic.get("type", "unknown")
    if isinstance(lic, list):
        lic = " OR ".join(str(x.get("type", x)) if isinstance(x, dict) else str(x) for x in lic)
    # JSON may spell lone surrogates (\\ud800): keep every field storable
    return {"name": printable(str(info.get("name") or "")), "version": printable(str(info.get("version") or "unknown")),
            "license": printable(str(lic))}


# ----------------------------------------------------------------------------------------------- skip log
def printable(path: str | bytes) -> str:
    """A path or name as text that always encodes to UTF-8: undecodable bytes become ``\\xNN`` escapes.

    File names on POSIX are bytes; Python hands undecodable ones over as lone surrogates
    (``surrogateescape``), which no dataset, JSON file or terminal can take as they are.
    """
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that did not come from a file name
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_utf8_text(text: str) -> bool:
    """True when ``text`` encodes to UTF-8 (no lone surrogates from undecodable names or escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SkipLog:
    """What a build left out: a count per reason, and the printable name of every skipped file or folder."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.named: list[tuple[str, str]] = []

    def add(self, reason: str, where: str | bytes | None = None) -> None:
        self.counts[reason] += 1
        if where is not None:
            self.named.append((reason, printable(where)))


@dataclass
class _Seen:
    """Real folders and files already taken, by ``(device, inode)``: a symlink DAG reaches each once."""

    dirs: set = field(default_factory=set)
    files: set = field(default_factory=set)


# ----------------------------------------------------------------------------------------------- walking
class _Walker:
    """Deterministic, loop-safe directory walk that names and counts what it skips.

    Iterative (an explicit stack of open folders), so a deep tree cannot exhaust the recursion limit; a
    folder or file reached again through a symlink (a loop, or a DAG of links) is walked once.
    """

    def __init__(self, log: SkipLog, max_file_bytes: int, skip_tests: bool, skip_dirs=frozenset(), seen=None,
                 confine: bool = False, follow: bool = False):
        self.log = log
        self.max_file_bytes = max_file_bytes
        self.skip_tests = skip_tests
        self.skip_dirs = SKIP_DIR_NAMES | set(skip_dirs)
        self.seen = seen if seen is not None else _Seen()
        self.confine = confine  # symlinks leaving the walked root are skipped (``symlink_outside_root``) ...
        self.follow = follow  # ... unless asked to follow them (never to the root's own ancestors, e.g. ``/``)

    def _link_ok(self, entry, root_real: str, where: str) -> bool:
        """False (skipped and logged) for a symlink the walk must not take: one leaving ``root_real`` unless
        ``follow``, and, even then, one to a folder holding the link itself (``/``, the tree's parents)."""
        if not self.confine or not entry.is_symlink():
            return True
        target = os.path.realpath(entry.path)
        if _inside(target, root_real):
            return True
        if not self.follow:
            self.log.add("symlink_outside_root", where)
            return False
        here = os.path.realpath(os.path.dirname(entry.path))
        if _inside(root_real, target) or _inside(here, target):
            self.log.add("symlink_to_ancestor", where)
            return False
        return True

    def _open(self, path: str, rel: str, ancestors: tuple, label: str):
        """``(entries, rel, ancestors)`` of a folder to descend into, or None (skipped and logged)."""
        where = f"{label}/{rel}" if rel else label
        try:
            st = os.stat(path)
        except OSError:
            self.log.add("unreadable_dir", where)
            return None
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            self.log.add("symlink_loop", where)
            return None
        if key in self.seen.dirs:
            self.log.add("duplicate_real_dir", where)
            return None
        self.seen.dirs.add(key)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.log.add("unreadable_dir", where)
            return None
        if not entries:
            self.log.add("empty_dir", where)
            return None
        return iter(entries), rel, ancestors + (key,)

    def walk(self, root: str, label: str) -> Iterator[tuple[str, str]]:
        """Yield ``(abspath, relpath)`` of regular files under ``root``, sorted by name at every level.

        ``label`` names the source in skip records (``label/relpath``).
        """
        root_real = os.path.realpath(root)
        first = self._open(root, "", (), label)
        stack = [first] if first is not None else []
        while stack:
            entries, rel, ancestors = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            relpath = f"{rel}/{entry.name}" if rel else entry.name
            if not self._link_ok(entry, root_real, f"{label}/{relpath}"):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if entry.name in self.skip_dirs or entry.name.startswith(".") or entry.name.startswith("config-3"):
                    continue
                if self.skip_tests and entry.name in TEST_DIR_NAMES:
                    for f in _source_files(entry.path):
                        self.log.add("test_file", f"{label}/{relpath}/{f}")
                    continue
                frame = self._open(entry.path, relpath, ancestors, label)
                if frame is not None:
                    stack.append(frame)
            elif is_file:
                yield entry.path, relpath
            elif entry.is_symlink() and not os.path.exists(entry.path):
                self.log.add("broken_symlink", f"{label}/{relpath}")
            else:
                self.log.add("not_regular_file", f"{label}/{relpath}")


def _inside(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or lies below it (both absolute, symlinks resolved)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _source_files(path: str) -> list[str]:
    """Source files under a skipped test folder (relative, sorted), so the build can name each.

    An explicit stack rather than ``os.walk`` (recursive before Python 3.12); links are not followed.
    """
    out, stack = [], [("", path)]
    while stack:
        rel, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            sub = f"{rel}/{e.name}" if rel else e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append((sub, e.path))
                elif language_of(e.name):
                    out.append(sub)
            except OSError:
                continue
    return sorted(out)


def _file_task(walker: _Walker, abspath: str, relpath: str, languages, source: str, package: str, index: int):
    lang = language_of(relpath)
    if lang is None or lang not in languages:
        return None
    where = f"{source}/{relpath}"
    if not is_utf8_text(relpath):  # its path could not be stored in a dataset
        walker.log.add("non_utf8_name", where)
        return None
    if walker.skip_tests and is_test_path(relpath):
        walker.log.add("test_file", where)
        return None
    try:
        st = os.stat(abspath)
    except OSError:
        walker.log.add("unreadable_file", where)
        return None
    if st.st_size > walker.max_file_bytes:
        walker.log.add("huge_file", where)
        return None
    key = (st.st_dev, st.st_ino)
    if key in walker.seen.files:
        walker.log.add("duplicate_real_path", where)
        return None
    walker.seen.files.add(key)
    return FileTask(index, source, package, relpath, lang, abspath=abspath)


# ----------------------------------------------------------------------------------------------- sources
def source_roots(languages: Iterable[str] = ("python",), include_stdlib: bool = True,
                 packages: Iterable[str] | None = CORPUS_PACKAGES,
                 source_dirs: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """``(what, real path)`` of every folder or file a build would read: each ``source_dirs`` entry, the
    standard library, and the install folder of each installed package. (A build's output must lie apart
    from all of them: it replaces its whole folder.)"""
    roots = [(f"--source_dir {printable(d)}", os.path.realpath(d)) for d in source_dirs or ()]
    if include_stdlib and "python" in tuple(languages):
        roots.append(("the Python standard library", os.path.realpath(stdlib_source()[1])))
    for name in sorted(set(packages or ()), key=str.lower):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        roots.append((f"package {name}", os.path.realpath(str(dist.locate_file("")))))
    return roots


def stdlib_source() -> tuple[Source, str]:
    path = sysconfig.get_paths()["stdlib"]
    version = ".".join(map(str, sys.version_info[:3]))
    return Source("python-stdlib", version, "PSF-2.0", "stdlib", path), path


def collect_tasks(
    languages: Iterable[str] = ("python",),
    include_stdlib: bool = True,
    packages: Iterable[str] | None = CORPUS_PACKAGES,
    source_dirs: Iterable[str] | None = None,
    max_file_bytes: int = MAX_FILE_BYTES,
    skip_tests: bool = True,
    follow_symlinks: bool = False,
) -> tuple[list[Source], list[FileTask], SkipLog, list[str]]:
    """List every file to parse, in a fixed order, each real file once.

    Returns ``(sources, tasks, skips, missing_packages)``; ``skips`` names every file left out and why.
    A ``source_dirs`` entry that does not exist raises ``FileNotFoundError`` naming it; packages that
    are not installed are returned, not fatal. The walk of a ``source_dirs`` folder stays inside it: a
    symlink whose target lies outside is skipped as ``symlink_outside_root`` unless ``follow_symlinks``, and
    one to a folder that holds the link (``/``, a parent of the tree) is skipped as ``symlink_to_ancestor``
    even then. (The standard library and installed packages are read as Python installed them.)
    """
    languages = tuple(languages)
    log = SkipLog()
    seen = _Seen()
    walker = _Walker(log, max_file_bytes, skip_tests, seen=seen)
    sources: list[Source] = []
    tasks: list[FileTask] = []
    missing: list[str] = []

    def add(task):
        if task is not None:
            task.index = len(tasks)
            tasks.append(task)

    for d in source_dirs or ():
        if not os.path.exists(d):
            raise FileNotFoundError(f"--source_dir {printable(d)!r}: no such file or directory")
        if not (os.path.isdir(d) or d.endswith((".tgz", ".tar.gz"))):
            raise NotADirectoryError(f"--source_dir {printable(d)!r}: expected a directory or an npm tarball (.tgz)")

    if include_stdlib and "python" in languages:
        src, root = stdlib_source()
        sources.append(src)
        std_walker = _Walker(log, max_file_bytes, skip_tests, skip_dirs=STDLIB_SKIP, seen=seen)
        start = len(tasks)
        for abspath, rel in std_walker.walk(root, src.name):
            top = rel.split("/", 1)[0]
            top = top[:-3] if top.endswith(".py") else top
            add(_file_task(std_walker, abspath, rel, ("python",), src.name, f"stdlib/{top}", 0))
        src.num_files = len(tasks) - start

    for name in sorted(set(packages or ()), key=str.lower):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        src = Source(dist.metadata["Name"], dist.version, _dist_license(dist), "package", "")
        files = sorted(str(f) for f in dist.files or () if language_of(str(f)) and not str(f).startswith(".."))
        start = len(tasks)
        for rel in files:
            if "/" in rel and rel.split("/", 1)[0].endswith((".dist-info", ".egg-info", ".data")):
                continue
            parts = rel.split("/")
            if any(p in SKIP_DIR_NAMES for p in parts[:-1]):
                continue
            abspath = str(dist.locate_file(rel))
            if not src.path:
                src.path = str(dist.locate_file(""))
            if not os.path.isfile(abspath):
                log.add("unreadable_file", f"{src.name}/{rel}")
                continue
            add(_file_task(walker, abspath, rel, languages, src.name, src.name, 0))
        src.num_files = len(tasks) - start
        sources.append(src)

    dir_walker = _Walker(log, max_file_bytes, skip_tests, seen=seen, confine=True, follow=follow_symlinks)
    for d in source_dirs or ():
        if os.path.isfile(d):
            src, new = _tarball_tasks(d, languages, walker)
            for t in new:
                add(t)
            sources.append(src)
            continue
        base = printable(os.path.basename(os.path.normpath(d)) or d)
        root_meta = _dir_meta(d, log, base, follow_symlinks)
        src = Source(root_meta["name"] or base, root_meta["version"], root_meta["license"], "directory", os.path.abspath(d))
        start = len(tasks)
        pkg_meta: dict[str, dict] = {}
        for abspath, rel in dir_walker.walk(d, src.name):
            if rel.endswith((".tgz", ".tar.gz")):
                tsrc, new = _tarball_tasks(abspath, languages, walker)
                for t in new:
                    add(t)
                sources.append(tsrc)
                continue
            package = _package_for(d, rel, root_meta, pkg_meta, base, follow_symlinks)
            add(_file_task(dir_walker, abspath, rel, languages, src.name, package, 0))
        src.num_files = len(tasks) - start
        if src.num_files == 0:
            log.add("empty_source", src.name)
        sources.append(src)
    return sources, tasks, log, missing


def _meta_file(folder: str, follow: bool) -> str | None:
    """``folder/package.json`` if it is a file the walk may read (not a link out of ``folder`` unless ``follow``)."""
    pj = os.path.join(folder, "package.json")
    if not os.path.isfile(pj):
        return None
    if not follow and not _inside(os.path.realpath(pj), os.path.realpath(folder)):
        return None  # the walk names it as symlink_outside_root
    return pj


def _dir_meta(d: str, log: SkipLog, label: str, follow: bool = False) -> dict:
    pj = _meta_file(d, follow)
    if pj is not None:
        try:
            with open(pj, "rb") as fh:
                return _package_json(fh.read(), pj)
        except (OSError, ValueError):
            log.add("bad_package_json", f"{label}/package.json")
    return {"name": "", "version": "unknown", "license": "unknown"}


def _package_for(root: str, rel: str, root_meta: dict, cache: dict, base: str, follow: bool = False) -> str:
    """Package of a file in a user directory.

    The nearest folder with a ``package.json`` names it (so ``node_modules`` trees split per package);
    a folder with its own ``package.json`` at the root is one package; otherwise each top-level entry
    of the directory (sub-folder or module file) is a package of its own.
    """
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        sub = "/".join(parts[:i])
        if sub not in cache:
            pj = _meta_file(os.path.join(root, sub), follow)
            try:
                cache[sub] = _package_json(open(pj, "rb").read(), pj) if pj is not None else None
            except (OSError, ValueError):
                cache[sub] = {"name": sub, "version": "unknown", "license": "unknown"}
        if cache[sub] is not None:
            return cache[sub]["name"] or f"{base}/{sub}"
    if root_meta["name"]:
        return root_meta["name"]
    top = parts[0]
    if len(parts) == 1:
        top = os.path.splitext(top)[0]
    return f"{base}/{top}"


def _tarball_tasks(path: str, languages, walker: _Walker) -> tuple[Source, list[FileTask]]:
    """Files of an npm tarball (``npm pack`` output), read in memory; the package.json names the package."""
    tasks: list[FileTask] = []
    label = printable(os.path.basename(path))
    meta = {"name": label, "version": "unknown", "license": "unknown"}
    log = walker.log
    try:
        with tarfile.open(path, "r:*") as tar:
            members = sorted((m for m in tar.getmembers()), key=lambda m: m.name)
            for m in members:
                if m.name.count("/") == 1 and m.name.endswith("/package.json") and m.isfile():
                    try:
                        meta = _package_json(tar.extractfile(m).read(), f"{path}:{m.name}")
                    except ValueError:
                        log.add("bad_package_json", f"{label}:{m.name}")
                        continue
                    meta["name"] = meta["name"] or label
            for m in members:
                rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                lang = language_of(rel)
                if lang is None or lang not in languages:
                    continue
                where = f"{label}:{m.name}"
                if not m.isfile():
                    log.add("not_regular_file", where)
                elif not is_utf8_text(rel):
                    log.add("non_utf8_name", where)
                elif walker.skip_tests and is_test_path(rel):
                    log.add("test_file", where)
                elif m.size > walker.max_file_bytes:
                    log.add("huge_file", where)
                else:
                    data = tar.extractfile(m).read()
                    tasks.append(FileTask(0, meta["name"], meta["name"], rel, lang, data=data))
    except (tarfile.TarError, OSError, EOFError) as exc:
        log.add("unreadable_tarball", label)
        print(f"warning: skipping {printable(path)}: not a readable tarball ({exc})", file=sys.stderr)
    src = Source(meta["name"], meta["version"], meta["license"], "tarball", os.path.abspath(path), len(tasks))
    if not tasks:
        log.add("empty_source", label)
    return src, tasks


def read_task(task: FileTask) -> bytes:
    if task.data is not None:
        return task.data
    with open(task.abspath, "rb") as fh:
        return fh.read()


__all__ = [
    "CORPUS_PACKAGES", "CORPUS_PINS", "FileSkipped", "FileTask", "MAX_FILE_BYTES", "MAX_LINE_CHARS", "SkipLog",
    "Source", "collect_tasks", "corpus_package_versions", "is_test_path", "is_utf8_text", "looks_minified",
    "missing_corpus_packages", "pin_problems", "printable", "read_regular_file", "read_task", "source_roots",
    "stdlib_source",
]
