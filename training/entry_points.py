"""The three training entry points as library functions: MLM pretraining, code-search (retrieval) fine-tuning
and type-inference fine-tuning. Each takes the transformers-example argument dataclasses (model, data,
`TrainingArguments`, run) and returns a typed result; `scripts/run_*.py` are thin `HfArgumentParser`
wrappers around them and `mambacode.training.pipeline` calls them directly.

Bad input raises `DataValidationError` / `FileNotFoundError` / `ValueError` naming the file, split or
column; a non-finite loss raises `NonFiniteLossError`. A run whose output_dir holds a checkpoint resumes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
from transformers import DataCollatorForTokenClassification, set_seed

from .callbacks import GuardedTrainer, NaNGuardCallback
from .collators import (DataCollatorForMaskedLM, DataCollatorForRetrieval,
                        MaskingEpochCallback, add_example_index, group_texts, tokenize_and_align_labels,
                        tokenize_retrieval_pairs)
from .evaluation import choose_fusion, evaluate_retrieval, metrics_by_ranker, retrieval_compute_metrics
from .metrics_loader import load_metric
from .model_card import Evaluation, local_name
from .models import build_model, extend_positions, load_tokenizer
from .script_utils import (last_checkpoint, load_dataset_dict, logger, make_callbacks, report_done, require_split,
                           save_with_card, train_and_evaluate)
from .validation import DataValidationError, require_columns

OTHER = "other"  # the type-inference bucket of rare types


# ------------------------------------------------------------------------------------------ arguments
@dataclass
class DataArguments:
    """The data flags every entry point has (the task's own follow in its subclass)."""

    dataset_path: str = field(metadata={"help": "DatasetDict on disk (scripts/build_corpus.py writes them), e.g. "
                                                "corpus/retrieval, corpus/long_context, corpus/type_inference."})
    train_split: str = field(default="train")
    validation_split: str = field(default="validation")
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Rows used for training (MLM: before packing)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Rows (retrieval: queries) per evaluation."})


@dataclass
class MLMDataArguments(DataArguments):
    text_column: str = field(default="code", metadata={"help": "Comma-separated text columns (e.g. code,docstring)."})
    max_seq_length: int = field(default=256, metadata={"help": "Block length of the packed sequences."})
    mlm_probability: float = field(default=0.15)
    dedupe_texts: bool = field(default=True, metadata={
        "help": "Drop repeated texts (long-context documents repeat per query)."})


@dataclass
class RetrievalDataArguments(DataArguments):
    dataset_path: str | None = field(default=None, metadata={
        "help": "DatasetDict on disk (scripts/build_corpus.py writes one, e.g. corpus/retrieval). Or give "
                "--dataset_name, or --train_file / --validation_file / --test_file."})
    dataset_name: str | None = field(default=None, metadata={
        "help": "A dataset for datasets.load_dataset: a Hub id (user/name) or a local folder of data files "
                "(train / validation / test .jsonl, .csv, .parquet), with query and code columns."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The --dataset_name's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "Training pairs: JSON lines (.json/.jsonl) or CSV."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation pairs (JSON lines or CSV)."})
    test_file: str | None = field(default=None, metadata={"help": "Test pairs (JSON lines or CSV)."})
    query_column: str = field(default="query")
    code_column: str = field(default="code")
    test_split: str = field(default="test")
    test_dataset_path: list[str] = field(default_factory=list, metadata={
        "help": "Extra test sets (e.g. corpus/retrieval_adv), each evaluated on its --test_split; repeatable.",
        "action": "extend", "nargs": "+"})
    max_query_length: int = field(default=64)
    max_code_length: int = field(default=256)
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size of pool encoding."})
    baselines: bool = field(default=True, metadata={
        "help": "Also rank each test pool with BM25 (bm25s) and the dense + BM25 hybrid (reciprocal-rank fusion): "
                "<set>_bm25_mrr, <set>_hybrid_mrr, ... beside the model's <set>_mrr."})
    obfuscate_train_fraction: float = field(default=0.0, metadata={
        "help": "AdvTest-style augmentation: this fraction of the training codes (rows drawn by a hash of "
                "(--seed, row)) gets its function, parameter and local names replaced by placeholders "
                "(mambacode.corpus.obfuscate_training_codes); codes that cannot be obfuscated stay plain."})
    crop_train_to_function: bool = field(default=False, metadata={
        "help": "Long-context documents: train each pair on its document's first line followed by the document "
                "from the queried function's `def` on (mambacode.corpus.function_window; needs a func_name "
                "column), so the tokens kept after truncation contain the answer; the test pools stay whole."})
    eval_max_code_length: int | None = field(default=None, metadata={
        "help": "Tokens of each pool candidate read at validation / test time (default: --max_code_length); "
                "more than the model's max_position_embeddings raises that limit (MambaCode has no position "
                "table; RoCoder's rotary table is recomputed for the new length)."})
    tune_fusion: bool = field(default=True, metadata={
        "help": "Choose the hybrid's fusion (the dense ranking's weight against BM25's, and k) on the validation "
                "split's pool before ranking the test pools with it, and save it in the model's config "
                "(hybrid_fusion, which `mambacode search` uses); false: equal weights, k = 60."})


@dataclass
class TypeInferenceDataArguments(DataArguments):
    tokens_column: str = field(default="tokens")
    labels_column: str = field(default="labels")
    test_split: str = field(default="test")
    max_seq_length: int = field(default=512)
    f1_count_other: bool = field(default=False, metadata={"help": "Count the 'other' bucket as a type in F1."})


# ------------------------------------------------------------------------------------------ results
@dataclass
class MLMResult:
    """What a pretraining run produced; `encoder_parameters` counts the saved weights without the MLM head."""

    output_dir: str
    train_loss: float | None = None
    eval_loss: float | None = None
    perplexity: float | None = None
    encoder_parameters: int | None = None


@dataclass
class RetrievalResult:
    """`test_metrics[test_set][metric]` of the model (dense), test sets named 'test' and after their folders
    (e.g. 'retrieval_adv'); `bm25_metrics` and `hybrid_metrics` alike for the baselines ranked on the same
    queries and pools (BM25 alone; dense + BM25 by reciprocal-rank fusion, weighted as `fusion` says), empty
    where not computed."""

    output_dir: str
    train_loss: float | None = None
    test_metrics: dict = field(default_factory=dict)
    bm25_metrics: dict = field(default_factory=dict)
    hybrid_metrics: dict = field(default_factory=dict)
    fusion: dict = field(default_factory=dict)  # the hybrid's fusion and where it was chosen ({}: equal weights)

    def metrics(self, ranker: str = "dense") -> dict:
        """`{test_set: {metric: value}}` of one ranker: 'dense' (the model), 'bm25' or 'hybrid'."""
        by_ranker = {"dense": self.test_metrics, "bm25": self.bm25_metrics, "hybrid": self.hybrid_metrics}
        if ranker not in by_ranker:
            raise ValueError(f"RetrievalResult: ranker {ranker!r}, expected one of {list(by_ranker)}")
        return by_ranker[ranker]

    def mrr(self, test_set: str = "test", ranker: str = "dense") -> float | None:
        return self.metrics(ranker).get(test_set, {}).get("mrr")


@dataclass
class TypeInferenceResult:
    """`test_metrics` without the 'test_' prefix: accuracy, micro_f1, macro_f1, ..."""

    output_dir: str
    train_loss: float | None = None
    test_metrics: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ data sources
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv"}


def data_files(data_args) -> dict:
    """`{split name: file}` of the --train_file / --validation_file / --test_file given (retrieval only)."""
    pairs = [(getattr(data_args, "train_split", "train"), getattr(data_args, "train_file", None)),
             (getattr(data_args, "validation_split", "validation"), getattr(data_args, "validation_file", None)),
             (getattr(data_args, "test_split", "test"), getattr(data_args, "test_file", None))]
    return {split: path for split, path in pairs if path}


def data_source(data_args) -> str:
    """How messages name the data: the --dataset_path folder, the --dataset_name, or the data files."""
    if getattr(data_args, "dataset_name", None):
        return data_args.dataset_name
    files = data_files(data_args)
    return ", ".join(files.values()) if files else data_args.dataset_path


def source_id(data_args) -> str:
    """The training data's identifier on the card: a Hub id as it is, else the folder's or file's name."""
    files = data_files(data_args)
    name = getattr(data_args, "dataset_name", None) or data_args.dataset_path or next(iter(files.values()), "")
    return local_name(name)


def load_data(data_args, columns: list[str]):
    """The DatasetDict the data arguments name, each split checked for `columns`: a `save_to_disk` folder
    (--dataset_path), `datasets.load_dataset(--dataset_name)`, or JSON-lines / CSV files (--train_file, ...;
    a missing column is named with its file and the columns it has). Exactly one of the three is allowed."""
    files = data_files(data_args)
    given = [flag for flag, on in (("--dataset_path", data_args.dataset_path),
                                   ("--dataset_name", getattr(data_args, "dataset_name", None)),
                                   ("--train_file/--validation_file/--test_file", files)) if on]
    if len(given) != 1:
        raise ValueError(f"give the data with exactly one of --dataset_path (a save_to_disk folder), --dataset_name "
                         f"(a Hub id or a folder of data files) or --train_file/--validation_file/--test_file "
                         f"(JSON lines or CSV); got {given or 'none'}")
    if files:
        dsets = datasets.DatasetDict()
        for split, path in files.items():
            flag = {data_args.train_split: "--train_file", data_args.validation_split: "--validation_file"}.get(
                split, "--test_file")
            builder = FILE_BUILDERS.get(os.path.splitext(path)[1].lower())
            if builder is None:
                raise ValueError(f"{flag}={path}: expected a .json / .jsonl (JSON lines) or .csv file")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{flag}={path} does not exist")
            dsets[split] = datasets.load_dataset(builder, data_files={split: path}, split=split)
            require_columns(dsets[split], columns, where=f"{flag} {path}")
        return dsets
    if data_args.dataset_path:
        dsets = load_dataset_dict(data_args.dataset_path)
    else:
        name = data_args.dataset_name
        try:
            dsets = datasets.load_dataset(name, data_args.dataset_config_name)
        except Exception as exc:  # a missing id offline, a dataset script (datasets >= 4 runs none), a bad folder
            reason = " ".join(str(exc).split())[:300]
            raise DataValidationError(f"--dataset_name={name!r} could not be loaded with datasets.load_dataset "
                                      f"({type(exc).__name__}: {reason}); a local folder must hold data files "
                                      "(.jsonl/.csv/.parquet), not a loading script") from None
        if not isinstance(dsets, datasets.DatasetDict):
            dsets = datasets.DatasetDict({data_args.train_split: dsets})
    require_columns(dsets, columns, where=data_source(data_args))
    return dsets


# ------------------------------------------------------------------------------------------ shared steps
def _start(model_args, training_args, run_args, data_args, columns: list[str]):
    """Seed, find the checkpoint to resume from, load and check the data and the tokenizer."""
    set_seed(training_args.seed)
    checkpoint = last_checkpoint(training_args, run_args)
    dsets = load_data(data_args, columns)
    return checkpoint, dsets, load_tokenizer(model_args)


def _trainer(model, tokenizer, args: tuple, checkpoint, train_ds, eval_ds, collator,
             compute_metrics=None, extra_callbacks=()) -> GuardedTrainer:
    """The Trainer of an entry point; `args` = (model_args, training_args, run_args); `extra_callbacks`: the
    caller's own `TrainerCallback`s, after the flags' ones."""
    model_args, training_args, run_args = args
    logger.info("model: %s, %s parameters", type(model).__name__, f"{sum(p.numel() for p in model.parameters()):,}")
    callbacks = [NaNGuardCallback(), *make_callbacks(run_args, tokenizer), *extra_callbacks]
    trainer = GuardedTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=collator, processing_class=tokenizer, compute_metrics=compute_metrics,
                             callbacks=callbacks)
    for cb in callbacks:  # ProbeCallback probes the trainer's current model
        if hasattr(cb, "attach"):
            cb.attach(trainer)
    return trainer


def _save(trainer, tokenizer, task, model_args, data_args, run_args, evaluations: list,
          data_description: str) -> None:
    """Save model, tokenizer and model card (after training; `task` as in `build_model`; `evaluations`: one
    `Evaluation` per dataset and split), and say this process got to the end."""
    if trainer.args.do_train:
        save_with_card(trainer, tokenizer, task, model_args, data_description=data_description,
                       evaluations=evaluations, dataset_path=source_id(data_args), run_args=run_args)
    report_done(trainer.args, f"run_{task}")


def _dataset_id(path: str) -> str:
    """A local dataset's identifier on the card: its folder's name (e.g. 'retrieval_adv')."""
    return os.path.basename(os.path.normpath(path))


def _tokenized(training_args, dsets, data_args, split: str, n: int | None, fn, desc: str, **fn_kwargs):
    """The first `n` rows of `split` through the batched `fn` (main process first, so the cache is shared)."""
    ds = require_split(dsets, split, data_source(data_args))
    ds = ds if n is None else ds.select(range(min(n, len(ds))))
    with training_args.main_process_first(desc="tokenize"):
        return ds.map(fn, batched=True, remove_columns=ds.column_names, fn_kwargs=fn_kwargs, desc=desc)


def encoder_parameters(folder: str) -> int | None:
    """Parameters in `folder/model.safetensors` outside the MLM head (`lm_head*`, `cls.*`), as stored."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.exists(path):
        return None
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith(("lm_head", "cls.")))


# ------------------------------------------------------------------------------------------ entry points
def run_mlm(model_args, data_args: MLMDataArguments, training_args, run_args, callbacks=()) -> MLMResult:
    """Masked-language-model pretraining: texts tokenised, packed into `max_seq_length` blocks, 15% masked
    (80/10/10, seeded per (seed, epoch, block) so a resumed run equals an uninterrupted one); eval loss and
    perplexity. Without `model_name_or_path` a new model is built from the flags. `callbacks`: extra
    `TrainerCallback`s (e.g. a budget that stops training)."""
    columns = [c.strip() for c in data_args.text_column.split(",") if c.strip()]
    checkpoint, dsets, tokenizer = _start(model_args, training_args, run_args, data_args, columns)
    model = build_model(model_args, "mlm", tokenizer)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and data_args.max_seq_length > limit:
        raise ValueError(f"--max_seq_length={data_args.max_seq_length} exceeds the model's max_position_embeddings="
                         f"{limit}")

    def prepare(split, n):
        ds = require_split(dsets, split, data_args.dataset_path)
        texts = [t for c in columns for t in ds[c] if t]
        if data_args.dedupe_texts:
            texts = list(dict.fromkeys(texts))
        if n is not None:
            texts = texts[:n]
        raw = datasets.Dataset.from_dict({"text": texts})
        with training_args.main_process_first(desc="tokenize"):
            tok = raw.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                          remove_columns=["text"], desc="tokenize")
            return add_example_index(tok.map(group_texts, batched=True, fn_kwargs={
                "block_size": data_args.max_seq_length}, desc=f"pack into {data_args.max_seq_length}-token blocks"))

    train_ds = prepare(data_args.train_split, data_args.max_train_samples) if training_args.do_train else None
    eval_ds = prepare(data_args.validation_split, data_args.max_eval_samples) if training_args.do_eval else None
    collator = DataCollatorForMaskedLM(tokenizer, data_args.mlm_probability, seed=training_args.seed)
    training_args.remove_unused_columns = False  # the collator needs the example index
    trainer = _trainer(model, tokenizer, (model_args, training_args, run_args), checkpoint, train_ds, eval_ds,
                       collator, extra_callbacks=callbacks)
    trainer.add_callback(MaskingEpochCallback(collator))

    def add_perplexity(m):
        m["perplexity"] = math.exp(m["eval_loss"]) if m["eval_loss"] < 50 else float("inf")

    train_loss, eval_metrics = train_and_evaluate(trainer, training_args, checkpoint, train_ds, on_eval=add_perplexity)
    metrics = {k: eval_metrics[k] for k in ("eval_loss", "perplexity") if k in eval_metrics}
    evaluations = [Evaluation(source_id(data_args), data_args.validation_split, metrics)] if metrics else []
    _save(trainer, tokenizer, "mlm", model_args, data_args, run_args, evaluations,
          f"Texts of column(s) {columns} of `{source_id(data_args)}` (split "
          f"`{data_args.train_split}`), packed into {data_args.max_seq_length}-token "
          f"blocks, {data_args.mlm_probability:.0%} masked.")
    return MLMResult(training_args.output_dir, train_loss, metrics.get("eval_loss"), metrics.get("perplexity"),
                     encoder_parameters(training_args.output_dir))


def run_retrieval(model_args, data_args: RetrievalDataArguments, training_args, run_args,
                  callbacks=()) -> RetrievalResult:
    """Bi-encoder training with in-batch InfoNCE on (query, code) pairs; every test query is ranked against
    the whole pool of distinct test candidates (MRR, Recall@1/5/10, nDCG@10), on each test set, by the model
    and (unless `data_args.baselines` is off) by BM25 and by the dense + BM25 hybrid. With
    `train_sampling_strategy="group_by_length"` batches are grouped by query + code tokens (a `length`
    column; the Trainer alone would group by the query only). `callbacks`: extra `TrainerCallback`s."""
    cols = [data_args.query_column, data_args.code_column]
    checkpoint, dsets, tokenizer = _start(model_args, training_args, run_args, data_args, cols)
    model = build_model(model_args, "retrieval", tokenizer)
    tests, test_ids = {}, {}  # test set name -> rows, dataset identifier (for the card)
    if training_args.do_predict:
        tests["test"] = require_split(dsets, data_args.test_split, data_source(data_args))
        test_ids["test"] = source_id(data_args)
        for path in data_args.test_dataset_path:
            extra = load_dataset_dict(path, "--test_dataset_path")
            extra = require_split(extra, data_args.test_split, path) if hasattr(extra, "keys") else extra
            require_columns(extra, cols, where=path)
            tests[_dataset_id(path)] = extra
            test_ids[_dataset_id(path)] = _dataset_id(path)

    if training_args.do_train:
        _rewrite_training_codes(dsets, data_args, training_args.seed)

    def prepare(split, n):
        return _tokenized(training_args, dsets, data_args, split, n, tokenize_retrieval_pairs, "tokenize",
                          tokenizer=tokenizer, query_column=data_args.query_column,
                          code_column=data_args.code_column, max_query_length=data_args.max_query_length,
                          max_code_length=data_args.max_code_length)

    train_ds = prepare(data_args.train_split, data_args.max_train_samples) if training_args.do_train else None
    eval_ds = prepare(data_args.validation_split, data_args.max_eval_samples) if training_args.do_eval else None
    column = training_args.length_column_name
    if (train_ds is not None and training_args.train_sampling_strategy in ("group_by_length", "batch_rebalance")
            and column not in train_ds.column_names):  # the padded cost of a batch: its longest query + code
        train_ds = train_ds.add_column(column, [len(q) + len(c) for q, c in zip(train_ds["input_ids"],
                                                                                train_ds["code_input_ids"])])
    training_args.remove_unused_columns = False
    compute_metrics = None
    if eval_ds is not None:  # eval_mrr etc. over the whole evaluation pool (metric_for_best_model="mrr" works)
        codes = require_split(dsets, data_args.validation_split, data_source(data_args))[data_args.code_column]
        compute_metrics = retrieval_compute_metrics(list(codes)[:len(eval_ds)])
    trainer = _trainer(model, tokenizer, (model_args, training_args, run_args), checkpoint, train_ds, eval_ds,
                       DataCollatorForRetrieval(tokenizer.pad_token_id), compute_metrics, callbacks)
    # gather only (embeddings, code_embeddings) for compute_metrics, whatever else the model returns
    trainer.preprocess_logits_for_metrics = lambda outputs, labels: (outputs[0], outputs[1])
    train_loss, eval_metrics = train_and_evaluate(trainer, training_args, checkpoint, train_ds)
    evaluations = ([Evaluation(source_id(data_args), data_args.validation_split,
                               {"eval_loss": eval_metrics["eval_loss"]})] if "eval_loss" in eval_metrics else [])
    by_ranker = {"dense": {}, "bm25": {}, "hybrid": {}}  # ranker -> test set -> metrics
    test_metrics = by_ranker["dense"]
    fusion, fusion_record = None, {}
    pool_length = data_args.eval_max_code_length or data_args.max_code_length
    # longer candidates, fewer per batch: the same tokens per batch as --eval_batch_size at --max_code_length
    # (RoCoder's attention scores grow with the square of the length)
    pool_batch = max(1, data_args.eval_batch_size * data_args.max_code_length // max(pool_length,
                                                                                   data_args.max_code_length))
    if training_args.do_predict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if extend_positions(model, pool_length):
            logger.info("pools read %d tokens per candidate: the model's limit is raised to that", pool_length)
        if data_args.baselines and data_args.tune_fusion and trainer.is_world_process_zero():
            fusion, fusion_record = _choose_fusion(model, tokenizer, dsets, data_args, trainer, pool_length, pool_batch)
        for name, ds in tests.items():
            if not trainer.is_world_process_zero():
                continue  # one process ranks the pool; the others wait below
            result = evaluate_retrieval(model, tokenizer, ds, data_args.query_column, data_args.code_column,
                                        data_args.max_query_length, pool_length,
                                        pool_batch, data_args.max_eval_samples, prefix=name,
                                        baselines=data_args.baselines, fusion=fusion)
            trainer.log_metrics(name, result)
            trainer.save_metrics(name, result, combined=True)
            for ranker, metrics in metrics_by_ranker(result, name).items():
                by_ranker[ranker][name] = metrics
            if all((e.dataset, e.split) != (test_ids[name], data_args.test_split) for e in evaluations):
                evaluations.append(Evaluation(test_ids[name], data_args.test_split, test_metrics[name]))
        trainer.accelerator.wait_for_everyone()
    _save(trainer, tokenizer, "retrieval", model_args, data_args, run_args, evaluations,
          f"Query/code pairs from `{source_id(data_args)}` (columns "
          f"`{data_args.query_column}`/`{data_args.code_column}`), split "
          f"`{data_args.train_split}`.")
    return RetrievalResult(training_args.output_dir, train_loss, test_metrics, by_ranker["bm25"], by_ranker["hybrid"],
                           fusion_record)


def _rewrite_training_codes(dsets, data_args: RetrievalDataArguments, seed: int) -> None:
    """The training split's code as the data arguments ask: cropped to the queried function
    (--crop_train_to_function), then partly obfuscated (--obfuscate_train_fraction); each step logs its counts."""
    from mambacode.corpus import crop_to_functions, obfuscate_training_codes

    steps = []
    if data_args.crop_train_to_function:
        steps.append((lambda rows: crop_to_functions(rows, data_args.code_column), "cropped to their function"))
    if data_args.obfuscate_train_fraction > 0:
        steps.append((lambda rows: obfuscate_training_codes(rows, data_args.obfuscate_train_fraction, seed,
                                                            data_args.code_column), "obfuscation"))
    for rewrite, what in steps:
        rows = require_split(dsets, data_args.train_split, data_source(data_args))
        dsets[data_args.train_split], counts = rewrite(rows)
        logger.info("training codes, %s: %s", what, counts)


def _choose_fusion(model, tokenizer, dsets, data_args: RetrievalDataArguments, trainer, pool_length: int,
                   pool_batch: int) -> tuple:
    """(Fusion or None, its record): the hybrid's fusion chosen on the validation split's pool
    (`evaluation.choose_fusion`), written into the model's config as `hybrid_fusion` (saved with the model, read
    by `mambacode search`) and logged as `fusion_*` metrics; (None, {}) without a validation split."""
    if data_args.validation_split not in dsets:
        logger.warning("no %r split in %s: the hybrid fuses with equal weights (k = 60)", data_args.validation_split,
                       data_source(data_args))
        return None, {}
    fusion, table = choose_fusion(model, tokenizer, dsets[data_args.validation_split], data_args.query_column,
                                  data_args.code_column, data_args.max_query_length, pool_length, pool_batch,
                                  data_args.max_eval_samples)
    default = table[next(iter(table))]  # the grid starts with the equal-weight fusion
    record = {**fusion.to_dict(), "chosen_on": f"{source_id(data_args)}:{data_args.validation_split}",
              "validation_mrr": table[fusion.label],
              "validation_mrr_equal_weights": default}
    model.config.hybrid_fusion = record
    metrics = {"fusion_dense_weight": fusion.dense_weight, "fusion_k": fusion.k,
               "fusion_validation_hybrid_mrr": record["validation_mrr"],
               "fusion_validation_hybrid_mrr_equal_weights": default}
    trainer.log_metrics("fusion", metrics)
    trainer.save_metrics("fusion", metrics, combined=True)
    return fusion, record


def label_names_of(dsets, column: str, where: str) -> list[str]:
    """Label names from the ClassLabel feature (Sequence(ClassLabel)); an int column is refused."""
    feature = next(iter(dsets.values())).features[column]
    names = getattr(getattr(feature, "feature", None), "names", None)
    if not names:
        raise DataValidationError(f"{where}: column {column!r} must be a Sequence(ClassLabel) (label names are "
                                  f"needed for the model config), got {feature}")
    return list(names)


def run_type_inference(model_args, data_args: TypeInferenceDataArguments, training_args,
                       run_args) -> TypeInferenceResult:
    """A type label per identifier (ManyTypes4TypeScript style) on a word-level dataset (`tokens`, `labels`,
    -1 = unlabelled); each word's label goes to its first sub-word. Token accuracy, micro P/R/F1 and macro
    F1, with the rare-type bucket `other` counted as "no type" for F1 unless `f1_count_other`."""
    cols = [data_args.tokens_column, data_args.labels_column]
    checkpoint, dsets, tokenizer = _start(model_args, training_args, run_args, data_args, cols)
    names = label_names_of(dsets, data_args.labels_column, data_source(data_args))
    model = build_model(model_args, "token_classification", tokenizer,
                        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def prepare(split, n):
        return _tokenized(training_args, dsets, data_args, split, n, tokenize_and_align_labels,
                          "tokenize + align labels", tokenizer=tokenizer, tokens_column=data_args.tokens_column,
                          labels_column=data_args.labels_column, max_length=data_args.max_seq_length)

    train_ds = prepare(data_args.train_split, data_args.max_train_samples) if training_args.do_train else None
    eval_ds = prepare(data_args.validation_split, data_args.max_eval_samples) if training_args.do_eval else None
    test_ds = prepare(data_args.test_split, data_args.max_eval_samples) if training_args.do_predict else None
    metric = load_metric("type_f1")
    ignore = [] if data_args.f1_count_other or OTHER not in names else [names.index(OTHER)]

    def compute_metrics(pred):
        predicted = np.argmax(pred.predictions, axis=-1)
        keep = pred.label_ids != -100
        return metric.compute(predictions=predicted[keep].tolist(), references=pred.label_ids[keep].tolist(),
                              ignore_labels=ignore)

    trainer = _trainer(model, tokenizer, (model_args, training_args, run_args), checkpoint, train_ds, eval_ds,
                       DataCollatorForTokenClassification(tokenizer), compute_metrics)  # labels padded with -100
    train_loss, _ = train_and_evaluate(trainer, training_args, checkpoint, train_ds)
    metrics = {}
    if training_args.do_predict:
        out = trainer.predict(test_ds, metric_key_prefix="test")
        trainer.log_metrics("test", out.metrics)
        trainer.save_metrics("test", out.metrics)
        metrics.update({k: v for k, v in out.metrics.items() if k.startswith("test_") and "runtime" not in k
                        and "per_second" not in k})
    evaluations = ([Evaluation(source_id(data_args), data_args.test_split,
                               {k[5:]: v for k, v in metrics.items()})] if metrics else [])
    _save(trainer, tokenizer, "token_classification", model_args, data_args, run_args, evaluations,
          f"Word-level type labels from `{source_id(data_args)}` ({len(names)} "
          f"labels), split `{data_args.train_split}`.")
    return TypeInferenceResult(training_args.output_dir, train_loss, {k[5:]: v for k, v in metrics.items()})


__all__ = ["DataArguments", "MLMDataArguments", "RetrievalDataArguments", "TypeInferenceDataArguments", "MLMResult",
           "RetrievalResult", "TypeInferenceResult", "run_mlm", "run_retrieval", "run_type_inference",
           "label_names_of", "encoder_parameters"]
