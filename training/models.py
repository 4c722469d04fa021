"""Model construction shared by the run_*.py scripts: load a checkpoint, or build MambaCode / RoCoder from
config flags, for one of three tasks ('mlm', 'retrieval', 'token_classification').

RoCoder is transformers' RoFormer (rotary position embeddings) at the same width, depth and vocabulary as
the SSM it is compared with; nothing else about its training differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

MODEL_TYPES = ("mambacode", "roformer")
TASKS = ("mlm", "retrieval", "token_classification")


@dataclass
class ModelArguments:
    """Which model to fine-tune, or how to build one from scratch."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "Checkpoint folder (or Hub id) to start from; omit to build a new model from the flags below."})
    model_type: str | None = field(default=None, metadata={
        "help": "mambacode | roformer (RoCoder). Default: the checkpoint's type, else mambacode."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={
        "help": "Tokenizer folder; default: model_name_or_path."})
    hidden_size: int = field(default=128, metadata={"help": "Width (new models)."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Depth (new models)."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Default 4 x hidden_size."})
    max_position_embeddings: int = field(default=4096, metadata={"help": "Longest input (new models)."})
    mixer: str = field(default="s4d", metadata={"help": "MambaCode sequence mixer: s4d | mamba2."})
    state_size: int = field(default=64, metadata={"help": "SSM state size N."})
    num_kernels: int = field(default=1, metadata={"help": "S4D kernels per direction (1 = CodeSSM, 8 = CodeSSM-8kernel)."})
    hf_conv: bool = field(default=False, metadata={"help": "Add the high-frequency short-convolution path."})
    mamba_head_dim: int = field(default=64, metadata={"help": "Mamba-2 head dimension (capped at hidden_size)."})
    parameter_matched: bool = field(default=False, metadata={
        "help": "Match the parameter count of the plain s4d baseline of the same width/depth (as CodeSSM-HF "
                "drops a layer), by depth then intermediate size."})
    num_attention_heads: int | None = field(default=None, metadata={
        "help": "RoCoder heads; default hidden_size // 64 (at least 1)."})
    spectral_anchor_weight: float = field(default=0.0, metadata={
        "help": "Weight of the spectral-preserving regulariser (MambaCode fine-tuning; 0 = off)."})
    spectral_anchor_length: int | None = field(default=None, metadata={"help": "Kernel length of the anchor."})
    retrieval_temperature: float | None = field(default=None, metadata={"help": "InfoNCE temperature."})

    def __post_init__(self):
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise ValueError(f"--model_type={self.model_type!r}: expected one of {MODEL_TYPES}")
        if self.spectral_anchor_weight < 0:
            raise ValueError(f"--spectral_anchor_weight={self.spectral_anchor_weight}: expected >= 0")


def resolve_model_type(args: ModelArguments) -> str:
    """The checkpoint's model type (mambacode or roformer), checked against --model_type."""
    if args.model_name_or_path is None:
        return args.model_type or "mambacode"
    from transformers import AutoConfig

    import mambacode.modeling  # noqa: F401  (registers the config class)

    found = AutoConfig.from_pretrained(args.model_name_or_path).model_type
    if found not in MODEL_TYPES:
        raise ValueError(f"{args.model_name_or_path}: model_type {found!r} is not supported (expected {MODEL_TYPES})")
    if args.model_type is not None and args.model_type != found:
        raise ValueError(f"--model_type={args.model_type} but {args.model_name_or_path} holds a {found} model")
    return found


def new_config(args: ModelArguments, vocab_size: int, pad_token_id: int, bos_token_id=None, eos_token_id=None):
    """Config of a new model from the flags (vocabulary taken from the tokenizer)."""
    model_type = args.model_type or "mambacode"
    d = args.hidden_size
    inner = args.intermediate_size or 4 * d
    if model_type == "roformer":
        from transformers import RoFormerConfig

        config = RoFormerConfig(
            vocab_size=vocab_size, embedding_size=d, hidden_size=d, num_hidden_layers=args.num_hidden_layers,
            num_attention_heads=args.num_attention_heads or max(1, d // 64), intermediate_size=inner,
            max_position_embeddings=args.max_position_embeddings, pad_token_id=pad_token_id,
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5,
        )
        return config
    from mambacode.modeling import MambaCodeConfig

    common = dict(vocab_size=vocab_size, hidden_size=d, intermediate_size=inner,
                  max_position_embeddings=args.max_position_embeddings, mixer=args.mixer, state_size=args.state_size,
                  mamba_head_dim=min(args.mamba_head_dim, d), pad_token_id=pad_token_id,
                  bos_token_id=bos_token_id if bos_token_id is not None else 0,
                  eos_token_id=eos_token_id if eos_token_id is not None else 2)
    changes = dict(num_kernels=args.num_kernels, hf_conv=args.hf_conv)
    if args.parameter_matched and (args.hf_conv or args.num_kernels != 1):
        baseline = MambaCodeConfig(num_hidden_layers=args.num_hidden_layers, **common)
        return MambaCodeConfig.parameter_matched(baseline, **changes)
    return MambaCodeConfig(num_hidden_layers=args.num_hidden_layers, **common, **changes)


def _classes(model_type: str, task: str):
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}")
    if model_type == "roformer":
        from transformers import RoFormerForMaskedLM, RoFormerForTokenClassification

        from .rocoder import RoCoderForRetrieval

        return {"mlm": RoFormerForMaskedLM, "retrieval": RoCoderForRetrieval,
                "token_classification": RoFormerForTokenClassification}[task]
    from mambacode.modeling import MambaCodeForMaskedLM, MambaCodeForRetrieval, MambaCodeForTokenClassification

    return {"mlm": MambaCodeForMaskedLM, "retrieval": MambaCodeForRetrieval,
            "token_classification": MambaCodeForTokenClassification}[task]


def build_model(args: ModelArguments, task: str, tokenizer, **config_overrides):
    """Load `args.model_name_or_path` (a head for `task` on top of its encoder) or build a new model.

    `config_overrides` (e.g. num_labels, id2label) go into the config. The spectral anchor weight is only
    meaningful for MambaCode; asking for it on RoCoder is an error rather than silently ignored. With a
    weight, the anchor is recorded from the weights just loaded (or built), before any training.
    """
    from .validation import check_tokenizer_matches_model

    model_type = resolve_model_type(args)
    overrides = dict(config_overrides)
    if args.spectral_anchor_weight > 0 and model_type != "mambacode":
        raise ValueError("--spectral_anchor_weight applies to MambaCode SSM kernels; RoCoder (roformer) has none.")
    if args.retrieval_temperature is not None:
        overrides["retrieval_temperature"] = args.retrieval_temperature
    cls = _classes(model_type, task)
    if args.model_name_or_path is not None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(args.model_name_or_path)
        for key, value in overrides.items():
            setattr(config, key, value)
        if hasattr(config, "validate_fields"):
            config.validate_fields()
        check_tokenizer_matches_model(tokenizer, config, where=args.model_name_or_path)
        model = cls.from_pretrained(args.model_name_or_path, config=config)
    else:
        config = new_config(args, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
        for key, value in overrides.items():
            setattr(config, key, value)
        if hasattr(config, "validate_fields"):
            config.validate_fields()
        model = cls(config)
    if model_type == "roformer" and not hasattr(model.config, "retrieval_temperature"):
        model.config.retrieval_temperature = 0.05
    if args.spectral_anchor_weight > 0:
        model.config.spectral_anchor_weight = args.spectral_anchor_weight
        if args.spectral_anchor_length:
            model.config.spectral_anchor_length = args.spectral_anchor_length
        model.record_spectral_anchor()  # validates the config fields
    return model


def extend_positions(model, length: int) -> bool:
    """Let `model` read inputs of `length` tokens if its config stops it short; True if it changed. MambaCode has no
    position table (its limit is only a check); RoCoder's rotary table is sinusoidal, so a longer one is
    recomputed by its own formula (the first rows stay the trained model's). Neither model trained at that
    length: reading longer documents than in training is the long-context test itself."""
    config = model.config
    if length <= config.max_position_embeddings:
        return False
    encoder = getattr(getattr(model, "roformer", None), "encoder", None)
    if encoder is not None and hasattr(encoder, "embed_positions"):
        from transformers.models.roformer.modeling_roformer import RoFormerSinusoidalPositionalEmbedding

        old = encoder.embed_positions
        new = RoFormerSinusoidalPositionalEmbedding(length, old.weight.shape[1]).to(old.weight.device)
        with torch.no_grad():
            new.weight.copy_(new.create_weight().to(old.weight.dtype))
        encoder.embed_positions = new
    elif config.model_type != "mambacode":
        raise ValueError(f"extend_positions: cannot extend a {config.model_type} model past "
                         f"max_position_embeddings={config.max_position_embeddings}")
    config.max_position_embeddings = length
    return True


def load_tokenizer(args: ModelArguments):
    """The tokenizer named by --tokenizer_name_or_path, else the checkpoint's; one of them is required."""
    from transformers import AutoTokenizer

    name = args.tokenizer_name_or_path or args.model_name_or_path
    if name is None:
        raise ValueError("a tokenizer is needed: pass --tokenizer_name_or_path (e.g. the folder written by "
                         "scripts/train_tokenizer.py) or --model_name_or_path of a folder that has one")
    return AutoTokenizer.from_pretrained(name)


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ModelArguments", "MODEL_TYPES", "TASKS", "build_model", "extend_positions", "new_config", "load_tokenizer",
           "resolve_model_type", "count_trainable"]
