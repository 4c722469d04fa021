"""SpectrumCallback: watch every kernel's spectrum drift while a Trainer fine-tunes (PAPER.md section 4).

At train begin and then at every logging step (or every `every_n_steps`), the callback extracts the
kernels, computes their metrics and
- adds per-layer/direction scalars (`spectrum/L{layer}_{direction}/log10_lhfr`, `.../centroid`,
  `.../erf`, plus `spectrum/class_changes`, `spectrum/mean_abs_delta_log10_lhfr` against the first
  measurement, and `spectrum/anchor_drift` when a spectral anchor is recorded) to the Trainer's `logs` dict and
  to the matching `state.log_history` entry (so they reach `trainer_state.json` and any reporter that runs
  after this callback);
- writes the same scalars and a magnitude-response image (first vs current) with its own TensorBoard
  `SummaryWriter` (when tensorboard is installed) under `<output_dir>/runs/spectrum` (or
  `$TENSORBOARD_LOGGING_DIR/spectrum`), because reporters that ran before this callback never see them;
- appends one JSON line per measurement (every kernel's metrics) to `<output_dir>/spectrum_log.jsonl`.
Mamba-2 models need inputs: `inputs=` (code strings with `tokenizer=`, or tokenized batches), else the
built-in snippets tokenised with the Trainer's `processing_class`.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
from transformers import TrainerCallback

from .kernels import DIRECTIONS, extract_kernels, find_encoder, iter_batches, mixer_kind
from .metrics import Thresholds
from .report import _clean, metrics_for

logger = logging.getLogger(__name__)

LOG_FILE = "spectrum_log.jsonl"


class SpectrumCallback(TrainerCallback):
    """Logs kernel spectra during training (see module docstring).

    Args:
        every_n_steps: measure every n optimizer steps; None = at every Trainer logging step.
        length: kernel length L (S4D; Mamba-2 kernels are capped at it).
        inputs, tokenizer, max_length, batch_size: inputs of Mamba-2 effective kernels (tokenised once).
        thresholds: dict or `Thresholds` for the metrics.
        log_images: also write a magnitude-response image to TensorBoard.
        tensorboard_dir: where the SummaryWriter writes (default `<output_dir>/runs/spectrum`).
        include_hf_conv: also record the hf_conv groups in the JSON lines.
    """

    def __init__(self, every_n_steps: int | None = None, length: int = 4096, inputs=None, tokenizer=None,
                 max_length: int = 256, batch_size: int = 16, thresholds=None, log_images: bool = True,
                 tensorboard_dir: str | None = None, include_hf_conv: bool = True):
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"every_n_steps={every_n_steps!r} is invalid: expected None or a positive integer.")
        self.every_n_steps = every_n_steps
        self.length = length
        self.inputs, self.tokenizer = inputs, tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        self.thresholds = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_kwargs(
            **(thresholds or {}))
        self.log_images = log_images
        self.tensorboard_dir = tensorboard_dir
        self.include_hf_conv = include_hf_conv
        self._batches = None
        self._first = None  # (records, metrics) of the first measurement
        self._last_step = None
        self._pending = None  # scalars measured in on_step_end, added to the next logs
        self._writer = None
        self.history: list[dict] = []  # the scalars of every measurement, in memory

    # ------------------------------------------------------------------ measurement
    def _prepare_inputs(self, model, processing_class):
        if mixer_kind(model) != "mamba2":
            return None
        inputs, tokenizer = self.inputs, self.tokenizer
        if inputs is None:
            tokenizer = tokenizer or processing_class
            if tokenizer is None or not callable(tokenizer):
                raise ValueError("SpectrumCallback on a mixer='mamba2' model needs inputs= (code strings with "
                                 "tokenizer=, or tokenized batches), or a Trainer processing_class tokenizer for "
                                 "the built-in snippets.")
            from .snippets import DEFAULT_SNIPPETS

            inputs = DEFAULT_SNIPPETS
        return iter_batches(inputs, tokenizer, self.batch_size, self.max_length)

    def measure(self, model) -> tuple[list, list]:
        """(records, metrics) of `model` now."""
        records = extract_kernels(model, self.length, self._batches, batch_size=self.batch_size,
                                  include_hf_conv=self.include_hf_conv, progress=False)
        return records, metrics_for(records, self.thresholds)

    def scalars(self, records, metrics, model=None) -> dict:
        """Per layer/direction means over the SSM kernels, class changes and drift against the first."""
        out = {}
        ssm = [(r, m) for r, m in zip(records, metrics) if r.kind != "hf_conv"]
        for layer in sorted({r.layer for r, _ in ssm}):
            for d in DIRECTIONS:
                sel = [m for r, m in ssm if r.layer == layer and r.direction == d]
                for key, name in (("log10_lhfr", "log10_lhfr"), ("centroid", "centroid"),
                                  ("effective_receptive_field", "erf")):
                    vals = [m[key] for m in sel if np.isfinite(m[key])]
                    if vals:
                        out[f"spectrum/L{layer}_{d}/{name}"] = float(np.mean(vals))
        if self._first is not None:
            first = {r.key: m for r, m in zip(*self._first) if r.kind != "hf_conv"}
            changes, deltas = 0, []
            for r, m in ssm:
                a = first.get(r.key)
                if a is None:
                    continue
                changes += a["filter_class"] != m["filter_class"]
                if np.isfinite(a["log10_lhfr"]) and np.isfinite(m["log10_lhfr"]):
                    deltas.append(abs(m["log10_lhfr"] - a["log10_lhfr"]))
            out["spectrum/class_changes"] = float(changes)
            out["spectrum/mean_abs_delta_log10_lhfr"] = float(np.mean(deltas)) if deltas else 0.0
        if model is not None:
            encoder = find_encoder(model)
            if encoder.has_spectral_anchor():
                with torch.no_grad():
                    out["spectrum/anchor_drift"] = float(encoder.spectral_anchor_penalty())
        return out

    @staticmethod
    def _inject(state, logs, scalars):
        logs.update(scalars)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(scalars)

    # ------------------------------------------------------------------ writers
    def _open_writer(self, args):
        if self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: JSON lines and logs only
            logger.info("SpectrumCallback: tensorboard is not installed; no TensorBoard scalars or images.")
            self._writer = False
            return
        base = os.environ.get("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir, "runs")
        self._writer = SummaryWriter(log_dir=self.tensorboard_dir or os.path.join(base, "spectrum"))

    def _log(self, args, state, model, logs=None, event="log"):
        if not state.is_world_process_zero or self._last_step == state.global_step:
            return
        self._last_step = state.global_step
        records, metrics = self.measure(model)
        scalars = self.scalars(records, metrics, model)
        if self._first is None:
            self._first = (records, metrics)
        self.history.append({"step": state.global_step, **scalars})
        if logs is not None:
            self._inject(state, logs, scalars)
        else:
            self._pending = scalars
        line = {"step": state.global_step, "epoch": state.epoch, "event": event, "length": self.length,
                "scalars": scalars,
                "kernels": [{**r.to_dict(), **m} for r, m in zip(records, metrics)]}
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, LOG_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(line), allow_nan=False) + "\n")
        self._open_writer(args)
        if self._writer:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, state.global_step)
            if self.log_images:
                from .plots import figure_to_array, plot_magnitude_responses

                checkpoints = [("start", self._first[0])]
                if records is not self._first[0]:
                    checkpoints.append((f"step {state.global_step}", records))
                fig = plot_magnitude_responses(checkpoints)
                if fig is not None:
                    self._writer.add_image("spectrum/magnitude_responses", figure_to_array(fig), state.global_step,
                                           dataformats="HWC")
            self._writer.flush()

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        find_encoder(model)  # unsupported models fail before the first step
        if self._batches is None:
            self._batches = self._prepare_inputs(model, processing_class)
        self._log(args, state, model, event="train_begin")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._log(args, state, model, event="step")

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.every_n_steps is None:
            self._log(args, state, model, logs, event="log")
        elif self._pending is not None and logs is not None and state.is_world_process_zero:
            self._inject(state, logs, self._pending)
            self._pending = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._log(args, state, model, event="train_end")
        if self._writer:
            self._writer.close()
            self._writer = None


__all__ = ["SpectrumCallback", "LOG_FILE"]
