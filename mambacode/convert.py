"""Exact conversion of published SSM checkpoints into MambaCode folders (`mambacode convert bigs SRC DST`).

BiGS (Wang et al. 2022; CodeSSM is BiGS pretrained on code) is the model the paper studies. A BiGS PyTorch
checkpoint folder (its `config.json` with BiGS's fields, `model.safetensors` or `pytorch_model.bin`, possibly
sharded) becomes a `MambaCodeForMaskedLM` folder whose forward is BiGS's, term for term:

- each S4D layer is one kernel shared by every channel (`num_kernels=1`) with one scalar D per direction,
  N complex modes without BiGS's non-existent factor 2 (`s4d_conjugate_pairs=False`); the discretisation
  (C (exp(dt A) - 1) / A, Re(A) clamped at -1e-4) is MambaCode's own;
- absolute position and token-type tables and a LayerNorm over the summed embeddings, no final LayerNorm;
- the layer (pre-norm; GELU(W_v h) * GELU(W_ol(W_cf y_f * W_cb y_b)) -> W_o; the backward branch's dense
  layers act per token, so "flip, dense, SSM, dense, flip" is MambaCode's anti-causal convolution) and the
  MLM head (dense, exact GELU, LayerNorm, decoder tied to the word embeddings, bias) are MambaCode's.

One difference is kept on purpose: BiGS does not mask padding (its backward branch reads pad tokens
first), MambaCode does. Unpadded inputs give BiGS's outputs; padded batches give each sequence its
unpadded result. The pooler (unused by BiGS's MLM model) is dropped and named in the card.
"""

from __future__ import annotations

import json
import os
import shutil

BIGS_MODEL_TYPES = ("bigs",)  # compared lower-case: BiGS writes "BiGS"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model")
LAYER_LINEARS = {"dv": "proj_v", "du_forward": "proj_uf", "du_backward": "proj_ub", "duc_forward": "proj_cf",
                 "duc_backward": "proj_cb", "dol": "proj_ol", "do": "proj_o"}
DIRECTIONS = {"fs4": 0, "bs4": 1}
# tensors of a BiGS checkpoint that the MLM model does not use: dropped, named in the card
UNUSED_PREFIXES = ("bigs.pooler.",)
UNUSED_KEYS = ("bigs.embeddings.position_ids",)


class ConversionError(ValueError):
    """The source folder is not a BiGS checkpoint this converter can convert exactly (one-line message)."""


# ------------------------------------------------------------------------------------------ reading
def read_bigs_config(src: str) -> dict:
    """BiGS's `config.json` of `src`, checked to be a BiGS config whose forward this converter reproduces."""
    path = os.path.join(src, "config.json")
    if not os.path.isdir(src):
        raise ConversionError(f"{src}: no such folder (expected a BiGS checkpoint folder with config.json)")
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: missing (a BiGS checkpoint folder has config.json and its weights)")
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if str(model_type).lower() not in BIGS_MODEL_TYPES:
        raise ConversionError(f"{path}: model_type={model_type!r} is not a BiGS checkpoint (expected 'BiGS'); "
                              "`mambacode convert bigs` converts BiGS / CodeSSM PyTorch checkpoints only")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "num_ssm",
                  "max_position_embeddings"):
        value = config.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConversionError(f"{path}: field {field}={value!r}, expected a positive integer")
    checks = {"hidden_act": ("gelu",), "position_embedding_type": ("absolute",)}
    for field, allowed in checks.items():
        value = config.get(field, allowed[0])
        if value not in allowed:
            raise ConversionError(f"{path}: field {field}={value!r} is not supported exactly (expected "
                                  f"{' or '.join(map(repr, allowed))}, as BiGS's PyTorch model computes it)")
    return config


def read_weights(src: str) -> dict:
    """Every tensor of `src`'s weight files: `model.safetensors`, else `pytorch_model.bin` (read with
    `torch.load(weights_only=True)`, never unpickling code), each optionally sharded with an index file."""
    import torch
    from safetensors.torch import load_file

    def load_one(path):
        try:
            if path.endswith(".safetensors"):
                return load_file(path)
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConversionError(f"{path}: cannot read the weights ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if os.path.isfile(os.path.join(src, single)):
            weights = load_one(os.path.join(src, single))
        elif os.path.isfile(os.path.join(src, index)):
            try:
                with open(os.path.join(src, index), encoding="utf-8") as fh:
                    shards = sorted(set(json.load(fh)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConversionError(f"{os.path.join(src, index)}: not a weight index ({exc})") from None
            weights = {}
            for shard in shards:
                if os.path.basename(shard) != shard:
                    raise ConversionError(f"{os.path.join(src, index)}: shard {shard!r} is not a file name "
                                          "inside the folder")
                weights.update(load_one(os.path.join(src, shard)))
        else:
            continue
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise ConversionError(f"{src}: the weight file does not hold a flat dict of tensors")
        return weights
    raise ConversionError(f"{src}: no weights (expected model.safetensors or pytorch_model.bin, or a sharded "
                          "index of either)")


# ------------------------------------------------------------------------------------------ mapping
def mambacode_config(bigs: dict):
    """The `MambaCodeConfig` that represents the BiGS config `bigs` exactly."""
    from mambacode.modeling import MambaCodeConfig

    optional = {key: bigs[key] for key in ("bos_token_id", "eos_token_id") if key in bigs}
    return MambaCodeConfig(
        vocab_size=bigs["vocab_size"], hidden_size=bigs["hidden_size"], num_hidden_layers=bigs["num_hidden_layers"],
        intermediate_size=bigs["intermediate_size"], max_position_embeddings=bigs["max_position_embeddings"],
        mixer="s4d", state_size=bigs["num_ssm"], num_kernels=1, s4d_conjugate_pairs=False, direction_merge="mul",
        hf_conv=False, position_embedding_type="absolute", type_vocab_size=int(bigs.get("type_vocab_size", 2)),
        embedding_layer_norm=True, final_layer_norm=False, layer_norm_eps=float(bigs.get("layer_norm_eps", 1e-12)),
        hidden_dropout_prob=float(bigs.get("hidden_dropout_prob", 0.1)),
        initializer_range=float(bigs.get("initializer_range", 0.02)),
        pad_token_id=bigs.get("pad_token_id", 0), tie_word_embeddings=bool(bigs.get("tie_word_embeddings", True)),
        architectures=["MambaCodeForMaskedLM"], **optional)


def expected_bigs_shapes(bigs: dict) -> dict[str, tuple]:
    """Every tensor a BiGSForMaskedLM checkpoint must hold, with its shape (from the config alone)."""
    V, H, I, N = bigs["vocab_size"], bigs["hidden_size"], bigs["intermediate_size"], bigs["num_ssm"]
    T, P = int(bigs.get("type_vocab_size", 2)), bigs["max_position_embeddings"]
    shapes = {"bigs.embeddings.word_embeddings.weight": (V, H), "bigs.embeddings.position_embeddings.weight": (P, H),
              "bigs.embeddings.token_type_embeddings.weight": (T, H),
              "bigs.embeddings.LayerNorm.weight": (H,), "bigs.embeddings.LayerNorm.bias": (H,),
              "cls.predictions.transform.dense.weight": (H, H), "cls.predictions.transform.dense.bias": (H,),
              "cls.predictions.transform.LayerNorm.weight": (H,), "cls.predictions.transform.LayerNorm.bias": (H,),
              "cls.predictions.bias": (V,)}
    if not bigs.get("tie_word_embeddings", True):
        shapes["cls.predictions.decoder.weight"] = (V, H)
    out_in = {"dv": (I, H), "du_forward": (H, H), "du_backward": (H, H), "duc_forward": (H, H),
              "duc_backward": (H, H), "dol": (I, H), "do": (H, I)}
    for i in range(bigs["num_hidden_layers"]):
        p = f"bigs.encoder.layer.{i}."
        shapes[p + "LayerNorm.weight"] = shapes[p + "LayerNorm.bias"] = (H,)
        for name, (o, n) in out_in.items():
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (o, n), (o,)
        for s4 in DIRECTIONS:
            shapes[p + s4 + ".D"] = (1,)
            shapes[p + s4 + ".kernel.C"] = (N, 2)
            shapes[p + s4 + ".kernel.A_re"] = shapes[p + s4 + ".kernel.A_im"] = (N,)
            shapes[p + s4 + ".kernel.log_step"] = (1,)
    return shapes


def bigs_to_mambacode_state_dict(bigs: dict, weights: dict, src: str = "") -> tuple[dict, list[str]]:
    """(state dict of `MambaCodeForMaskedLM`, names of the dropped unused tensors) from BiGS `weights`.

    Keys of a bare `BiGSModel` (no `bigs.` prefix) are accepted as well. Raises ConversionError naming every
    missing tensor, every tensor whose shape disagrees with the config, and any tensor it does not know.
    """
    import torch

    if weights and not any(k.startswith(("bigs.", "cls.")) for k in weights):
        weights = {"bigs." + k: v for k, v in weights.items()}
    shapes = expected_bigs_shapes(bigs)
    where = f"{src}: " if src else ""
    missing = sorted(k for k in shapes if k not in weights)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConversionError(f"{where}{len(missing)} tensors are missing from the weights, e.g. "
                              f"{', '.join(missing[:3])}{more} (a BiGSForMaskedLM checkpoint has them all)")
    wrong = [f"{k} is {tuple(weights[k].shape)}, expected {shape}" for k, shape in shapes.items()
             if tuple(weights[k].shape) != shape]
    if wrong:
        raise ConversionError(f"{where}the config and the weights disagree: {'; '.join(wrong[:3])}"
                              f"{f' (and {len(wrong) - 3} more)' if len(wrong) > 3 else ''}")
    dropped = sorted(k for k in weights if k not in shapes and (k in UNUSED_KEYS or k.startswith(UNUSED_PREFIXES)
                                                               or k == "cls.predictions.decoder.bias"))
    tied = ["cls.predictions.decoder.weight"] if bigs.get("tie_word_embeddings", True) else []
    unknown = sorted(k for k in weights if k not in shapes and k not in dropped and k not in tied)
    if unknown:
        raise ConversionError(f"{where}tensors this converter does not know: {', '.join(unknown[:3])}"
                              f"{f' and {len(unknown) - 3} more' if len(unknown) > 3 else ''} (it converts "
                              "BiGSForMaskedLM / BiGSModel checkpoints)")
    for k in shapes:
        if not weights[k].is_floating_point():
            raise ConversionError(f"{where}{k} has dtype {weights[k].dtype}, expected floating point")
    w = {k: weights[k].float() for k in shapes}
    out = {"mambacode.embeddings.weight": w["bigs.embeddings.word_embeddings.weight"],
           "mambacode.position_embeddings.weight": w["bigs.embeddings.position_embeddings.weight"],
           "mambacode.token_type_embeddings.weight": w["bigs.embeddings.token_type_embeddings.weight"],
           "mambacode.embeddings_norm.weight": w["bigs.embeddings.LayerNorm.weight"],
           "mambacode.embeddings_norm.bias": w["bigs.embeddings.LayerNorm.bias"],
           "lm_head.dense.weight": w["cls.predictions.transform.dense.weight"],
           "lm_head.dense.bias": w["cls.predictions.transform.dense.bias"],
           "lm_head.norm.weight": w["cls.predictions.transform.LayerNorm.weight"],
           "lm_head.norm.bias": w["cls.predictions.transform.LayerNorm.bias"],
           "lm_head.bias": w["cls.predictions.bias"]}
    if not bigs.get("tie_word_embeddings", True):
        out["lm_head.decoder.weight"] = w["cls.predictions.decoder.weight"]
    for i in range(bigs["num_hidden_layers"]):
        src_p, dst_p = f"bigs.encoder.layer.{i}.", f"mambacode.layers.{i}."
        out[dst_p + "norm.weight"] = w[src_p + "LayerNorm.weight"]
        out[dst_p + "norm.bias"] = w[src_p + "LayerNorm.bias"]
        for name, ours in LAYER_LINEARS.items():
            out[dst_p + ours + ".weight"] = w[src_p + name + ".weight"]
            out[dst_p + ours + ".bias"] = w[src_p + name + ".bias"]
        # S4D parameters: (direction, kernel group = 1, ...) with forward = fs4, backward = bs4
        kernel = dst_p + "mixer.ssm.kernel."
        stack = lambda suffix: torch.stack([w[src_p + s4 + suffix] for s4 in DIRECTIONS])  # noqa: E731
        out[kernel + "log_step"] = stack(".kernel.log_step")  # (2, 1)
        out[kernel + "D"] = stack(".D")  # (2, 1)
        out[kernel + "A_real"] = stack(".kernel.A_re").unsqueeze(1)  # (2, 1, N)
        out[kernel + "A_imag"] = stack(".kernel.A_im").unsqueeze(1)
        out[kernel + "C"] = stack(".kernel.C").unsqueeze(1)  # (2, 1, N, 2)
    return out, dropped


# ------------------------------------------------------------------------------------------ writing
def _card(src: str, bigs: dict, config, dropped: list[str], tokenizer_files: list[str]) -> str:
    source = bigs.get("_name_or_path") or os.path.basename(os.path.normpath(src))
    lines = [
        "---", "library_name: transformers", "tags:", "- mambacode", "- bigs", "- state-space-model", "- custom_code",
        "pipeline_tag: fill-mask", "---", "",
        f"# {os.path.basename(os.path.normpath(src))} (BiGS, converted to MambaCode)", "",
        f"Converted exactly from the BiGS PyTorch checkpoint `{source}` with `mambacode convert bigs`. The forward "
        "is BiGS's term for term (float64 outputs agree with BiGS's own implementation to 1e-9 on the test "
        "fixture): one S4D kernel per direction shared by all channels, N complex modes without a factor 2, "
        "absolute position and token-type embeddings with a LayerNorm, no final LayerNorm, exact GELU, BiGS's "
        "MLM head.", "",
        f"Shape: {config.num_hidden_layers} layers x {config.hidden_size}, intermediate {config.intermediate_size}, "
        f"S4D state {config.state_size}, at most {config.max_position_embeddings} tokens, "
        f"{config.type_vocab_size} token types.", "",
        "**Padding.** BiGS does not mask padding (its backward branch reads the pad tokens first); MambaCode "
        "does. Unpadded inputs give BiGS's outputs exactly; in a right-padded batch each sequence gets its "
        "unpadded result.", "",
        "```python",
        "from transformers import AutoModelForMaskedLM",
        "model = AutoModelForMaskedLM.from_pretrained(PATH, trust_remote_code=True)  # or import mambacode first",
        "```", ""]
    if dropped:
        lines += ["Tensors of the source not used by the MLM model and dropped: "
                  + ", ".join(f"`{k}`" for k in dropped) + ".", ""]
    lines += [("Tokenizer files copied from the source: " + ", ".join(f"`{f}`" for f in tokenizer_files) + ".")
              if tokenizer_files else "The source folder had no tokenizer files; BiGS used `bert-base-cased`'s.", ""]
    return "\n".join(lines)


def convert_bigs(src: str, dst: str, overwrite: bool = False):
    """Convert the BiGS checkpoint folder `src` into a MambaCode folder `dst`; returns the loaded model.

    `dst` is written atomically (a temporary sibling folder renamed into place). An existing `dst` is
    replaced only with `overwrite=True`; `dst` may not be, contain or lie inside `src`.
    """
    from mambacode.atomic import atomic_directory
    from mambacode.modeling import MambaCodeForMaskedLM

    bigs = read_bigs_config(src)
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    if real_dst == real_src or real_dst.startswith(real_src + os.sep) or real_src.startswith(real_dst + os.sep):
        raise ConversionError(f"{dst}: the output may not be, contain or lie inside the source folder {src}")
    if os.path.lexists(dst) and not overwrite:
        raise ConversionError(f"{dst}: already exists (pass --overwrite to replace it)")
    if os.path.lexists(dst) and not os.path.isdir(dst):
        raise ConversionError(f"{dst}: exists and is not a folder")
    weights = read_weights(src)
    state, dropped = bigs_to_mambacode_state_dict(bigs, weights, src)
    config = mambacode_config(bigs)
    model = MambaCodeForMaskedLM(config)
    result = model.load_state_dict(state, strict=False)
    tied = {"lm_head.decoder.weight"} if config.tie_word_embeddings else set()
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:  # the mapping above is complete: this would be a converter bug
        raise RuntimeError(f"convert_bigs: incomplete mapping (missing {missing}, unexpected {result.unexpected_keys})")
    model.eval()
    tokenizer_files = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(src, f))]
    with atomic_directory(dst) as tmp:
        model.save_pretrained(tmp)
        for name in tokenizer_files:
            shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(_card(src, bigs, config, dropped, tokenizer_files))
    return model


CONVERTERS = {"bigs": convert_bigs}

__all__ = ["ConversionError", "convert_bigs", "bigs_to_mambacode_state_dict", "mambacode_config",
           "expected_bigs_shapes", "read_bigs_config", "read_weights", "CONVERTERS"]
