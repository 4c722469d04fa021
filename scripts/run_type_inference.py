#!/usr/bin/env python
"""Fine-tune MambaCode or RoCoder for type inference, a label per identifier, ManyTypes4TypeScript style
(`mambacode.training.run_type_inference`).

    python scripts/run_type_inference.py --model_name_or_path runs/mlm --dataset_path corpus/type_inference \
        --output_dir runs/types --do_train --do_eval --do_predict

The dataset is word level (`tokens`, `labels`; -1 = unlabelled word; label names from the ClassLabel
feature). Each word's label goes to its first sub-word, the rest are ignored. Metrics (local `evaluate`
module): token accuracy, micro precision/recall/F1 and macro F1, with the rare-type bucket `other`
counted as "no type" for F1 unless `--f1_count_other`.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # libgomp reads it once, at torch import: mambacode/threads.py

from mambacode.training import TypeInferenceDataArguments, run_type_inference  # noqa: E402
from mambacode.training.script_utils import run_script  # noqa: E402


def main(argv=None) -> int:
    return run_script(run_type_inference, TypeInferenceDataArguments, argv)


if __name__ == "__main__":
    sys.exit(main())
