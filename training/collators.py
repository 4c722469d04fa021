"""Tokenisation and batching for the three training tasks.

- MLM: `group_texts` packs tokenised code into fixed-length blocks (no padding wasted) and
  `DataCollatorForMaskedLM` masks them (80/10/10) with draws seeded per (seed, epoch, example), so a
  resumed run masks exactly as an uninterrupted one.
- Retrieval: `tokenize_retrieval_pairs` tokenises query and code into separate columns and
  `DataCollatorForRetrieval` pads each side on its own, so a long function does not pad every query.
- Type inference: `tokenize_and_align_labels` maps word-level labels onto sub-words (first sub-word of a
  word carries its label, the rest -100); batches come from transformers' `DataCollatorForTokenClassification`
  (right padding with the pad id, attention 0, labels -100), which has no collator of ours to replace.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from transformers import TrainerCallback

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


EXAMPLE_INDEX = "example_index"


def add_example_index(dataset):
    """The column `DataCollatorForMaskedLM` seeds each example's masks with (0 .. len-1)."""
    return dataset.add_column(EXAMPLE_INDEX, list(range(len(dataset))))


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for (run seed, epoch, example index), well mixed so neighbouring indices differ."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class DataCollatorForMaskedLM:
    """BERT-style masking (of `mlm_probability` of the non-special tokens: 80% -> <mask>, 10% -> a random
    token, 10% kept) whose random draws depend only on (seed, epoch, example index), never on how many
    batches were drawn before: a resumed run masks every batch as the uninterrupted run did (transformers'
    collator draws from the global generator, which a resume cannot put back where it was, since batches
    are collated ahead of the step that uses them). Features need the `example_index` column
    (`add_example_index`); `epoch` is set by `MaskingEpochCallback`."""

    tokenizer: object
    mlm_probability: float = 0.15
    seed: int = 0
    pad_to_multiple_of: int | None = None
    epoch: int = 0

    def __post_init__(self):
        if self.tokenizer.mask_token is None:
            raise ValueError("MLM needs a tokenizer with a mask token (<mask>); this one has none.")

    def __call__(self, features: list[dict]) -> dict:
        import torch

        missing = [i for i, f in enumerate(features) if EXAMPLE_INDEX not in f]
        if missing:
            raise ValueError(f"MLM features need an {EXAMPLE_INDEX!r} column (add_example_index); feature(s) "
                             f"{missing[:5]} have only {sorted(features[missing[0]])}")
        indices = [int(f[EXAMPLE_INDEX]) for f in features]
        batch = self.tokenizer.pad([{k: v for k, v in f.items() if k != EXAMPLE_INDEX} for f in features],
                                   return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        inputs = batch["input_ids"]
        special = batch.pop("special_tokens_mask", None)
        if special is None:
            special = torch.tensor([self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                                    for row in inputs.tolist()])
        labels = inputs.clone()
        mask_id = self.tokenizer.convert_tokens_to_ids(self.tokenizer.mask_token)
        for row, (index, feature) in enumerate(zip(indices, features)):
            n = len(feature["input_ids"])  # draws per real token: padding never changes an example's masks
            g = torch.Generator().manual_seed(example_seed(self.seed, self.epoch, index))
            chosen = torch.zeros(inputs.shape[1], dtype=torch.bool)
            chosen[:n] = (torch.rand(n, generator=g) < self.mlm_probability) & ~special[row, :n].bool()
            kind = torch.ones(inputs.shape[1])  # < 0.8: <mask>; 0.8-0.9: a random token; else kept
            kind[:n] = torch.rand(n, generator=g)
            random_ids = torch.zeros(inputs.shape[1], dtype=torch.long)
            random_ids[:n] = torch.randint(len(self.tokenizer), (n,), generator=g)
            labels[row, ~chosen] = IGNORE_INDEX
            inputs[row, chosen & (kind < 0.8)] = mask_id
            swap = chosen & (kind >= 0.8) & (kind < 0.9)
            inputs[row, swap] = random_ids[swap]
        batch["input_ids"], batch["labels"] = inputs, labels
        return dict(batch)


class MaskingEpochCallback(TrainerCallback):
    """Tells a `DataCollatorForMaskedLM` which epoch is being drawn (new masks each epoch), and puts it back
    to epoch 0 after training so a final evaluation masks the same way whatever the run length."""

    def __init__(self, collator: DataCollatorForMaskedLM):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor((state.epoch or 0.0) + 1e-6)  # a resumed epoch starts mid-way

    def on_train_end(self, args, state, control, **kwargs):
        self.collator.epoch = 0


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


__all__ = ["IGNORE_INDEX", "EXAMPLE_INDEX", "group_texts", "add_example_index", "example_seed",
           "DataCollatorForMaskedLM", "MaskingEpochCallback", "tokenize_retrieval_pairs", "DataCollatorForRetrieval",
           "align_word_labels", "tokenize_and_align_labels"]
