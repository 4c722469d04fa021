#!/usr/bin/env python
"""Masked-language-model pretraining of MambaCode or RoCoder on code.

    python scripts/run_mlm.py --tokenizer_name runs/tok --dataset_path corpus/retrieval --text_column code \
        --mixer s4d --hidden_size 128 --num_hidden_layers 4 --output_dir runs/mlm-s4d --do_train --do_eval

Texts are tokenised, concatenated and cut into `--max_seq_length` blocks; 15% of tokens are masked
(80/10/10). Without `--model_name_or_path` a new model is built from the flags (`--mixer`, `--hf_conv`,
`--num_kernels`, `--parameter_matched`, sizes; `--model_type roformer` for RoCoder at the same size).
Evaluation reports loss and perplexity. Runs under `accelerate launch`; resumes from the last checkpoint.
"""

import math
import sys
from dataclasses import dataclass, field
from typing import Optional


from mambacode.training.collators import group_texts, mlm_collator
from mambacode.training.models import build_model, load_tokenizer
from mambacode.training.script_utils import (parse_script_args, attach, load_dataset_dict,
                                             logger, make_callbacks, report_done, require_split, save_with_card,
                                             train_and_evaluate)
from mambacode.training.validation import DataValidationError, require_columns


@dataclass
class DataTrainingArguments:
    dataset_path: str = field(metadata={"help": "DatasetDict on disk, e.g. corpus/retrieval or corpus/long_context."})
    text_column: str = field(default="code", metadata={"help": "Comma-separated text columns (e.g. code,docstring)."})
    train_split: str = field(default="train")
    validation_split: str = field(default="validation")
    max_seq_length: int = field(default=256, metadata={"help": "Block length of the packed sequences."})
    mlm_probability: float = field(default=0.15)
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Rows (before packing) used for training."})
    max_eval_samples: Optional[int] = field(default=None)
    dedupe_texts: bool = field(default=True, metadata={"help": "Drop repeated texts (long-context documents repeat per query)."})


def main(argv=None):
    model_args, data_args, training_args, run_args, checkpoint = parse_script_args(DataTrainingArguments, argv)
    columns = [c.strip() for c in data_args.text_column.split(",") if c.strip()]
    try:
        dsets = load_dataset_dict(data_args.dataset_path)
        require_columns(dsets, columns, where=data_args.dataset_path)
        tokenizer = load_tokenizer(model_args)
        model = build_model(model_args, "mlm", tokenizer)
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and data_args.max_seq_length > limit:
        print(f"error: --max_seq_length={data_args.max_seq_length} exceeds the model's max_position_embeddings="
              f"{limit}", file=sys.stderr)
        return 2
    logger.info("model: %s, %s parameters", type(model).__name__, f"{sum(p.numel() for p in model.parameters()):,}")

    def prepare(split, n):
        ds = require_split(dsets, split, data_args.dataset_path)
        texts = [t for c in columns for t in ds[c] if t]
        if data_args.dedupe_texts:
            texts = list(dict.fromkeys(texts))
        if n is not None:
            texts = texts[:n]
        import datasets

        raw = datasets.Dataset.from_dict({"text": texts})
        with training_args.main_process_first(desc="tokenize"):
            tok = raw.map(lambda b: tokenizer(b["text"], return_special_tokens_mask=True), batched=True,
                          remove_columns=["text"], desc="tokenize")
            return tok.map(group_texts, batched=True, fn_kwargs={"block_size": data_args.max_seq_length},
                           desc=f"pack into {data_args.max_seq_length}-token blocks")

    train_ds = prepare(data_args.train_split, data_args.max_train_samples) if training_args.do_train else None
    eval_ds = prepare(data_args.validation_split, data_args.max_eval_samples) if training_args.do_eval else None

    from mambacode.training.callbacks import GuardedTrainer

    callbacks = make_callbacks(run_args, model_args, tokenizer)
    trainer = GuardedTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=mlm_collator(tokenizer, data_args.mlm_probability),
                             processing_class=tokenizer, callbacks=callbacks)
    attach(trainer, callbacks)
    def add_perplexity(m):
        m["perplexity"] = math.exp(m["eval_loss"]) if m["eval_loss"] < 50 else float("inf")

    eval_metrics = train_and_evaluate(trainer, training_args, checkpoint, len(train_ds), on_eval=add_perplexity)
    metrics = {k: eval_metrics[k] for k in ("eval_loss", "perplexity") if k in eval_metrics}
    if training_args.do_train:
        save_with_card(trainer, tokenizer, "mlm", model_args,
                       data_description=f"Texts of column(s) {columns} of `{data_args.dataset_path}` (split "
                                        f"`{data_args.train_split}`), packed into {data_args.max_seq_length}-token "
                                        f"blocks, {data_args.mlm_probability:.0%} masked.",
                       metrics=metrics, dataset_path=data_args.dataset_path, run_args=run_args,
                       hub_task="fill-mask")
    report_done(training_args, "run_mlm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
