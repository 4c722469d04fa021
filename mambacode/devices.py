"""The device rule of the command-line tools, transformers' `--use_cpu`: the GPU when there is one, else the
CPU; `--use_cpu` forces the CPU."""

from __future__ import annotations


def default_device(use_cpu: bool = False) -> str:
    import torch

    return "cpu" if use_cpu or not torch.cuda.is_available() else "cuda"


__all__ = ["default_device"]
