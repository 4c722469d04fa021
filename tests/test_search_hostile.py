"""`mambacode index` / `search` over hostile source trees and damaged index folders (issue 24's index rows).

Each tree is made here by hand, so what must be indexed, skipped and named is written out from how it was made:
symlinked packages, a FIFO and a link to /dev/zero, files over the size cap, a minified one-liner, names that
are not UTF-8, 1,500 nested folders (paths past the system's limit), unreadable folders, every file of an index
folder damaged in turn, and a reader loading while a rebuild swaps the folder.
"""

import json
import os
import shutil
import signal
import stat

import pytest
import torch

import mambacode.search.index as index_mod
from mambacode import MambaCodeForRetrieval
from mambacode.cli import main
from mambacode.search import CodeIndex, SearchIndexError, build_index, scan_sources

GREET = 'def greet(name):\n    return "hello " + name\n'
AREA = "def circle_area(radius):\n    return 3.14159 * radius ** 2\n"


def _write(root, rel, content):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny, tokenizer):
    path = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = MambaCodeForRetrieval(tiny("s4d", vocab_size=len(tokenizer), max_position_embeddings=512,
                                      pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


class WalkBlocked(Exception):
    """Raised by the alarm: not an OSError, so no `except OSError` in the code under test can swallow it."""


@pytest.fixture
def alarm():
    """Fail (rather than hang) a walk that blocks: SIGALRM raises in the main thread after `seconds`."""
    def fire(signum, frame):
        raise WalkBlocked("the walk blocked (alarm)")

    old = signal.signal(signal.SIGALRM, fire)
    yield lambda seconds: signal.alarm(seconds)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------------------------------- symlinks, umask
def test_symlinked_packages_are_named_and_followed_with_follow(tmp_path, model_dir, capsys):
    outside = str(tmp_path / "outside")
    _write(outside, "pkg_a/greet.py", GREET)
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(os.path.join(outside, "pkg_a"), src / "pkg_a")  # a folder of symlinked packages
    os.symlink(os.path.join(outside, "pkg_a"), src / "pkg_b")  # the same package again
    os.symlink(str(tmp_path), src / "up")  # a folder holding the link: a loop
    index = str(tmp_path / "index")
    with pytest.raises(SearchIndexError, match="3 symlinks lead out of the tree.*--follow"):
        build_index(str(src), index, model_dir, progress=False)
    scan = scan_sources(str(src))
    assert scan.skipped == {name: "symlink leading out of the tree (not followed; use --follow)"
                            for name in ("pkg_a", "pkg_b", "up")}

    assert main(["index", str(src), "--model", model_dir, "--output", index, "--quiet", "--follow"]) == 0
    out = capsys.readouterr().out
    assert "indexed 1 functions from 1 files" in out
    assert "pkg_b: folder already indexed under another path" in out
    assert "up: symlink to a folder that holds it" in out
    assert [(r["path"], r["name"]) for r in CodeIndex.load(index).rows] == [("pkg_a/greet.py", "greet")]


def test_index_folder_and_files_follow_the_umask(tmp_path, model_dir):
    _write(str(tmp_path / "src"), "greet.py", GREET)
    index = str(tmp_path / "index")
    old = os.umask(0o022)
    try:
        build_index(str(tmp_path / "src"), index, model_dir, progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(index).st_mode) == 0o755
    for base, dirs, names in os.walk(index):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(base, d)).st_mode) == 0o755, d
        for n in names:
            assert stat.S_IMODE(os.stat(os.path.join(base, n)).st_mode) == 0o644, n


# --------------------------------------------------------------------------------------------- special files, limits
def test_fifo_and_device_link_are_skipped_and_named(tmp_path, alarm):
    src = str(tmp_path / "src")
    _write(src, "greet.py", GREET)
    os.mkfifo(os.path.join(src, "x.py"))  # a blocking open of it never returns
    alarm(20)
    scan = scan_sources(src)
    alarm(0)
    assert [f.name for f in scan.functions] == ["greet"]
    assert scan.skipped == {"x.py": "not a regular file (a FIFO, device or socket)"}
    # only now (a walk that opened the FIFO has failed above) a link to an endless device: reading it fills memory
    os.symlink("/dev/zero", os.path.join(src, "zero.py"))
    alarm(20)
    scan = scan_sources(src)
    followed = scan_sources(src, follow=True)
    alarm(0)
    assert scan.skipped["zero.py"] == "symlink leading out of the tree (not followed; use --follow)"
    assert followed.skipped == {"x.py": "not a regular file (a FIFO, device or socket)",
                                "zero.py": "not a regular file (a FIFO, device or socket)"}
    assert [f.name for f in followed.functions] == ["greet"]


def test_corpus_limits_apply_huge_and_minified_files_are_named(tmp_path, monkeypatch):
    import mambacode.search.sources as sources_mod

    src = str(tmp_path / "src")
    _write(src, "greet.py", GREET)
    _write(src, "huge.py", "def big():\n    pass\n" + "# padding line\n" * 70_000)  # 1,050,020 bytes
    one_line = "".join(f"function f{i}(a: number) {{ return a + {i}; }}" for i in range(500))  # ~22 KB
    _write(src, "bundle.ts", one_line + "\n")
    _write(src, "lib.min.js", "function tiny() { return 1; }\n")
    scan = scan_sources(src)
    assert [f.name for f in scan.functions] == ["greet"]
    assert scan.skipped == {
        "huge.py": "1,050,020 bytes, over the 1,000,000-byte cap",
        "bundle.ts": "minified (a .min.js file, or lines over 1,000 characters on average)",
        "lib.min.js": "minified (a .min.js file, or lines over 1,000 characters on average)",
    }
    # the parse timeout: with no time at all, a file of 2,000 functions is given up on and named
    _write(src, "many.py", "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(2000)))
    monkeypatch.setattr(sources_mod, "PARSE_SECONDS", 1e-9)
    scan = scan_sources(src)
    assert scan.skipped["many.py"].startswith("parse timeout")
    assert "many.py" not in scan.files


def test_non_utf8_names_are_skipped_and_named(tmp_path, model_dir, capsys):
    src = os.fsencode(str(tmp_path / "src"))
    os.makedirs(os.path.join(src, b"d\xe9r"))
    for rel in (b"caf\xe9.py", b"d\xe9r/inner.py"):
        with open(os.path.join(src, rel), "wb") as fh:
            fh.write(AREA.encode())
    with open(os.path.join(src, b"greet.py"), "wb") as fh:
        fh.write(GREET.encode())
    index = str(tmp_path / "index")
    assert main(["index", os.fsdecode(src), "--model", model_dir, "--output", index, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "indexed 1 functions from 1 files" in out
    reason = "file name is not UTF-8 (it could not be stored or shown)"
    assert f"caf\\xe9.py: {reason}" in out and f"d\\xe9r/inner.py: {reason}" in out
    manifest = index_mod.read_manifest(index)
    assert manifest["skipped"] == {"caf\\xe9.py": reason, "d\\xe9r/inner.py": reason}


# ----------------------------------------------------------------------------------------- deep and unreadable trees
LEVELS = 1500
LEVEL_NAME = "lvl"  # 4 bytes a level: past PATH_MAX (4,096) after ~1,000 levels


def _deep_tree(root: str) -> None:
    """`root/lvl/lvl/...` 1,500 deep (made through folder descriptors: the full path is too long for the
    system), a Python file at depth 5 and one at the bottom."""
    _write(root, "top.py", GREET)
    fd = os.open(root, os.O_RDONLY)
    try:
        for depth in range(1, LEVELS + 1):
            os.mkdir(LEVEL_NAME, dir_fd=fd)
            new = os.open(LEVEL_NAME, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
            if depth in (5, LEVELS):
                wfd = os.open(f"at{depth}.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(wfd, AREA.replace("circle_area", f"area_{depth}").encode())
                os.close(wfd)
    finally:
        os.close(fd)


def _remove_deep_tree(root: str) -> None:
    """Undo `_deep_tree` without recursion: pull each next level up to `root` and remove the one above it."""
    top = os.path.join(root, LEVEL_NAME)
    while os.path.isdir(top):
        for name in os.listdir(top):
            if name != LEVEL_NAME:
                os.remove(os.path.join(top, name))
        aside = os.path.join(root, "aside")
        os.rename(top, aside)
        if os.path.isdir(os.path.join(aside, LEVEL_NAME)):
            os.rename(os.path.join(aside, LEVEL_NAME), top)
        os.rmdir(aside)


def test_deep_tree_is_walked_without_recursion_and_the_cut_is_named(tmp_path):
    from mambacode.corpus import read_snippets

    root = str(tmp_path / "deep")
    os.mkdir(root)
    _deep_tree(root)
    try:
        scan = scan_sources(root)
        assert [(f.path.count("/"), f.name) for f in scan.functions] == [(5, "area_5"), (0, "greet")]
        cut = [path for path, reason in scan.skipped.items() if reason.startswith("unreadable folder")]
        assert len(cut) == 1 and len(os.path.join(root, cut[0])) >= 4096 - len(LEVEL_NAME) - 1
        assert set(cut[0].split("/")) == {LEVEL_NAME} and len(scan.skipped) == 1
        with pytest.warns(UserWarning, match=r"skipped 1 entries .*lvl/lvl.*unreadable_dir"):
            snippets = read_snippets(source_dir=root, language="python")
        assert [s.split("(")[0] for s in snippets] == ["def area_5", "def greet"]
    finally:
        _remove_deep_tree(root)


def test_unreadable_folders_are_named(tmp_path, monkeypatch):
    """A folder that cannot be listed (simulated: the tests may run as root, whom permissions do not stop)."""
    from mambacode.corpus import read_snippets

    src = str(tmp_path / "src")
    _write(src, "ok/greet.py", GREET)
    _write(src, "secret/area.py", AREA)
    real_scandir = os.scandir
    blocked = os.path.join(src, "secret")

    def scandir(path="."):
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", blocked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_sources(src)
    assert [f.name for f in scan.functions] == ["greet"]
    assert scan.skipped == {"secret": "unreadable folder (permissions, or its path is over the system's limit)"}
    with pytest.warns(UserWarning, match="secret .unreadable_dir."):
        assert read_snippets(source_dir=src, language="python") == [GREET.rstrip("\n")]


# ----------------------------------------------------------------------------------------------- damaged index files
@pytest.fixture(scope="module")
def built(tmp_path_factory, model_dir):
    base = tmp_path_factory.mktemp("damage")
    src = str(base / "src")
    _write(src, "geo/area.py", AREA)
    _write(src, "greet.py", GREET)
    index = str(base / "index")
    build_index(src, index, model_dir, progress=False)
    return dict(src=src, index=index, model_dir=model_dir)


def _index_files(index):
    out = []
    for base, dirs, names in os.walk(index):
        dirs.sort()
        out.extend(os.path.relpath(os.path.join(base, n), index).replace(os.sep, "/") for n in sorted(names))
    return out


# what `build_index` writes for the 2-file tree above (a new file in an index folder must be added here);
# the query encoder export is damaged too when the index has one
INDEX_FILES = ["bm25/data.csc.index.npy", "bm25/indices.csc.index.npy", "bm25/indptr.csc.index.npy",
               "bm25/params.index.json", "bm25/vocab.index.json",
               "dense.faiss", "files.json", "manifest.json", "metadata.jsonl"]
OPTIONAL_FILES = ["query_encoder.npz"]


def test_the_damage_cases_cover_every_file_of_an_index(built):
    files = _index_files(built["index"])
    assert set(INDEX_FILES) <= set(files) <= set(INDEX_FILES + OPTIONAL_FILES)


def _damage(path, how):
    if how == "delete":
        os.remove(path)
        return
    with open(path, "rb") as fh:
        data = fh.read()
    if how == "truncate":
        data = data[:len(data) // 2]
    else:  # flip every bit of the middle byte
        mid = len(data) // 2
        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("name", INDEX_FILES + OPTIONAL_FILES)
def test_damaged_index_file_is_named_and_index_repairs_it(built, tmp_path, name, how, capsys):
    if not os.path.exists(os.path.join(built["index"], name)):
        pytest.skip(f"this index has no {name}")
    index = str(tmp_path / "index")
    shutil.copytree(built["index"], index)
    _damage(os.path.join(index, *name.split("/")), how)
    assert main(["search", "circle area", "--index", index, "--mode", "bm25"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("mambacode search: error: ") and name.split("/")[-1] in err, err

    assert main(["index", built["src"], "--model", built["model_dir"], "--output", index, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "repaired the previous index: " in out and name.split("/")[-1] in out, out
    assert main(["search", "circle area", "--index", index, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert {h["name"] for h in hits} == {"circle_area", "greet"}
    assert CodeIndex.load(index).damaged == []


def test_repair_reuses_vectors_that_check_out(built, tmp_path, monkeypatch):
    """Only the BM25 files are damaged: the stored vectors are intact and nothing is embedded again."""
    index = str(tmp_path / "index")
    shutil.copytree(built["index"], index)
    _damage(os.path.join(index, "bm25", "vocab.index.json"), "flip")
    report = build_index(built["src"], index, built["model_dir"], progress=False)
    assert report.embedded == 0 and report.reused == 2
    assert len(report.repaired) == 1 and "vocab.index.json" in report.repaired[0]


def test_index_written_before_checksums_still_loads(built, tmp_path):
    index = str(tmp_path / "index")
    shutil.copytree(built["index"], index)
    path = os.path.join(index, "manifest.json")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    for key in ("checksums", "manifest_sha256", "build_id"):
        del manifest[key]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
    assert [r["name"] for r in CodeIndex.load(index).rows] == ["circle_area", "greet"]


# ----------------------------------------------------------------------------------------- a reader during a rebuild
def _rebuild_when_reading(monkeypatch, index, rebuilds):
    """Make `CodeIndex.load` run each of `rebuilds` (callables) just as it opens files.json, one per load:
    metadata.jsonl has been read from the version before."""
    real_open = open
    pending = list(rebuilds)
    busy = []

    def hooked(file, mode="r", *args, **kwargs):
        if (not busy and pending and os.fspath(file) == os.path.join(index, "files.json")
                and "r" in mode and "+" not in mode):
            busy.append(1)
            try:
                pending.pop(0)()
            finally:
                busy.pop()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(index_mod, "open", hooked, raising=False)
    return pending


def test_reader_during_a_rebuild_sees_one_version(built, tmp_path, monkeypatch):
    src, index = str(tmp_path / "src"), str(tmp_path / "index")
    shutil.copytree(built["src"], src)
    build_index(src, index, built["model_dir"], progress=False)
    # the new version has as many functions (same row count, same vector count) but other names
    _write(src, "greet.py", GREET.replace("greet", "welcome"))
    pending = _rebuild_when_reading(monkeypatch, index,
                                    [lambda: build_index(src, index, built["model_dir"], progress=False)])
    loaded = CodeIndex.load(index)
    assert not pending  # the rebuild did run in the middle of the load
    monkeypatch.undo()
    fresh = CodeIndex.load(index)
    assert [r["name"] for r in loaded.rows] == [r["name"] for r in fresh.rows] == ["circle_area", "welcome"]
    assert loaded.manifest == fresh.manifest and loaded.files == fresh.files
    assert (loaded.vectors() == fresh.vectors()).all()


def test_reader_says_retry_when_the_index_keeps_changing(built, tmp_path, monkeypatch):
    src, index = str(tmp_path / "src"), str(tmp_path / "index")
    shutil.copytree(built["src"], src)
    build_index(src, index, built["model_dir"], progress=False)

    def rebuild(name):
        def run():
            _write(src, "greet.py", GREET.replace("greet", name))
            build_index(src, index, built["model_dir"], progress=False)
        return run

    _rebuild_when_reading(monkeypatch, index, [rebuild("welcome"), rebuild("salute")])
    with pytest.raises(SearchIndexError, match="changed while it was read, twice.*try again"):
        CodeIndex.load(index)
