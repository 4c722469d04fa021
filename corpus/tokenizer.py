"""Byte-level BPE tokenizer for code, trained with `tokenizers` and wrapped for `transformers`.

Byte-level BPE never produces an unknown token on code (any byte sequence is covered), and its offset
mapping lets the probes align sub-words with tree-sitter tokens. The special tokens follow RoBERTa
(``<s> </s> <pad> <unk> <mask>``), which is what ``DataCollatorForLanguageModeling`` and the MLM
script expect.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 32_000,
    output_dir: str | None = None,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    show_progress: bool = False,
):
    """Train a byte-level BPE on ``texts`` and return a ``PreTrainedTokenizerFast`` (saved if ``output_dir``).

    ``vocab_size`` counts the 256 byte symbols and the 5 special tokens, so it must exceed 261.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size: expected more than {256 + len(SPECIAL_TOKENS)} (bytes + special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(_non_empty(texts), trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos), trim_offsets=True, add_prefix_space=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        fast.save_pretrained(output_dir)
        name_tokenizer_class(output_dir, type(fast).__name__)
    return fast


def name_tokenizer_class(folder: str, class_name: str) -> None:
    """Make `folder/tokenizer_config.json` name its tokenizer class (a transformers class), so that
    `AutoTokenizer` picks it without the model's config and never needs the model's remote code."""
    import json

    path = os.path.join(folder, "tokenizer_config.json")
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    if config.get("tokenizer_class") == class_name:
        return
    config["tokenizer_class"] = class_name
    config.pop("auto_map", None)  # a class named by transformers needs no remote tokenizer code
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"train_tokenizer: texts must be strings, got {type(t).__name__}")
        if t:
            yield t


def corpus_texts(corpus_dir: str, splits: Iterable[str] = ("train",), max_texts: int | None = None) -> Iterator[str]:
    """Code and docstrings of a built corpus: retrieval ``query``/``code`` and unique long-context documents.

    Only the given splits (default: train) are used, so the tokenizer never sees test code.
    """
    import datasets as hf

    n = 0
    path = os.path.join(corpus_dir, "retrieval")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--corpus_dir {corpus_dir!r}: no 'retrieval' dataset (run scripts/build_corpus.py first)")
    retrieval = hf.load_from_disk(path)
    for split in splits:
        if split not in retrieval:
            raise KeyError(f"{path}: no split {split!r} (has {list(retrieval)})")
        for row in retrieval[split]:
            for text in (row["docstring"], row["code"]):
                yield text
                n += 1
                if max_texts is not None and n >= max_texts:
                    return
    lc_path = os.path.join(corpus_dir, "long_context")
    if os.path.isdir(lc_path):
        lc = hf.load_from_disk(lc_path)
        seen = set()
        for split in splits:
            for row in lc[split] if split in lc else ():
                if row["doc_id"] in seen:
                    continue
                seen.add(row["doc_id"])
                yield row["code"]
                n += 1
                if max_texts is not None and n >= max_texts:
                    return
