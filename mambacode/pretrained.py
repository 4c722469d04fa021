"""Checkpoints shipped with the package: where they are (`pretrained_path`) and how one is made from a trained
folder (`export_pretrained`).

Each shipped checkpoint is a complete Hub-style model folder under the repository's `pretrained/<name>/`
(installed as the package data `mambacode.shipped`): config with `auto_map` and the remote-code files (MambaCode;
RoCoder is transformers' own RoFormer), safetensors weights with `checksums.sha256`, the tokenizer, a model card,
and two files of ours:

* `eval_slice.jsonl`: a fixed slice of a package-disjoint test split (the first rows, in order);
* `shipped.json`: the metric the card claims on that slice (`slice_metrics`), with the tolerance a re-run
  must meet, the metrics of the full test split from the run that trained it, and the exact commands.

Why a slice is shipped: CI and users can check that the weights they hold reproduce the card (a test does,
`tests/test_pretrained.py`) without building the corpus. Weights are stored in float16 (half the size) only when
no slice metric of the float16 weights moves from the float32 one by half a unit of the card's precision
(3 decimals: 0.1 point of a percentage, as the README's tables); the card states the float16 weights' own
metrics, to 6 decimals in `shipped.json`. The config keeps `dtype: float32`, so `from_pretrained` returns a
float32 model either way.
"""

from __future__ import annotations

import json
import math
import os

import torch

from mambacode.atomic import atomic_directory
from mambacode.model_names import SHIPPED_FILE, available_pretrained, pretrained_path, pretrained_root  # noqa: F401
from mambacode.modeling.checksums import write_checksums
from mambacode.tokenizer_files import model_max_length_of, tidy_tokenizer_files

SLICE_FILE = "eval_slice.jsonl"
REPORTED_DECIMALS = 3  # the card's precision for slice metrics (0.1 point of a percentage, as the README tables)
MASK_PROBABILITY = 0.15
LOSS_TOLERANCE = 1e-4  # relative, for the MLM loss
WHOLE_TEST_SPLIT = "Metrics on the whole test split, from the run that trained it:"


def slice_tolerances(task: str, metrics: dict, rows: int) -> dict:
    """How far a re-run of the slice may land from the card, per metric. Other CPUs and thread counts sum in
    other orders, which can swap two near-tied candidates: ranks and argmaxes move in steps, so rank metrics
    allow one step for every 128 rows at least two (a query's answer moving from rank 1 to 2 moves MRR by
    0.5 / rows, R@1 by 1 / rows), masked accuracy two tokens; the loss is continuous (1e-4 relative)."""
    if task == "retrieval":
        step = max(2, rows / 128) / rows
        return {"mrr": step, "recall@1": step}
    return {"masked_accuracy": 2 / metrics["masked_tokens"], "loss": LOSS_TOLERANCE * metrics["loss"]}


# ------------------------------------------------------------------------------------------ finding them
# `pretrained_root`, `available_pretrained` and `pretrained_path` live in the torch-free `mambacode.model_names`
# (imported above): commands resolve `--model` before they know whether they need torch.
def shipped_info(name_or_path: str) -> dict:
    """The `shipped.json` of a shipped checkpoint (by name or folder)."""
    folder = name_or_path if os.path.isdir(name_or_path) else pretrained_path(name_or_path)
    with open(os.path.join(folder, SHIPPED_FILE)) as fh:
        return json.load(fh)


def read_slice(folder: str) -> list[dict]:
    with open(os.path.join(folder, SLICE_FILE)) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ------------------------------------------------------------------------------------------ slice metrics
@torch.no_grad()
def retrieval_slice_metrics(model, tokenizer, rows: list[dict], max_query_length: int, max_code_length: int,
                            batch_size: int = 32) -> dict:
    """MRR and Recall@1 of every row's query against the pool of all the rows' codes (the row's own code is the
    answer; codes are distinct), ranks by float64 cosine similarity, ties broken pessimistically."""
    from mambacode.modeling.modeling_mambacode import encode_texts

    queries = encode_texts(model, tokenizer, [r["query"] for r in rows], max_query_length, batch_size, False)
    codes = encode_texts(model, tokenizer, [r["code"] for r in rows], max_code_length, batch_size, False)
    scores = queries.double() @ codes.double().T
    gold = scores.diagonal().unsqueeze(1)
    ranks = (scores >= gold).sum(dim=1).double()  # 1 = best; a tie counts against the answer
    return {"mrr": float((1.0 / ranks).mean()), "recall@1": float((ranks == 1).double().mean())}


def mask_positions(input_ids: list[int], special: set[int], index: int, seed: int = 0) -> list[int]:
    """The positions masked in text `index`: each non-special token with probability 0.15 from a generator
    seeded by (seed, index), at least one; the same on every machine (torch's CPU generator)."""
    candidates = [i for i, t in enumerate(input_ids) if t not in special]
    if not candidates:
        return []
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    draws = torch.rand(len(candidates), generator=gen)
    chosen = [c for c, d in zip(candidates, draws.tolist()) if d < MASK_PROBABILITY]
    return chosen or [candidates[int(draws.argmin())]]


@torch.no_grad()
def mlm_slice_metrics(model, tokenizer, texts: list[str], max_length: int, seed: int = 0) -> dict:
    """Masked-token accuracy and mean cross-entropy (nats) over the slice: every chosen position
    (`mask_positions`) is replaced by the mask token and predicted from the rest of its text."""
    model.eval()
    special = set(tokenizer.all_special_ids)
    correct, total, nll = 0, 0, 0.0
    for index, text in enumerate(texts):
        ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        positions = mask_positions(ids, special, index, seed)
        if not positions:
            continue
        masked = torch.tensor([ids])
        masked[0, positions] = tokenizer.mask_token_id
        logits = model(input_ids=masked, attention_mask=torch.ones_like(masked)).logits[0].double()
        target = torch.tensor([ids[p] for p in positions])
        picked = logits[positions]
        nll += float(torch.nn.functional.cross_entropy(picked, target, reduction="sum"))
        correct += int((picked.argmax(-1) == target).sum())
        total += len(positions)
    if not total:
        raise ValueError("mlm_slice_metrics: no maskable token in the slice")
    return {"masked_accuracy": correct / total, "loss": nll / total, "masked_tokens": total}


def slice_metrics(model, tokenizer, info: dict, rows: list[dict]) -> dict:
    """The slice metrics of a loaded model for the task and lengths `info` (a `shipped.json`) names."""
    model.eval()
    if info["task"] == "retrieval":
        return retrieval_slice_metrics(model, tokenizer, rows, info["max_query_length"], info["max_code_length"])
    return mlm_slice_metrics(model, tokenizer, [r["code"] for r in rows], info["max_length"])


def folder_megabytes(folder: str) -> float:
    """Bytes of every file under `folder`, in MiB (the 100 MB budget of `pretrained/`)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files) / 2**20


def load_for_task(folder: str, task: str, dtype=torch.float32):
    """(model, tokenizer) of a folder for `task` ('mlm' or 'retrieval') through transformers' Auto classes."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    auto = AutoModelForMaskedLM if task == "mlm" else AutoModel
    model = auto.from_pretrained(folder, trust_remote_code=True, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(folder)


# ------------------------------------------------------------------------------------------ making them
def _within_reported_precision(a: dict, b: dict, keys) -> bool:
    """Every metric of `a` and `b` differs by less than half a unit of the card's last decimal."""
    return all(abs(a[k] - b[k]) < 0.5 * 10 ** -REPORTED_DECIMALS for k in keys)


def export_pretrained(source: str, target: str, *, task: str, slice_rows: list[dict], commands: list[str],
                      test_metrics: dict | None = None, test_metrics_caption: str = WHOLE_TEST_SPLIT,
                      description: str = "", max_query_length: int = 64,
                      max_code_length: int = 256, max_length: int = 256, half: bool = True,
                      base_model: str | None = None, extra_info: dict | None = None) -> dict:
    """Write the shipped folder `target` from the trained folder `source` (a `run_mlm` / `run_retrieval` output):
    weights (float16 when that moves no slice metric by half a unit of the card's precision, else float32), tokenizer
    (its `model_max_length` the model's limit), remote code, checksums, `eval_slice.jsonl` (`slice_rows`: dicts with
    `code`, and `query` for retrieval), `shipped.json` and the card (the training card re-rendered under the shipped
    name, plus a 'Shipped checkpoint' section, where `test_metrics`, the training run's own evaluation, appear under
    `test_metrics_caption`, which says on what). `base_model`: the name of the shipped checkpoint `source` was
    fine-tuned from (e.g. 's4d-hf-mlm'), for the card's metadata; `extra_info`: more shipped.json fields (e.g. the
    `teacher` a distilled model learned from). Returns shipped.json.
    The folder is written beside `target` and takes its place at the end (`atomic_directory`)."""
    from transformers import AutoTokenizer

    if task not in ("mlm", "retrieval"):
        raise ValueError(f"export_pretrained: task={task!r}, expected 'mlm' or 'retrieval'")
    need = ("query", "code") if task == "retrieval" else ("code",)
    for i, row in enumerate(slice_rows):
        missing = [k for k in need if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"export_pretrained: slice row {i} lacks string field(s) {missing}")
    if not slice_rows:
        raise ValueError("export_pretrained: empty slice")
    info = {"task": task, "source": os.path.basename(os.path.normpath(source)), "slice_rows": len(slice_rows),
            "commands": list(commands), "test_metrics": test_metrics or {},
            "test_metrics_caption": test_metrics_caption, "description": description}
    if base_model:
        info["base_model"] = base_model
    info.update(extra_info or {})
    info.update({"max_query_length": max_query_length, "max_code_length": max_code_length} if task == "retrieval"
                else {"max_length": max_length})
    model, tokenizer = load_for_task(source, task)
    full = slice_metrics(model, tokenizer, info, slice_rows)
    keys = [k for k in full if k != "masked_tokens"]
    dtype = "float32"
    if half:
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        model.to(torch.float16).to(torch.float32)  # the float16 weights, computed in float32
        halved = slice_metrics(model, tokenizer, info, slice_rows)
        if _within_reported_precision(full, halved, keys):
            dtype, full = "float16", halved
        model.load_state_dict(weights)  # the float32 weights again (saved as float16 below if they qualified)
    info.update(weights_dtype=dtype, slice_metrics={k: round(v, 6) for k, v in full.items()},
                slice_tolerance={k: round(v, 6) for k, v in slice_tolerances(task, full, len(slice_rows)).items()})
    if dtype == "float16":
        model = model.to(torch.float16)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)  # weights, config (auto_map), remote code, head files
        write_checksums(staging)  # MambaCode's save wrote them already; RoFormer's does not
        _set_config_dtype(staging, "float32")
        AutoTokenizer.from_pretrained(source).save_pretrained(staging)  # as trained, not as the slice last called it
        tidy_tokenizer_files(staging, model_max_length_of(model.config))
        with open(os.path.join(staging, SLICE_FILE), "w") as fh:
            for row in slice_rows:
                fh.write(json.dumps({k: row[k] for k in need}) + "\n")
        with open(os.path.join(staging, SHIPPED_FILE), "w") as fh:
            json.dump(info, fh, indent=1)
            fh.write("\n")
        card_path = os.path.join(source, "README.md")
        training_card = open(card_path, encoding="utf-8").read() if os.path.exists(card_path) else None
        with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(_card_text(training_card, info, os.path.basename(os.path.normpath(target)), model.config))
    return info


REFRESH_COMMAND = "python scripts/ship_pretrained.py --refresh"


def _modeling_dir() -> str:
    import mambacode.modeling

    return os.path.dirname(os.path.abspath(mambacode.modeling.__file__))


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def remote_code_drift(folder: str) -> list[str]:
    """The remote-code files (`*.py`) of a model folder that differ from the installed `mambacode.modeling` file
    of the same name. The shipped copies have one source of truth, `modeling/`: a folder loaded with
    `trust_remote_code=True` runs exactly the installed classes (`tests/test_pretrained.py` checks it)."""
    source = _modeling_dir()
    return [name for name in sorted(os.listdir(folder)) if name.endswith(".py") and (
        not os.path.isfile(os.path.join(source, name))
        or _read_bytes(os.path.join(source, name)) != _read_bytes(os.path.join(folder, name)))]


def sync_remote_code(folder: str) -> list[str]:
    """Rewrite every drifted remote-code file of `folder` from `modeling/` (weights untouched); returns their names.
    A file with no counterpart in `modeling/` is an error: the folder holds code this package did not write."""
    import shutil

    source = _modeling_dir()
    changed = remote_code_drift(folder)
    foreign = [n for n in changed if not os.path.isfile(os.path.join(source, n))]
    if foreign:
        raise ValueError(f"{folder}: remote-code file(s) {foreign} have no counterpart in {source}")
    for name in changed:
        shutil.copyfile(os.path.join(source, name), os.path.join(folder, name))
    return changed


def refresh_shipped_folder(folder: str) -> list[str]:
    """Bring a shipped folder's card and tokenizer files up to the current conventions without its training run
    and without touching its weights: the card re-rendered from itself (`read_model_card`) under the folder's name,
    with its base model (`shipped.json`'s `base_model`; for a retrieval model not yet naming one, the MLM encoder
    `<source>-mlm` when it is shipped beside it), the tokenizer tidied (`tidy_tokenizer_files`), the remote-code
    copies rewritten from `modeling/` (`sync_remote_code`). Returns the names of the files it changed (README.md,
    shipped.json, tokenizer files, remote-code files)."""
    from transformers import AutoConfig

    import mambacode.modeling  # noqa: F401  (registers the MambaCode config)

    name = os.path.basename(os.path.normpath(folder))
    info = shipped_info(folder)
    before = dict(info)
    sibling = f"{info.get('source')}-mlm"
    if (info["task"] == "retrieval" and "base_model" not in info
            and os.path.isfile(os.path.join(os.path.dirname(os.path.normpath(folder)), sibling, SHIPPED_FILE))):
        info["base_model"] = sibling
    if REFRESH_COMMAND not in info["commands"]:
        info["commands"] = [*info["commands"], REFRESH_COMMAND]
    config = AutoConfig.from_pretrained(folder)
    card_path = os.path.join(folder, "README.md")
    with open(card_path, encoding="utf-8") as fh:
        old_card = fh.read()
    new_card = _card_text(old_card, info, name, config)
    changed = tidy_tokenizer_files(folder, model_max_length_of(config)) + sync_remote_code(folder)
    if new_card != old_card:
        with open(card_path, "w", encoding="utf-8") as fh:
            fh.write(new_card)
        changed.append("README.md")
    if info != before:
        with open(os.path.join(folder, SHIPPED_FILE), "w") as fh:
            json.dump(info, fh, indent=1)
            fh.write("\n")
        changed.append(SHIPPED_FILE)
    return changed


def _set_config_dtype(folder: str, dtype: str) -> None:
    path = os.path.join(folder, "config.json")
    with open(path) as fh:
        config = json.load(fh)
    config["dtype"] = dtype
    with open(path, "w") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
        fh.write("\n")


def _card_text(training_card: str | None, info: dict, name: str, config) -> str:
    """The shipped card: the training card (`training_card`, a `render_model_card` text; None: a fresh one from the
    config) re-rendered under the shipped `name`, with `info['base_model']` as its base model, and a 'Shipped
    checkpoint' section added (any such section of `training_card` is replaced)."""
    from mambacode.training.model_card import read_model_card, render_model_card

    if training_card:
        args = read_model_card(training_card.split("\n## Shipped checkpoint\n", 1)[0])
        args.pop("model_name")
        task = args.pop("task")
    else:
        args, task = {}, info["task"]
    base = info.get("base_model")
    if base:
        args.update(base_model=base, base_model_is_sibling=True, base_model_text=(
            f"Fine-tuned from `{base}`, the MLM-pretrained encoder shipped beside it "
            f"(`mambacode.pretrained_path({base!r})`; pushed to the Hub, `base_model` names it in the same "
            "namespace)."))
    base_text = render_model_card(config, task, name, **args).rstrip() + "\n\n"
    tolerance = info["slice_tolerance"]
    metric_rows = "\n".join(f"| {k} | {v:.{REPORTED_DECIMALS}f} | {tolerance[k]:.{REPORTED_DECIMALS + 1}f} |"
                            if k in tolerance else f"| {k} | {v} | |" for k, v in info["slice_metrics"].items())
    test_rows = "\n".join(f"| {k} | {v:.{REPORTED_DECIMALS}f} |" for k, v in info["test_metrics"].items()
                          if isinstance(v, (int, float)) and math.isfinite(v))
    lines = ["## Shipped checkpoint", "", info["description"], "",
             f"Shipped with MambaCode as `pretrained/{name}`: `mambacode.pretrained_path({name!r})`. "
             f"Weights are stored in {info['weights_dtype']} and load as float32.", "",
             f"Metrics on the shipped slice (`{SLICE_FILE}`, the first {info['slice_rows']} rows of the test split), "
             "and how far a re-run may land from them (`tests/test_pretrained.py` checks):", "",
             "| metric | value | tolerance |", "|---|---|---|",
             metric_rows, ""]
    if test_rows:
        lines += [info["test_metrics_caption"], "", "| metric | value |",
                  "|---|---|", test_rows, ""]
    lines += ["Made by:", "", "```bash", *info["commands"], "```", ""]
    return base_text + "\n".join(lines)


__all__ = ["pretrained_path", "available_pretrained", "shipped_info", "slice_metrics", "folder_megabytes",
           "retrieval_slice_metrics", "mlm_slice_metrics", "mask_positions", "export_pretrained", "load_for_task",
           "read_slice", "refresh_shipped_folder", "remote_code_drift", "sync_remote_code"]
