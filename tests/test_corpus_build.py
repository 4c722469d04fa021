"""End-to-end corpus builds over tiny source trees made in tmp dirs (no stdlib, no network)."""

import configparser
import filecmp
import io
import json
import os
import tarfile
import textwrap

import datasets
import pytest

from mambacode.corpus import CORPUS_PACKAGES, LongContextConfig, build_corpus
from mambacode.corpus.sources import CORPUS_PINS
from mambacode.corpus.parsing import parses_cleanly

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PACKAGES = 8
OPTIONS = dict(include_stdlib=False, packages=(), long_context=LongContextConfig(min_tokens=20), max_file_bytes=20_000)


def module_source(i: int) -> str:
    funcs = []
    for j in range(3):
        funcs.append(textwrap.dedent(f'''\
            def compute_{i}_{j}(value, factor={j + 1}):
                """Compute quantity number {j} of package {i} carefully.

                Details that are not part of the query.
                """
                total = value * factor + {i}
                for step in range({j} + 2):
                    total += step * {i + j}
                return total
            '''))
    funcs.append(textwrap.dedent(f'''\
        class Store{i}:
            """Keep items for package {i}."""

            def add(self, key: str, value: int = {i}) -> bool:
                """Add an item under a key and report success."""
                self.items[key] = value + {i}
                self.count += 1
                return True
        '''))
    return "\n\n".join(funcs)


def make_tree(root) -> str:
    src = root / "src"
    for i in range(NUM_PACKAGES):
        pkg = src / f"pkg{i}"
        pkg.mkdir(parents=True)
        (pkg / "core.py").write_text(module_source(i))
        (pkg / "notes.txt").write_text("not code")
    # the same function again (different comments/layout) in another package: a duplicate
    dup = module_source(0).split("\n\n\n")[0].replace("total = value", "# copied\n    total  =  value")
    (src / "pkg7" / "copy.py").write_text(dup)
    bad = src / "pkgbad"
    bad.mkdir()
    (bad / "broken.py").write_text("def broken(:\n    return ]\n")
    (bad / "latin.py").write_bytes('def f():\n    """Caf\xe9 au lait ok."""\n'.encode("latin-1"))
    (bad / "huge.py").write_text("x = 1\n" * 5000)
    (bad / "loop").symlink_to(bad, target_is_directory=True)
    (bad / "dangling.py").symlink_to(bad / "nowhere.py")
    (src / "pkgempty").mkdir()
    tests = src / "pkg1" / "tests"
    tests.mkdir()
    (tests / "test_core.py").write_text("def test_x():\n    assert True\n")
    return str(src)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    src = make_tree(root)
    out = str(root / "out")
    stats = build_corpus(out, source_dirs=[src], num_workers=1, show_progress=False, **OPTIONS)
    return src, out, stats


def load(out, task):
    return datasets.load_from_disk(os.path.join(out, task))


def test_schema_and_splits(built):
    _, out, stats = built
    r = load(out, "retrieval")
    assert set(r) == {"train", "validation", "test"}
    for col in ("query", "code", "package", "language", "func_name", "path"):
        assert col in r["train"].column_names
    # 8 packages x (3 functions + 1 method); the copy in pkg7 is a duplicate
    assert sum(len(d) for d in r.values()) == NUM_PACKAGES * 4
    row = [x for d in r.values() for x in d if x["func_name"] == "compute_3_1"][0]
    assert row["query"] == "Compute quantity number 1 of package 3 carefully."
    assert row["package"] == "src/pkg3" and row["path"] == "pkg3/core.py" and row["language"] == "python"
    assert '"""' not in row["code"] and row["code"].startswith("def compute_3_1(value, factor=2):")
    assert set(load(out, "retrieval_adv")) == {"test"}
    assert {"train", "test"} <= set(load(out, "long_context"))
    ti = load(out, "type_inference")
    assert isinstance(ti["train"].features["labels"].feature, datasets.ClassLabel)
    assert stats.sizes["retrieval"] == {k: len(v) for k, v in r.items()}
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temp folders left behind


def test_dataset_cards_metadata(built):
    """Each dataset's card parses with huggingface_hub, names its task category, licence (other + name),
    the Arrow file of each split (`configs`) and the features/split sizes (`dataset_info`) of the saved data;
    the saved DatasetInfo carries the description and licence."""
    import glob

    from huggingface_hub import DatasetCard

    _, out, stats = built
    expected_categories = {"retrieval": ["text-retrieval"], "retrieval_adv": ["text-retrieval"],
                           "long_context": ["text-retrieval"], "type_inference": ["token-classification"]}
    for task, categories in expected_categories.items():
        dd = load(out, task)
        data = DatasetCard.load(os.path.join(out, task, "README.md")).data.to_dict()
        assert data["task_categories"] == categories
        assert data["license"] == "other" and data["license_name"] == "per-source-licenses"
        (config,) = data["configs"]
        assert config["config_name"] == "default"
        for entry in config["data_files"]:  # each pattern finds exactly that split's Arrow shard
            found = glob.glob(os.path.join(out, task, entry["path"]))
            assert len(found) == 1 and os.path.dirname(found[0]).endswith(entry["split"])
        assert [e["split"] for e in config["data_files"]] == list(dd)
        info = data["dataset_info"]
        assert {sp["name"]: sp["num_examples"] for sp in info["splits"]} == stats.sizes[task]
        assert [f["name"] for f in info["features"]] == list(dd[next(iter(dd))].features)
        for ds in dd.values():
            assert ds.info.description.startswith(("Natural-language", "AdvTest", "Long-context", "Type inference"))
            assert ds.info.license == ("Code from several sources, each under its own licence (see the card's "
                                       "Sources table): " + ", ".join(sorted({x["license"] for x in stats.sources})) + ".")
    labels = DatasetCard.load(os.path.join(out, "type_inference", "README.md")).data.to_dict()["dataset_info"]
    label_feature = [f for f in labels["features"] if f["name"] == "labels"][0]
    names = load(out, "type_inference")["train"].features["labels"].feature.names
    assert label_feature["list"]["class_label"]["names"] == {str(i): n for i, n in enumerate(names)}


def test_splits_are_disjoint_by_package(built):
    _, out, _ = built
    split_of = {}
    for task in ("retrieval", "long_context", "type_inference"):
        dd = load(out, task)
        for split, ds in dd.items():
            for pkg in set(ds["package"]):
                # one split per package, across every task
                assert split_of.setdefault(pkg, split) == split, (task, pkg)
    assert {"train", "validation", "test"} == set(split_of.values())


def test_skip_counters(built):
    _, out, stats = built
    s = stats.skipped
    assert s["file_unparseable"] == 1
    assert s["file_non_utf8"] == 1
    assert s["file_huge_file"] == 1
    assert s["file_symlink_loop"] == 1
    assert s["file_broken_symlink"] == 1
    assert s["file_empty_dir"] == 1
    assert s["file_test_file"] == 1
    assert s["function_duplicate"] == 1
    card = open(os.path.join(out, "retrieval", "README.md")).read()
    assert "| file_non_utf8 | 1 |" in card and "| function_duplicate | 1 |" in card


def test_adv_split_is_obfuscated_and_parses(built):
    _, out, _ = built
    test = load(out, "retrieval")["test"]
    adv = load(out, "retrieval_adv")["test"]
    assert adv["id"] == test["id"] and len(adv) > 0
    for row in adv:
        assert parses_cleanly(row["code"], "python")
        assert row["code"].startswith("def func(")
        assert row["func_name"].split(".")[-1] not in row["code"]
        assert "value" not in row["code"] and "total" not in row["code"]


def test_long_context_documents(built):
    _, out, _ = built
    lc = load(out, "long_context")
    rows = [x for d in lc.values() for x in d]
    # every documented function of every module is a query; pkg7/copy.py is a module of its own
    assert len(rows) == NUM_PACKAGES * 4 + 1
    for row in rows:
        assert row["query"] not in " ".join(row["code"].split())  # the docstring is gone
        assert parses_cleanly(row["code"], "python")
        assert row["kind"] == "module"
    assert "Keep items for package" in rows[0]["code"]  # class docstrings stay


def test_type_inference_labels(built):
    _, out, _ = built
    ti = load(out, "type_inference")
    names = ti["train"].features["labels"].feature.names
    assert names[-1] == "other" and {"str", "int", "bool"} <= set(names)
    ex = [x for d in ti.values() for x in d][0]
    got = {(w, names[l]) for w, l in zip(ex["tokens"], ex["labels"]) if l >= 0}
    assert got == {("add", "bool"), ("key", "str"), ("value", "int")}
    assert "->" not in ex["tokens"]
    i = ex["tokens"].index("key")
    assert ex["tokens"][i + 1 : i + 3] == [",", "value"]  # `key: str, value: int = ...` lost its annotations


def test_two_builds_are_identical_whatever_the_worker_count(built, tmp_path):
    src, out, _ = built
    out2 = str(tmp_path / "again")
    build_corpus(out2, source_dirs=[src], num_workers=2, show_progress=False, **OPTIONS)
    cmp = filecmp.dircmp(out, out2)

    def same(c):
        assert not c.left_only and not c.right_only
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors, mismatch
        for sub in c.subdirs.values():
            same(sub)

    same(cmp)


def test_pool_matches_single_process(tmp_path):
    src = tmp_path / "many"
    for i in range(40):  # enough files for the worker pool to be used
        (src / f"m{i}").mkdir(parents=True)
        (src / f"m{i}" / "a.py").write_text(module_source(i))
    a = build_corpus(str(tmp_path / "a"), source_dirs=[str(src)], num_workers=1, show_progress=False, **OPTIONS)
    b = build_corpus(str(tmp_path / "b"), source_dirs=[str(src)], num_workers=2, show_progress=False, **OPTIONS)
    assert a.sizes == b.sizes
    ra, rb = load(str(tmp_path / "a"), "retrieval"), load(str(tmp_path / "b"), "retrieval")
    assert ra["train"]["id"] == rb["train"]["id"]


def test_max_functions_and_rebuild_replaces_output(built, tmp_path):
    src, _, _ = built
    out = tmp_path / "small"
    build_corpus(str(out), source_dirs=[src], num_workers=1, show_progress=False, **OPTIONS)
    stats = build_corpus(str(out), max_functions=5, source_dirs=[src], num_workers=1, show_progress=False, **OPTIONS)
    assert sum(stats.sizes["retrieval"].values()) == 5
    assert sum(len(d) for d in load(str(out), "retrieval").values()) == 5


def test_missing_source_dir_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        build_corpus(str(tmp_path / "o"), source_dirs=[missing], **OPTIONS)
    with pytest.raises(ValueError, match="languages"):
        build_corpus(str(tmp_path / "o"), languages=("cobol",), **OPTIONS)


def test_cli(built, tmp_path, capsys):
    import importlib.util

    src, _, _ = built
    spec = importlib.util.spec_from_file_location("build_corpus_cli", os.path.join(REPO, "scripts", "build_corpus.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / "cli")
    rc = cli.main(["--output_dir", out, "--no_stdlib", "--packages", "none", "--source_dir", src,
                   "--max_functions", "6", "--num_workers", "1", "--quiet", "--long_context_min_tokens", "20"])
    assert rc == 0
    for task in ("retrieval", "retrieval_adv", "long_context", "type_inference"):
        assert os.path.isfile(os.path.join(out, task, "README.md"))
        load(out, task)
    assert json.load(open(os.path.join(out, "corpus_stats.json")))["sizes"]["retrieval"]
    assert cli.main(["--output_dir", out, "--source_dir", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def _tarball(path, name, files):
    with tarfile.open(path, "w:gz") as tar:
        for member, text in {"package.json": json.dumps({"name": name, "version": "1.2.3", "license": "MIT"}), **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


JS_FUNC = """
/**
 * Compute the {what} of the given values.
 */
function {name}(values, start) {{
  let acc = start;
  for (const v of values) {{ acc = acc {op} v; }}
  return acc;
}}
"""

TS_FUNC = """
/** Format a {what} label for display. */
export function {name}(value: number, unit: string): string {{
  const text: string = value.toFixed({n}) + unit;
  console.log(text);
  return text;
}}
"""


def test_javascript_and_typescript_from_npm_tarballs(tmp_path):
    npm = tmp_path / "npm"
    npm.mkdir()
    for i, (what, op) in enumerate([("sum", "+"), ("product", "*"), ("difference", "-"), ("maximum", "|")]):
        _tarball(npm / f"pkg{i}-1.2.3.tgz", f"pkg{i}", {
            "index.js": JS_FUNC.format(what=what, name=f"{what}Of", op=op),
            "lib/fmt.ts": TS_FUNC.format(what=what, name=f"fmt{i}", n=i),
            "dist/index.min.js": "function a(b){return b}" * 100,
            "types.d.ts": "export declare function f(x: number): number;",
        })
    out = str(tmp_path / "out")
    stats = build_corpus(out, languages=("javascript", "typescript"), source_dirs=[str(npm)], num_workers=1,
                         show_progress=False, **OPTIONS)
    r = load(out, "retrieval")
    rows = [x for d in r.values() for x in d]
    assert {x["language"] for x in rows} == {"javascript", "typescript"}
    assert {x["package"] for x in rows} == {"pkg0", "pkg1", "pkg2", "pkg3"}
    assert "Compute the sum of the given values." in {x["query"] for x in rows}
    adv = load(out, "retrieval_adv")["test"]
    for row in adv:
        assert parses_cleanly(row["code"], row["language"])
    ti = load(out, "type_inference")
    names = ti["train"].features["labels"].feature.names
    assert "string" in names and "number" in names
    assert stats.skipped["file_minified"] == 4
    card = open(os.path.join(out, "retrieval", "README.md")).read()
    assert "| pkg0 | 1.2.3 | MIT | tarball |" in card


def test_corpus_extra_matches_package_list():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    pins = [line.strip() for line in cfg["options.extras_require"]["corpus"].splitlines() if line.strip()]
    names = sorted(p.split("==")[0].lower() for p in pins)
    assert names == sorted(CORPUS_PACKAGES)
    assert all("==" in p for p in pins)
    # the versions the pipeline checks against are the ones the extra installs
    assert dict(p.lower().split("==") for p in pins) == CORPUS_PINS


def test_assign_splits_balances_and_keeps_big_packages_in_train():
    from mambacode.corpus import assign_splits

    sizes = {"huge": (500, 10, 0), **{f"p{i}": (10 + i, 5, i % 3) for i in range(60)}}
    a = assign_splits(sizes, seed=1)
    assert a == assign_splits(dict(reversed(list(sizes.items()))), seed=1)  # input order does not matter
    assert a["huge"] == "train"
    counts = {s: sum(sizes[p][0] for p in a if a[p] == s) for s in ("train", "validation", "test")}
    total = sum(counts.values())
    assert abs(counts["validation"] / total - 0.1) < 0.03 and abs(counts["test"] / total - 0.1) < 0.03
    assert sum(1 for p in a if a[p] == "test") >= 5
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(sizes, fractions=(0.5, 0.5, 0.5))
