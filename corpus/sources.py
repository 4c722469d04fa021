"""Where corpus source files come from: the standard library, installed packages, user directories.

A :class:`Source` records what the dataset card must say about an input (name, version, licence); a
:class:`FileTask` is one file to parse, tagged with the *package* it belongs to (the unit the splits keep
apart). Walking never crashes on bad input: unreadable, non-UTF-8, huge, looping or empty inputs are
skipped and counted in a :class:`collections.Counter` by reason.
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

#: Permissively licensed, pure-Python distributions whose installed sources feed the corpus.
#: Keep in sync with the ``corpus`` extra in setup.cfg (a test checks it).
CORPUS_PACKAGES = (
    "anyio",
    "attrs",
    "babel",
    "boltons",
    "click",
    "dask",
    "django",
    "flask",
    "h11",
    "idna",
    "itsdangerous",
    "jinja2",
    "markdown",
    "markdown-it-py",
    "more-itertools",
    "mpmath",
    "networkx",
    "nltk",
    "pydantic",
    "pygments",
    "pyparsing",
    "pytest",
    "requests",
    "rich",
    "sqlparse",
    "sympy",
    "toolz",
    "tornado",
    "typer",
    "urllib3",
    "werkzeug",
    "xarray",
)

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
    return {"name": str(info.get("name") or ""), "version": str(info.get("version") or "unknown"), "license": str(lic)}


# ----------------------------------------------------------------------------------------------- walking
class _Walker:
    """Deterministic, loop-safe directory walk that counts what it skips."""

    def __init__(self, skipped: Counter, max_file_bytes: int, skip_tests: bool, skip_dirs=frozenset()):
        self.skipped = skipped
        self.max_file_bytes = max_file_bytes
        self.skip_tests = skip_tests
        self.skip_dirs = SKIP_DIR_NAMES | set(skip_dirs)

    def walk(self, root: str, rel: str = "", ancestors: tuple = ()) -> Iterator[tuple[str, str]]:
        """Yield ``(abspath, relpath)`` of regular files under ``root``, sorted by name at every level."""
        try:
            st = os.stat(root)
        except OSError:
            self.skipped["unreadable_dir"] += 1
            return
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            self.skipped["symlink_loop"] += 1
            return
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.skipped["unreadable_dir"] += 1
            return
        if not entries:
            self.skipped["empty_dir"] += 1
            return
        ancestors = ancestors + (key,)
        for entry in entries:
            relpath = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = entry.is_file(follow_symlinks=True)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if entry.name in self.skip_dirs or entry.name.startswith(".") or entry.name.startswith("config-3"):
                    continue
                if self.skip_tests and entry.name in TEST_DIR_NAMES:
                    self.skipped["test_file"] += sum(1 for _ in _quick_count(entry.path))
                    continue
                yield from self.walk(entry.path, relpath, ancestors)
            elif is_file:
                yield entry.path, relpath
            elif entry.is_symlink():
                self.skipped["broken_symlink"] += 1
            else:
                self.skipped["not_regular_file"] += 1


def _quick_count(path: str) -> Iterator[str]:
    """Source files under a skipped test folder, so the card can say how many were left out."""
    for dirpath, _, files in os.walk(path):
        for f in files:
            if language_of(f):
                yield f


def _file_task(walker: _Walker, abspath: str, relpath: str, languages, source: str, package: str, index: int):
    lang = language_of(relpath)
    if lang is None or lang not in languages:
        return None
    if walker.skip_tests and is_test_path(relpath):
        walker.skipped["test_file"] += 1
        return None
    try:
        size = os.path.getsize(abspath)
    except OSError:
        walker.skipped["unreadable_file"] += 1
        return None
    if size > walker.max_file_bytes:
        walker.skipped["huge_file"] += 1
        return None
    return FileTask(index, source, package, relpath, lang, abspath=abspath)


# ----------------------------------------------------------------------------------------------- sources
def stdlib_source() -> tuple[Source, str]:
    path = sysconfig.get_paths()["stdlib"]
    version = ".".join(map(str, sys.version_info[:3]))
    return Source("python-stdlib", version, "PSF-2.0", "stdlib", path), path


def collect_tasks(
    languages: Iterable[str] = ("python",),
    include_stdlib: bool = True,
    packages: Iterable[str] | None = CORPUS_PACKAGES,
    source_dirs: Iterable[str] | None = None,
    max_file_bytes: int = 1_000_000,
    skip_tests: bool = True,
) -> tuple[list[Source], list[FileTask], Counter, list[str]]:
    """List every file to parse, in a fixed order.

    Returns ``(sources, tasks, skipped, missing_packages)``. A ``source_dirs`` entry that does not exist
    raises ``FileNotFoundError`` naming it; packages that are not installed are returned, not fatal.
    """
    languages = tuple(languages)
    skipped: Counter = Counter()
    walker = _Walker(skipped, max_file_bytes, skip_tests)
    sources: list[Source] = []
    tasks: list[FileTask] = []
    missing: list[str] = []

    def add(task):
        if task is not None:
            task.index = len(tasks)
            tasks.append(task)

    for d in source_dirs or ():
        if not os.path.exists(d):
            raise FileNotFoundError(f"--source_dir {d!r}: no such file or directory")
        if not (os.path.isdir(d) or d.endswith((".tgz", ".tar.gz"))):
            raise NotADirectoryError(f"--source_dir {d!r}: expected a directory or an npm tarball (.tgz)")

    if include_stdlib and "python" in languages:
        src, root = stdlib_source()
        sources.append(src)
        std_walker = _Walker(skipped, max_file_bytes, skip_tests, skip_dirs=STDLIB_SKIP)
        start = len(tasks)
        for abspath, rel in std_walker.walk(root):
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
                skipped["unreadable_file"] += 1
                continue
            add(_file_task(walker, abspath, rel, languages, src.name, src.name, 0))
        src.num_files = len(tasks) - start
        sources.append(src)

    for d in source_dirs or ():
        if os.path.isfile(d):
            src, new = _tarball_tasks(d, languages, walker, name_prefix="")
            for t in new:
                add(t)
            sources.append(src)
            continue
        base = os.path.basename(os.path.normpath(d)) or d
        root_meta = _dir_meta(d)
        src = Source(root_meta["name"] or base, root_meta["version"], root_meta["license"], "directory", os.path.abspath(d))
        start = len(tasks)
        pkg_meta: dict[str, dict] = {}
        for abspath, rel in walker.walk(d):
            if rel.endswith((".tgz", ".tar.gz")):
                tsrc, new = _tarball_tasks(abspath, languages, walker, name_prefix="")
                for t in new:
                    add(t)
                sources.append(tsrc)
                continue
            package = _package_for(d, rel, root_meta, pkg_meta, base)
            add(_file_task(walker, abspath, rel, languages, src.name, package, 0))
        src.num_files = len(tasks) - start
        if src.num_files == 0:
            skipped["empty_source"] += 1
        sources.append(src)
    return sources, tasks, skipped, missing


def _dir_meta(d: str) -> dict:
    pj = os.path.join(d, "package.json")
    if os.path.isfile(pj):
        with open(pj, "rb") as fh:
            return _package_json(fh.read(), pj)
    return {"name": "", "version": "unknown", "license": "unknown"}


def _package_for(root: str, rel: str, root_meta: dict, cache: dict, base: str) -> str:
    """Package of a file in a user directory.

    The nearest folder with a ``package.json`` names it (so ``node_modules`` trees split per package);
    a folder with its own ``package.json`` at the root is one package; otherwise each top-level entry
    of the directory (sub-folder or module file) is a package of its own.
    """
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        sub = "/".join(parts[:i])
        if sub not in cache:
            pj = os.path.join(root, sub, "package.json")
            try:
                cache[sub] = _package_json(open(pj, "rb").read(), pj) if os.path.isfile(pj) else None
            except ValueError:
                cache[sub] = {"name": sub, "version": "unknown", "license": "unknown"}
        if cache[sub] is not None:
            return cache[sub]["name"] or f"{base}/{sub}"
    if root_meta["name"]:
        return root_meta["name"]
    top = parts[0]
    if len(parts) == 1:
        top = os.path.splitext(top)[0]
    return f"{base}/{top}"


def _tarball_tasks(path: str, languages, walker: _Walker, name_prefix: str) -> tuple[Source, list[FileTask]]:
    """Files of an npm tarball (``npm pack`` output), read in memory; the package.json names the package."""
    tasks: list[FileTask] = []
    meta = {"name": os.path.basename(path), "version": "unknown", "license": "unknown"}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = sorted((m for m in tar.getmembers()), key=lambda m: m.name)
            for m in members:
                if m.name.count("/") == 1 and m.name.endswith("/package.json") and m.isfile():
                    meta = _package_json(tar.extractfile(m).read(), f"{path}:{m.name}")
                    meta["name"] = meta["name"] or os.path.basename(path)
            for m in members:
                rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                lang = language_of(rel)
                if lang is None or lang not in languages:
                    continue
                if not m.isfile():
                    walker.skipped["not_regular_file"] += 1
                    continue
                if walker.skip_tests and is_test_path(rel):
                    walker.skipped["test_file"] += 1
                    continue
                if m.size > walker.max_file_bytes:
                    walker.skipped["huge_file"] += 1
                    continue
                data = tar.extractfile(m).read()
                tasks.append(FileTask(0, meta["name"], meta["name"], rel, lang, data=data))
    except (tarfile.TarError, OSError, EOFError) as exc:
        walker.skipped["unreadable_tarball"] += 1
        print(f"warning: skipping {path}: not a readable tarball ({exc})", file=sys.stderr)
    src = Source(meta["name"], meta["version"], meta["license"], "tarball", os.path.abspath(path), len(tasks))
    if not tasks:
        walker.skipped["empty_source"] += 1
    return src, tasks


def read_task(task: FileTask) -> bytes:
    if task.data is not None:
        return task.data
    with open(task.abspath, "rb") as fh:
        return fh.read()


__all__ = ["CORPUS_PACKAGES", "FileTask", "Source", "collect_tasks", "is_test_path", "read_task", "stdlib_source"]
