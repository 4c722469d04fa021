"""Checks that fail before training starts, with the missing field named (not a KeyError deep in `map`)."""

from __future__ import annotations


class DataValidationError(ValueError):
    """A dataset, tokenizer or model does not fit the script it was given to."""


def require_columns(dataset, columns, where: str = "dataset") -> None:
    """Raise DataValidationError naming every column of `columns` that `dataset` (or each split) lacks."""
    is_dict = isinstance(getattr(dataset, "column_names", None), dict)  # a DatasetDict
    splits = list(dataset.items()) if is_dict else [(None, dataset)]
    for split, ds in splits:
        have = list(ds.column_names)
        missing = [c for c in columns if c not in have]
        if missing:
            name = f"{where}[{split!r}]" if split is not None else where
            raise DataValidationError(
                f"{name} is missing the column(s) {missing}; it has {have}. Pass the right column names "
                f"(e.g. --query_column/--code_column, --tokens_column/--labels_column) or the right dataset."
            )


def check_tokenizer_matches_model(tokenizer, config, where: str = "model") -> None:
    """Refuse a tokenizer whose vocabulary does not fit the model's embedding table.

    A larger tokenizer would index past the embeddings; a different size (or pad id) means the model was
    trained with another tokenizer, whose ids would silently mean different tokens.
    """
    size = len(tokenizer)
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and size != vocab:
        raise DataValidationError(
            f"tokenizer/model vocabulary mismatch: the tokenizer has {size} tokens but {where} has "
            f"vocab_size={vocab}. Use the tokenizer the model was trained with (--tokenizer_name_or_path), or build "
            f"the model from scratch with vocab_size={size}."
        )
    pad = getattr(config, "pad_token_id", None)
    if pad is not None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id != pad:
        raise DataValidationError(
            f"tokenizer/model mismatch: tokenizer.pad_token_id={tokenizer.pad_token_id} but {where} has "
            f"pad_token_id={pad}."
        )


__all__ = ["DataValidationError", "require_columns", "check_tokenizer_matches_model"]
