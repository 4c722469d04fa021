#!/usr/bin/env python
"""Train the byte-level BPE tokenizer on a built corpus (train split code and docstrings).

    python scripts/train_tokenizer.py --corpus_dir data/corpus --output_dir data/tokenizer --vocab_size 32000

The result loads with `AutoTokenizer.from_pretrained(output_dir)`, has `<s> </s> <pad> <unk> <mask>`
and supports `return_offsets_mapping=True`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mambacode.corpus import corpus_texts, train_tokenizer


@dataclass
class TokenizerArguments:
    corpus_dir: str = field(metadata={"help": "Output folder of scripts/build_corpus.py."})
    output_dir: str = field(metadata={"help": "Where to save the tokenizer (save_pretrained)."})
    vocab_size: int = field(default=32_000, metadata={"help": "Vocabulary size, bytes and special tokens included."})
    min_frequency: int = field(default=2, metadata={"help": "Least frequency of a merged pair."})
    max_texts: int | None = field(default=None, metadata={"help": "Use at most this many texts."})
    model_max_length: int = field(default=1024, metadata={"help": "Recorded as the tokenizer's model_max_length."})


def main(argv=None):
    (args,) = HfArgumentParser(TokenizerArguments).parse_args_into_dataclasses(args=argv)
    start = time.perf_counter()
    try:
        tok = train_tokenizer(corpus_texts(args.corpus_dir, max_texts=args.max_texts), vocab_size=args.vocab_size,
                              output_dir=args.output_dir, min_frequency=args.min_frequency,
                              model_max_length=args.model_max_length, show_progress=True)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    else:
        print(f"vocabulary: {len(tok)} tokens; saved to {args.output_dir} in {time.perf_counter() - start:.1f} s")
        return 0

if __name__ == "__main__":
    sys.exit(main())
