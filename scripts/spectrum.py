#!/usr/bin/env python
"""SSM-Interpret from the command line: kernel spectra of a checkpoint, or the spectral shift between a
pretrained and a fine-tuned one (PAPER.md section 4). See `mambacode.spectral.cli` for every option.

    python scripts/spectrum.py --model_name_or_path PRE --compare_to FINETUNED --output_dir DIR
"""

import sys

from mambacode.spectral.cli import main

if __name__ == "__main__":
    sys.exit(main())
