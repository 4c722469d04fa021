"""Train a MambaCode retrieval student from the cached teacher (`run_distill`): the `Trainer` glue.

Batches are planned by token budget rather than by row count: short batches hold `short_batch` retrieval pairs
(code cut at `max_code_length` student tokens), long batches hold `long_batch` long-context rows with distinct
documents (each up to `max_document_length` tokens, the whole file in one pass), and the two kinds are dealt in
a seeded order, `long_share` of the batches long. The `Trainer` sees one planned batch per item
(`per_device_train_batch_size` = 1), so checkpoints, resume, logging and the NaN guard are transformers' own
(`GuardedTrainer`). The student is saved as a plain `MambaCodeForRetrieval` folder (Auto classes,
sentence-transformers files, `mambacode index --model`); the 256 -> 384 projection used by the embedding match
is not part of it: it is saved beside it (`distill_projection.safetensors`) for a run that continues from it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from mambacode.atomic import atomic_write_text
from mambacode.training.callbacks import GuardedTrainer, NaNGuardCallback, last_complete_checkpoint

from .data import load_pairs, pair_texts, targets
from .losses import LossWeights, distillation_loss
from .teacher import TEACHER_DIM, Teacher, cache_teacher_embeddings, load_teacher_cache, teacher_path

logger = logging.getLogger(__name__)
PROGRESS = "distill_progress.json"  # CPU and wall seconds of every piece of a resumed run
PROJECTION_FILE = "distill_projection.safetensors"  # beside a saved student: the match term's 384-wide map
CPU_RECORD = "cpu_seconds.json"  # in each checkpoint: CPU and wall seconds of the whole run up to that step


@dataclass
class DistillArguments:
    corpus_dir: str = field(metadata={"help": "a corpus folder (scripts/build_corpus.py): its retrieval and "
                                              "long_context train splits are the training rows"})
    teacher_cache: str = field(default="runs/distill/teacher", metadata={
        "help": "folder of the teacher's cached embeddings (filled on first use, reused by every arm)"})
    student: str = field(default="s4d-mlm", metadata={
        "help": "a shipped MambaCode name or folder to start from, or 'new' (a new S4D encoder of "
                "--hidden_size x --num_hidden_layers)"})
    tokenizer: str = field(default="student", metadata={
        "help": "'student' (the --student folder's code BPE) or 'teacher' (the teacher's WordPiece; with "
                "--student new the word embeddings start from the teacher's, reduced by PCA)"})
    hidden_size: int = field(default=256)
    num_hidden_layers: int = field(default=4)
    intermediate_size: int = field(default=1024)
    target_rule: str = field(default="mean", metadata={"help": "how a long text's window embeddings become one "
                                                               "target: mean | first | weighted"})
    teacher_bf16: bool = field(default=True, metadata={"help": "cache the teacher under bf16 autocast"})
    max_query_length: int = field(default=64)
    max_code_length: int = field(default=512)
    max_document_length: int = field(default=4096)
    short_batch: int = field(default=32)
    long_batch: int = field(default=8)
    long_share: float = field(default=0.25, metadata={"help": "fraction of planned batches that are long ones"})
    match_weight: float = field(default=1.0)
    contrast_weight: float = field(default=1.0)
    listwise_weight: float = field(default=1.0)
    temperature: float = field(default=0.05)
    max_rows_retrieval: int | None = field(default=None, metadata={"help": "cap rows (a quick run)"})
    max_rows_long_context: int | None = field(default=None)
    sources: str = field(default="retrieval,long_context")

    def __post_init__(self):
        if self.tokenizer not in ("student", "teacher"):
            raise ValueError(f"--tokenizer {self.tokenizer!r}: expected 'student' or 'teacher'")
        if not 0 <= self.long_share <= 1:
            raise ValueError(f"--long_share {self.long_share}: expected a fraction in [0, 1]")
        for name in ("max_query_length", "max_code_length", "max_document_length", "short_batch", "long_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: expected a positive integer")

    def weights(self) -> LossWeights:
        return LossWeights(self.match_weight, self.contrast_weight, self.listwise_weight, self.temperature)


# ------------------------------------------------------------------------------------------ the student
def build_student(args: DistillArguments):
    """(model, tokenizer): the student to train (see `DistillArguments.student` / `.tokenizer`)."""
    from transformers import AutoTokenizer

    from mambacode.modeling import MambaCodeConfig, MambaCodeForRetrieval
    from mambacode.pretrained import pretrained_path

    if args.student == "new":
        tok_path = teacher_path() if args.tokenizer == "teacher" else None
        if tok_path is None:
            raise ValueError("--student new needs --tokenizer teacher (a new student has no tokenizer of its own)")
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        config = MambaCodeConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                                 num_hidden_layers=args.num_hidden_layers, intermediate_size=args.intermediate_size,
                                 mixer="s4d", pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                                 eos_token_id=None, max_position_embeddings=args.max_document_length,
                                 pooling="mean")
        model = MambaCodeForRetrieval(config)
        init_embeddings_from_teacher(model, tok_path)
    else:
        folder = args.student if os.path.isdir(args.student) else pretrained_path(args.student)
        if args.tokenizer == "teacher":
            raise ValueError("--tokenizer teacher needs --student new: a pretrained student keeps its own tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = MambaCodeForRetrieval.from_pretrained(folder)
        model.config.max_position_embeddings = max(model.config.max_position_embeddings, args.max_document_length)
    tokenizer.model_max_length = model.config.max_position_embeddings
    return model, tokenizer


@torch.no_grad()
def init_embeddings_from_teacher(model, teacher_folder: str) -> None:
    """Start the student's word embeddings from the teacher's (same WordPiece vocabulary): the teacher's table
    projected on its top principal directions when the student is narrower, scaled to the student's init std."""
    from safetensors.torch import load_file

    state = load_file(os.path.join(teacher_folder, "model.safetensors"))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    table = state[key].double()
    emb = model.get_input_embeddings()
    if table.shape[0] != emb.weight.shape[0]:
        raise ValueError(f"teacher embeddings have {table.shape[0]} rows, the student {emb.weight.shape[0]}")
    d = emb.weight.shape[1]
    centred = table - table.mean(0, keepdim=True)
    if d < table.shape[1]:
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        reduced = centred @ v[:d].T
    else:
        reduced = torch.nn.functional.pad(centred, (0, d - table.shape[1]))
    reduced = reduced / reduced.std() * model.config.initializer_range
    emb.weight.copy_(reduced.to(emb.weight.dtype))


class DistillationModel(nn.Module):
    """The student plus the projection of its embeddings to the teacher's width; forward returns the loss parts."""

    def __init__(self, student, weights: LossWeights):
        super().__init__()
        self.student = student
        d = student.config.hidden_size
        self.projection = nn.Linear(d, TEACHER_DIM, bias=False)
        nn.init.normal_(self.projection.weight, std=d ** -0.5)
        self.weights = weights

    def forward(self, input_ids, attention_mask, code_input_ids, code_attention_mask, query_target, code_target,
                query_groups, code_groups):
        s_q, _ = self.student.embed(input_ids, attention_mask)
        s_c, _ = self.student.embed(code_input_ids, code_attention_mask)
        return distillation_loss(s_q, s_c, self.projection(s_q), self.projection(s_c), query_target, code_target,
                                 query_groups, code_groups, self.weights)


def save_student(wrapper: DistillationModel, tokenizer, folder: str) -> None:
    """The student as a plain retrieval folder, plus its projection in `PROJECTION_FILE` (not part of the model:
    a later run started from this folder continues the match term instead of restarting it)."""
    from safetensors.torch import save_file

    wrapper.student.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    save_file({"weight": wrapper.projection.weight.detach().cpu().contiguous()}, os.path.join(folder, PROJECTION_FILE))


def load_projection(wrapper: DistillationModel, folder: str) -> bool:
    """Load `folder`'s saved projection into `wrapper` when there is one of the right shape; True if loaded."""
    from safetensors.torch import load_file

    path = os.path.join(folder, PROJECTION_FILE) if os.path.isdir(folder) else None
    if not path or not os.path.exists(path):
        return False
    weight = load_file(path)["weight"]
    if weight.shape != wrapper.projection.weight.shape:
        logger.warning("%s has shape %s, the student needs %s: starting a new projection", path,
                       tuple(weight.shape), tuple(wrapper.projection.weight.shape))
        return False
    with torch.no_grad():
        wrapper.projection.weight.copy_(weight)
    return True


# ------------------------------------------------------------------------------------------ batches
@dataclass
class Rows:
    """Tokenised rows of one source with their teacher targets and text groups (equal text = equal group)."""

    query_ids: list
    code_ids: list
    query_target: np.ndarray
    code_target: np.ndarray
    query_group: np.ndarray
    code_group: np.ndarray


def plan_batches(n_short: int, long_docs: dict, short_batch: int, long_batch: int, long_share: float,
                 num_batches: int, seed: int) -> list[tuple[str, list[int]]]:
    """`num_batches` planned batches [("short" | "long", row indices)], in a seeded order. Short rows are dealt
    epoch by epoch in fresh shuffles; long batches take `long_batch` distinct documents, each with one of its
    rows (queries) drawn afresh, so no document is twice in a batch."""
    rng = random.Random(seed)
    plan, short_pool, doc_pool = [], [], []
    docs = list(long_docs)
    n_long_wanted = round(num_batches * long_share) if docs else 0
    kinds = ["long"] * n_long_wanted + ["short"] * (num_batches - n_long_wanted)
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "short":
            if len(short_pool) < short_batch:
                fresh = list(range(n_short))
                rng.shuffle(fresh)
                short_pool.extend(fresh)
            plan.append(("short", short_pool[:short_batch]))
            del short_pool[:short_batch]
        else:
            take = min(long_batch, len(docs))
            if len(doc_pool) < take:  # top up with a fresh shuffle of the documents not still waiting
                waiting = set(doc_pool)
                fresh = [d for d in docs if d not in waiting]
                rng.shuffle(fresh)
                doc_pool.extend(fresh)
            chosen, doc_pool = doc_pool[:take], doc_pool[take:]
            plan.append(("long", [rng.choice(long_docs[d]) for d in chosen]))
    return plan


class PlannedBatches(torch.utils.data.Dataset):
    def __init__(self, plan):
        self.plan = plan

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, i):
        return i


class BatchCollator:
    """Planned batch index -> padded tensors (queries, codes, targets, groups)."""

    def __init__(self, plan, rows: dict, pad_id: int):
        self.plan, self.rows, self.pad_id = plan, rows, pad_id

    def _pad(self, seqs):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, :len(s)] = 1
        return ids, mask

    def __call__(self, items):
        kind, idx = self.plan[items[0]]
        rows = self.rows[kind]
        q, qm = self._pad([rows.query_ids[i] for i in idx])
        c, cm = self._pad([rows.code_ids[i] for i in idx])
        return {"input_ids": q, "attention_mask": qm, "code_input_ids": c, "code_attention_mask": cm,
                "query_target": torch.from_numpy(rows.query_target[idx]),
                "code_target": torch.from_numpy(rows.code_target[idx]),
                "query_groups": torch.from_numpy(rows.query_group[idx]),
                "code_groups": torch.from_numpy(rows.code_group[idx])}


def _groups(texts: list[str]) -> np.ndarray:
    """Equal text = equal group: the gold indices of the evaluation's own pool builder."""
    from mambacode.training.evaluation import retrieval_pool

    return np.array(retrieval_pool(texts, texts)[1], dtype=np.int64)


def _tokenize_unique(tokenizer, texts: list[str], max_length: int) -> list:
    unique = list(dict.fromkeys(texts))
    ids = dict(zip(unique, tokenizer(unique, truncation=True, max_length=max_length)["input_ids"]))
    return [ids[t] for t in texts]


def prepare_rows(args: DistillArguments, tokenizer, cache: dict, pairs: dict) -> dict:
    """{"short": Rows, "long": Rows} tokenised with the student's tokenizer, with the teacher's targets."""
    out = {}
    for source, kind, limit in (("retrieval", "short", args.max_code_length),
                                ("long_context", "long", args.max_document_length)):
        if source not in pairs:
            continue
        qs, cs = pairs[source]["query"], pairs[source]["code"]
        q_ids = _tokenize_unique(tokenizer, qs, args.max_query_length)
        c_ids = _tokenize_unique(tokenizer, cs, limit)  # a document repeats once per query: tokenised once
        out[kind] = Rows(q_ids, c_ids, targets(qs, cache, args.target_rule), targets(cs, cache, args.target_rule),
                         _groups(qs), _groups(cs))
    return out


# ------------------------------------------------------------------------------------------ the run
def run_distill(args: DistillArguments, training_args) -> dict:
    """Cache the teacher (once), train the student, save it to `training_args.output_dir/student`; returns
    {"student": folder, "steps", "cpu_seconds", "wall_seconds", "tokens"}. A run whose output_dir holds a complete
    checkpoint resumes from it."""
    from transformers import set_seed

    set_seed(training_args.seed)
    sources = tuple(s for s in args.sources.split(",") if s)
    pairs = load_pairs(args.corpus_dir, "train", sources, {"retrieval": args.max_rows_retrieval,
                                                           "long_context": args.max_rows_long_context})
    teacher = Teacher(bf16=args.teacher_bf16)
    cache_folder = cache_teacher_embeddings(pair_texts(pairs), args.teacher_cache, teacher)
    del teacher
    cache = load_teacher_cache(cache_folder)
    model, tokenizer = build_student(args)
    rows = prepare_rows(args, tokenizer, cache, pairs)
    del cache
    long_docs: dict = {}
    if "long" in rows:
        for i, g in enumerate(rows["long"].code_group):
            long_docs.setdefault(int(g), []).append(i)
    if training_args.max_steps <= 0:
        raise ValueError("run_distill: set --max_steps (the plan is made for that many batches)")
    num_batches = training_args.max_steps * training_args.gradient_accumulation_steps
    plan = plan_batches(len(rows["short"].query_ids) if "short" in rows else 0, long_docs, args.short_batch,
                        args.long_batch, args.long_share if "short" in rows else 1.0, num_batches,
                        training_args.seed)
    if "short" not in rows and any(k == "short" for k, _ in plan):
        raise ValueError("run_distill: no retrieval rows but short batches were planned")
    training_args.per_device_train_batch_size = 1
    training_args.remove_unused_columns = False
    wrapper = DistillationModel(model, args.weights())
    if args.student != "new":
        load_projection(wrapper, args.student)  # a student saved by an earlier run carries its projection
    trainer = DistillationTrainer(model=wrapper, args=training_args, train_dataset=PlannedBatches(plan),
                                  data_collator=BatchCollator(plan, rows, tokenizer.pad_token_id),
                                  processing_class=tokenizer,
                                  callbacks=[NaNGuardCallback()])
    out = training_args.output_dir
    checkpoint = last_complete_checkpoint(out) if os.path.isdir(out) else None
    wall, cpu = time.time(), time.process_time()
    trainer.train(resume_from_checkpoint=checkpoint)
    wall, cpu = time.time() - wall, time.process_time() - cpu
    progress_path = os.path.join(out, PROGRESS)
    progress = json.load(open(progress_path)) if os.path.exists(progress_path) else {"pieces": []}
    progress["pieces"].append({"from_checkpoint": checkpoint, "to_step": trainer.state.global_step,
                               "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                               "torch_threads": torch.get_num_threads()})
    tokens = sum(int(sum(len(rows[k].query_ids[i]) + len(rows[k].code_ids[i]) for i in idx)) for k, idx in plan)
    progress.update({"steps": trainer.state.global_step, "tokens_planned": tokens,
                     "wall_seconds": round(sum(p["wall_seconds"] for p in progress["pieces"]), 1),
                     "cpu_seconds": round(sum(p["cpu_seconds"] for p in progress["pieces"]), 1),
                     "arguments": asdict(args)})
    atomic_write_text(progress_path, json.dumps(progress, indent=2))
    student_dir = os.path.join(out, "student")
    save_student(wrapper, tokenizer, student_dir)
    atomic_write_text(os.path.join(student_dir, "distill.json"), json.dumps(progress, indent=2))
    return {"student": student_dir, **{k: progress[k] for k in ("steps", "cpu_seconds", "wall_seconds")},
            "tokens": tokens}


class DistillationTrainer(GuardedTrainer):
    """`GuardedTrainer` (complete checkpoints, resume, NaN guard) that also logs the loss parts (match, contrast,
    listwise), averaged over each logging window."""

    _parts: dict = {}
    cpu_before = wall_before = 0.0  # CPU / wall seconds of the pieces before the checkpoint resumed from
    cpu_start, wall_start = time.process_time(), time.time()

    def train(self, resume_from_checkpoint=None, **kwargs):
        record = os.path.join(resume_from_checkpoint, CPU_RECORD) if resume_from_checkpoint else None
        if record and os.path.exists(record):
            with open(record) as f:
                saved = json.load(f)
            self.cpu_before, self.wall_before = saved["cpu_seconds"], saved["wall_seconds"]
        self.cpu_start, self.wall_start = time.process_time(), time.time()
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for k in ("match", "contrast", "listwise"):
            total, n = self._parts.get(k, (0.0, 0))
            self._parts[k] = (total + float(outputs[k].detach()), n + 1)
        if model.training and not bool(torch.isfinite(outputs["loss"].detach())):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # raises, naming the batch
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _save_checkpoint(self, model, trial):
        """The checkpoint, plus the student alone in `checkpoint-N/student` (a loadable retrieval folder), so
        every checkpoint can be evaluated on its own: the curves of MRR against CPU minutes."""
        super()._save_checkpoint(model, trial)
        if self.is_world_process_zero():
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            save_student(self.accelerator.unwrap_model(self.model), self.processing_class, os.path.join(folder, "student"))
            cpu = self.cpu_before + time.process_time() - self.cpu_start
            atomic_write_text(os.path.join(folder, CPU_RECORD), json.dumps(
                {"global_step": self.state.global_step, "cpu_seconds": round(cpu, 1),
                 "wall_seconds": round(self.wall_before + time.time() - self.wall_start, 1)}))

    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self._parts:
            logs = dict(logs, **{k: round(total / max(n, 1), 5) for k, (total, n) in self._parts.items()})
            self._parts = {}
        return super().log(logs, *args, **kwargs)
