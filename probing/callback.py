"""`ProbeCallback`: probe the model being trained at every evaluation (or every N steps).

The Trainer logs evaluation metrics *before* it calls `on_evaluate`, so metrics added there would never
reach the loggers. The callback therefore (1) adds `probe/<task>/<probe>/layer_<i>` accuracies to the
evaluation metrics dict (so `trainer.evaluate()` returns them), (2) sends them through `trainer.log` when
the callback knows its trainer (`ProbeCallback.attach(trainer)`; all `report_to` loggers then see them),
otherwise appends them to `state.log_history` and writes TensorBoard scalars itself (under
`<output_dir>/runs/`, or $TENSORBOARD_LOGGING_DIR) when "tensorboard" is in `report_to`, and (3) appends one JSON line per run to
`<output_dir>/probe_log.jsonl`.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from transformers import TrainerCallback

from .features import extract_token_features
from .runner import probe_layers
from .sampling import ProbeSet


class ProbeCallback(TrainerCallback):
    """Probe a fixed `ProbeSet` during training and log per-layer accuracies.

    Args:
        probe_set: a `ProbeSet` or the path of one saved with `ProbeSet.save`.
        tokenizer: the fast tokenizer of the model being trained.
        tasks / layers: what to probe (default: every task of the probe set, every hidden state).
        probes: "linear" (fast) and/or "directprobe".
        every_n_steps: also probe every N optimisation steps (None: only at evaluations).
    """

    def __init__(self, probe_set, tokenizer, tasks: Sequence[str] | None = None, layers=None,
                 probes: Sequence[str] = ("linear", "directprobe"), every_n_steps: int | None = None,
                 batch_size: int = 8, max_length: int = 512, log_file: str = "probe_log.jsonl", seed: int = 0):
        self.probe_set = ProbeSet.load(probe_set) if isinstance(probe_set, (str, os.PathLike)) else probe_set
        self.tokenizer = tokenizer
        self.tasks = list(tasks) if tasks is not None else list(self.probe_set.tasks)
        missing = [t for t in self.tasks if t not in self.probe_set.tasks]
        if missing:
            raise ValueError(f"tasks {missing} are not in the probe set (it has {sorted(self.probe_set.tasks)})")
        self.layers = layers
        self.probes = tuple(probes)
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.max_length = max_length
        self.log_file = log_file
        self.seed = seed
        self.trainer = None
        self._tb = None
        self._last_step = None
        self._last_metrics = {}

    def attach(self, trainer) -> "ProbeCallback":
        """Route metrics through `trainer.log` (every logger in `report_to`). Returns self."""
        self.trainer = trainer
        return self

    # ---- computation -------------------------------------------------------------------------------
    def run(self, model) -> dict:
        """Probe `model` now; returns {metric name: value}."""
        feats, stats = extract_token_features(model, self.tokenizer, self.probe_set, layers=self.layers,
                                              batch_size=self.batch_size, max_length=self.max_length,
                                              progress=False)
        res = probe_layers(feats, self.probe_set, self.tasks, probes=self.probes, seed=self.seed, progress=False)
        metrics = {}
        for task, per_layer in res.items():
            for layer, r in per_layer.items():
                for probe in self.probes:
                    if probe in r:
                        metrics[f"probe/{task}/{probe}/layer_{layer}"] = r[probe]["accuracy"]
                if "directprobe" in r:
                    metrics[f"probe/{task}/directprobe_clusters/layer_{layer}"] = r["directprobe"]["n_clusters"]
                if "linear" in r:
                    metrics[f"probe/{task}/selectivity/layer_{layer}"] = r["linear"]["selectivity"]
        metrics["probe/tokens_per_second"] = stats["tokens_per_second"]
        return metrics

    def _emit(self, args, state, model, metrics_dict=None):
        if model is None:
            return
        if state.global_step == self._last_step:  # already probed at this step (step end + evaluation)
            if metrics_dict is not None:
                metrics_dict.update(self._last_metrics)
            return
        metrics = self.run(model)
        self._last_step, self._last_metrics = state.global_step, dict(metrics)
        if metrics_dict is not None:
            metrics_dict.update(metrics)
        if self.trainer is not None:
            self.trainer.log(dict(metrics))
        else:
            state.log_history.append({**metrics, "step": state.global_step, "epoch": state.epoch})
            self._tensorboard(args, state, metrics)
        if state.is_world_process_zero and args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, self.log_file), "a") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **metrics}) + "\n")

    def _tensorboard(self, args, state, metrics):
        report_to = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
        if "tensorboard" not in report_to and "all" not in report_to:
            return
        if not state.is_world_process_zero:
            return
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            # same place as transformers' TensorBoardCallback (env override, else <output_dir>/runs/...)
            log_dir = (os.getenv("TENSORBOARD_LOGGING_DIR") or getattr(args, "logging_dir", None)
                       or os.path.join(args.output_dir, "runs", "probes"))
            self._tb = SummaryWriter(log_dir=os.path.expanduser(log_dir))
        for k, v in metrics.items():
            self._tb.add_scalar(k, v, state.global_step)
        self._tb.flush()

    # ---- Trainer hooks -----------------------------------------------------------------------------
    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        self._emit(args, state, model, metrics)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._emit(args, state, model)

    def on_train_end(self, args, state, control, **kwargs):
        if self._tb is not None:
            self._tb.close()
            self._tb = None
