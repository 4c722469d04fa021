"""Python-side API of the spectral-preserving regulariser (the penalty itself lives in
`mambacode.modeling.spectral_anchor`, next to the weights, so that remote-code models can compute it).

Two ways to use it:
- from the config (what the training scripts do): `enable_spectral_anchor(model, weight=0.1)` sets
  `config.spectral_anchor_weight` (and length / weighting), records the anchor now, and every head model's
  training loss then includes `weight * penalty`. Add `SpectralAnchorCallback()` to the Trainer so the
  anchor is saved into each checkpoint and restored on resume.
- by hand in a custom loop: `reg = SpectralAnchorRegularizer(model, weight=0.1)`; `loss = loss + reg()`.

Anchor persistence: the anchor is the set of kernel *parameters* at the start of fine-tuning (small: a
few thousand floats), kept on the encoder as `_spectral_anchor`. `save_spectral_anchor` writes them to
`spectral_anchor.safetensors`; `load_spectral_anchor` restores them after checking every module name and
shape. Resuming without a saved anchor is an error, because silently re-anchoring to the resumed
(already drifted) weights would defeat the regulariser.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import TrainerCallback

from mambacode.atomic import atomic_path
from mambacode.modeling.spectral_anchor import (
    ANCHOR_ATTR,
    CACHE_ATTR,
    WEIGHTINGS,
    _encoder,
    anchor_modules,
    capture_spectral_anchor,
    clear_spectral_anchor,
    frequency_weights,
    get_spectral_anchor,
    spectral_anchor_penalty,
    spectral_anchor_terms,
)

logger = logging.getLogger(__name__)

ANCHOR_FILE = "spectral_anchor.safetensors"
ANCHOR_FORMAT = "mambacode-spectral-anchor-v1"


def set_spectral_anchor(model) -> dict:
    """Record the current kernels as the anchor (call at the start of fine-tuning)."""
    return capture_spectral_anchor(model)


def enable_spectral_anchor(model, weight: float, length: int | None = None, weighting: str | None = None,
                           capture: bool = True):
    """Switch the regulariser on through the config (validated) and, by default, record the anchor now."""
    config = model.config
    old = (config.spectral_anchor_weight, config.spectral_anchor_length, config.spectral_anchor_weighting)
    config.spectral_anchor_weight = float(weight)
    if length is not None:
        config.spectral_anchor_length = length
    if weighting is not None:
        config.spectral_anchor_weighting = weighting
    try:
        config.validate_fields()
    except ValueError:
        config.spectral_anchor_weight, config.spectral_anchor_length, config.spectral_anchor_weighting = old
        raise
    if capture:
        capture_spectral_anchor(model)
    return model


def save_spectral_anchor(model, directory: str) -> str:
    """Write the anchor to `directory/spectral_anchor.safetensors` atomically; returns the path."""
    from safetensors.torch import save_file

    anchor = get_spectral_anchor(model)
    if anchor is None:
        raise ValueError("save_spectral_anchor: the model has no spectral anchor yet (set_spectral_anchor first).")
    tensors, kinds = {}, {}
    for name, entry in anchor.items():
        kinds[name] = entry["kind"]
        for p, t in entry.items():
            if p != "kind":
                tensors[f"{name}::{p}"] = t.detach().cpu().contiguous()
    path = os.path.join(directory, ANCHOR_FILE)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, tmp, metadata={"format": ANCHOR_FORMAT, "kinds": json.dumps(kinds)})
    return path


def load_spectral_anchor(model, path: str) -> dict:
    """Restore an anchor saved by `save_spectral_anchor` (a folder or the file itself).

    Every kernel module of `model` must have an entry of the same shapes; mismatches name the module.
    """
    from safetensors import safe_open

    if os.path.isdir(path):
        path = os.path.join(path, ANCHOR_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no spectral anchor at {path} (expected {ANCHOR_FILE}, written by "
                                "save_spectral_anchor or SpectralAnchorCallback).")
    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
        if meta.get("format") != ANCHOR_FORMAT:
            raise ValueError(f"{path}: metadata format={meta.get('format')!r}, expected {ANCHOR_FORMAT!r}.")
        kinds = json.loads(meta["kinds"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    anchor = {}
    for name, module, kind in anchor_modules(model):
        if name not in kinds or kinds[name] != kind:
            raise ValueError(f"{path}: no {kind} anchor for kernel module {name!r} (file has "
                             f"{sorted(kinds)}); it was saved from a different architecture.")
        entry = {"kind": kind}
        for p in [k.split("::", 1)[1] for k in tensors if k.split("::", 1)[0] == name]:
            t = tensors[f"{name}::{p}"]
            want = getattr(module, p).shape
            if t.shape != want:
                raise ValueError(f"{path}: {name}.{p} has shape {tuple(t.shape)}, the model's is {tuple(want)}.")
            entry[p] = t.to(getattr(module, p).device)
        anchor[name] = entry
    extra = set(kinds) - set(anchor)
    if extra:
        raise ValueError(f"{path}: entries {sorted(extra)} match no kernel module of this model.")
    encoder = _encoder(model)
    setattr(encoder, ANCHOR_ATTR, anchor)
    setattr(encoder, CACHE_ATTR, {})
    return anchor


class SpectralAnchorRegularizer:
    """`weight * penalty` on demand, for training loops that do not go through the config hook.

    The anchor is recorded at construction (unless one exists or `capture=False`).
    """

    def __init__(self, model, weight: float = 1.0, length: int = 1024, weighting: str = "uniform",
                 capture: bool = True):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r} is invalid: expected one of {WEIGHTINGS}.")
        if not weight >= 0:
            raise ValueError(f"weight={weight!r} is invalid: expected a float >= 0.")
        self.model, self.weight, self.length, self.weighting = model, float(weight), int(length), weighting
        anchor_modules(model)  # fails early on unsupported models
        if capture and get_spectral_anchor(model) is None:
            capture_spectral_anchor(model)

    def penalty(self) -> torch.Tensor:
        return spectral_anchor_penalty(self.model, self.length, self.weighting)

    def __call__(self) -> torch.Tensor:
        return self.weight * self.penalty()

    def terms(self) -> dict:
        """Per-module, per-kernel drift (detached), e.g. to log which layer moves."""
        with torch.no_grad():
            return {k: v.detach().cpu() for k, v in spectral_anchor_terms(self.model, self.length,
                                                                            self.weighting).items()}

    def save(self, directory: str) -> str:
        return save_spectral_anchor(self.model, directory)

    def load(self, path: str) -> dict:
        return load_spectral_anchor(self.model, path)


def _checkpoint_dir(args, state) -> str:
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


class SpectralAnchorCallback(TrainerCallback):
    """Keeps the anchor of a Trainer run: records it at train begin (fresh run), restores it on resume,
    saves it into every checkpoint folder and the output folder at the end.

    On resume (global_step > 0) the anchor is read from `resume_from` if given, else from
    `args.resume_from_checkpoint` (when a path), else `output_dir/checkpoint-<step>`; none found is an error
    unless `allow_reanchor=True`. An anchor already on the model (set or loaded by hand) is kept.
    """

    def __init__(self, resume_from: str | None = None, allow_reanchor: bool = False):
        self.resume_from = resume_from
        self.allow_reanchor = allow_reanchor

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if get_spectral_anchor(model) is not None:
            return
        if state.global_step > 0:
            resume_arg = getattr(args, "resume_from_checkpoint", None)
            candidates = [self.resume_from, resume_arg if isinstance(resume_arg, str) else None,
                          _checkpoint_dir(args, state)]
            for c in candidates:
                if c and os.path.exists(os.path.join(c, ANCHOR_FILE) if os.path.isdir(c) else c):
                    load_spectral_anchor(model, c)
                    logger.info("spectral anchor restored from %s", c)
                    return
            if not self.allow_reanchor:
                raise FileNotFoundError(
                    f"resuming at step {state.global_step} but no {ANCHOR_FILE} was found in "
                    f"{[c for c in candidates if c]}; pass SpectralAnchorCallback(resume_from=<folder of the "
                    "anchor>) or allow_reanchor=True to anchor to the resumed weights.")
            logger.warning("spectral anchor: re-anchoring to the resumed weights at step %d", state.global_step)
        capture_spectral_anchor(model)

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = _checkpoint_dir(args, state)
        if state.is_world_process_zero and os.path.isdir(folder) and get_spectral_anchor(model) is not None:
            save_spectral_anchor(model, folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and get_spectral_anchor(model) is not None:
            save_spectral_anchor(model, args.output_dir)


__all__ = [
    "SpectralAnchorRegularizer",
    "SpectralAnchorCallback",
    "spectral_anchor_penalty",
    "spectral_anchor_terms",
    "set_spectral_anchor",
    "enable_spectral_anchor",
    "clear_spectral_anchor",
    "get_spectral_anchor",
    "save_spectral_anchor",
    "load_spectral_anchor",
    "frequency_weights",
    "ANCHOR_FILE",
    "WEIGHTINGS",
]
