"""Load the embedding model of an index, and tell two models apart by what they compute.

A model is a MambaCode retrieval model (a folder, a shipped checkpoint's name such as `s4d-hf-codesearch`, or
a Hub id) or any sentence-transformers model (a folder with `modules.json`), so that an index can be built
with the embedder a user already has, to compare. Loading is quiet (no "Loading weights" bar): the commands
show one progress bar per long step, and loading a model is not one.

The fingerprint is the embedding of a fixed probe text: an index remembers it, and a search with a model
whose probe embedding differs (another checkpoint, another width) is refused rather than ranked with
incomparable vectors. It needs no weight hashing and survives a folder being copied or renamed.

Importing this module costs numpy only; torch and transformers load when a model does.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from ..model_names import resolve_model

PROBE_TEXT = "def mambacode_search_probe(path):\n    return open(path).read().split()  # fingerprint"
FINGERPRINT_ATOL = 1e-3


@contextlib.contextmanager
def _quiet_loading():
    """transformers' weight-loading progress bar off for the block (its previous state restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _has_sentence_transformers_files(name_or_path: str) -> bool:
    if os.path.isdir(name_or_path):
        return os.path.isfile(os.path.join(name_or_path, "modules.json"))
    from transformers.utils import cached_file

    try:
        return cached_file(name_or_path, "modules.json", _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False) is not None
    except Exception:  # noqa: BLE001  (not a resolvable Hub id: no)
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_sentence_transformer(model) -> bool:
    module = sys.modules.get("sentence_transformers")
    return module is not None and isinstance(model, module.SentenceTransformer)


def load_retrieval_model(name_or_path: str, device: str | None = None):
    """(model, tokenizer) of a MambaCode retrieval model (a folder, a shipped checkpoint's name or a Hub id;
    the installed classes, so no remote code runs) or of a sentence-transformers model (a folder or Hub id with
    `modules.json`; then `tokenizer` is the model's own), in eval mode on `device` (default: CUDA when
    available). Works offline (`HF_HUB_OFFLINE=1`) for local folders, shipped names and cached ids."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    import mambacode.modeling  # noqa: F401  (registers the MambaCode classes with AutoModel)

    from ..devices import default_device

    resolved = resolve_model(name_or_path)
    device = device or default_device()
    try:
        config = AutoConfig.from_pretrained(resolved)
    except ValueError as exc:  # a config.json it cannot accept (unknown model_type, absurd sizes)
        raise ValueError(f"--model {name_or_path}: {_first_line(exc)}") from None
    except OSError as exc:
        from huggingface_hub import is_offline_mode

        if resolved == name_or_path and not os.path.exists(resolved) and is_offline_mode():
            raise FileNotFoundError(f"--model {name_or_path}: not a folder or shipped model, and the Hub id is not "
                                    "in the local cache (offline: HF_HUB_OFFLINE is set); fetch it once online, or "
                                    "pass a model folder") from None
        raise FileNotFoundError(f"--model {name_or_path}: not a model folder, shipped model or reachable Hub id "
                                f"({_first_line(exc)})") from None
    if config.model_type != "mambacode":
        if _has_sentence_transformers_files(resolved):
            from sentence_transformers import SentenceTransformer

            with _quiet_loading():
                model = SentenceTransformer(resolved, device=device)
            return model.eval(), model.tokenizer
        raise ValueError(f"--model {name_or_path}: model_type is {config.model_type!r}: expected a MambaCode "
                         "retrieval model or a sentence-transformers model (a folder with modules.json)")
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForRetrieval") for a in architectures):
        raise ValueError(f"--model {name_or_path}: architectures {architectures} hold no retrieval model "
                         "(expected MambaCodeForRetrieval: fine-tune with run_retrieval first)")
    try:
        with _quiet_loading():
            model = AutoModel.from_pretrained(resolved)
    except (OSError, RuntimeError) as exc:  # damaged or missing weights (DamagedWeightsError is an OSError)
        raise ValueError(f"--model {name_or_path}: its weights cannot be loaded: {_first_line(exc)}") from None
    if not hasattr(model, "encode"):
        raise ValueError(f"--model {name_or_path}: {type(model).__name__} has no `encode` (not a retrieval model)")
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return model.to(device).eval(), tokenizer


def model_fusion_config(model):
    """The object whose `hybrid_fusion` says how the hybrid fuses for this model (a MambaCode config; None for
    other models, which fuse with equal weights)."""
    return None if is_sentence_transformer(model) else getattr(model, "config", None)


def _normalised(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def embed(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32, *, bf16: bool = False,
          max_tokens: int | None = None) -> np.ndarray:
    """(n, d) float32 L2-normalised embeddings (rows of zeros stay zero). For a MambaCode model, `bf16` runs it
    under CPU bfloat16 autocast when it is on the CPU, and `max_tokens` caps a batch's padded tokens (`encode`'s);
    a sentence-transformers model ignores both."""
    if is_sentence_transformer(model):
        limit = model.max_seq_length
        model.max_seq_length = min(max_length, limit) if limit else max_length
        try:
            out = model.encode(list(texts), batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        finally:
            model.max_seq_length = limit
        return _normalised(out)
    import torch

    on_cpu = next(model.parameters()).device.type == "cpu"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and on_cpu):
        extra = {} if max_tokens is None else {"max_tokens": max_tokens}
        out = model.encode(list(texts), tokenizer, batch_size=batch_size, max_length=max_length,
                           show_progress_bar=False, **extra)
    return _normalised(out.float().numpy())


def fingerprint(model, tokenizer, max_length: int) -> list[float]:
    """The probe text's embedding, always in float32 (an index's vectors may be bf16: `build_index`)."""
    return [float(x) for x in embed(model, tokenizer, [PROBE_TEXT], max_length)[0]]


def same_model(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, atol=FINGERPRINT_ATOL))


__all__ = ["FINGERPRINT_ATOL", "PROBE_TEXT", "embed", "fingerprint", "is_sentence_transformer",
           "load_retrieval_model", "model_fusion_config", "same_model"]
