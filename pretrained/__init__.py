"""The checkpoints shipped with MambaCode, one model folder each (`mambacode.pretrained_path(name)`;
how they are made: `mambacode/pretrained.py` and `scripts/ship_pretrained.py`)."""
