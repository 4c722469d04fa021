"""The device rule of the command-line tools, transformers' `--use_cpu`: the GPU when there is one, else the
CPU; `--use_cpu` forces the CPU."""

from __future__ import annotations


def default_device(use_cpu: bool = False) -> str:
    import torch

    return "cpu" if use_cpu or not torch.cuda.is_available() else "cuda"


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16 or AMX): where it has none, autocast
    would emulate them, slower than float32."""
    import torch

    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


__all__ = ["cpu_bf16_supported", "default_device"]
