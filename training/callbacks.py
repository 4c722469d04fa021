"""Trainer callbacks and the NaN-guarded Trainer.

A non-finite loss must stop training *before* its gradients reach the weights and before anything is
saved, so the last checkpoint on disk stays the last good one. A callback only sees logged (averaged)
losses after the optimizer step, so the guard lives in `GuardedTrainer.compute_loss`, which checks every
micro-batch's loss (agreed across processes, so no rank is left waiting in a collective) and raises
`NonFiniteLossError` naming the step and the batch. `NaNGuardCallback` is the belt to those braces: it
stops a run whose *logged* loss or gradient norm is non-finite (e.g. an overflow in the optimizer) and
cancels the save of that step.

`GuardedTrainer` also reports a `train_loss` over every step of a resumed run, not only the resumed ones:
each checkpoint records the loss sum so far (`train_loss_sum.json`). That record is written last, after every
process has written its files, and it marks the checkpoint complete: a save interrupted by a kill or a full
disk leaves a folder without it, which resume skips (`last_complete_checkpoint`) and the next save of that
step replaces. Old checkpoints are rotated out (`save_total_limit`) only once the new one is complete. A run killed after its final checkpoint
(while it evaluated) resumes without training at all: transformers would run one step past `max_steps`. (Exact resume of the weights needs
collators that do not draw from the global generator: see `collators.DataCollatorForMaskedLM`.)

`ProbeCallback` lives in `mambacode.probing`, `SpectrumCallback` in `mambacode.spectral`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil

import torch
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, rotate_checkpoints

from mambacode.atomic import atomic_write_text


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


LOSS_RECORD = "train_loss_sum.json"  # written last into a checkpoint: its presence marks the checkpoint complete
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_is_complete(folder: str) -> bool:
    """Whether `folder` is a checkpoint whose save finished (its `train_loss_sum.json`, written last, is there)."""
    return os.path.isfile(os.path.join(folder, LOSS_RECORD))


def checkpoints(output_dir: str) -> tuple[list[str], list[str]]:
    """(complete, incomplete) `checkpoint-<step>` folders of `output_dir`, each list by step, oldest first."""
    try:
        names = os.listdir(output_dir)
    except OSError:
        return [], []
    found = sorted((int(m.group(1)), n) for n in names if (m := _CHECKPOINT.match(n))
                   and os.path.isdir(os.path.join(output_dir, n)))
    paths = [os.path.join(output_dir, n) for _, n in found]
    return [p for p in paths if checkpoint_is_complete(p)], [p for p in paths if not checkpoint_is_complete(p)]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The complete checkpoint with the highest step in `output_dir`, or None; interrupted saves are passed
    over with a warning naming them."""
    complete, incomplete = checkpoints(output_dir)
    last = complete[-1] if complete else None
    skipped = [os.path.basename(p) for p in incomplete if last is None or _step(p) > _step(last)]
    if skipped:
        logging.getLogger(__name__).warning(
            "%s: %s %s no %s (a save that was interrupted) and %s skipped; resuming from %s", output_dir,
            ", ".join(skipped), "has" if len(skipped) == 1 else "have", LOSS_RECORD,
            "is" if len(skipped) == 1 else "are", os.path.basename(last) if last else "the start")
    return last


def _step(path: str) -> int:
    return int(_CHECKPOINT.match(os.path.basename(path)).group(1))


class GuardedTrainer(Trainer):
    """`Trainer` whose every training loss is checked for NaN/inf before backward, and whose resume from a
    checkpoint reports the training loss of all steps (see the module docstring)."""

    _guard_batches_seen = 0
    _loss_before: tuple[int, float] = (0, 0.0)  # (steps, loss sum) of the runs before this resume

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} holds no complete "
                                 f"checkpoint (a {PREFIX_CHECKPOINT_DIR}-<step> folder with {LOSS_RECORD})")
        elif resume_from_checkpoint and not checkpoint_is_complete(resume_from_checkpoint):
            raise ValueError(f"{resume_from_checkpoint} is not a complete checkpoint (no {LOSS_RECORD}, which a "
                             "finished save writes last: the save was interrupted, or another tool wrote it); "
                             f"resume from {last_complete_checkpoint(os.path.dirname(os.path.normpath(resume_from_checkpoint))) or 'the start'} "
                             "instead")
        self._loss_before = (0, 0.0)
        record = os.path.join(resume_from_checkpoint, LOSS_RECORD) if resume_from_checkpoint else None
        if record and os.path.exists(record):
            with open(record) as f:
                saved = json.load(f)
            self._loss_before = (int(saved["global_step"]), float(saved["loss_sum"]))
        finished = self._finished_state(resume_from_checkpoint)
        if finished is not None:  # killed after its last checkpoint (evaluating): nothing left to train
            return self._at_the_end(resume_from_checkpoint, finished)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        steps_before, sum_before = self._loss_before
        if steps_before and self.state.global_step > steps_before:
            this_run = output.metrics["train_loss"] * (self.state.global_step - steps_before)
            train_loss = (sum_before + this_run) / self.state.global_step
            output = TrainOutput(output.global_step, train_loss, dict(output.metrics, train_loss=train_loss))
        return output

    def _finished_state(self, checkpoint):
        """The checkpoint's `TrainerState` if it is at `max_steps` already, else None. (transformers would
        resume it and run one step past the end.)"""
        if not checkpoint or self.args.max_steps <= 0:
            return None
        path = os.path.join(checkpoint, TRAINER_STATE_NAME)
        if not os.path.exists(path):
            return None
        state = TrainerState.load_from_json(path)
        return state if state.global_step >= self.args.max_steps else None

    def _at_the_end(self, checkpoint: str, state) -> TrainOutput:
        """Load the final checkpoint's weights and state without a training step; the training loss is the
        whole run's, from the checkpoint's loss sum (None without one)."""
        self._load_from_checkpoint(checkpoint)
        self.state = state
        steps, loss_sum = self._loss_before
        train_loss = loss_sum / steps if steps else None
        metrics = {"train_loss": train_loss} if train_loss is not None else {}
        logging.getLogger(__name__).info("%s is at the last step (%d): nothing to train, evaluating", checkpoint,
                                         state.global_step)
        return TrainOutput(state.global_step, train_loss, metrics)

    def _save_checkpoint(self, model, trial):
        """transformers' save, made all-or-nothing: what an interrupted save of this step left is removed
        first, the loss record (the completion mark) is written once every process is done, and older
        checkpoints are rotated out only after that."""
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.is_world_process_zero() and os.path.isdir(folder) and not checkpoint_is_complete(folder):
            shutil.rmtree(folder)
        self.accelerator.wait_for_everyone()
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # transformers rotates right after its files: not before the mark
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process's files (RNG states, shards) are on disk
        if self.is_world_process_zero():
            steps_before, sum_before = self._loss_before
            loss_sum = sum_before + self._total_loss_scalar + float(self._tr_loss.item())
            atomic_write_text(os.path.join(folder, LOSS_RECORD),
                              json.dumps({"global_step": self.state.global_step, "loss_sum": loss_sum}))
        if self.args.should_save:
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

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
            step = self.state.global_step + 1
            last = last_complete_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
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
                logging.getLogger(__name__).error(
                    "NaN guard: logged %s=%r at step %d; stopping without saving this step.", key, value,
                    state.global_step)
        return control


__all__ = ["NonFiniteLossError", "GuardedTrainer", "NaNGuardCallback", "checkpoint_is_complete", "checkpoints",
           "last_complete_checkpoint", "LOSS_RECORD"]
