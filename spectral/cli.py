"""`python scripts/spectrum.py`: spectrum report of one checkpoint, or the spectral shift between two.

    python scripts/spectrum.py --model_name_or_path PRE [--compare_to FINETUNED] --output_dir DIR

Writes DIR/spectrum_report.{md,json} (one checkpoint) or DIR/spectral_shift.{md,json} (two), and the
figures summary.png, magnitude_responses.png, centroid_vs_lhfr.png (+ hf_conv_responses.png). Mamba-2
checkpoints are measured on code: --corpus_dir / --source_dir / --inputs_file (one of them, read by
`mambacode.corpus.read_snippets`), or the built-in snippets, tokenised with
the checkpoint's tokenizer (or --tokenizer_name_or_path).

Besides MambaCode checkpoints, transformers' own Mamba / Mamba-2 folders (MambaModel, Mamba2Model,
MambaForCausalLM, Mamba2ForCausalLM, ...) are read the same way (causal: direction "forward"; Mamba-1 per
channel, see --mamba_channels). --attention_matrix_for also writes DIR/attention_matrices.{png,npz}: the
effective attention matrices of the selective layers on one snippet (see `mambacode.spectral.attention`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from .kernels import SUPPORTED, UnsupportedModelError

logger = logging.getLogger(__name__)

KERNEL_KEYS = ("mixer.ssm", "mixer.short_conv")


@dataclass
class SpectrumArguments:
    model_name_or_path: str = field(metadata={"help": "Checkpoint folder (or cached Hub id) to analyse."})
    output_dir: str = field(metadata={"help": "Where the report, JSON and figures are written."})
    compare_to: str | None = field(default=None, metadata={
        "help": "A second checkpoint of the same architecture (e.g. the fine-tuned model): write a shift report."})
    length: int = field(default=4096, metadata={"help": "Kernel length L (PAPER.md: 4096)."})
    inputs_file: str | None = field(default=None, metadata={
        "help": "Mamba-2 inputs: .jsonl/.json of strings or objects with --text_field; other files = one snippet."})
    corpus_dir: str | None = field(default=None, metadata={
        "help": "Mamba-2 inputs: the `code` column of a corpus built by build_corpus (see --dataset, --split)."})
    source_dir: str | None = field(default=None, metadata={
        "help": "Mamba-2 inputs: the functions of every source file below it (see --language)."})
    language: str | None = field(default=None, metadata={
        "help": "Keep only this language (corpus rows, source files); default: all."})
    dataset: str = field(default="retrieval", metadata={"help": "Dataset of --corpus_dir to read."})
    split: str | None = field(default=None, metadata={"help": "Split of --dataset (default: all, in name order)."})
    seed: int | None = field(default=None, metadata={
        "help": "Draw --max_snippets corpus rows at random with this seed (default: the first rows)."})
    text_field: str = field(default="code", metadata={"help": "Field of JSON objects holding the code."})
    max_snippets: int = field(default=256, metadata={"help": "Use at most this many snippets."})
    max_length: int = field(default=512, metadata={"help": "Truncate snippets to this many tokens."})
    batch_size: int = field(default=8, metadata={"help": "Snippets per forward pass."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={
        "help": "Tokenizer for Mamba-2 inputs when the checkpoint folder has none."})
    label: str = field(default="pretrained", metadata={"help": "Name of --model_name_or_path in the report."})
    compare_label: str = field(default="fine-tuned", metadata={"help": "Name of --compare_to in the report."})
    no_figures: bool = field(default=False, metadata={"help": "Skip the figures (JSON and markdown only)."})
    with_kernels: bool = field(default=False, metadata={"help": "Store every kernel's taps in the JSON."})
    use_cpu: bool = field(default=False, metadata={
        "help": "Mamba-2 forward passes on the CPU even if CUDA is available."})
    low_band: float = field(default=0.10, metadata={"help": "LHFR numerator: first fraction of the bins."})
    high_band: float = field(default=0.60, metadata={"help": "LHFR denominator: bins from this fraction on."})
    centroid_threshold: float = field(default=0.166, metadata={"help": "Class boundary on the centroid."})
    lowpass_log10_lhfr: float = field(default=1.0, metadata={"help": "Low-pass needs log10 LHFR above this."})
    highpass_log10_lhfr: float = field(default=0.0, metadata={"help": "High-pass needs log10 LHFR below this."})
    erf_fraction: float = field(default=0.90, metadata={"help": "Effective receptive field share of sum |K|."})
    mamba_channels: str = field(default="16", metadata={
        "help": "transformers Mamba-1 models: channels whose kernels are recorded: a count (evenly spaced, first "
                "and last included), 'all', or a comma-separated list of channel numbers."})
    attention_matrix_for: str | None = field(default=None, metadata={
        "help": "Also write attention_matrices.{png,npz}: the effective attention matrices M[t, s] of the selective "
                "layers (MambaCode mixer='mamba2', transformers Mamba / Mamba-2) on this code snippet; a path to "
                "an existing file means its text, 'first' the first snippet the kernels were measured on."})
    attention_layers: list[int] | None = field(default=None, metadata={
        "help": "Layers drawn by --attention_matrix_for (default: all)."})
    attention_heads: list[int] | None = field(default=None, metadata={
        "help": "Heads (Mamba-2) or channels (Mamba-1) drawn by --attention_matrix_for (default: all heads, "
                "8 evenly spaced channels; at most 8 columns are drawn)."})
    attention_max_tokens: int = field(default=48, metadata={
        "help": "Truncate the --attention_matrix_for snippet to this many tokens (the matrices are n x n)."})

    def thresholds(self) -> dict:
        return {"low_band": self.low_band, "high_band": self.high_band, "centroid": self.centroid_threshold,
                "lowpass_log10_lhfr": self.lowpass_log10_lhfr, "highpass_log10_lhfr": self.highpass_log10_lhfr,
                "erf_fraction": self.erf_fraction}


HF_MAMBA_TYPES = ("mamba", "mamba2")  # transformers' own model types read by `spectral.hf_mamba`


def load_encoder(path: str, role: str = "--model_name_or_path"):
    """The bare encoder of a MambaCode checkpoint saved from any MambaCode class, or the backbone
    (MambaModel / Mamba2Model) of a transformers Mamba / Mamba-2 checkpoint saved from any of its classes.

    Refuses other checkpoints (naming what is supported) and checkpoints whose kernel weights are
    missing, which would otherwise be analysed at their random initialisation.
    """
    from transformers import AutoConfig

    import mambacode  # noqa: F401  (registers MambaCodeConfig with AutoConfig)
    from mambacode import MambaCodeModel

    config = AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", None) in HF_MAMBA_TYPES:
        return _load_hf_mamba(path, role)
    if getattr(config, "model_type", None) != "mambacode":
        raise UnsupportedModelError(
            f"{role} {path}: model_type={getattr(config, 'model_type', None)!r} has no SSM kernels. "
            f"Supported: {SUPPORTED}.")
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a head checkpoint's unused head weights are expected here
    try:
        model, info = MambaCodeModel.from_pretrained(path, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in info.get("missing_keys", []) if any(s in k for s in KERNEL_KEYS)]
    if missing:
        raise ValueError(f"{role} {path}: the checkpoint has no weights for {len(missing)} kernel parameters "
                         f"(e.g. {sorted(missing)[:3]}); refusing to analyse randomly initialised kernels.")
    return model.eval()


def _load_hf_mamba(path: str, role: str):
    """transformers' MambaModel / Mamba2Model of a checkpoint (heads dropped), on their torch path: never
    `use_kernels` (Hub kernels), and mamba-ssm / causal-conv1d only serve CUDA inputs (the numbers are
    recomputed in float64 from the weights anyway)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # head weights unused here; the 'falling back to torch' notices
    try:
        model, info = AutoModel.from_pretrained(path, output_loading_info=True, use_kernels=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in info.get("missing_keys", []) if "mixer." in k]
    if missing:
        raise ValueError(f"{role} {path}: the checkpoint has no weights for {len(missing)} mixer parameters "
                         f"(e.g. {sorted(missing)[:3]}); refusing to analyse randomly initialised kernels.")
    return model.eval()


def load_tokenizer(paths):
    """The first tokenizer that loads from `paths` (None entries skipped), or None."""
    from transformers import AutoTokenizer

    for path in paths:
        if not path:
            continue
        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # no tokenizer files in that folder: try the next source
            logger.info("no tokenizer at %s (%s)", path, type(exc).__name__)
    return None


def measure(args: SpectrumArguments):
    """The report of one checkpoint (`SpectrumReport`) or of the shift between two (`ShiftReport`)."""
    return _measure(args)[0]


def _measure(args: SpectrumArguments):
    """(report, [models], tokenizer, inputs): the report and what it was measured with."""
    from .kernels import mixer_kind
    from .report import check_same_architecture, compare_reports, spectrum_report
    from ..corpus.snippets import read_snippets
    from ..devices import default_device
    from .snippets import DEFAULT_SNIPPETS

    pre = load_encoder(args.model_name_or_path)
    post = load_encoder(args.compare_to, "--compare_to") if args.compare_to else None
    if post is not None:
        check_same_architecture(pre, post, (args.model_name_or_path, args.compare_to))
    inputs = tokenizer = None
    kind = mixer_kind(pre)
    if args.attention_matrix_for and kind == "s4d":
        raise ValueError("--attention_matrix_for: the checkpoint's layers are s4d (LTI: their operator is the "
                         "Toeplitz matrix of the kernel); attention matrices need selective layers (MambaCode "
                         "mixer='mamba2', transformers Mamba / Mamba-2).")
    if kind != "s4d":
        tokenizer = load_tokenizer([args.tokenizer_name_or_path, args.model_name_or_path, args.compare_to])
        if tokenizer is None:
            raise ValueError(f"{kind} (selective) kernels are measured on code and need a tokenizer: none loads from "
                             f"{args.model_name_or_path}" + (f" or {args.compare_to}" if args.compare_to else "")
                             + "; pass --tokenizer_name_or_path.")
        if args.corpus_dir or args.source_dir or args.inputs_file:
            inputs = read_snippets(args.corpus_dir, source_dir=args.source_dir, inputs_file=args.inputs_file,
                                   language=args.language, dataset=args.dataset, split=args.split,
                                   max_snippets=args.max_snippets, seed=args.seed, text_field=args.text_field)
        else:
            inputs = DEFAULT_SNIPPETS[:args.max_snippets] if args.max_snippets else list(DEFAULT_SNIPPETS)
        logger.info("%s: %d snippets", kind, len(inputs))
        pre.to(default_device(args.use_cpu))
        if post is not None:
            post.to(default_device(args.use_cpu))
    kwargs = {"tokenizer": tokenizer, "batch_size": args.batch_size, "max_length": args.max_length,
              "thresholds": args.thresholds()}
    if kind == "mamba":
        kwargs["channels"] = args.mamba_channels
    report = spectrum_report(pre, args.length, inputs, label=args.label, **kwargs)
    if post is not None:
        report = compare_reports(report, spectrum_report(post, args.length, inputs, label=args.compare_label,
                                                         **kwargs))
    return report, [m for m in (pre, post) if m is not None], tokenizer, inputs


def attention_snippet(args: SpectrumArguments, inputs) -> str:
    """The code --attention_matrix_for names: the snippet itself, a file's text, or 'first' measured snippet."""
    import os

    value = args.attention_matrix_for
    if value == "first":
        if not inputs:
            raise ValueError("--attention_matrix_for first: no snippets were measured.")
        return inputs[0]
    if os.path.isfile(value):
        with open(value, encoding="utf-8", errors="replace") as f:
            return f.read()
    return value


def write_attention(args: SpectrumArguments, models, tokenizer, inputs) -> dict:
    """attention_matrices.{png,npz} (and attention_matrices_compare.{png,npz} for --compare_to)."""
    import os

    from .attention import attention_matrices, save_attention_matrices, token_labels

    code = attention_snippet(args, inputs)
    labels = [args.label, args.compare_label]
    out = {}
    for k, model in enumerate(models):
        stem = "attention_matrices" + ("_compare" if k else "")
        mats = attention_matrices(model, code, tokenizer, layers=args.attention_layers, heads=args.attention_heads,
                                  max_length=args.attention_max_tokens)
        tokens = token_labels(tokenizer, code, args.attention_max_tokens)
        out[stem + "_npz"] = save_attention_matrices(mats, os.path.join(args.output_dir, stem + ".npz"), tokens)
        if not args.no_figures:
            from .plots import plot_attention_matrices, save_figure

            fig = plot_attention_matrices(mats, tokens, title=f"Effective attention of {labels[k]} on "
                                                              f"{len(tokens or mats[0].matrix)} tokens")
            out[stem] = save_figure(fig, os.path.join(args.output_dir, stem + ".png"))
    return out


def run(args: SpectrumArguments) -> dict:
    """Measure, write the report and print its summary; returns {name: path}."""
    from .report import write_report

    report, models, tokenizer, inputs = _measure(args)
    extra = write_attention(args, models, tokenizer, inputs) if args.attention_matrix_for else {}
    paths = write_report(report, args.output_dir, figures=not args.no_figures, with_kernels=args.with_kernels,
                         extra_files=extra)
    if args.compare_to:
        ch = report.class_changes()
        print(f"{ch['total']} of {ch['kernels']} SSM kernels changed class: {ch['transitions']}")
    else:
        print(f"filter classes: {report.class_counts()}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return paths


def main(argv=None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (args,) = HfArgumentParser(SpectrumArguments).parse_args_into_dataclasses(args=argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["SpectrumArguments", "measure", "run", "main", "load_encoder", "load_tokenizer", "write_attention"]
