#!/usr/bin/env python
"""Masked-language-model pretraining of MambaCode or RoCoder on code (`mambacode.training.run_mlm`).

    python scripts/run_mlm.py --tokenizer_name_or_path runs/tok --dataset_path corpus/retrieval --text_column code \
        --mixer s4d --hidden_size 128 --num_hidden_layers 4 --output_dir runs/mlm-s4d --do_train --do_eval

Texts are tokenised, concatenated and cut into `--max_seq_length` blocks; 15% of tokens are masked
(80/10/10). Without `--model_name_or_path` a new model is built from the flags (`--mixer`, `--hf_conv`,
`--num_kernels`, `--parameter_matched`, sizes; `--model_type roformer` for RoCoder at the same size).
Evaluation reports loss and perplexity. Runs under `accelerate launch`; resumes from the last checkpoint.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, at torch import: mambacode/threads.py

from mambacode.training import MLMDataArguments, run_mlm  # noqa: E402
from mambacode.training.script_utils import run_script  # noqa: E402


def main(argv=None) -> int:
    return run_script(run_mlm, MLMDataArguments, argv)


if __name__ == "__main__":
    sys.exit(main())
