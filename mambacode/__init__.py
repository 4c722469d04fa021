"""MambaCode: bidirectional SSM code encoders as Hugging Face models.

Importing the package registers `MambaCodeConfig` and the model classes with transformers' Auto* factories
(so `AutoModel.from_pretrained(folder)` works after `import mambacode`, without `trust_remote_code`).
One process is the exception: the `mambacode` command (`sys.argv[0]` named `mambacode`) must start in a
fraction of a second and answer BM25 and numpy-encoded queries without torch, so there the model names load
on first use (PEP 562: the first `mambacode.<name>` imports `mambacode.modeling`, which registers them).
The sub-packages `mambacode.corpus`, `mambacode.probing`, `mambacode.spectral` and `mambacode.training` are
imported on demand. `pretrained_path(name)` is the folder of a checkpoint shipped with the package
(`available_pretrained()` lists them).
"""

from __future__ import annotations

import importlib
import os
import sys

__version__ = "0.1.0"

#: `mambacode.modeling.__all__` (a test keeps the two equal): each loads `mambacode.modeling` on first use
_MODELING_NAMES = (
    "MambaCodeConfig", "MambaCodePreTrainedModel", "MambaCodeModel", "MambaCodeForMaskedLM", "MambaCodeForRetrieval",
    "MambaCodeForTokenClassification", "MambaCodeForSequenceClassification", "MambaCodeModelOutput",
    "MambaCodeRetrievalOutput", "count_parameters", "encode_texts", "pool", "SENTENCE_TRANSFORMERS_TAGS",
    "S4DKernel", "S4DMixer", "BiMamba2Mixer", "ssd_chunked_scan", "mamba_chunk_scan_kernel",
)
_FINDERS = ("pretrained_path", "available_pretrained")

__all__ = list(_MODELING_NAMES) + list(_FINDERS)


def __getattr__(name: str):
    if name in _MODELING_NAMES:
        value = getattr(importlib.import_module(".modeling", __name__), name)
    elif name in _FINDERS:
        # importing `mambacode.pretrained` registers the model classes too (it imports `mambacode.modeling`),
        # as `from mambacode import pretrained_path` always did
        value = getattr(importlib.import_module(".pretrained", __name__), name)
    else:
        raise AttributeError(f"module 'mambacode' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _is_the_command() -> bool:
    """Whether this process is the `mambacode` console script (the only place the package face stays lazy)."""
    return bool(sys.argv) and os.path.basename(sys.argv[0] or "") == "mambacode"


if not _is_the_command():
    importlib.import_module(".modeling", __name__)  # registers the classes with transformers' Auto* factories
