"""Model cards (README.md) for saved folders, in the Hugging Face Hub's format: YAML front matter
(library, pipeline tag, tags, base model, datasets, a `model-index` with the measured results) followed by
markdown sections for the architecture, training data and procedure, evaluation, the interpretability
summary (probes, kernel spectra) and usage.

The card states only what was measured and passed in; a section with nothing to report says so.
"""

from __future__ import annotations

import json
import os

from mambacode.atomic import atomic_write_text as atomic_write
from mambacode.tables import markdown_table

PIPELINE_TAGS = {"mlm": "fill-mask", "retrieval": "feature-extraction", "token_classification": "token-classification"}
TASK_NAMES = {"mlm": "Masked language modelling", "retrieval": "Code search (natural language -> code)",
              "token_classification": "Type inference (token classification)"}
ARCH_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "mixer",
             "state_size", "num_kernels", "hf_conv", "mamba_head_dim", "direction_merge", "pooling",
             "num_attention_heads", "max_position_embeddings", "spectral_anchor_weight")


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def _yaml(obj, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{k}: {'{}' if isinstance(v, dict) else '[]'}")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    else:
        for item in obj:
            if isinstance(item, dict):
                sub = _yaml(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def render_model_card(config, task: str, model_name: str, metrics: dict | None = None, dataset: str | None = None,
                      data_description: str | None = None, base_model: str | None = None,
                      training: dict | None = None, probe_summary: str | None = None,
                      spectrum_summary: str | None = None, num_parameters: int | None = None) -> str:
    """The card's text. `metrics` maps metric names (e.g. 'test_mrr') to numbers."""
    if task not in PIPELINE_TAGS:
        raise ValueError(f"task={task!r}: expected one of {tuple(PIPELINE_TAGS)}")
    metrics = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    is_ssm = cfg.get("model_type") == "mambacode"
    front = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAGS[task],
        "license": "apache-2.0",
        "tags": ["code", "mambacode", "state-space-model" if is_ssm else "roformer", task.replace("_", "-")]
        + (["custom_code"] if is_ssm else []),
    }
    if base_model:
        front["base_model"] = base_model
    if dataset:
        front["datasets"] = [dataset]
    if metrics:
        front["model-index"] = [{
            "name": model_name,
            "results": [{
                "task": {"type": PIPELINE_TAGS[task], "name": TASK_NAMES[task]},
                "dataset": {"name": dataset or "local", "type": dataset or "local"},
                "metrics": [{"type": k, "value": round(float(v), 6), "name": k} for k, v in metrics.items()],
            }],
        }]
    lines = ["---", *_yaml(front), "---", "", f"# {model_name}", ""]
    kind = (f"a bidirectional state-space (MambaCode, mixer `{cfg.get('mixer')}`) code encoder" if is_ssm
            else "a RoFormer (rotary-attention) code encoder, the RoCoder baseline")
    lines += [f"{model_name} is {kind} for **{TASK_NAMES[task].lower()}**, trained with the MambaCode "
              "training scripts (`scripts/run_*.py`).", ""]
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
    if metrics:
        lines += [markdown_table(["metric", "value"], [(k, f"{v:.4f}" if isinstance(v, float) else v)
                                               for k, v in metrics.items()]), ""]
    else:
        lines += ["No evaluation was run for this folder.", ""]
    lines += ["## Interpretability", "", "### Probes", "", probe_summary or "No probe was run for this model.", "",
              "### Kernel spectra", "", spectrum_summary or "No spectrum report was made for this model.", ""]
    load = ("AutoModel.from_pretrained(path, trust_remote_code=True)" if is_ssm
            else "AutoModel.from_pretrained(path)")
    lines += ["## Usage", "", "```python", "from transformers import AutoModel, AutoTokenizer", "",
              'path = "<this folder or Hub id>"', "tokenizer = AutoTokenizer.from_pretrained(path)",
              f"model = {load}"]
    if is_ssm and task == "retrieval":
        lines += ['embeddings = model.encode(["def add(a, b): return a + b"], tokenizer)  # L2-normalised']
    lines += ["```", ""]
    return "\n".join(lines)


def write_model_card(output_dir: str, config, task: str, model_name: str | None = None, **kwargs) -> str:
    """Render the card and write it atomically to `output_dir/README.md`; returns the path."""
    name = model_name or os.path.basename(os.path.abspath(output_dir))
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


__all__ = ["render_model_card", "write_model_card", "atomic_write", "parse_front_matter", "PIPELINE_TAGS"]
