"""Model cards (README.md) for saved folders, built with `huggingface_hub.ModelCardData` / `ModelCard` so the
metadata is the Hub's own format: library, pipeline tag, tags, `base_model` (only a Hub id), `datasets`
(only Hub dataset ids) and a `model-index` with one result per (dataset, split, metric), followed by markdown
sections for the architecture, training data and procedure, evaluation, the interpretability summary
(probes, kernel spectra) and usage.

The card states only what was measured and passed in; a section with nothing to report says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from mambacode.atomic import atomic_write_text as atomic_write
from mambacode.tables import markdown_table

PIPELINE_TAGS = {"mlm": "fill-mask", "retrieval": "feature-extraction", "token_classification": "token-classification"}
TASK_NAMES = {"mlm": "Masked language modelling", "retrieval": "Code search (natural language -> code)",
              "token_classification": "Type inference (token classification)"}
ARCH_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "mixer",
             "state_size", "num_kernels", "hf_conv", "mamba_head_dim", "direction_merge", "pooling",
             "num_attention_heads", "max_position_embeddings", "spectral_anchor_weight")
# our metric names -> (Hub metric type, metric config): the types the Hub and `evaluate` use
_METRIC_TYPES = {"eval_loss": ("loss", None), "loss": ("loss", None), "perplexity": ("perplexity", None),
                 "mrr": ("mrr", None), "accuracy": ("accuracy", None),
                 "micro_precision": ("precision", "micro"), "micro_recall": ("recall", "micro"),
                 "micro_f1": ("f1", "micro"), "macro_f1": ("f1", "macro")}
_AT_K = re.compile(r"^(recall|ndcg|precision|map|mrr)@(\d+)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]$")


def is_hub_id(name: str | None) -> bool:
    """True for a `namespace/name` Hub repository id that is not a local path (a local folder such as
    `runs/mlm` or `corpus/retrieval` is never a Hub id, whatever its shape)."""
    return bool(name) and _HUB_ID.match(name) is not None and ".." not in name and not os.path.exists(name)


def hub_metric(name: str) -> tuple[str, str | None] | None:
    """(Hub metric type, metric config) of one of our metric names, e.g. 'recall@5' -> ('recall_at_5', None),
    'macro_f1' -> ('f1', 'macro'); None for counts and timings (num_queries, runtime, ...), which are no metric."""
    if name in _METRIC_TYPES:
        return _METRIC_TYPES[name]
    m = _AT_K.match(name)
    return (f"{m.group(1)}_at_{m.group(2)}", None) if m else None


@dataclass
class Evaluation:
    """Metrics measured on one split of one dataset: one `model-index` result.

    `dataset` is the dataset's identifier: a Hub id, or the name of a local dataset (the folder's name, e.g.
    'retrieval_adv'); `metrics` use unprefixed names ('mrr', 'recall@1', 'macro_f1', 'eval_loss')."""

    dataset: str
    split: str
    metrics: dict = field(default_factory=dict)
    dataset_name: str | None = None  # display name; default: the identifier

    def __post_init__(self):
        bad = [k for k in self.metrics if k.startswith(f"{self.split}_")]
        if bad:
            raise ValueError(f"Evaluation({self.dataset!r}, {self.split!r}): metric names must not carry the split "
                             f"prefix, got {bad}")


def _eval_results(task: str, evaluations: list[Evaluation]) -> list:
    """One `EvalResult` per (dataset, split, metric); counts and timings are left out."""
    from huggingface_hub import EvalResult

    seen = [(ev.dataset, ev.split) for ev in evaluations]
    twice = sorted({key for key in seen if seen.count(key) > 1})
    if twice:
        raise ValueError(f"model card: one evaluation per dataset and split, got {twice} more than once")
    out = []
    for ev in evaluations:
        for key, value in ev.metrics.items():
            kind = hub_metric(key)
            if kind is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            out.append(EvalResult(task_type=PIPELINE_TAGS[task], task_name=TASK_NAMES[task], dataset_type=ev.dataset,
                                  dataset_name=ev.dataset_name or ev.dataset, dataset_split=ev.split,
                                  metric_type=kind[0], metric_config=kind[1], metric_name=key,
                                  metric_value=round(float(value), 6)))
    return out


def card_data(config, task: str, model_name: str, evaluations: list[Evaluation] | None = None,
              base_model: str | None = None, datasets: list[str] | None = None,
              sentence_transformers: bool | None = None):
    """The card's `ModelCardData`: `base_model` and `datasets` only where they are Hub ids (a local path
    would be a broken link on the Hub), `sentence-transformers` tag for retrieval encoders (default: MambaCode
    retrieval folders, which are sentence-transformers models)."""
    from huggingface_hub import ModelCardData

    if task not in PIPELINE_TAGS:
        raise ValueError(f"task={task!r}: expected one of {tuple(PIPELINE_TAGS)}")
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    is_ssm = cfg.get("model_type") == "mambacode"
    if sentence_transformers is None:
        sentence_transformers = task == "retrieval" and is_ssm
    tags = ["code", "mambacode", "state-space-model" if is_ssm else "roformer", task.replace("_", "-")]
    tags += (["custom_code"] if is_ssm else []) + (["sentence-transformers"] if sentence_transformers else [])
    hub_datasets = sorted({d for d in (datasets or []) + [e.dataset for e in evaluations or []] if is_hub_id(d)})
    results = _eval_results(task, evaluations or [])
    return ModelCardData(library_name="transformers", pipeline_tag=PIPELINE_TAGS[task], license="apache-2.0",
                         language=["code", "en"], tags=tags, base_model=base_model if is_hub_id(base_model) else None,
                         datasets=hub_datasets or None, model_name=model_name if results else None,
                         eval_results=results or None)


def render_model_card(config, task: str, model_name: str, evaluations: list[Evaluation] | None = None,
                      dataset: str | None = None, data_description: str | None = None, base_model: str | None = None,
                      training: dict | None = None, probe_summary: str | None = None,
                      spectrum_summary: str | None = None, num_parameters: int | None = None,
                      sentence_transformers: bool | None = None) -> str:
    """The card's text: `ModelCardData` front matter, then the sections. `evaluations`: one `Evaluation` per
    dataset and split; `dataset`: the training data's identifier (listed in `datasets` only if a Hub id)."""
    data = card_data(config, task, model_name, evaluations, base_model, [dataset] if dataset else None,
                     sentence_transformers)
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    is_ssm = cfg.get("model_type") == "mambacode"
    lines = [f"# {model_name}", ""]
    kind = (f"a bidirectional state-space (MambaCode, mixer `{cfg.get('mixer')}`) code encoder" if is_ssm
            else "a RoFormer (rotary-attention) code encoder, the RoCoder baseline")
    lines += [f"{model_name} is {kind} for **{TASK_NAMES[task].lower()}**, trained with the MambaCode "
              "training scripts (`scripts/run_*.py`).", ""]
    if base_model:
        lines += [f"Fine-tuned from `{base_model}`" + ("" if is_hub_id(base_model) else " (a local folder)") + ".", ""]
    lines += ["## Architecture", ""]
    rows = [(k, f"`{cfg[k]}`") for k in ARCH_KEYS if k in cfg and cfg[k] is not None]
    if num_parameters is not None:
        rows.append(("parameters", f"{num_parameters:,}"))
    lines += [markdown_table(["field", "value"], rows), ""]
    lines += ["## Training data", "", data_description or (f"`{dataset}`" if dataset else "Not recorded."), ""]
    if training:
        lines += ["## Training procedure", "", markdown_table(["hyper-parameter", "value"],
                                                     [(k, f"`{v}`") for k, v in training.items()]), ""]
    lines += ["## Evaluation", ""]
    rows = [(f"`{ev.dataset}`", ev.split, k, f"{v:.4f}" if isinstance(v, float) else v)
            for ev in evaluations or [] for k, v in ev.metrics.items()]
    lines += [markdown_table(["dataset", "split", "metric", "value"], rows) if rows
              else "No evaluation was run for this folder.", ""]
    lines += ["## Interpretability", "", "### Probes", "", probe_summary or "No probe was run for this model.", "",
              "### Kernel spectra", "", spectrum_summary or "No spectrum report was made for this model.", ""]
    load = ("AutoModel.from_pretrained(path, trust_remote_code=True)" if is_ssm
            else "AutoModel.from_pretrained(path)")
    lines += ["## Usage", "", "```python", "from transformers import AutoModel, AutoTokenizer", "",
              'path = "<this folder or Hub id>"',
              # without trust_remote_code, AutoTokenizer asks (y/N) before reading a custom-code config
              "tokenizer = AutoTokenizer.from_pretrained(path" + (", trust_remote_code=True)" if is_ssm else ")"),
              f"model = {load}"]
    if is_ssm and task == "retrieval":
        lines += ['embeddings = model.encode(["def add(a, b): return a + b"], tokenizer)  # L2-normalised']
    lines += ["```", ""]
    if "sentence-transformers" in data.tags:
        lines += ["With sentence-transformers:", "", "```python", "from sentence_transformers import SentenceTransformer",
                  "", 'model = SentenceTransformer("<this folder or Hub id>", trust_remote_code=True)',
                  'embeddings = model.encode(["def add(a, b): return a + b"])', "```", ""]
    from huggingface_hub import ModelCard

    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def write_model_card(output_dir: str, config, task: str, model_name: str | None = None, **kwargs) -> str:
    """Render the card and write it atomically to `output_dir/README.md`; returns the path. A folder holding
    `modules.json` (a sentence-transformers model) gets the `sentence-transformers` tag."""
    name = model_name or os.path.basename(os.path.abspath(output_dir))
    if kwargs.get("sentence_transformers") is None and os.path.exists(os.path.join(output_dir, "modules.json")):
        kwargs["sentence_transformers"] = True
    return atomic_write(os.path.join(output_dir, "README.md"), render_model_card(config, task, name, **kwargs))


def parse_front_matter(text: str) -> str:
    """The YAML front matter of a card (between the first two '---' lines); ValueError if absent."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise ValueError("model card: no YAML front matter (the file must start with '---')")
    try:
        end = lines.index("---", 1)
    except ValueError:
        raise ValueError("model card: YAML front matter is not closed by '---'") from None
    return "\n".join(lines[1:end])


__all__ = ["Evaluation", "card_data", "hub_metric", "is_hub_id", "render_model_card", "write_model_card",
           "atomic_write", "parse_front_matter", "PIPELINE_TAGS"]
