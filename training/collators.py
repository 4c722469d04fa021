"""Tokenisation and batching for the three training tasks.

- MLM: `group_texts` packs tokenised code into fixed-length blocks (no padding wasted) and
  `mlm_collator` is transformers' masking collator (80/10/10) with our defaults.
- Retrieval: `tokenize_retrieval_pairs` tokenises query and code into separate columns and
  `DataCollatorForRetrieval` pads each side on its own, so a long function does not pad every query.
- Type inference: `tokenize_and_align_labels` maps word-level labels onto sub-words (first sub-word of a
  word carries its label, the rest -100) and `DataCollatorForTypeInference` pads labels with -100.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


# ------------------------------------------------------------------------------------------------ MLM
def group_texts(examples: dict, block_size: int) -> dict:
    """Concatenate tokenised texts (each ending with </s>) and cut them into `block_size` blocks.

    The tail that does not fill a block is kept as a shorter last block, so small corpora lose nothing.
    """
    keys = [k for k in ("input_ids", "attention_mask", "special_tokens_mask") if k in examples]
    concatenated = {k: [t for ids in examples[k] for t in ids] for k in keys}
    total = len(concatenated["input_ids"])
    return {k: [v[i:i + block_size] for i in range(0, total, block_size)] for k, v in concatenated.items()}


def mlm_collator(tokenizer, mlm_probability: float = 0.15, pad_to_multiple_of: int | None = None, seed=None):
    """transformers' DataCollatorForLanguageModeling (BERT-style 80/10/10 masking of 15% of tokens)."""
    from transformers import DataCollatorForLanguageModeling

    if tokenizer.mask_token is None:
        raise ValueError("MLM needs a tokenizer with a mask token (<mask>); this one has none.")
    kwargs = {"seed": seed} if seed is not None else {}
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability,
                                           pad_to_multiple_of=pad_to_multiple_of, **kwargs)


# ------------------------------------------------------------------------------------------ retrieval
def tokenize_retrieval_pairs(examples: dict, tokenizer, query_column: str, code_column: str,
                             max_query_length: int, max_code_length: int) -> dict:
    """Batched `map` function: query -> input_ids/attention_mask, code -> code_input_ids/code_attention_mask."""
    q = tokenizer(examples[query_column], truncation=True, max_length=max_query_length)
    c = tokenizer(examples[code_column], truncation=True, max_length=max_code_length)
    return {"input_ids": q["input_ids"], "attention_mask": q["attention_mask"],
            "code_input_ids": c["input_ids"], "code_attention_mask": c["attention_mask"]}


def _pad(rows: list[list[int]], value: int, multiple: int | None = None):
    import torch

    length = max((len(r) for r in rows), default=0)
    if multiple:
        length = -(-length // multiple) * multiple
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


@dataclass
class DataCollatorForRetrieval:
    """Pads queries and code separately (right padding; MambaCode and RoFormer both mask padding)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        batch = {}
        for ids, mask in (("input_ids", "attention_mask"), ("code_input_ids", "code_attention_mask")):
            if ids not in features[0]:
                continue
            batch[ids] = _pad([f[ids] for f in features], self.pad_token_id, self.pad_to_multiple_of)
            batch[mask] = _pad([f[mask] for f in features], 0, self.pad_to_multiple_of)
        return batch


# ------------------------------------------------------------------------------------- type inference
def align_word_labels(word_ids: list, labels: list[int], ignore_index: int = IGNORE_INDEX) -> list[int]:
    """Sub-word labels: the first sub-word of a labelled word keeps its label; specials, continuation
    sub-words and unlabelled words (label < 0) get `ignore_index`."""
    out, previous = [], None
    for w in word_ids:
        if w is None or w == previous or labels[w] < 0:
            out.append(ignore_index)
        else:
            out.append(int(labels[w]))
        previous = w
    return out


def tokenize_and_align_labels(examples: dict, tokenizer, tokens_column: str, labels_column: str,
                              max_length: int) -> dict:
    """Batched `map` function over word-level examples: tokenise the words, align their labels."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("type inference needs a fast tokenizer (word_ids() maps sub-words to words).")
    enc = tokenizer(examples[tokens_column], is_split_into_words=True, truncation=True, max_length=max_length)
    enc["labels"] = [align_word_labels(enc.word_ids(i), labels)
                     for i, labels in enumerate(examples[labels_column])]
    return enc


@dataclass
class DataCollatorForTypeInference:
    """Pads input_ids with the pad id, attention_mask with 0 and labels with -100."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        return {
            "input_ids": _pad([f["input_ids"] for f in features], self.pad_token_id, self.pad_to_multiple_of),
            "attention_mask": _pad([f["attention_mask"] for f in features], 0, self.pad_to_multiple_of),
            "labels": _pad([f["labels"] for f in features], IGNORE_INDEX, self.pad_to_multiple_of),
        }


__all__ = ["IGNORE_INDEX", "group_texts", "mlm_collator", "tokenize_retrieval_pairs", "DataCollatorForRetrieval",
           "align_word_labels", "tokenize_and_align_labels", "DataCollatorForTypeInference"]
