#!/usr/bin/env python
"""Fine-tune MambaCode or RoCoder for type inference (a label per identifier, ManyTypes4TypeScript style).

    python scripts/run_type_inference.py --model_name_or_path runs/mlm --dataset_path corpus/type_inference \
        --output_dir runs/types --do_train --do_eval --do_predict

The dataset is word level (`tokens`, `labels`; -1 = unlabelled word; label names from the ClassLabel
feature). Each word's label goes to its first sub-word, the rest are ignored. Metrics (local `evaluate`
module): token accuracy, micro precision/recall/F1 and macro F1, with the rare-type bucket `other`
counted as "no type" for F1 unless `--f1_count_other`.
"""

import sys
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from mambacode.training.collators import DataCollatorForTypeInference, tokenize_and_align_labels
from mambacode.training.metrics_loader import load_metric
from mambacode.training.models import build_model, load_tokenizer
from mambacode.training.script_utils import (parse_script_args, attach, load_dataset_dict,
                                             logger, make_callbacks, report_done, require_split, save_with_card,
                                             train_and_evaluate)
from mambacode.training.validation import DataValidationError, require_columns

OTHER = "other"


@dataclass
class DataTrainingArguments:
    dataset_path: str = field(metadata={"help": "Word-level DatasetDict, e.g. corpus/type_inference."})
    tokens_column: str = field(default="tokens")
    labels_column: str = field(default="labels")
    train_split: str = field(default="train")
    validation_split: str = field(default="validation")
    test_split: str = field(default="test")
    max_seq_length: int = field(default=512)
    max_train_samples: Optional[int] = field(default=None)
    max_eval_samples: Optional[int] = field(default=None)
    f1_count_other: bool = field(default=False, metadata={"help": "Count the 'other' bucket as a type in F1."})


def label_names_of(dsets, column: str, where: str) -> list[str]:
    """Label names from the ClassLabel feature (Sequence(ClassLabel)); an int column is refused."""
    split = next(iter(dsets.values()))
    feature = split.features[column]
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    if not names:
        raise DataValidationError(f"{where}: column {column!r} must be a Sequence(ClassLabel) (label names are "
                                  f"needed for the model config), got {feature}")
    return list(names)


def main(argv=None):
    model_args, data_args, training_args, run_args, checkpoint = parse_script_args(DataTrainingArguments, argv)
    try:
        dsets = load_dataset_dict(data_args.dataset_path)
        require_columns(dsets, [data_args.tokens_column, data_args.labels_column], where=data_args.dataset_path)
        names = label_names_of(dsets, data_args.labels_column, data_args.dataset_path)
        tokenizer = load_tokenizer(model_args)
        model = build_model(model_args, "token_classification", tokenizer,
                            id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("model: %s, %d labels, %s parameters", type(model).__name__, len(names),
                f"{sum(p.numel() for p in model.parameters()):,}")

    def prepare(split, n):
        ds = require_split(dsets, split, data_args.dataset_path)
        if n is not None:
            ds = ds.select(range(min(n, len(ds))))
        with training_args.main_process_first(desc="tokenize"):
            return ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names,
                          fn_kwargs=dict(tokenizer=tokenizer, tokens_column=data_args.tokens_column,
                                         labels_column=data_args.labels_column,
                                         max_length=data_args.max_seq_length), desc="tokenize + align labels")

    train_ds = prepare(data_args.train_split, data_args.max_train_samples) if training_args.do_train else None
    eval_ds = prepare(data_args.validation_split, data_args.max_eval_samples) if training_args.do_eval else None
    test_ds = prepare(data_args.test_split, data_args.max_eval_samples) if training_args.do_predict else None

    metric = load_metric("type_f1")
    ignore = [] if data_args.f1_count_other or OTHER not in names else [names.index(OTHER)]

    def compute_metrics(pred):
        logits, labels = pred.predictions, pred.label_ids
        predicted = np.argmax(logits, axis=-1)
        keep = labels != -100
        return metric.compute(predictions=predicted[keep].tolist(), references=labels[keep].tolist(),
                              ignore_labels=ignore)

    from mambacode.training.callbacks import GuardedTrainer

    callbacks = make_callbacks(run_args, model_args, tokenizer)
    trainer = GuardedTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=DataCollatorForTypeInference(tokenizer.pad_token_id),
                             processing_class=tokenizer, compute_metrics=compute_metrics, callbacks=callbacks)
    attach(trainer, callbacks)
    train_and_evaluate(trainer, training_args, checkpoint, len(train_ds))
    metrics = {}
    if training_args.do_predict:
        out = trainer.predict(test_ds, metric_key_prefix="test")
        trainer.log_metrics("test", out.metrics)
        trainer.save_metrics("test", out.metrics)
        metrics.update({k: v for k, v in out.metrics.items() if k.startswith("test_") and "runtime" not in k
                        and "per_second" not in k})
    if training_args.do_train:
        save_with_card(trainer, tokenizer, "token_classification", model_args,
                       data_description=f"Word-level type labels from `{data_args.dataset_path}` ({len(names)} "
                                        f"labels), split `{data_args.train_split}`.",
                       metrics=metrics, dataset_path=data_args.dataset_path, run_args=run_args,
                       hub_task="token-classification")
    report_done(training_args, "run_type_inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
