"""Trainer callbacks and the NaN-guarded Trainer.

A non-finite loss must stop training *before* its gradients reach the weights and before anything is
saved, so the last checkpoint on disk stays the last good one. A callback only sees logged (averaged)
losses after the optimizer step, so the guard lives in `GuardedTrainer.compute_loss`, which checks every
micro-batch's loss (agreed across processes, so no rank is left waiting in a collective) and raises
`NonFiniteLossError` naming the step and the batch. `NaNGuardCallback` is the belt to those braces: it
stops a run whose *logged* loss or gradient norm is non-finite (e.g. an overflow in the optimizer) and
cancels the save of that step.

`ProbeCallback` (mambacode.probing) and `SpectrumCallback` (mambacode.spectral) are re-exported lazily.
"""

from __future__ import annotations

import math
from importlib import import_module

import torch
from transformers import Trainer, TrainerCallback


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step, the batch and the last checkpoint."""

    def __init__(self, message: str, step: int, batch_index: int):
        super().__init__(message)
        self.step = step
        self.batch_index = batch_index


def _describe_batch(inputs: dict) -> str:
    parts = []
    for key, value in inputs.items():
        if torch.is_tensor(value):
            parts.append(f"{key}{tuple(value.shape)}")
    ids = inputs.get("input_ids")
    if torch.is_tensor(ids) and ids.numel():
        parts.append(f"first input_ids {ids[0, :8].tolist()}")
    return ", ".join(parts)


class GuardedTrainer(Trainer):
    """`Trainer` whose every training loss is checked for NaN/inf before backward."""

    _guard_batches_seen = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not model.training:
            return result
        self._guard_batches_seen += 1
        loss = result[0] if return_outputs else result
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        bad = torch.tensor(float(local_bad), device=loss.device)
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            import os

            from transformers.trainer_utils import get_last_checkpoint

            step = self.state.global_step + 1
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            where = "this process" if local_bad else "another process"
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.detach().float().item()!r} on this process; first seen on "
                f"{where}) at optimizer step {step} (epoch {self.state.epoch or 0:.2f}), micro-batch "
                f"{self._guard_batches_seen} of this run [{_describe_batch(inputs)}]. Training stopped before "
                f"this update; the last good checkpoint is {last or 'none (no checkpoint was saved yet)'}. "
                "Lower the learning rate, add warm-up or gradient clipping, or check the data of that batch.",
                step=step, batch_index=self._guard_batches_seen,
            )
        return result


class NaNGuardCallback(TrainerCallback):
    """Stops training (without saving that step) when a logged loss or grad norm is NaN/inf."""

    def __init__(self, keys=("loss", "grad_norm")):
        self.keys = keys
        self.tripped: dict | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in self.keys:
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self.tripped = {"step": state.global_step, "key": key, "value": value}
                control.should_training_stop = True
                control.should_save = False
                import logging

                logging.getLogger(__name__).error(
                    "NaN guard: logged %s=%r at step %d; stopping without saving this step.", key, value,
                    state.global_step)
        return control


_LAZY = {"ProbeCallback": "mambacode.probing", "SpectrumCallback": "mambacode.spectral"}


def __getattr__(name):
    if name in _LAZY:
        module = import_module(_LAZY[name])
        try:
            return getattr(module, name)
        except AttributeError:
            try:  # the packages may keep it in a submodule
                return getattr(import_module(_LAZY[name] + ".callback"), name)
            except (ImportError, AttributeError) as exc:
                raise ImportError(f"{name} is not available in {_LAZY[name]} (is that package complete?)") from exc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NonFiniteLossError", "GuardedTrainer", "NaNGuardCallback", "ProbeCallback", "SpectrumCallback"]
