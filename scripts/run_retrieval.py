#!/usr/bin/env python
"""Fine-tune (or train from scratch) a bi-encoder for natural-language code search.

    python scripts/run_retrieval.py --model_name_or_path runs/mlm --dataset_path corpus/retrieval \
        --test_dataset_path corpus/retrieval_adv --output_dir runs/retrieval --do_train --do_predict

MambaCode (`MambaCodeForRetrieval`) or RoCoder (`--model_type roformer`, mean-pooled RoFormer) is trained
with the in-batch InfoNCE loss on (query, code) pairs; evaluation ranks every test query against the
whole pool of distinct test candidates (MRR, Recall@1/5/10, nDCG@10; local `evaluate` module).
Runs under `accelerate launch --num_processes N`; resumes from the last checkpoint in output_dir.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Optional


from mambacode.training.collators import DataCollatorForRetrieval, tokenize_retrieval_pairs
from mambacode.training.evaluation import evaluate_retrieval
from mambacode.training.models import build_model, load_tokenizer
from mambacode.training.script_utils import (parse_script_args, attach, load_dataset_dict,
                                             logger, make_callbacks, report_done, require_split, save_with_card,
                                             train_and_evaluate)
from mambacode.training.validation import DataValidationError, require_columns


@dataclass
class DataTrainingArguments:
    dataset_path: str = field(metadata={"help": "DatasetDict on disk with (query, code) columns, e.g. corpus/retrieval."})
    query_column: str = field(default="query")
    code_column: str = field(default="code")
    train_split: str = field(default="train")
    validation_split: str = field(default="validation")
    test_split: str = field(default="test")
    test_dataset_path: list[str] = field(default_factory=list, metadata={
        "help": "Extra test sets (e.g. corpus/retrieval_adv), each evaluated on its --test_split; repeatable.",
        "action": "extend", "nargs": "+"})
    max_query_length: int = field(default=64)
    max_code_length: int = field(default=256)
    max_train_samples: Optional[int] = field(default=None)
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Queries per evaluation pool."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size of pool encoding."})


def main(argv=None):
    model_args, data_args, training_args, run_args, checkpoint = parse_script_args(DataTrainingArguments, argv)

    try:
        dsets = load_dataset_dict(data_args.dataset_path)
        cols = [data_args.query_column, data_args.code_column]
        require_columns(dsets, cols, where=data_args.dataset_path)
        tokenizer = load_tokenizer(model_args)
        model = build_model(model_args, "retrieval", tokenizer)
        tests = {}
        if training_args.do_predict:
            tests["test"] = require_split(dsets, data_args.test_split, data_args.dataset_path)
            for path in data_args.test_dataset_path:
                extra = load_dataset_dict(path, "--test_dataset_path")
                extra = require_split(extra, data_args.test_split, path) if hasattr(extra, "keys") else extra
                require_columns(extra, cols, where=path)
                tests[os.path.basename(os.path.normpath(path))] = extra
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("model: %s, %s parameters", type(model).__name__, f"{sum(p.numel() for p in model.parameters()):,}")

    def prepare(ds, n):
        if n is not None:
            ds = ds.select(range(min(n, len(ds))))
        with training_args.main_process_first(desc="tokenize"):
            return ds.map(tokenize_retrieval_pairs, batched=True, remove_columns=ds.column_names,
                          fn_kwargs=dict(tokenizer=tokenizer, query_column=data_args.query_column,
                                         code_column=data_args.code_column,
                                         max_query_length=data_args.max_query_length,
                                         max_code_length=data_args.max_code_length), desc="tokenize")

    train_ds = prepare(require_split(dsets, data_args.train_split, data_args.dataset_path),
                       data_args.max_train_samples) if training_args.do_train else None
    eval_ds = None
    if training_args.do_eval:
        eval_ds = prepare(require_split(dsets, data_args.validation_split, data_args.dataset_path),
                          data_args.max_eval_samples)

    from mambacode.training.callbacks import GuardedTrainer

    callbacks = make_callbacks(run_args, model_args, tokenizer)
    training_args.remove_unused_columns = False
    trainer = GuardedTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=DataCollatorForRetrieval(tokenizer.pad_token_id),
                             processing_class=tokenizer, callbacks=callbacks)
    attach(trainer, callbacks)

    eval_metrics = train_and_evaluate(trainer, training_args, checkpoint, len(train_ds))
    metrics = {k: v for k, v in eval_metrics.items() if k == "eval_loss"}
    if training_args.do_predict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        for name, ds in tests.items():
            if not trainer.is_world_process_zero():
                continue  # one process ranks the pool; the others wait below
            result = evaluate_retrieval(model, tokenizer, ds, data_args.query_column, data_args.code_column,
                                        data_args.max_query_length, data_args.max_code_length,
                                        data_args.eval_batch_size, data_args.max_eval_samples, prefix=name)
            trainer.log_metrics(name, result)
            trainer.save_metrics(name, result, combined=True)
            metrics.update({k: v for k, v in result.items() if not k.endswith(("num_queries", "pool_size"))})
        trainer.accelerator.wait_for_everyone()
    if training_args.do_train:
        save_with_card(trainer, tokenizer, "retrieval", model_args,
                       data_description=f"Query/code pairs from `{data_args.dataset_path}` (columns "
                                        f"`{data_args.query_column}`/`{data_args.code_column}`), split "
                                        f"`{data_args.train_split}`.",
                       metrics=metrics, dataset_path=data_args.dataset_path, run_args=run_args,
                       hub_task="feature-extraction")
    report_done(training_args, "run_retrieval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
