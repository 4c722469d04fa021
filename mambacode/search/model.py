"""Load a MambaCode retrieval model for search, and tell two models apart by what they compute.

The fingerprint is the embedding of a fixed probe text: an index remembers it, and a search with a model
whose probe embedding differs (another checkpoint, another width) is refused rather than ranked with
incomparable vectors. It needs no weight hashing and survives a folder being copied or renamed.
"""

from __future__ import annotations

import os

import numpy as np

from ..devices import default_device

PROBE_TEXT = "def mambacode_search_probe(path):\n    return open(path).read().split()  # fingerprint"
FINGERPRINT_ATOL = 1e-3


def load_retrieval_model(name_or_path: str, device: str | None = None):
    """(model, tokenizer) of a saved MambaCode retrieval folder or Hub id (the installed classes, so no
    remote code runs), in eval mode on `device`
    (default: CUDA when available). Works offline (`HF_HUB_OFFLINE=1`) for local folders and cached ids."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    import mambacode  # noqa: F401  (registers the MambaCode classes with AutoModel)

    if os.path.sep in name_or_path and not os.path.exists(name_or_path):
        raise FileNotFoundError(f"--model {name_or_path}: no such folder")
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except OSError as exc:
        raise FileNotFoundError(f"--model {name_or_path}: not a model folder or reachable Hub id "
                                f"({str(exc).splitlines()[0]})") from None
    if config.model_type != "mambacode":
        raise ValueError(f"--model {name_or_path}: model_type is {config.model_type!r}, expected 'mambacode'")
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForRetrieval") for a in architectures):
        raise ValueError(f"--model {name_or_path}: architectures {architectures} hold no retrieval model "
                         "(expected MambaCodeForRetrieval: fine-tune with run_retrieval first)")
    model = AutoModel.from_pretrained(name_or_path)
    if not hasattr(model, "encode"):
        raise ValueError(f"--model {name_or_path}: {type(model).__name__} has no `encode` (not a retrieval model)")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    device = device or default_device()
    return model.to(device).eval(), tokenizer


def embed(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """(n, d) float32 L2-normalised embeddings (rows of zeros stay zero)."""
    import torch

    with torch.no_grad():
        out = model.encode(list(texts), tokenizer, batch_size=batch_size, max_length=max_length,
                           show_progress_bar=False)
    out = out.float().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def fingerprint(model, tokenizer, max_length: int) -> list[float]:
    return [float(x) for x in embed(model, tokenizer, [PROBE_TEXT], max_length)[0]]


def same_model(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, atol=FINGERPRINT_ATOL))


__all__ = ["FINGERPRINT_ATOL", "PROBE_TEXT", "embed", "fingerprint", "load_retrieval_model", "same_model"]
