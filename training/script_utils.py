"""What the three run_*.py scripts share: argument groups, logging, resume, callbacks from flags, saving
with a model card, push to the Hub, and the clear failure of bad inputs."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import torch.distributed as dist
import transformers
from transformers import HfArgumentParser, TrainingArguments

from mambacode.probing.callback import ProbeCallback
from mambacode.spectral.callback import SpectrumCallback
from mambacode.threads import configure_threads
from mambacode.tokenizer_files import model_max_length_of, tidy_tokenizer_files

from .callbacks import NonFiniteLossError, last_complete_checkpoint
from .hub import HUB_EXIT_STATUS, HubUnavailableError, check_folder, push_folder, require_hub
from .model_card import local_name, write_model_card
from .models import ModelArguments
from .validation import DataValidationError

logger = logging.getLogger("mambacode.training")


@dataclass
class RunArguments:
    """Flags about the run itself (not the model, not the data)."""

    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start from scratch even if output_dir holds checkpoints (default: resume from the last one)."})
    probe_callback: bool = field(default=False, metadata={"help": "Attach mambacode.probing.ProbeCallback."})
    probe_set: str | None = field(default=None, metadata={
        "help": "Saved ProbeSet for --probe_callback (scripts/probe.py writes one)."})
    probe_every_n_steps: int | None = field(default=None, metadata={"help": "Probe every N steps (default: at evaluations)."})
    probe_kinds: str = field(default="linear", metadata={"help": "Probes run by the callback: linear,directprobe."})
    spectrum_callback: bool = field(default=False, metadata={"help": "Attach mambacode.spectral.SpectrumCallback."})
    spectrum_every_n_steps: int | None = field(default=None, metadata={"help": "Measure spectra every N steps."})
    spectrum_length: int = field(default=4096, metadata={"help": "Kernel length of the spectrum callback."})
    model_card_name: str | None = field(default=None, metadata={"help": "Title of the model card."})
    num_threads: str | None = field(default=None, metadata={
        "help": "Intra-op CPU threads: a number, or 'auto' (the cores other work leaves free; "
                "mambacode.threads). Default: OMP_NUM_THREADS if set, else auto. The count changes the last bits "
                "of results: pass a number for runs that must match bit for bit."})


def run_script(entry_point, data_args_class, argv=None) -> int:
    """A `scripts/run_*.py` main: parse (model, data, training, run) arguments the transformers-example way
    (or one JSON file), set up logging, call `entry_point`. Bad input: message and exit status 2; a
    non-finite loss: message and exit status 1 (the last good checkpoint stays the last on disk)."""
    parser = HfArgumentParser((ModelArguments, data_args_class, TrainingArguments, RunArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        parsed = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    setup_logging(parsed[2])
    try:
        logger.info("threads: %s", configure_threads(parsed[3].num_threads).describe())
        if parsed[2].push_to_hub:  # refuse before training (offline, network down, no access), not after it
            args = parsed[2]
            require_hub(args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)), args.hub_token,
                        args.hub_private_repo)
        entry_point(*parsed)
        end_distributed(wait=True)
    except HubUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return HUB_EXIT_STATUS
    except NonFiniteLossError as exc:
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (DataValidationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        end_distributed(wait=False)
    return 0


def end_distributed(wait: bool) -> None:
    """Tear down the process group before the interpreter exits (after a barrier when `wait`): a rank
    that exits while gloo's threads still run aborts with 'terminate called without an active exception'
    (seen once in CI, in rank 1 after the last save). A no-op in single-process runs."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def setup_logging(training_args) -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    logger.info("process %d of %d, device %s", training_args.process_index, training_args.world_size,
                training_args.device)


def last_checkpoint(training_args, run_args) -> str | None:
    """The checkpoint to resume from (transformers-example rules), or None to start fresh. Only complete
    checkpoints count: a save interrupted by a kill or a full disk is passed over (`callbacks`)."""
    out = training_args.output_dir
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if not training_args.do_train or run_args.overwrite_output_dir or not os.path.isdir(out):
        return None
    found = last_complete_checkpoint(out)
    if found is None and any(n.endswith((".safetensors", ".bin")) for n in os.listdir(out)):
        raise ValueError(f"output_dir {out} already holds a trained model and no checkpoint to resume from; "
                         "pass --overwrite_output_dir to train again into it.")
    if found is not None:
        logger.info("resuming from %s (pass --overwrite_output_dir to start over)", found)
    return found


def load_dataset_dict(path: str, where: str = "--dataset_path"):
    """`datasets.load_from_disk` with a clear error for a missing folder."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"{where}={path!r} does not exist (build it with scripts/build_corpus.py)")
    return datasets.load_from_disk(path)


def require_split(dsets, split: str, where: str):
    if split not in dsets:
        raise DataValidationError(f"{where} has no split {split!r}; it has {list(dsets)}")
    return dsets[split]


def make_callbacks(run_args, tokenizer) -> list:
    """The probing and spectrum callbacks asked for by the flags."""
    callbacks = []
    if run_args.probe_callback:
        if not run_args.probe_set:
            raise ValueError("--probe_callback needs --probe_set (a ProbeSet folder; scripts/probe.py saves one "
                             "under its output_dir)")
        callbacks.append(ProbeCallback(probe_set=run_args.probe_set, tokenizer=tokenizer,
                                       every_n_steps=run_args.probe_every_n_steps,
                                       probes=tuple(p.strip() for p in run_args.probe_kinds.split(",") if p.strip())))
    if run_args.spectrum_callback:
        callbacks.append(SpectrumCallback(every_n_steps=run_args.spectrum_every_n_steps,
                                          length=run_args.spectrum_length, tokenizer=tokenizer))
    return callbacks


def train_and_evaluate(trainer, training_args, checkpoint, train_ds, on_eval=None) -> tuple[float | None, dict]:
    """Train (resuming from `checkpoint`) and evaluate as transformers' examples do; returns the training loss
    (None without do_train) and the eval metrics ({} without do_eval). `on_eval(metrics)` may add derived
    entries (e.g. perplexity) before they are logged and saved."""
    train_loss = None
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        train_metrics = dict(result.metrics, train_samples=len(train_ds))
        train_loss = train_metrics.get("train_loss")
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
    if not training_args.do_eval:
        return train_loss, {}
    eval_metrics = trainer.evaluate()
    if on_eval is not None:
        on_eval(eval_metrics)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    return train_loss, eval_metrics


def save_with_card(trainer, tokenizer, task: str, model_args, data_description: str, evaluations: list,
                   dataset_path: str, run_args) -> None:
    """Save model + tokenizer and write README.md (main process only); with --push_to_hub, upload the folder
    with that card (`hub.push_folder`), never the generic card `Trainer.push_to_hub` would write over it.
    `evaluations`: `model_card.Evaluation`s, one per dataset and split."""
    # `_internal_call`: Trainer.save_model would otherwise push (and regenerate the card) by itself
    trainer.save_model(_internal_call=True)
    if not trainer.is_world_process_zero():
        return
    _write_card(trainer, tokenizer, task, model_args, data_description, evaluations,
                local_name(dataset_path), run_args)
    args = trainer.args
    if args.push_to_hub:
        if hasattr(trainer, "_finish_current_push"):  # checkpoint uploads still running must land first
            trainer._finish_current_push()
        problems = check_folder(args.output_dir)
        if problems:
            raise ValueError(f"{args.output_dir} is not ready to push: {'; '.join(problems)}")
        repo_id = (getattr(trainer, "hub_model_id", None) or args.hub_model_id
                   or os.path.basename(os.path.abspath(args.output_dir)))
        info = push_folder(args.output_dir, repo_id, token=args.hub_token, private=args.hub_private_repo,
                           revision=args.hub_revision, commit_message="End of training")
        logger.info("pushed %s to %s", args.output_dir, getattr(info, "commit_url", None) or repo_id)


def _write_card(trainer, tokenizer, task, model_args, data_description, evaluations, dataset_name, run_args) -> None:
    model = trainer.model
    tokenizer.save_pretrained(trainer.args.output_dir)
    # the tokenizer's limit is the model's; no loader flags or last-call truncation state in its files
    tidy_tokenizer_files(trainer.args.output_dir, model_max_length_of(model.config))
    args = trainer.args
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)  # 'linear', not SchedulerType.LINEAR
    training = {"learning_rate": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size,
                "num_processes": args.world_size, "max_steps": trainer.state.max_steps,
                "num_train_epochs": args.num_train_epochs, "lr_scheduler_type": scheduler,
                "warmup_steps": args.warmup_steps, "seed": args.seed}
    write_model_card(args.output_dir, model.config, task, model_name=run_args.model_card_name,
                     evaluations=evaluations, dataset=dataset_name, data_description=data_description,
                     base_model=model_args.model_name_or_path, training=training,
                     num_parameters=sum(p.numel() for p in model.parameters()),
                     probe_summary=_probe_summary(args.output_dir), spectrum_summary=_spectrum_summary(args.output_dir))


def _probe_summary(folder: str) -> str | None:
    path = os.path.join(folder, "probe_log.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    scalars = {k: v for k, v in (last.get("metrics") or last).items() if isinstance(v, (int, float))}
    body = "\n".join(f"| {k} | {v:.3f} |" for k, v in sorted(scalars.items())[:40])
    return f"Last of {len(lines)} probe runs during training:\n\n| probe | accuracy |\n|---|---|\n{body}"


def _spectrum_summary(folder: str) -> str | None:
    path = os.path.join(folder, "spectrum_log.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        n = sum(1 for line in f if line.strip())
    return f"{n} spectrum measurements during training in `spectrum_log.jsonl`."


def report_done(training_args, script: str) -> None:
    """One line per process, so multi-process runs show that every rank got to the end."""
    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"
    print(f"[{script}] process {training_args.process_index} of {training_args.world_size} finished "
          f"(distributed backend: {backend})", flush=True)


__all__ = ["RunArguments", "run_script", "setup_logging", "last_checkpoint", "load_dataset_dict", "require_split",
           "make_callbacks", "train_and_evaluate", "save_with_card", "report_done", "end_distributed"]
