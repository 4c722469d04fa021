"""Corpus builds over hostile source trees and hostile output folders (small trees made in tmp dirs).

Expectations are written out by hand from how each tree is made: which files exist, which are reached
twice through symlinks, which names are not UTF-8, and what each build folder held before.
"""

import json
import os
import shutil
from collections import Counter

import datasets
import pytest

import mambacode.atomic as atomic_mod
import mambacode.corpus.build as build_mod
from mambacode.corpus import LongContextConfig, build_corpus
from mambacode.corpus.build import corpus_is_complete
from mambacode.corpus.obfuscate import obfuscate
from mambacode.corpus.parsing import parses_cleanly
from mambacode.corpus.sources import CORPUS_PINS, missing_corpus_packages

OPTIONS = dict(include_stdlib=False, packages=(), long_context=LongContextConfig(min_tokens=20), num_workers=1,
               show_progress=False)
NUM_PACKAGES = 6
DEPTH = 1200  # nesting of the unpacking target; Python's recursion limit is 1000
DAG_LEVELS = 4  # d1..d3 each hold two links to the level below: 15 paths reach d0/real.py

SHARED_TYPES = "def scale(value: float, factor: float) -> float:\n    return value * factor\n"


def package_source(i: int) -> str:
    return (
        f"def compute_{i}(value, factor={i + 1}):\n"
        f'    """Compute quantity number {i} of the package carefully."""\n'
        f"    total = value * factor + {i}\n"
        f"    total += {i * 7}\n"
        "    return total\n\n\n"
        f"class Store{i}:\n"
        f"    def add(self, key: str, value: int = {i}) -> bool:\n"
        f'        """Add an item under a key for package {i}."""\n'
        f"        self.items[key] = value + {i}\n"
        "        self.count += 1\n"
        "        return True\n"
    )


def deep_source(i: int) -> str:
    target = "(" * DEPTH + "first, second" + ")" * DEPTH
    return (
        f"def unpack_{i}(pair):\n"
        f'    """Unpack the nested pair number {i} into its parts."""\n'
        f"    {target} = pair\n"
        "    total = first + second\n"
        "    return total\n"
    )


def documented(name: str) -> str:
    return (f'def {name}(items: list) -> int:\n    """Count the {name} items in a list."""\n'
            "    n = 0\n    for x in items:\n        n += 1\n    return n\n")


def write_files(folder, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def make_hostile_tree(root) -> str:
    src = root / "src"
    for i in range(NUM_PACKAGES):
        write_files(src / f"pkg{i}", {"core.py": package_source(i), "deep.py": deep_source(i)})
    # the same annotated file in two packages: one type example, not two (it would sit in two splits)
    (src / "pkg0" / "shared_types.py").write_text(SHARED_TYPES)
    (src / "pkg3" / "shared_types.py").write_text(SHARED_TYPES)
    # names that are not UTF-8: a file, and a file inside a folder
    raw = os.fsencode(str(src))
    with open(os.path.join(raw, b"caf\xe9.py"), "wb") as fh:
        fh.write(documented("latin_name").encode())
    os.mkdir(os.path.join(raw, b"d\xfcr"))
    with open(os.path.join(raw, b"d\xfcr", b"mod.py"), "wb") as fh:
        fh.write(documented("latin_folder").encode())
    bad = src / "pkgbad"
    bad.mkdir()
    (bad / "empty.py").write_text("")
    (bad / "locked.py").write_text(documented("locked"))
    # a symlink DAG without loops: d_k/a and d_k/b both point at d_{k-1}
    dag = src / "dag"
    (dag / "d0").mkdir(parents=True)
    (dag / "d0" / "real.py").write_text(documented("real_file"))
    (dag / "d0" / "alias.py").symlink_to(dag / "d0" / "real.py")
    for k in range(1, DAG_LEVELS):
        (dag / f"d{k}").mkdir()
        for name in ("a", "b"):
            (dag / f"d{k}" / name).symlink_to(dag / f"d{k - 1}", target_is_directory=True)
    # a folder tree deeper than the recursion limit (os.makedirs and shutil.rmtree recurse: loop here)
    for folder in deep_chain(str(src)):
        os.mkdir(folder)
    with open(os.path.join(folder, "leaf.py"), "w") as fh:
        fh.write(documented("deep_leaf"))
    return str(src)


def deep_chain(src: str) -> list[str]:
    folders = [os.path.join(src, "deep")]
    for _ in range(DEPTH):
        folders.append(os.path.join(folders[-1], "d"))
    return folders


def remove_deep_chain(src: str) -> None:
    folders = deep_chain(src)
    os.remove(os.path.join(folders[-1], "leaf.py"))
    for folder in reversed(folders):
        os.rmdir(folder)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    src = make_hostile_tree(root)
    locked = os.path.join(src, "pkgbad", "locked.py")
    os.chmod(locked, 0)
    real_read = build_mod.process_file.__globals__["read_task"]

    def read(task):  # root can read mode-0 files: make it unreadable for every user
        if task.abspath == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_read(task)

    out = str(root / "out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(build_mod.process_file.__globals__, "read_task", read)
        result = build_corpus(out, source_dirs=[src], **OPTIONS)
    yield src, out, result
    remove_deep_chain(src)  # pytest's own clean-up recurses per folder level


def rows(out, task):
    dd = datasets.load_from_disk(os.path.join(out, task))
    return {split: list(ds) for split, ds in dd.items()}


def test_hostile_tree_builds_and_names_every_skip(hostile):
    _, out, result = hostile
    named = Counter((x["reason"], x["path"]) for x in result.skipped_files)
    expected = Counter({
        ("file_non_utf8_name", "src/caf\\xe9.py"): 1,
        ("file_non_utf8_name", "src/d\\xfcr/mod.py"): 1,
        ("file_empty_file", "src/pkgbad/empty.py"): 1,
        ("file_unreadable_file", "src/pkgbad/locked.py"): 1,
        ("file_duplicate_real_path", "src/dag/d0/real.py"): 1,  # alias.py, a link to it, comes first by name
        **{("file_duplicate_real_dir", f"src/dag/d{k}/{n}"): 1 for k in range(1, DAG_LEVELS) for n in "ab"},
    })
    assert named == expected
    file_counts = {k: v for k, v in result.skipped.items() if k.startswith("file_")}
    assert file_counts == dict(Counter(reason for reason, _ in expected.elements()))
    # the summary on disk says the same, in valid UTF-8 JSON
    stats = json.load(open(os.path.join(out, "corpus_stats.json"), encoding="utf-8"))
    assert stats["skipped_files"] == result.skipped_files
    assert corpus_is_complete(out)


def test_a_parse_over_its_time_budget_is_skipped_and_named(tmp_path, monkeypatch):
    """tree-sitter halted by its deadline (here a budget of -1 s, through the real progress callback): the
    file is skipped as `parse_timeout` and named, the build completes."""
    import mambacode.corpus.extract as extract_mod
    from mambacode.corpus import parsing

    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "mod.py").write_text(package_source(0))
    monkeypatch.setattr(extract_mod, "parse", lambda data, key: parsing.parse(data, key, seconds=-1.0))
    result = build_corpus(str(tmp_path / "out"), source_dirs=[str(tmp_path / "src")], **OPTIONS)
    assert [(x["reason"], x["path"]) for x in result.skipped_files] == [("file_parse_timeout", "src/pkg/mod.py")]
    assert result.skipped["file_parse_timeout"] == 1


def test_each_real_file_counted_once(hostile):
    _, out, result = hostile
    retrieval = [r for split in rows(out, "retrieval").values() for r in split]
    names = Counter(r["func_name"].split(".")[-1] for r in retrieval)
    expected = {f"compute_{i}" for i in range(NUM_PACKAGES)} | {f"unpack_{i}" for i in range(NUM_PACKAGES)}
    expected |= {"add", "real_file", "deep_leaf"}
    assert set(names) == expected
    assert names["real_file"] == 1 and names["add"] == NUM_PACKAGES
    assert sum(names.values()) == 3 * NUM_PACKAGES + 2
    assert [r["path"] for r in retrieval if r["func_name"] == "real_file"] == ["dag/d0/alias.py"]  # first by name
    deep_path = "/".join(["deep", *(["d"] * DEPTH), "leaf.py"])
    assert [r["path"] for r in retrieval if r["func_name"] == "deep_leaf"] == [deep_path]
    assert result.num_files == 2 * NUM_PACKAGES + 6  # core + deep per package; shared x2, real, leaf, empty, locked


def test_type_examples_are_unique_and_no_test_row_is_in_train(hostile):
    _, out, result = hostile
    splits = rows(out, "type_inference")
    keys = {s: [(tuple(r["tokens"]), tuple(r["raw_types"])) for r in v] for s, v in splits.items()}
    everything = [k for v in keys.values() for k in v]
    assert len(everything) == len(set(everything))
    # core.py of each package, shared_types.py once, dag/d0/real.py once, leaf.py (deep.py has no types)
    assert len(everything) == NUM_PACKAGES + 3
    assert result.skipped["type_inference_duplicate"] == 1
    assert not set(keys["test"]) & set(keys["train"])
    shared = [k for k in everything if k[0][:2] == ("def", "scale")]
    assert shared == [(("def", "scale", "(", "value", ",", "factor", ")", ":", "return", "value", "*", "factor"),
                       ("", "float", "", "float", "", "float", "", "", "", "", "", ""))]


def test_deep_unpacking_target_is_obfuscated(hostile):
    _, out, result = hostile
    test = rows(out, "retrieval")["test"]
    adv = {r["id"]: r for r in rows(out, "retrieval_adv")["test"]}
    assert set(adv) == {r["id"] for r in test}  # no test function was lost to obfuscation
    assert not [k for k in result.skipped if k.startswith("retrieval_adv_")]
    for row in adv.values():
        assert parses_cleanly(row["code"], "python")


def test_obfuscate_deep_targets_against_hand_written_output():
    nest = "(" * DEPTH + "first, second" + ")" * DEPTH
    code = f"def unpack(pair):\n    {nest} = pair\n    return first + second\n"
    want = "def func(arg_0):\n    " + "(" * DEPTH + "var_0, var_1" + ")" * DEPTH + " = arg_0\n    return var_0 + var_1\n"
    assert obfuscate(code) == want
    js_nest = "[" * DEPTH + "first, second" + "]" * DEPTH
    js = f"function unpack(pair) {{\n  const {js_nest} = pair;\n  return first + second;\n}}"
    js_want = ("function func(arg_0) {\n  const " + "[" * DEPTH + "var_0, var_1" + "]" * DEPTH
               + " = arg_0;\n  return var_0 + var_1;\n}")
    assert obfuscate(js, "javascript") == js_want


def test_docstring_escaping_to_lone_surrogates_is_kept_as_written(tmp_path):
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    (src / "m.py").write_text(
        'def f(x):\n    """Compute the \\ud800 value here please."""\n    y = x\n    z = y\n    return z\n')
    out = str(tmp_path / "out")
    build_corpus(out, source_dirs=[str(tmp_path / "src")], **OPTIONS)
    (row,) = [r for split in rows(out, "retrieval").values() for r in split]
    assert row["query"] == "Compute the \\ud800 value here please."


# ---------------------------------------------------------------------------------------------- output folder
def small_tree(root) -> str:
    src = root / "small"
    for i in range(3):
        write_files(src / f"p{i}", {"m.py": package_source(i)})
    return str(src)


def no_parsing(*args, **kwargs):
    raise AssertionError("the source tree was read before the output folder was checked")


def test_foreign_output_is_refused_before_parsing_unless_overwrite(tmp_path, monkeypatch):
    src = small_tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "their_data.csv").write_text("a,b\n1,2\n")
    with monkeypatch.context() as m:
        m.setattr(build_mod, "collect_tasks", no_parsing)
        with pytest.raises(FileExistsError, match="their_data.csv"):
            build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert os.listdir(out) == ["their_data.csv"]
    # a folder holding only a dataset-like folder without our stats is not ours either
    other = tmp_path / "other"
    (other / "retrieval").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="retrieval"):
        build_corpus(str(other), source_dirs=[src], **OPTIONS)
    # overwrite replaces only an earlier build (one with a manifest), never a folder of someone else's
    with monkeypatch.context() as m:
        m.setattr(build_mod, "collect_tasks", no_parsing)
        with pytest.raises(FileExistsError, match="corpus_manifest.json"):
            build_corpus(str(out), source_dirs=[src], overwrite=True, **OPTIONS)
    assert os.listdir(out) == ["their_data.csv"]
    os.remove(out / "their_data.csv")
    build_corpus(str(out), source_dirs=[src], **OPTIONS)
    (out / "their_data.csv").write_text("a,b\n1,2\n")  # added to a build: that build may be replaced
    with pytest.raises(FileExistsError, match="their_data.csv"):
        build_corpus(str(out), source_dirs=[src], **OPTIONS)
    build_corpus(str(out), source_dirs=[src], overwrite=True, **OPTIONS)
    assert "their_data.csv" not in os.listdir(out) and corpus_is_complete(str(out))
    # our own build is replaced without asking; so is a build from before the manifest existed
    build_corpus(str(out), source_dirs=[src], **OPTIONS)
    os.remove(out / "corpus_manifest.json")
    build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert corpus_is_complete(str(out))
    assert sorted(os.listdir(tmp_path)) == ["other", "out", "small"]  # no staging folders left behind


def test_unwritable_output_fails_before_parsing(tmp_path, monkeypatch):
    src = small_tree(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(build_mod, "collect_tasks", no_parsing)
    with pytest.raises(OSError, match="cannot be written") as err:
        build_corpus(str(blocker / "out"), source_dirs=[src], **OPTIONS)
    assert "a_file" in str(err.value)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        build_corpus(str(blocker), source_dirs=[src], **OPTIONS)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        try:
            with pytest.raises(PermissionError, match="cannot be written"):
                build_corpus(str(locked / "out"), source_dirs=[src], **OPTIONS)
        finally:
            os.chmod(locked, 0o755)


def snapshot(folder) -> dict:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_failed_swap_leaves_the_old_build_or_nothing(tmp_path, monkeypatch):
    src = small_tree(tmp_path)
    out = tmp_path / "out"
    build_corpus(str(out), source_dirs=[src], max_functions=2, **OPTIONS)
    before = snapshot(out)
    assert corpus_is_complete(str(out))

    def exchange_fails(a, b):
        raise OSError(5, "Input/output error")

    # 1. the atomic exchange fails: nothing moved
    monkeypatch.setattr(atomic_mod, "exchange_paths", exchange_fails)
    with pytest.raises(OSError, match="Input/output"):
        build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert snapshot(out) == before and corpus_is_complete(str(out))
    assert sorted(os.listdir(tmp_path)) == ["out", "small"]

    # 2. no exchange on this system, and the rename of the new build fails: the old one is moved back
    monkeypatch.setattr(atomic_mod, "exchange_paths", lambda a, b: False)
    real_rename = os.rename

    def rename_new_fails(a, b):
        if ".building-" in os.path.basename(a):
            raise OSError(28, "No space left on device")
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename_new_fails)
    with pytest.raises(OSError, match="No space"):
        build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert snapshot(out) == before and corpus_is_complete(str(out))
    assert sorted(os.listdir(tmp_path)) == ["out", "small"]

    # 3. even moving the old build back fails: nothing at `out`, and the error says where the old one is
    def every_second_rename_fails(a, b):
        if ".building-" in os.path.basename(a) or ".old-" in os.path.basename(a):
            raise OSError(5, "Input/output error")
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", every_second_rename_fails)
    with pytest.raises(OSError, match="could not be moved back") as err:
        build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert not os.path.exists(out) and not corpus_is_complete(str(out))
    aside = [n for n in os.listdir(tmp_path) if ".old-" in n]
    assert len(aside) == 1 and aside[0] in str(err.value)
    assert snapshot(tmp_path / aside[0]) == before


def test_the_exchange_replaces_a_build_in_one_step(tmp_path):
    src = small_tree(tmp_path)
    out = tmp_path / "out"
    build_corpus(str(out), source_dirs=[src], max_functions=2, **OPTIONS)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not atomic_mod.exchange_paths(str(a), str(b)):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported here; the rename fallback is tested above")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_corpus_is_complete_rejects_partial_output(tmp_path):
    src = small_tree(tmp_path)
    out = tmp_path / "out"
    result = build_corpus(str(out), source_dirs=[src], **OPTIONS)
    assert corpus_is_complete(str(out)) and corpus_is_complete(str(out), verify_checksums=True)
    manifest = json.load(open(out / "corpus_manifest.json"))
    assert manifest["rows"] == result.sizes
    listed = set(manifest["files"])
    on_disk = {os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs}
    assert on_disk - listed == {"corpus_manifest.json"}

    # datasets writes cache files beside the data later: still complete
    (out / "retrieval" / "train" / "cache-0123.arrow").write_bytes(b"cache")
    assert corpus_is_complete(str(out))

    def damaged(change) -> bool:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out, copy)
        change(copy)
        return corpus_is_complete(str(copy))

    shard = "retrieval/train/data-00000-of-00001.arrow"
    assert not damaged(lambda c: os.remove(c / "corpus_manifest.json"))
    assert not damaged(lambda c: shutil.rmtree(c / "type_inference"))
    assert not damaged(lambda c: os.remove(c / shard))
    assert not damaged(lambda c: os.truncate(c / shard, os.path.getsize(c / shard) - 8))
    assert not damaged(lambda c: (c / "corpus_manifest.json").write_text('{"format": "mambacode-corpus/1", "fi'))

    def flip_byte(c):
        data = bytearray((c / "retrieval" / "README.md").read_bytes())
        data[10] ^= 1
        (c / "retrieval" / "README.md").write_bytes(bytes(data))

    assert damaged(flip_byte)  # same size: only the checksum sees it
    copy = tmp_path / "copy"
    assert corpus_is_complete(str(copy)) and not corpus_is_complete(str(copy), verify_checksums=True)

    def wrong_rows(c):
        m = json.load(open(c / "corpus_manifest.json"))
        m["rows"]["retrieval"]["train"] += 1
        (c / "corpus_manifest.json").write_text(json.dumps(m))

    assert not damaged(wrong_rows)
    assert not corpus_is_complete(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------- sources
def test_manifest_records_the_exact_sources(tmp_path):
    import platform

    src = small_tree(tmp_path)
    out = tmp_path / "out"
    result = build_corpus(str(out), source_dirs=[src], **{**OPTIONS, "packages": ("idna", "surely-not-installed-x")})
    from importlib import metadata

    manifest = json.load(open(out / "corpus_manifest.json"))
    assert manifest["python"] == platform.python_version() == result.python_version
    assert manifest["packages"] == {
        "idna": {"pinned": CORPUS_PINS["idna"], "installed": metadata.version("idna")},
        "surely-not-installed-x": {"pinned": None, "installed": None},
    }
    assert result.missing_packages == manifest["missing_packages"] == ["surely-not-installed-x"]
    assert {(s["name"], s["version"], s["kind"]) for s in manifest["sources"]} == {
        ("small", "unknown", "directory"), ("idna", metadata.version("idna"), "package")}
    assert manifest["sources"] == result.sources


def test_missing_corpus_packages_names_missing_and_other_versions(monkeypatch):
    from importlib import metadata

    installed = dict(CORPUS_PINS)
    installed["rich"] = None
    installed["sympy"] = "1.13.3"
    installed["idna"] = CORPUS_PINS["idna"] + ".0"  # the same version, spelled differently

    def version(name):
        if installed.get(name) is None:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(metadata, "version", version)
    assert missing_corpus_packages() == [
        f"rich=={CORPUS_PINS['rich']} (not installed)",
        f"sympy=={CORPUS_PINS['sympy']} (installed: 1.13.3)",
    ]
    monkeypatch.setattr(metadata, "version", lambda name: CORPUS_PINS[name])
    assert missing_corpus_packages() == []


def test_cli_names_skipped_files_and_refuses_foreign_output(hostile, tmp_path, capsys):
    import importlib.util

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("build_corpus_cli", os.path.join(repo, "scripts", "build_corpus.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src, _, _ = hostile
    out = tmp_path / "cli"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--output_dir", str(out), "--no_stdlib", "--packages", "none", "--source_dir", src, "--num_workers", "1",
            "--quiet", "--long_context_min_tokens", "20"]
    assert cli.main(argv) == 2
    assert "keep.txt" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 2  # not an earlier build: never replaced
    assert "corpus_manifest.json" in capsys.readouterr().err and os.listdir(out) == ["keep.txt"]
    os.remove(out / "keep.txt")
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "file_non_utf8_name: 2" in printed and "src/caf\\xe9.py" in printed and "src/d\\xfcr/mod.py" in printed
    assert "file_duplicate_real_dir: 6" in printed
