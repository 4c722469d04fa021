#!/usr/bin/env python
"""Fine-tune (or train from scratch) a bi-encoder for natural-language code search
(`mambacode.training.run_retrieval`).

    python scripts/run_retrieval.py --model_name_or_path runs/mlm --dataset_path corpus/retrieval \
        --test_dataset_path corpus/retrieval_adv --output_dir runs/retrieval --do_train --do_predict

MambaCode (`MambaCodeForRetrieval`) or RoCoder (`--model_type roformer`, mean-pooled RoFormer) is trained
with the in-batch InfoNCE loss on (query, code) pairs; evaluation ranks every test query against the
whole pool of distinct test candidates (MRR, Recall@1/5/10, nDCG@10; local `evaluate` module).
Runs under `accelerate launch --num_processes N`; resumes from the last checkpoint in output_dir.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, at torch import: mambacode/threads.py

from mambacode.training import RetrievalDataArguments, run_retrieval  # noqa: E402
from mambacode.training.script_utils import run_script  # noqa: E402


def main(argv=None) -> int:
    return run_script(run_retrieval, RetrievalDataArguments, argv)


if __name__ == "__main__":
    sys.exit(main())
