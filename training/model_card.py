"""Model cards (README.md) for saved folders, built with `huggingface_hub.ModelCardData` / `ModelCard` so the
metadata is the Hub's own format: library, pipeline tag, tags, `base_model` (only a Hub id), `datasets`
(only Hub dataset ids) and a `model-index` with one result per (dataset, split, metric), followed by markdown
sections for the architecture, training data and procedure, evaluation, the interpretability summary
(probes, kernel spectra) and usage.

The card states only what was measured and passed in; a section with nothing to report says so. It never
carries a local absolute path (a local folder is named by its last component), an enum's repr (a value such
as `linear`, not `SchedulerType.LINEAR`), or a load snippet with the wrong Auto class (`AutoModelForMaskedLM`
for an MLM folder). `read_model_card` reads a card written here back into `render_model_card`'s arguments, so a
card can be re-rendered (renamed, given a base model) without the run that trained it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from mambacode.atomic import atomic_write_text as atomic_write
from mambacode.tables import markdown_table

NO_PROBE = "No probe was run for this model."
NO_SPECTRUM = "No spectrum report was made for this model."
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
# an absolute POSIX path of two or more parts (`/work/runs/cpu/corpus/retrieval`), or a Windows one
_ABSOLUTE_PATH = re.compile(r"(?<![\w./~-])(?:[A-Za-z]:\\|/)(?:[\w.+~-]+[/\\])+([\w.+~-]+)")
_ENUM_REPR = re.compile(r"^[A-Z]\w*Type\.([A-Z][A-Z0-9_]*)$")  # SchedulerType.LINEAR, IntervalStrategy...
AUTO_CLASSES = {"mlm": "AutoModelForMaskedLM", "retrieval": "AutoModel",
                "token_classification": "AutoModelForTokenClassification"}


def is_hub_id(name: str | None) -> bool:
    """True for a `namespace/name` Hub repository id that is not a local path (a local folder such as
    `runs/mlm` or `corpus/retrieval` is never a Hub id, whatever its shape)."""
    return bool(name) and _HUB_ID.match(name) is not None and ".." not in name and not os.path.exists(name)


def local_name(path: str) -> str:
    """How a card names a local folder or file: its last component ('/work/runs/cpu/pretrain/s4d-hf' -> 's4d-hf');
    a Hub id stays as it is."""
    if is_hub_id(path):
        return path
    return os.path.basename(os.path.normpath(str(path))) or str(path)


def scrub_paths(text: str) -> str:
    """`text` with every absolute path replaced by its last component (cards are published; a path on the machine
    that trained the model says nothing to a reader and leaks the machine's layout)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)


def plain_value(value):
    """A hyper-parameter as a card shows it: an enum by its value ('linear'), also when it arrives as the
    enum's repr ('SchedulerType.LINEAR'); anything else unchanged."""
    value = getattr(value, "value", value)
    if isinstance(value, str):
        m = _ENUM_REPR.match(value)
        if m:
            return m.group(1).lower()
    return value


def hub_metric(name: str) -> tuple[str, str | None] | None:
    """(Hub metric type, metric config) of one of our metric names, e.g. 'recall@5' -> ('recall_at_5', None),
    'macro_f1' -> ('f1', 'macro'); None for counts and timings (num_queries, runtime, ...), which are no metric."""
    if name in _METRIC_TYPES:
        return _METRIC_TYPES[name]
    m = _AT_K.match(name)
    return (f"{m.group(1)}_at_{m.group(2)}", None) if m else None


def is_sibling_name(name: str | None) -> bool:
    """A bare model name ('s4d-hf-mlm'): no namespace, no path separator."""
    return bool(name) and re.match(r"^[A-Za-z0-9][\w.-]*$", name) is not None and ".." not in name


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
            dataset = local_name(ev.dataset)
            out.append(EvalResult(task_type=PIPELINE_TAGS[task], task_name=TASK_NAMES[task], dataset_type=dataset,
                                  dataset_name=ev.dataset_name or dataset, dataset_split=ev.split,
                                  metric_type=kind[0], metric_config=kind[1], metric_name=key,
                                  metric_value=round(float(value), 6)))
    return out


def card_data(config, task: str, model_name: str, evaluations: list[Evaluation] | None = None,
              base_model: str | None = None, datasets: list[str] | None = None,
              sentence_transformers: bool | None = None, base_model_is_sibling: bool = False):
    """The card's `ModelCardData`: `base_model` and `datasets` only where they are Hub ids (a local path
    would be a broken link on the Hub), `sentence-transformers` tag for retrieval encoders (default: MambaCode
    retrieval folders, which are sentence-transformers models). `base_model_is_sibling`: `base_model` is the
    name of a model published beside this one (a shipped checkpoint, e.g. 's4d-hf-mlm'): it goes into the
    metadata as it is, and `hub.push_folder` prefixes it with the namespace the folder is pushed to."""
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
                         language=["code", "en"], tags=tags, base_model=base_model if is_hub_id(base_model) or (
                             base_model_is_sibling and is_sibling_name(base_model)) else None,
                         datasets=hub_datasets or None, model_name=model_name if results else None,
                         eval_results=results or None)


def render_model_card(config, task: str, model_name: str, evaluations: list[Evaluation] | None = None,
                      dataset: str | None = None, data_description: str | None = None, base_model: str | None = None,
                      training: dict | None = None, probe_summary: str | None = None,
                      spectrum_summary: str | None = None, num_parameters: int | None = None,
                      sentence_transformers: bool | None = None, base_model_is_sibling: bool = False,
                      base_model_text: str | None = None) -> str:
    """The card's text: `ModelCardData` front matter, then the sections. `evaluations`: one `Evaluation` per
    dataset and split; `dataset`: the training data's identifier (listed in `datasets` only if a Hub id);
    `base_model`: a Hub id, a local folder (named by its last component, kept out of the metadata) or, with
    `base_model_is_sibling`, the name of a model published beside this one (see `card_data`);
    `base_model_text`: the sentence that names it (default: 'Fine-tuned from `<base_model>` ...')."""
    if base_model and not (is_hub_id(base_model) or base_model_is_sibling):
        base_model = local_name(base_model)
    data = card_data(config, task, model_name, evaluations, base_model, [dataset] if dataset else None,
                     sentence_transformers, base_model_is_sibling)
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    is_ssm = cfg.get("model_type") == "mambacode"
    lines = [f"# {model_name}", ""]
    kind = (f"a bidirectional state-space (MambaCode, mixer `{cfg.get('mixer')}`) code encoder" if is_ssm
            else "a RoFormer (rotary-attention) code encoder, the RoCoder baseline")
    lines += [f"{model_name} is {kind} for **{TASK_NAMES[task].lower()}**, trained with the MambaCode "
              "training scripts (`scripts/run_*.py`).", ""]
    if base_model:
        where = ("" if is_hub_id(base_model) or base_model_is_sibling
                 else " (a local folder, so the metadata names no base model)")
        lines += [scrub_paths(base_model_text or f"Fine-tuned from `{base_model}`{where}."), ""]
    lines += ["## Architecture", ""]
    rows = [(k, f"`{cfg[k]}`") for k in ARCH_KEYS if k in cfg and cfg[k] is not None]
    if num_parameters is not None:
        rows.append(("parameters", f"{num_parameters:,}"))
    lines += [markdown_table(["field", "value"], rows), ""]
    described = data_description or (f"`{local_name(dataset)}`" if dataset else "Not recorded.")
    lines += ["## Training data", "", scrub_paths(described), ""]
    if training:
        lines += ["## Training procedure", "", markdown_table(["hyper-parameter", "value"], [
            (k, f"`{scrub_paths(str(plain_value(v)))}`") for k, v in training.items()]), ""]
    lines += ["## Evaluation", ""]
    rows = [(f"`{local_name(ev.dataset)}`", ev.split, k, f"{v:.4f}" if isinstance(v, float) else v)
            for ev in evaluations or [] for k, v in ev.metrics.items()]
    lines += [markdown_table(["dataset", "split", "metric", "value"], rows) if rows
              else "No evaluation was run for this folder.", ""]
    lines += ["## Interpretability", "", "### Probes", "", scrub_paths(probe_summary or NO_PROBE), "",
              "### Kernel spectra", "", scrub_paths(spectrum_summary or NO_SPECTRUM), ""]
    auto = AUTO_CLASSES[task]
    remote = ", trust_remote_code=True" if is_ssm else ""
    lines += ["## Usage", "", "```python", f"from transformers import {auto}, AutoTokenizer", "",
              'path = "<this folder or Hub id>"',
              # without trust_remote_code, AutoTokenizer asks (y/N) before reading a custom-code config
              f"tokenizer = AutoTokenizer.from_pretrained(path{remote})",
              f"model = {auto}.from_pretrained(path{remote})"]
    if is_ssm and task == "retrieval":
        lines += ['embeddings = model.encode(["def add(a, b): return a + b"], tokenizer)  # L2-normalised']
    lines += ["```", ""]
    if "sentence-transformers" in data.tags:
        lines += ["With sentence-transformers:", "", "```python", "from sentence_transformers import SentenceTransformer",
                  "", 'model = SentenceTransformer("<this folder or Hub id>", trust_remote_code=True)',
                  'embeddings = model.encode(["def add(a, b): return a + b"])', "```", "",
                  "To fine-tune it further with `SentenceTransformerTrainer` and keep the licence, the `custom_code` "
                  "tag and `trust_remote_code=True` in the card sentence-transformers writes, load it with "
                  "`model_card_data=mambacode.training.model_card.sentence_transformers_card_data(path)`.", ""]
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


def _sections(body: str) -> dict:
    """`{heading: text}` of a card body, for `## ` and `### ` headings (text stripped)."""
    out, heading, buf = {}, None, []
    for line in body.splitlines():
        if line.startswith(("## ", "### ")):
            if heading is not None:
                out[heading] = "\n".join(buf).strip()
            heading, buf = line.lstrip("#").strip(), []
        else:
            buf.append(line)
    if heading is not None:
        out[heading] = "\n".join(buf).strip()
    return out


def _table_rows(text: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (header and rule skipped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.strip().startswith("|")]
    return rows[2:]


def _number(text: str):
    text = text.replace(",", "")
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_model_card(text: str) -> dict:
    """A card written by `render_model_card`, read back as that function's arguments other than the config (a
    card lists only some of its fields: use the folder's config.json): task, model_name, evaluations, dataset,
    data_description, base_model, training, the summaries, num_parameters, sentence_transformers. Metric values
    come from the front matter (6 decimals), counts (num_queries, ...) from the evaluation table; absolute paths
    (cards written before they were removed) become their last component and enum reprs their values. Sections
    the renderer does not write (e.g. pretrained.py's 'Shipped checkpoint') are ignored."""
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    data = card.data
    tasks = {tag: task for task, tag in PIPELINE_TAGS.items()}
    task = tasks.get(data.pipeline_tag)
    if task is None:
        raise ValueError(f"model card: pipeline_tag {data.pipeline_tag!r} is none of {sorted(tasks)}")
    sections = _sections(card.text)
    title = next((line[2:].strip() for line in card.text.splitlines() if line.startswith("# ")), None)
    precise = {(r.dataset_type, r.dataset_split, r.metric_name): r.metric_value for r in data.eval_results or []}
    evaluations: dict = {}
    for cells in _table_rows(sections.get("Evaluation", "")):
        dataset, split, metric, value = cells[0].strip("`"), cells[1], cells[2], cells[3]
        ev = evaluations.setdefault((dataset, split), Evaluation(dataset, split, {}))
        ev.metrics[metric] = precise.get((dataset, split, metric), _number(value))
    training = {cells[0]: plain_value(cells[1].strip("`"))
                for cells in _table_rows(sections.get("Training procedure", ""))}
    parameters = [cells[1] for cells in _table_rows(sections.get("Architecture", "")) if cells[0] == "parameters"]
    intro = card.text.split("\n## ", 1)[0]
    fine_tuned = re.search(r"^Fine-tuned from `([^`]+)`", intro, re.MULTILINE)
    base = getattr(data, "base_model", None) or (fine_tuned.group(1) if fine_tuned else None)
    described = sections.get("Training data") or None
    probes, spectra = sections.get("Probes"), sections.get("Kernel spectra")
    datasets = [d for d in (getattr(data, "datasets", None) or []) if is_hub_id(d)]
    return {"task": task, "model_name": title, "evaluations": list(evaluations.values()),
            "dataset": datasets[0] if len(datasets) == 1 else None,
            "data_description": scrub_paths(described) if described and described != "Not recorded." else None,
            "base_model": base if base is None or is_hub_id(base) else local_name(base),
            "training": training or None,
            "probe_summary": probes if probes and probes != NO_PROBE else None,
            "spectrum_summary": spectra if spectra and spectra != NO_SPECTRUM else None,
            "num_parameters": _number(parameters[0]) if parameters else None,
            "sentence_transformers": "sentence-transformers" in (data.tags or [])}


def sentence_transformers_card_data(folder_or_card: str, **overrides):
    """A `SentenceTransformerModelCardData` that keeps what our card says when sentence-transformers writes its
    own (after `SentenceTransformerTrainer`, `model.save` renders a new card from this object alone):

        SentenceTransformer(path, trust_remote_code=True, model_card_data=sentence_transformers_card_data(path))

    Why an argument and not a file in the folder: sentence-transformers (checked with 6.3) builds its card data
    from the `model_card_data` argument only; from a folder it reads `config_sentence_transformers.json`'s
    prompts, default prompt, similarity function and truncation, and strips `trust_remote_code` from every
    `sentence_bert_config.json` kwargs dict. So: licence and language from our card's front matter, its tags
    (`custom_code` among them) added to sentence-transformers' own, Hub look-ups off (`local_files_only`), and a
    usage snippet that passes `trust_remote_code=True`. `overrides` are passed to the data class (model_id, ...)."""
    from sentence_transformers import SentenceTransformerModelCardData

    path = os.path.join(folder_or_card, "README.md") if os.path.isdir(folder_or_card) else folder_or_card
    from huggingface_hub import ModelCard

    ours = ModelCard.load(path).data
    cls = _remote_code_card_data_class(SentenceTransformerModelCardData)
    kwargs = {"license": ours.license, "language": ours.language, "local_files_only": True, **overrides}
    card = cls(**kwargs)
    card.add_tags([t for t in ours.tags or [] if t not in card.tags])
    return card


_REMOTE_CODE_CLASSES: dict = {}


def _remote_code_card_data_class(base):
    """`base` (sentence-transformers' card data class) whose usage snippet loads with `trust_remote_code=True`:
    the generated `model = SentenceTransformer("...")` line gets the flag, which a custom-code model needs."""
    if base not in _REMOTE_CODE_CLASSES:
        def generate_usage_snippet(self):
            snippet = base.generate_usage_snippet(self)
            return re.sub(r'(model = \w+\("[^"]*")\)', r"\1, trust_remote_code=True)", snippet, count=1)

        _REMOTE_CODE_CLASSES[base] = type(f"RemoteCode{base.__name__}", (base,),
                                          {"generate_usage_snippet": generate_usage_snippet})
    return _REMOTE_CODE_CLASSES[base]


__all__ = ["Evaluation", "card_data", "hub_metric", "is_hub_id", "render_model_card", "write_model_card",
           "atomic_write", "parse_front_matter", "PIPELINE_TAGS", "read_model_card", "local_name", "scrub_paths",
           "plain_value", "is_sibling_name", "sentence_transformers_card_data"]
