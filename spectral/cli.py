"""`python scripts/spectrum.py`: spectrum report of one checkpoint, or the spectral shift between two.

    python scripts/spectrum.py --model_name_or_path PRE [--compare_to FINETUNED] --output_dir DIR

Writes DIR/spectrum_report.{md,json} (one checkpoint) or DIR/spectral_shift.{md,json} (two), and the
figures summary.png, magnitude_responses.png, centroid_vs_lhfr.png (+ hf_conv_responses.png). Mamba-2
checkpoints are measured on code: --corpus_dir / --source_dir / --inputs_file (one of them, read by
`mambacode.corpus.read_snippets`), or the built-in snippets, tokenised with
the checkpoint's tokenizer (or --tokenizer_name_or_path).
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

    def thresholds(self) -> dict:
        return {"low_band": self.low_band, "high_band": self.high_band, "centroid": self.centroid_threshold,
                "lowpass_log10_lhfr": self.lowpass_log10_lhfr, "highpass_log10_lhfr": self.highpass_log10_lhfr,
                "erf_fraction": self.erf_fraction}


def load_encoder(path: str, role: str = "--model_name_or_path"):
    """The bare MambaCode encoder of a checkpoint saved from any MambaCode class.

    Refuses non-MambaCode checkpoints (naming what is supported) and checkpoints whose kernel weights are
    missing, which would otherwise be analysed at their random initialisation.
    """
    from transformers import AutoConfig

    import mambacode  # noqa: F401  (registers MambaCodeConfig with AutoConfig)
    from mambacode import MambaCodeModel

    config = AutoConfig.from_pretrained(path)
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
    if mixer_kind(pre) == "mamba2":
        tokenizer = load_tokenizer([args.tokenizer_name_or_path, args.model_name_or_path, args.compare_to])
        if tokenizer is None:
            raise ValueError("mixer='mamba2' kernels are measured on code and need a tokenizer: none loads from "
                             f"{args.model_name_or_path}" + (f" or {args.compare_to}" if args.compare_to else "")
                             + "; pass --tokenizer_name_or_path.")
        if args.corpus_dir or args.source_dir or args.inputs_file:
            inputs = read_snippets(args.corpus_dir, source_dir=args.source_dir, inputs_file=args.inputs_file,
                                   language=args.language, dataset=args.dataset, split=args.split,
                                   max_snippets=args.max_snippets, seed=args.seed, text_field=args.text_field)
        else:
            inputs = DEFAULT_SNIPPETS[:args.max_snippets] if args.max_snippets else list(DEFAULT_SNIPPETS)
        logger.info("mamba2: %d snippets", len(inputs))
        pre.to(default_device(args.use_cpu))
        if post is not None:
            post.to(default_device(args.use_cpu))
    kwargs = {"tokenizer": tokenizer, "batch_size": args.batch_size, "max_length": args.max_length,
              "thresholds": args.thresholds()}
    report = spectrum_report(pre, args.length, inputs, label=args.label, **kwargs)
    if post is not None:
        report = compare_reports(report, spectrum_report(post, args.length, inputs, label=args.compare_label,
                                                         **kwargs))
    return report


def run(args: SpectrumArguments) -> dict:
    """Measure, write the report and print its summary; returns {name: path}."""
    from .report import write_report

    report = measure(args)
    paths = write_report(report, args.output_dir, figures=not args.no_figures, with_kernels=args.with_kernels)
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


__all__ = ["SpectrumArguments", "measure", "run", "main", "load_encoder", "load_tokenizer"]
