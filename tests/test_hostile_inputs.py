"""Issue 24's adversarial table, one test (or a few) per row; docs/hostile-input.md says what each row now does.

Row 1: a corpus build whose output is, holds or lies inside a source; --overwrite on a folder that is no build.
Row 2: symlinks out of a source tree (a planted secret, a link to /).
Row 5: a training run killed (or out of disk) inside a checkpoint save, then rerun plainly.
Row 8: checksums.sha256 naming files outside the folder, an empty one, NaN-poisoned weights.
Row 11: an absurd config.json; damaged weights given to `mambacode index`.
Row 13: the parser's time limit under load; misspelt forward arguments; `--model owner/name` offline;
temporaries left by killed runs.
"""

import errno
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name):
    spec = importlib.util.spec_from_file_location(f"_hostile_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def documented(name: str) -> str:
    return (f'def {name}(items, factor):\n    """Count the {name} items of a list carefully."""\n'
            "    n = 0\n    for x in items:\n        n += x * factor\n    return n\n")


def files_under(folder) -> dict:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


CORPUS = dict(include_stdlib=False, packages=(), num_workers=1, show_progress=False)


def no_parsing(*args, **kwargs):
    raise AssertionError("the sources were read before the output folder was checked")


# ------------------------------------------------------------------------------------------------ row 1
@pytest.fixture
def source_tree(tmp_path):
    src = tmp_path / "proj" / "src"
    for i in range(7):
        pkg = src / f"pkg{i}"
        pkg.mkdir(parents=True)
        for j in range(5):
            (pkg / f"mod{j}.py").write_text(documented(f"f{i}_{j}"))
    return src  # 35 files


@pytest.mark.parametrize("where", ["the source", "its parent", "inside it"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_output_that_is_holds_or_lies_in_a_source_is_refused(source_tree, where, overwrite, monkeypatch):
    import mambacode.corpus.build as build_mod
    from mambacode.corpus import build_corpus

    out = {"the source": source_tree, "its parent": source_tree.parent, "inside it": source_tree / "pkg0" / "out"}[where]
    before = files_under(source_tree.parent)
    assert len(before) == 35
    monkeypatch.setattr(build_mod, "collect_tasks", no_parsing)
    relation = {"the source": "is", "its parent": "contains", "inside it": "lies inside"}[where]
    with pytest.raises(ValueError, match=rf"{relation} a source of the build \(--source_dir"):
        build_corpus(str(out), source_dirs=[str(source_tree)], overwrite=overwrite, **CORPUS)
    assert files_under(source_tree.parent) == before


def test_cli_refuses_the_source_as_output_and_overwrite_of_a_folder_that_is_no_build(source_tree, tmp_path, capsys):
    before = files_under(source_tree)
    cli = script("build_corpus")
    common = ["--no_stdlib", "--packages", "none", "--num_workers", "1", "--quiet"]
    assert cli(["--output_dir", str(source_tree), "--source_dir", str(source_tree), "--overwrite", *common]) == 2
    err = capsys.readouterr().err
    assert "is a source of the build" in err and len(err.strip().splitlines()) == 1
    assert files_under(source_tree) == before  # 35 of 35 files still there
    # a symlink to the source is the source
    link = tmp_path / "link"
    link.symlink_to(source_tree, target_is_directory=True)
    assert cli(["--output_dir", str(link), "--source_dir", str(source_tree), "--overwrite", *common]) == 2
    # --overwrite replaces an earlier build only: a folder without our manifest is refused
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert cli(["--output_dir", str(theirs), "--source_dir", str(source_tree), "--overwrite", *common]) == 2
    assert "only replaces a folder holding an earlier build's corpus_manifest.json" in capsys.readouterr().err
    assert os.listdir(theirs) == ["notes.txt"]


# ------------------------------------------------------------------------------------------------ row 2
@pytest.fixture
def linked_tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(documented("planted_secret"))
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "core.py").write_text(documented("own_code"))
    (src / "pkg" / "inner.py").symlink_to(src / "pkg" / "core.py")  # inside the tree: fine
    (src / "pkg" / "away").symlink_to(outside, target_is_directory=True)
    (src / "pkg" / "secret_copy.py").symlink_to(outside / "secret.py")
    (src / "pkg" / "machine").symlink_to("/", target_is_directory=True)
    (src / "pkg" / "up").symlink_to(tmp_path, target_is_directory=True)  # a folder holding the tree
    return src


def _functions(out):
    import datasets

    dd = datasets.load_from_disk(os.path.join(out, "retrieval"))
    return {r["func_name"] for split in dd.values() for r in split}


def test_links_out_of_a_source_are_skipped_and_named(linked_tree, tmp_path):
    from mambacode.corpus import build_corpus

    t0 = time.perf_counter()
    result = build_corpus(str(tmp_path / "out"), source_dirs=[str(linked_tree)], **CORPUS)
    assert time.perf_counter() - t0 < 60  # not the whole machine
    assert _functions(tmp_path / "out") == {"own_code"}
    named = {(x["reason"], x["path"]) for x in result.skipped_files}
    assert {("file_symlink_outside_root", f"src/pkg/{n}") for n in ("away", "machine", "secret_copy.py", "up")} <= named
    assert result.skipped["file_symlink_outside_root"] == 4


def test_follow_reads_links_out_but_never_a_folder_holding_the_tree(linked_tree, tmp_path, capsys):
    from mambacode.corpus import build_corpus

    result = build_corpus(str(tmp_path / "out"), source_dirs=[str(linked_tree)], follow_symlinks=True, **CORPUS)
    assert _functions(tmp_path / "out") == {"own_code", "planted_secret"}  # asked for: read, once
    named = {(x["reason"], x["path"]) for x in result.skipped_files}
    assert {("file_symlink_to_ancestor", "src/pkg/machine"), ("file_symlink_to_ancestor", "src/pkg/up")} <= named
    # the command line: skipped links named, with the flag that reads them
    out2 = tmp_path / "out2"
    assert script("build_corpus")(["--output_dir", str(out2), "--source_dir", str(linked_tree), "--no_stdlib",
                                   "--packages", "none", "--num_workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "file_symlink_outside_root: 4" in printed and "src/pkg/machine" in printed and "--follow" in printed


# ------------------------------------------------------------------------------------------------ row 5
SMALL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--intermediate_size", "64", "--state_size", "8",
         "--max_position_embeddings", "256"]


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    import datasets

    from mambacode.corpus import train_tokenizer

    root = tmp_path_factory.mktemp("resume_data")
    rng = random.Random(0)
    words = ["add", "sum", "list", "parse", "file", "read", "write", "value", "count", "sort", "merge", "split"]
    rows = []
    for _ in range(40):
        a, b = rng.sample(words, 2)
        rows.append({"query": f"{a} the {b} items", "code": f"def {a}_{b}(x):\n    return {a}(x, {b})\n"})
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:32]),
                          "validation": datasets.Dataset.from_list(rows[32:])}).save_to_disk(str(root / "retrieval"))
    train_tokenizer([r["query"] for r in rows] + [r["code"] for r in rows], vocab_size=300, min_frequency=1,
                    output_dir=str(root / "tok"))

    def argv(out):
        return ["--tokenizer_name_or_path", str(root / "tok"), "--dataset_path", str(root / "retrieval"),
                "--max_code_length", "32", *SMALL, "--output_dir", str(out), "--do_train", "--max_steps", "6",
                "--save_steps", "2", "--save_total_limit", "1", "--logging_steps", "1",
                "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
                "--dataloader_num_workers", "0", "--learning_rate", "5e-3", "--num_threads", "1"]

    whole = root / "whole"
    assert script("run_retrieval")(argv(whole)) == 0
    return argv, whole


class Killed(BaseException):
    """kill -9 inside the save: nothing after this point runs, nothing catches it."""


def _at_step_4(path) -> bool:
    return "checkpoint-4" in str(path)


def _kill_points():
    from transformers import Trainer

    import mambacode.training.callbacks as callbacks_mod

    real_save_model = Trainer.save_model
    real_atomic = callbacks_mod.atomic_write_text

    def in_weights(self, output_dir=None, _internal_call=False):
        real_save_model(self, output_dir, _internal_call)
        if _at_step_4(output_dir):
            path = os.path.join(output_dir, "model.safetensors")
            with open(path, "r+b") as fh:  # killed while the weights were being written
                fh.truncate(os.path.getsize(path) // 2)
            raise Killed()

    def in_optimizer(self, output_dir):
        if _at_step_4(output_dir):
            with open(os.path.join(output_dir, "optimizer.pt"), "wb") as fh:
                fh.write(b"\x80\x02half an optimizer")
            raise Killed()
        return Trainer._real_save_optimizer(self, output_dir)

    def disk_full(self, output_dir):
        if _at_step_4(output_dir):
            with open(os.path.join(output_dir, "optimizer.pt"), "wb") as fh:
                fh.write(b"\x80\x02half an optimizer")
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, "optimizer.pt"))
        return Trainer._real_save_optimizer(self, output_dir)

    def in_rng(self, output_dir):
        if _at_step_4(output_dir):
            raise Killed()
        return Trainer._real_save_rng(self, output_dir)

    def after_state(path, text):  # everything of transformers' save is on disk, the loss record is not
        if _at_step_4(path):
            raise Killed()
        return real_atomic(path, text)

    return {
        "weights": (Trainer, "save_model", in_weights, Killed),
        "optimizer": (Trainer, "_save_optimizer_and_scheduler", in_optimizer, Killed),
        "rng_state": (Trainer, "_save_rng_state", in_rng, Killed),
        "after_trainer_state": (callbacks_mod, "atomic_write_text", after_state, Killed),
        "disk_full": (Trainer, "_save_optimizer_and_scheduler", disk_full, OSError),
    }


@pytest.mark.parametrize("point", ["weights", "optimizer", "rng_state", "after_trainer_state", "disk_full"])
def test_a_save_interrupted_anywhere_is_passed_over_and_the_rerun_is_exact(train_data, tmp_path, point, monkeypatch):
    from safetensors.torch import load_file
    from transformers import Trainer

    from mambacode.training.callbacks import LOSS_RECORD

    argv, whole = train_data
    out = tmp_path / "killed"
    monkeypatch.setattr(Trainer, "_real_save_optimizer", Trainer._save_optimizer_and_scheduler, raising=False)
    monkeypatch.setattr(Trainer, "_real_save_rng", Trainer._save_rng_state, raising=False)
    owner, name, replacement, raised = _kill_points()[point]
    with monkeypatch.context() as m:
        m.setattr(owner, name, replacement)
        with pytest.raises(raised):
            script("run_retrieval")(argv(out))
    # what the interruption left: the partial checkpoint-4, and checkpoint-2 (rotation waits for completion)
    assert os.path.isdir(out / "checkpoint-4") and not os.path.exists(out / "checkpoint-4" / LOSS_RECORD)
    assert os.path.exists(out / "checkpoint-2" / LOSS_RECORD)
    # a plain rerun resumes from checkpoint-2, replaces the partial folder, and ends as the uninterrupted run
    assert script("run_retrieval")(argv(out)) == 0
    a, b = load_file(whole / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.load(open(f / "train_results.json")) for f in (whole, out))
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ["checkpoint-6"]
    assert os.path.exists(out / "checkpoint-6" / LOSS_RECORD)


def test_an_incomplete_checkpoint_named_explicitly_is_refused(tmp_path, tiny):
    from transformers import TrainingArguments

    from mambacode import MambaCodeForMaskedLM
    from mambacode.training.callbacks import GuardedTrainer, checkpoints, last_complete_checkpoint

    for step, complete in ((2, True), (4, False), (10, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "train_loss_sum.json").write_text('{"global_step": 2, "loss_sum": 1.0}')
    assert checkpoints(str(tmp_path)) == ([str(tmp_path / "checkpoint-2")],
                                          [str(tmp_path / "checkpoint-4"), str(tmp_path / "checkpoint-10")])
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    trainer = GuardedTrainer(model=MambaCodeForMaskedLM(tiny()), args=TrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1))
    with pytest.raises(ValueError, match=r"checkpoint-10 is not a complete checkpoint .*resume from .*checkpoint-2"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))


# ------------------------------------------------------------------------------------------------ row 8
@pytest.fixture
def saved_model(tmp_path, tiny, tokenizer):
    from mambacode import MambaCodeForRetrieval

    folder = tmp_path / "model"
    MambaCodeForRetrieval(tiny(vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["../outside.txt", "OUTSIDE_ABSOLUTE", "sub/../../outside.txt", "."])
def test_checksum_lines_naming_files_outside_the_folder_are_refused_unread(saved_model, tmp_path, name, monkeypatch):
    import mambacode.modeling.checksums as checksums_mod
    from mambacode import MambaCodeForRetrieval
    from mambacode.modeling.checksums import CHECKSUM_FILE, DamagedWeightsError

    outside = tmp_path / "outside.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    name = str(outside) if name == "OUTSIDE_ABSOLUTE" else name
    listing = saved_model / CHECKSUM_FILE
    listing.write_text(listing.read_text() + f"{'0' * 64}  {name}\n")
    hashed = []
    real = checksums_mod.sha256
    monkeypatch.setattr(checksums_mod, "sha256", lambda path, *a: hashed.append(path) or real(path, *a))
    with pytest.raises(DamagedWeightsError, match=r"line 2: .* is not a plain file name of this folder") as err:
        MambaCodeForRetrieval.from_pretrained(saved_model)
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in str(err.value)
    assert not any(os.path.realpath(p) == str(outside) for p in hashed)


def test_an_empty_checksum_file_is_an_error(saved_model):
    from mambacode import MambaCodeForRetrieval
    from mambacode.modeling.checksums import CHECKSUM_FILE, DamagedWeightsError

    (saved_model / CHECKSUM_FILE).write_text("")
    with pytest.raises(DamagedWeightsError, match="is empty"):
        MambaCodeForRetrieval.from_pretrained(saved_model)


@pytest.mark.parametrize("listing", ["rewritten", "empty", "absent"])
def test_nan_poisoned_weights_are_refused(saved_model, listing):
    from safetensors.torch import load_file, save_file

    from mambacode import MambaCodeForRetrieval
    from mambacode.modeling.checksums import CHECKSUM_FILE, DamagedWeightsError, write_checksums

    path = saved_model / "model.safetensors"
    weights = load_file(path)
    key = next(k for k in sorted(weights) if k.endswith("proj_o.weight"))
    weights[key][0, 0] = float("nan")
    save_file(weights, path, metadata={"format": "pt"})
    if listing == "rewritten":  # the attacker also fixed up the hashes
        write_checksums(str(saved_model))
    elif listing == "empty":
        (saved_model / CHECKSUM_FILE).write_text("")
    else:
        os.remove(saved_model / CHECKSUM_FILE)
    with pytest.raises(DamagedWeightsError, match="empty" if listing == "empty" else
                       rf"parameter .*proj_o\.weight holds 1 non-finite value"):
        MambaCodeForRetrieval.from_pretrained(saved_model)


# ------------------------------------------------------------------------------------------------ row 11
@pytest.mark.parametrize("field, value, message", [
    ("num_hidden_layers", 1_000_000, r"num_hidden_layers=1000000 is invalid: expected at most 1024 layers"),
    ("hidden_size", 4_000_000, r"about [\d,]+ parameters and buffers \(.*hidden_size=4000000.*over the limit"),
    ("vocab_size", 10**12, r"vocab_size=1000000000000.*over the limit"),
])
def test_an_absurd_config_is_refused_in_one_line_before_allocating(saved_model, field, value, message):
    from transformers import AutoConfig, AutoModel

    config = json.load(open(saved_model / "config.json"))
    config[field] = value
    json.dump(config, open(saved_model / "config.json", "w"))
    t0 = time.perf_counter()
    for load in (AutoConfig.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=message) as err:
            load(saved_model)
        assert "\n" not in str(err.value)
    assert time.perf_counter() - t0 < 10


def test_damaged_weights_given_to_index_are_one_line(saved_model, tmp_path, capsys):
    from mambacode.cli import main as cli_main
    from mambacode.search.model import load_retrieval_model

    path = saved_model / "model.safetensors"
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 100)
    with pytest.raises(ValueError, match=r"weights cannot be loaded: .*model\.safetensors.*truncated") as err:
        load_retrieval_model(str(saved_model), "cpu")
    assert "\n" not in str(err.value)
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text(documented("indexed"))
    status = cli_main(["index", str(src), "--model", str(saved_model), "--output", str(tmp_path / "idx"), "--quiet",
                       "--use_cpu"])
    err = capsys.readouterr().err.strip()
    assert status != 0 and "Traceback" not in err and len(err.splitlines()) == 1 and "truncated" in err


# ------------------------------------------------------------------------------------------------ row 13
def test_the_parser_limit_is_cpu_time_not_wall_time(monkeypatch):
    """A loaded machine: every clock read after the first is 5 s later (wall time passes, no CPU is spent).
    A wall-clock limit of 1.5 s would skip a trivial snippet; the CPU-time limit parses it."""
    from mambacode.languages import parse_within
    from mambacode.probing.code_graph import ParseLimitError, ParseLimits, code_graph

    real = time.perf_counter
    start = real()
    monkeypatch.setattr(time, "perf_counter", lambda: real() + (5.0 if real() > start else 0.0))
    graph = code_graph(documented("under_load"), "python")
    assert len(graph.tokens) > 20 and graph.dfg_edges
    assert parse_within("python", b"x = 1\n", 1.0).root_node.type == "module"
    monkeypatch.setattr(time, "perf_counter", real)
    with pytest.raises(ParseLimitError, match="too_slow: .* CPU time"):
        code_graph("x = 1\n" * 20, "python", limits=ParseLimits(time_limit=-1.0))
    with pytest.raises(ParseLimitError, match="too_slow: .* wall-clock time"):  # the backstop still holds
        code_graph("x = 1\n" * 20, "python", limits=ParseLimits(wall_limit=-1.0))


HEADS = ["MambaCodeModel", "MambaCodeForMaskedLM", "MambaCodeForRetrieval", "MambaCodeForTokenClassification",
         "MambaCodeForSequenceClassification"]


@pytest.mark.parametrize("head", HEADS)
def test_forward_refuses_unknown_keyword_arguments(tiny, head):
    import mambacode

    model = getattr(mambacode, head)(tiny()).eval()
    ids = torch.randint(5, 100, (2, 7))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'attention_maks'.*accepts input_ids"):
        model(input_ids=ids, attention_maks=torch.ones_like(ids))
    with pytest.raises(ValueError, match="no attention"):
        model(input_ids=ids, output_attentions=True)
    # what peft and sentence-transformers pass along stays accepted
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                output_attentions=None)
    assert out is not None


def test_retrieval_forward_takes_inputs_embeds(tiny):
    from mambacode import MambaCodeForRetrieval

    model = MambaCodeForRetrieval(tiny()).eval()
    ids = torch.randint(5, 100, (2, 7))
    with torch.no_grad():
        by_ids = model(input_ids=ids).embeddings
        by_embeds = model(inputs_embeds=model.get_input_embeddings()(ids)).embeddings
    torch.testing.assert_close(by_embeds, by_ids)


def test_trainer_does_not_pass_num_items_and_a_caller_who_does_gets_the_token_mean(tiny, tmp_path):
    from transformers import Trainer, TrainingArguments

    from mambacode import MambaCodeForMaskedLM, MambaCodeForTokenClassification

    model = MambaCodeForMaskedLM(tiny())
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    # the losses are per-batch means: Trainer must divide them by the accumulation steps itself
    assert Trainer(model=model, args=args).model_accepts_loss_kwargs is False
    ids = torch.randint(5, 100, (2, 7))
    labels = torch.full_like(ids, -100)
    labels[0, :3], labels[1, 5] = ids[0, :3], ids[1, 5]
    model.eval()
    with torch.no_grad():
        mean = model(input_ids=ids, labels=labels).loss
        # a micro-batch holding 4 of 8 labelled tokens of an accumulated batch: half of its sum over 4
        part = model(input_ids=ids, labels=labels, num_items_in_batch=8).loss
    torch.testing.assert_close(part, mean * 4 / 8)
    head = MambaCodeForTokenClassification(tiny(num_labels=3)).eval()
    with torch.no_grad():
        tags = torch.where(labels >= 0, labels % 3, labels)
        torch.testing.assert_close(head(input_ids=ids, labels=tags, num_items_in_batch=4).loss,
                                   head(input_ids=ids, labels=tags).loss)


def test_a_hub_id_offline_is_a_clear_one_line_error():
    from mambacode.search.model import load_retrieval_model

    with pytest.raises(FileNotFoundError, match="Hub id is not in the local cache") as err:
        load_retrieval_model("some-owner/some-model", "cpu")
    assert "no such folder" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no such folder"):  # a path stays a path
        load_retrieval_model("./missing/model", "cpu")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed_and_nothing_else(tmp_path, monkeypatch):
    from mambacode import atomic
    from mambacode.corpus import build_corpus

    host = atomic.temp_prefix().split("-")[1]
    dead, alive = _dead_pid(), os.getpid()
    day_ago = time.time() - 2 * atomic.STALE_SECONDS
    stale = [f".tmp-{host}-{dead}-abcd1234", f".tmp-{host}-{dead}-efgh5678.png", ".tmp-old12345",
             f".tmp-0badf00d-{alive}-ijkl9012", f".out.building-{host}-{dead}-mnop3456", f".out.old-{host}-{dead}-qrst7890"]
    kept = [f".tmp-{host}-{alive}-uvwx1234", ".tmp-new12345", f".tmp-0badf00d-{dead}-yzab5678", ".tmpfoo",
            ".tmp-short", "notes.tmp-abcd1234", "data"]
    for name in stale + kept:
        if name.endswith(".png") or name.startswith("notes"):
            (tmp_path / name).write_text("x")
        else:
            (tmp_path / name).mkdir()
            (tmp_path / name / "part.bin").write_text("x")
    for name in (".tmp-old12345", f".tmp-0badf00d-{alive}-ijkl9012"):  # another machine's, or unnamed: by age
        os.utime(tmp_path / name, (day_ago, day_ago))
    atomic.atomic_write_text(str(tmp_path / "report.md"), "done")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["report.md"])
    # a corpus build cleans its output's folder the same way
    (tmp_path / f".out.building-{host}-{dead}-cdef1234").mkdir()
    src = tmp_path / "data"
    (src / "m.py").write_text(documented("kept_function"))
    build_corpus(str(tmp_path / "out"), source_dirs=[str(src)], **CORPUS)
    assert not any(n.startswith(".out.") for n in os.listdir(tmp_path))
