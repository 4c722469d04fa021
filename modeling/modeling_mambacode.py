"""MambaCode models: the BiGS/CodeSSM layer around either SSM mixer, the encoder, and task heads.

This file and its relative imports are what `save_pretrained` copies next to the weights for
`trust_remote_code` loading, so it depends only on torch, transformers and (optionally) mamba-ssm.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .checksums import CHECKSUM_FILE, DamagedWeightsError, verify_folder, write_checksums
from .configuration_mambacode import MambaCodeConfig
from .mamba2 import BiMamba2Mixer
from .s4d import S4DKernel, S4DMixer
from .sentence_transformers_files import SENTENCE_TRANSFORMERS_TAGS, write_sentence_transformers_files
from .spectral_anchor import NO_ANCHOR, SpectralAnchor

# auto class -> class name, written into every saved config so any Auto* class loads the folder remotely
AUTO_MAP = {
    "AutoConfig": "configuration_mambacode.MambaCodeConfig",
    "AutoModel": "modeling_mambacode.MambaCodeForRetrieval",
    "AutoModelForMaskedLM": "modeling_mambacode.MambaCodeForMaskedLM",
    "AutoModelForTokenClassification": "modeling_mambacode.MambaCodeForTokenClassification",
    "AutoModelForSequenceClassification": "modeling_mambacode.MambaCodeForSequenceClassification",
}


# ---------------------------------------------------------------------------------------------- outputs
@dataclass
class MambaCodeModelOutput(ModelOutput):
    """Encoder output. `hidden_states` = (embeddings, layer 1, ..., layer n after the final norm)."""

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MambaCodeRetrievalOutput(ModelOutput):
    """Bi-encoder output: the encoder's token states of the first input, its L2-normalised `embeddings`,
    `code_embeddings` of the second input, their similarity `logits` and the in-batch InfoNCE `loss` when
    both are given.

    The token states come first (after the loss), as in transformers' encoders: `output[0]` without a loss
    is `last_hidden_state`, which the feature-extraction pipeline returns.
    """

    loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    code_embeddings: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------- layers
class ShortConv(nn.Module):
    """The high-frequency path: a grouped 'same'-padded 1-D convolution per direction, in one conv call.

    Channels [0, d) of `conv` belong to the forward direction, [d, 2d) to the backward one, whose taps are
    read in reversed-sequence order (it is the forward computation on the reversed sequence, like its
    SSM). The output is scaled per channel by `scale` (2, d), initialised to zero so training starts from
    the plain SSM layer.
    """

    def __init__(self, config: MambaCodeConfig):
        super().__init__()
        self.hidden_size = d = config.hidden_size
        self.groups = config.hf_conv_groups
        kernel_size = config.hf_conv_kernel_size
        self.conv = nn.Conv1d(2 * d, 2 * d, kernel_size, groups=2 * self.groups, padding=kernel_size // 2, bias=False)
        self.scale = nn.Parameter(torch.zeros(2, d))

    def forward(self, u_f: torch.Tensor, u_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.hidden_size
        w = self.conv.weight  # (2d, d / groups, k)
        # the per-channel output scale is folded into the taps (no pass over the activations for it)
        w_f = w[:d] * self.scale[0].view(d, 1, 1)
        w_b = w[d:].flip(-1) * self.scale[1].view(d, 1, 1)
        return self._conv(u_f, w_f), self._conv(u_b, w_b)

    def _conv(self, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """One direction's grouped 'same' convolution of u (B, L, d) along L, read and written in place.

        (B, L, d) is the channels-last layout of a (B, d, 1, L) image, so conv2d runs on it without the
        two transposing copies a conv1d over (B, d, L) needs (they made the path cost 28% of a bf16 step).
        """
        batch, length, d = u.shape
        x = u.view(batch, 1, length, d).permute(0, 3, 1, 2)  # (B, d, 1, L), channels-last strides
        y = F.conv2d(x, w.to(x.dtype).unsqueeze(2), padding=(0, self.conv.padding[0]), groups=self.groups)
        return y.permute(0, 2, 3, 1).reshape(batch, length, d)


class BidirectionalSSM(nn.Module):
    """The forward SSM on u_f and the backward SSM on u_b reversed (plus the optional HF path).

    Inputs and outputs are (B, L, d) in the original order. The inputs must be zero at padded positions
    (the layer ensures it): then a right-padded batch gives each sequence exactly its unpadded result in
    both directions, because padding only ever follows (forward) or precedes (backward, in its scan
    order) the real tokens of a causal scan and contributes nothing.
    """

    def __init__(self, config: MambaCodeConfig, layer_idx: int):
        super().__init__()
        mixer_class = S4DMixer if config.mixer == "s4d" else BiMamba2Mixer
        self.ssm = mixer_class(config, layer_idx)
        self.short_conv = ShortConv(config) if config.layer_has_hf_conv(layer_idx) else None

    def forward(self, u_f: torch.Tensor, u_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_f, y_b = self.ssm(u_f, u_b)
        if self.short_conv is not None:
            h_f, h_b = self.short_conv(u_f, u_b)
            y_f, y_b = y_f + h_f, y_b + h_b
        return y_f, y_b


class GeluGate(torch.autograd.Function):
    """gelu(a) * gelu(b), saving only a and b: the activations are recomputed in backward.

    The layer's gate `GELU(W_ol z) * GELU(W_v h)` is its widest tensor (intermediate_size per token);
    autograd would keep four such tensors alive per layer, this keeps two.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return F.gelu(a) * F.gelu(b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return gelu_gate_grads(grad, a, b, ctx.needs_input_grad[:2])


def gelu_gate_grads(grad, a, b, needs=(True, True), gelu_a=None, gelu_b=None):
    """The gradients of gelu(a) * gelu(b) for the upstream `grad`, each None where not needed.

    d/da gelu(a) gelu(b) = gelu'(a) gelu(b): one gelu (unless the caller has it: `gelu_a`, `gelu_b`) and one
    fused gelu_backward per input, and no recomputed product (autograd.grad through the forward graph would
    recompute it and throw it away).
    """
    grad_a = grad_b = None
    if needs[0]:
        grad_a = torch.ops.aten.gelu_backward(grad * (F.gelu(b) if gelu_b is None else gelu_b), a)
    if needs[1]:
        grad_b = torch.ops.aten.gelu_backward(grad * (F.gelu(a) if gelu_a is None else gelu_a), b)
    return grad_a, grad_b


class GeluGateLinear(torch.autograd.Function):
    """linear(gelu(a) * gelu(b), weight, bias) saving only a, b and the weight.

    The gate's output is as wide as a and b and would otherwise be saved for the weight's gradient; here
    it is recomputed in backward (two GELUs and a product). Measured: peak 670 vs 695 MiB for an s4d
    training step at L = 4,096 under bf16 autocast (width 256, 4 layers), at unchanged speed within noise.
    Under autocast the matmuls run in the autocast dtype as `F.linear` would, and the weight's gradient
    is returned in its own dtype.
    """

    @staticmethod
    def forward(ctx, a, b, weight, bias):
        ctx.save_for_backward(a, b, weight)
        ctx.compute_dtype, ctx.has_bias = gate_dtype(a), bias is not None
        return gelu_gate_linear(a, b, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        a, b, weight = ctx.saved_tensors
        dtype = ctx.compute_dtype
        grad_out = grad_out.to(dtype)
        flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_a = grad_b = grad_w = grad_bias = None
        ga, gb = F.gelu(a), F.gelu(b)  # the gate's factors, recomputed once for both gradients
        if ctx.needs_input_grad[2]:
            grad_w = (flat.t() @ (ga * gb).to(dtype).reshape(flat.shape[0], -1)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = flat.sum(0, dtype=torch.float32).to(weight.dtype)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_gate = (grad_out @ weight.to(dtype)).to(a.dtype)
            grad_a, grad_b = gelu_gate_grads(grad_gate, a, b, ctx.needs_input_grad[:2], ga, gb)
        return grad_a, grad_b, grad_w, grad_bias


def gate_dtype(a: torch.Tensor) -> torch.dtype:
    """The dtype the gate's projection runs in: the autocast dtype under autocast, else a's."""
    return torch.get_autocast_dtype(a.device.type) if torch.is_autocast_enabled(a.device.type) else a.dtype


def gelu_gate_linear(a, b, weight, bias, in_place: bool = False) -> torch.Tensor:
    """linear(gelu(a) * gelu(b), weight, bias) in `gate_dtype(a)`: `GeluGateLinear`'s forward. `in_place` (no
    autograd; a and b are the caller's to overwrite) computes the gate in a's memory: the same values, without
    three fresh (tokens x intermediate_size) tensors."""
    if in_place:
        gate = torch.ops.aten.gelu_(a).mul_(torch.ops.aten.gelu_(b))
    else:
        gate = F.gelu(a) * F.gelu(b)
    dtype = gate_dtype(a)
    return F.linear(gate.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))


class MambaCodeLayer(GradientCheckpointingLayer):
    """One BiGS/CodeSSM layer (PAPER.md section 2): pre-norm, gated, multiplicative direction merge."""

    def __init__(self, config: MambaCodeConfig, layer_idx: int):
        super().__init__()
        d, inner = config.hidden_size, config.intermediate_size
        self.merge = config.direction_merge
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.proj_v = nn.Linear(d, inner)
        self.proj_uf = nn.Linear(d, d)
        self.proj_ub = nn.Linear(d, d)
        self.mixer = BidirectionalSSM(config, layer_idx)
        self.proj_cf = nn.Linear(d, d)
        self.proj_cb = nn.Linear(d, d)
        self.proj_ol = nn.Linear(d, inner)
        self.proj_o = nn.Linear(inner, d)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _directions(self, h: torch.Tensor, mask: torch.Tensor | None,
                    in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        u_f = self._gelu(self.proj_uf(h), in_place and type(self.proj_uf) is nn.Linear)
        u_b = self._gelu(self.proj_ub(h), in_place and type(self.proj_ub) is nn.Linear)
        if mask is not None:  # zero padded positions before the sequence mix (padding invariance)
            u_f = u_f * mask
            u_b = u_b * mask
        return u_f, u_b

    @staticmethod
    def _gelu(x: torch.Tensor, in_place: bool) -> torch.Tensor:
        return torch.ops.aten.gelu_(x) if in_place else F.gelu(x)

    def mixer_inputs(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None):
        """(u_f, u_b): what this layer's sequence mixer receives for the layer input `hidden_states`.

        `mask` is (B, L, 1) in the states' dtype, or None. Spectral analysis feeds these to
        `mixer.ssm.selective_parameters` to read the input-dependent Mamba-2 kernels.
        """
        return self._directions(self.norm(hidden_states), mask)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(hidden_states)
        if torch.is_autocast_enabled(h.device.type):  # cast once for the three projections that read h
            h = h.to(torch.get_autocast_dtype(h.device.type))  # (autocast would cast it for each: same values)
        # without autograd, the activations of fresh Linear outputs are computed in their memory (same values):
        # on CPU a fresh large tensor costs page faults on every call (measured: a third of a long batch's time)
        in_place = not torch.is_grad_enabled()
        u_f, u_b = self._directions(h, mask, in_place)
        y_f, y_b = self.mixer(u_f, u_b)
        a, b = self.proj_cf(y_f), self.proj_cb(y_b)
        if self.merge == "mul":
            z = a.mul_(b) if in_place and type(self.proj_cf) is nn.Linear else a * b
        else:
            z = a.add_(b) if in_place and type(self.proj_cf) is nn.Linear else a + b
        gate_in = self.proj_ol(z), self.proj_v(h)  # GELU(W_ol z) * GELU(W_v h), then W_o
        if type(self.proj_o) is nn.Linear:  # a plain Linear: fused, the gate is recomputed in backward
            if in_place and type(self.proj_ol) is nn.Linear and type(self.proj_v) is nn.Linear:
                out = gelu_gate_linear(*gate_in, self.proj_o.weight, self.proj_o.bias, in_place=True)
            else:
                out = GeluGateLinear.apply(*gate_in, self.proj_o.weight, self.proj_o.bias)
        else:  # an adapter (LoRA) wraps W_o: call it
            out = self.proj_o(GeluGate.apply(*gate_in))
        return hidden_states + self.dropout(out)


# ---------------------------------------------------------------------------------------------- base
class MambaCodePreTrainedModel(PreTrainedModel):
    config_class = MambaCodeConfig
    config: MambaCodeConfig
    base_model_prefix = "mambacode"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MambaCodeLayer"]
    # a recorded anchor in a checkpoint loaded with the regulariser off is not needed: no warning
    _keys_to_ignore_on_load_unexpected = [r"spectral_anchor\."]
    # Trainer reads this before looking for **kwargs in forward: our losses are per-batch means (plus the
    # spectral penalty once per batch), so Trainer must divide them by the gradient-accumulation steps itself
    # and not hand `num_items_in_batch` in (a forward given it normalises by it, see `_label_loss`)
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (S4DKernel, BiMamba2Mixer)):
            module.reset_parameters()
        elif isinstance(module, SpectralAnchor):  # not in the checkpoint: "not recorded"
            for buffer in module.buffers():
                init.zeros_(buffer)
        elif isinstance(module, ShortConv):
            init.zeros_(module.scale)
        elif isinstance(module, MambaCodeMLMHead):
            init.zeros_(module.bias)
        elif isinstance(module, MambaCodeForRetrieval) and module.logit_scale is not None:
            init.constant_(module.logit_scale, math.log(1.0 / module.config.retrieval_temperature))

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also record every Auto* class in `auto_map`, so any of them loads the folder remotely, and write
        `checksums.sha256` (SHA-256 of every weight file) that `from_pretrained` verifies (plus the head's
        own files, see `_write_extra_files`)."""
        self.config.auto_map = dict(AUTO_MAP)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self._write_extra_files(os.fspath(save_directory))
            write_checksums(os.fspath(save_directory))
        return result

    def _write_extra_files(self, folder: str) -> None:
        """Files a head saves beside its weights (the retrieval head: sentence-transformers files)."""

    def _upload_modified_files(self, working_dir, *args, **kwargs):
        # save_pretrained(push_to_hub=True) uploads before it returns: write the extra files and checksums first
        self._write_extra_files(os.fspath(working_dir))
        write_checksums(os.fspath(working_dir))
        return super()._upload_modified_files(working_dir, *args, **kwargs)

    def _check_extra(self, kwargs: dict, allowed: tuple = ("output_attentions",)) -> None:
        """TypeError naming any keyword argument a forward does not know (a misspelt `attention_maks` would
        otherwise be dropped without a word); `output_attentions` (which peft passes) must be None or False."""
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            import inspect

            known = [n for n, p in inspect.signature(self.forward).parameters.items()
                     if p.kind is not inspect.Parameter.VAR_KEYWORD] + list(allowed)
            raise TypeError(f"{type(self).__name__}.forward() got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, unknown))}; it accepts {', '.join(known)}.")
        if kwargs.get("output_attentions"):
            raise ValueError(f"{type(self).__name__}: output_attentions=True, but MambaCode models have no attention "
                             "(they mix tokens with SSMs); pass output_hidden_states=True for the layer outputs.")

    def _label_loss(self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        """Cross-entropy over the labelled positions (-100: none): their mean, or, given `num_items_in_batch`
        (the labelled positions of the whole accumulated batch), their sum divided by it."""
        flat = logits.reshape(-1, logits.shape[-1]).float()
        if num_items_in_batch is None:
            return F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100)
        total = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="sum")
        return total / torch.as_tensor(num_items_in_batch, device=total.device, dtype=total.dtype)

    @staticmethod
    def _batch_share(labels: torch.Tensor | None, num_items_in_batch) -> float | torch.Tensor | None:
        """This micro-batch's share of `num_items_in_batch` (labelled positions), for the per-batch penalty."""
        if labels is None or num_items_in_batch is None:
            return None
        return (labels != -100).sum() / torch.as_tensor(num_items_in_batch, device=labels.device)

    def _return(self, output: ModelOutput, return_dict: bool | None):
        """`output`, or its tuple of non-None fields when `return_dict` (default: config.return_dict) is False."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, verify_weights: bool = True, **kwargs):
        """transformers' `from_pretrained`, after checking the folder's weight files (`verify_weights=True`).

        Local folders are checked before loading, Hub downloads after (in their cache folder): a truncated
        or malformed `.safetensors` file or a hash that differs from `checksums.sha256` raises
        `DamagedWeightsError` naming the file; a folder without `checksums.sha256` loads with a warning
        (an empty or malformed one, or one naming files outside the folder, is an error). Loaded weights
        holding NaN or inf are refused (`DamagedWeightsError` naming the tensor).
        """
        if not verify_weights or pretrained_model_name_or_path is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        subfolder = kwargs.get("subfolder") or ""
        folder = os.path.join(os.fspath(pretrained_model_name_or_path), subfolder)
        local = os.path.isdir(folder)
        if local:
            verify_folder(folder)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as exc:
            hub_folder = None if local else _hub_folder(pretrained_model_name_or_path, kwargs)
            if hub_folder is not None:
                try:
                    verify_folder(hub_folder, listed_must_exist=False)
                except DamagedWeightsError as damaged:
                    raise damaged from exc
            raise
        if not local:
            hub_folder = _hub_folder(pretrained_model_name_or_path, kwargs)
            if hub_folder is not None:
                verify_folder(hub_folder, listed_must_exist=False)
        check_finite(loaded[0] if isinstance(loaded, tuple) else loaded, os.fspath(pretrained_model_name_or_path))
        return loaded

    # ------------------------------------------------------------------ spectral anchor
    def record_spectral_anchor(self) -> None:
        """Record the current SSM kernel spectra as the spectral anchor (the regulariser's reference).

        Call it once, after loading the weights to anchor to and setting `config.spectral_anchor_weight > 0`.
        The anchor is kept as buffers of the encoder (`spectral_anchor.*` in the state dict), so
        `save_pretrained`, `from_pretrained` and Trainer checkpoints carry it.
        """
        config = self.config
        if not config.spectral_anchor_weight > 0:
            raise ValueError("record_spectral_anchor: config.spectral_anchor_weight is 0, so the regulariser is "
                             "off; set config.spectral_anchor_weight > 0 first.")
        config.validate_fields()
        encoder = self.base_model
        if encoder.spectral_anchor is None or encoder.spectral_anchor.length != config.spectral_anchor_length:
            weight = encoder.embeddings.weight
            dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
            encoder.spectral_anchor = SpectralAnchor(config).to(device=weight.device, dtype=dtype)
        encoder.spectral_anchor.record(encoder.layers)

    def has_spectral_anchor(self) -> bool:
        """Whether a spectral anchor is recorded (set by `record_spectral_anchor` or loaded with the weights)."""
        anchor = self.base_model.spectral_anchor
        return anchor is not None and bool(anchor.recorded)

    def spectral_anchor_penalty(self) -> torch.Tensor:
        """Mean weighted squared log-magnitude drift of every SSM kernel from the anchor (0 at the anchor)."""
        encoder = self.base_model
        if encoder.spectral_anchor is None:
            raise ValueError(NO_ANCHOR)
        if encoder.spectral_anchor.length != self.config.spectral_anchor_length:
            raise ValueError(f"the spectral anchor was recorded at length {encoder.spectral_anchor.length} but "
                             f"config.spectral_anchor_length={self.config.spectral_anchor_length}; call "
                             "model.record_spectral_anchor() again.")
        return encoder.spectral_anchor.penalty(encoder.layers, self.config.spectral_anchor_weighting)

    def _add_spectral_anchor(self, loss: torch.Tensor | None, share=None) -> torch.Tensor | None:
        """In training with config.spectral_anchor_weight > 0: loss + weight * penalty (no anchor: error);
        times `share` (`_batch_share`) when the loss is a share of an accumulated batch's."""
        weight = self.config.spectral_anchor_weight
        if weight <= 0 or not self.training:
            return loss
        if not self.has_spectral_anchor():
            raise ValueError(NO_ANCHOR)
        if loss is None:
            return loss
        penalty = weight * self.spectral_anchor_penalty().to(loss.dtype)
        return loss + (penalty if share is None else penalty * share)



def check_finite(model: nn.Module, where: str) -> None:
    """DamagedWeightsError naming the first floating-point parameter or buffer of `model` holding NaN or inf."""
    for kind, tensors in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in tensors:
            if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise DamagedWeightsError(f"{where}: {kind} {name} holds {bad} non-finite value(s) (NaN or inf) of "
                                          f"{tensor.numel()}; refusing to load damaged (or diverged) weights.")


def _hub_folder(repo_id, kwargs) -> str | None:
    """The local cache folder of a Hub download, with its checksum file fetched if the repo has one."""
    from transformers.utils import cached_file

    names = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
    hub_kwargs = {k: kwargs[k] for k in names if kwargs.get(k) is not None}
    for name in (CHECKSUM_FILE, "config.json"):
        try:
            path = cached_file(repo_id, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub_kwargs)
        except Exception:  # not a resolvable repo id: nothing to check
            return None
        if path:
            return os.path.dirname(path)
    return None


def validate_inputs(config: MambaCodeConfig, vocab_size: int, input_ids, attention_mask, inputs_embeds,
                    token_type_ids=None) -> bool:
    """Check a forward's inputs once, at the entry point, with one ValueError per problem.

    Shapes, dtypes and lengths are checked on the host; the id range and the mask values need the data,
    so they are reduced on the device and read back in one transfer. Returns whether the mask pads
    anything (no padding: the layers skip the masking).
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds.")
    name, x = ("input_ids", input_ids) if input_ids is not None else ("inputs_embeds", inputs_embeds)
    dims = "(batch, length)" if input_ids is not None else "(batch, length, hidden_size)"
    if not isinstance(x, torch.Tensor) or x.dim() != len(dims.split(",")):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape {dims}, got {got}.")
    batch, length = x.shape[:2]
    if batch == 0:
        raise ValueError(f"{name} has an empty batch (shape {tuple(x.shape)}): pass at least one sequence.")
    if length == 0:
        raise ValueError(f"{name} has length 0 (shape {tuple(x.shape)}): every sequence needs at least one "
                         "token (a tokenizer without special tokens gives none for an empty string).")
    limit = config.max_position_embeddings
    if length > limit:
        raise ValueError(f"{name} has length {length} but this model accepts at most max_position_embeddings="
                         f"{limit} tokens; truncate in the tokenizer (truncation=True, max_length={limit}) or "
                         "raise config.max_position_embeddings.")
    if input_ids is not None and input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids has dtype {input_ids.dtype}: token ids must be an integer tensor "
                         "(torch.long), as the tokenizer returns them.")
    if inputs_embeds is not None and (not inputs_embeds.is_floating_point()
                                      or inputs_embeds.shape[-1] != config.hidden_size):
        raise ValueError(f"inputs_embeds must be floating point with hidden_size={config.hidden_size} features, "
                         f"got dtype {inputs_embeds.dtype} and shape {tuple(inputs_embeds.shape)}.")
    stats = []
    if input_ids is not None:
        stats += [input_ids.min(), input_ids.max()]
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (batch, length):
            got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"attention_mask has shape {got} but {name} has (batch, length) = {(batch, length)}: "
                             "pass one 0/1 entry per token.")
        stats += [((attention_mask != 0) & (attention_mask != 1)).any(), (attention_mask == 0).any()]
    if token_type_ids is not None:
        if not isinstance(token_type_ids, torch.Tensor) or tuple(token_type_ids.shape) != (batch, length):
            got = tuple(token_type_ids.shape) if isinstance(token_type_ids, torch.Tensor) else type(token_type_ids).__name__
            raise ValueError(f"token_type_ids has shape {got} but {name} has (batch, length) = {(batch, length)}.")
        stats += [token_type_ids.min(), token_type_ids.max()]
    if not stats:
        return False
    values = torch.stack([t.to(device=stats[0].device, dtype=torch.int64) for t in stats]).tolist()  # one sync
    if token_type_ids is not None:
        low, high = values[-2:]
        values = values[:-2]
        types = config.type_vocab_size
        if low < 0 or high >= max(types, 1):
            allowed = (f"ids 0..{types - 1} (type_vocab_size={types})" if types else
                       "only zeros: this model has no token-type embeddings (type_vocab_size=0)")
            raise ValueError(f"token_type_ids holds ids in [{low}, {high}] but the model accepts {allowed}.")
        if not values:
            return False
    if input_ids is not None:
        low, high = values[:2]
        if low < 0 or high >= vocab_size:
            raise ValueError(f"input_ids holds ids in [{low}, {high}] but the vocabulary has {vocab_size} entries "
                             f"(valid ids 0..{vocab_size - 1}); was the input tokenized with another tokenizer?")
    if attention_mask is not None:
        bad_values, padded = values[-2:]
        if bad_values:
            raise ValueError("attention_mask holds values other than 0 and 1 (e.g. NaN, 2 or 0.5): 1 marks a "
                             "token, 0 padding.")
        return bool(padded)
    return False


class MambaCodeModel(MambaCodePreTrainedModel):
    """The bare encoder: token embeddings, SSM layers, final LayerNorm.

    MambaCode models have no position embeddings (the SSM encodes order). Converted BiGS checkpoints add
    what BiGS has (config fields): absolute position and token-type tables, a LayerNorm over the summed
    embeddings, and no final LayerNorm. Each is a sibling module (None when off), so existing checkpoints
    keep their keys.
    """

    def __init__(self, config: MambaCodeConfig):
        super().__init__(config)
        d = config.hidden_size
        self.embeddings = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.position_embeddings = (nn.Embedding(config.max_position_embeddings, d)
                                    if config.position_embedding_type == "absolute" else None)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d) if config.type_vocab_size else None
        self.embeddings_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.embedding_layer_norm else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(MambaCodeLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm_f = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.final_layer_norm else None
        # the regulariser's reference spectra (buffers, filled by record_spectral_anchor or a checkpoint)
        self.spectral_anchor = SpectralAnchor(config) if config.spectral_anchor_weight > 0 else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def embed_tokens(self, input_ids=None, inputs_embeds=None, token_type_ids=None) -> torch.Tensor:
        """The layer-0 input before dropout: token embeddings (+ position and token-type rows, LayerNorm)."""
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position_embeddings is not None:  # positions 0..L-1 of every (right-padded) sequence
            x = x + self.position_embeddings.weight[: x.shape[1]].to(x.dtype)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0].to(x.dtype)
            else:
                x = x + self.token_type_embeddings(token_type_ids.long()).to(x.dtype)
        if self.embeddings_norm is not None:
            x = self.embeddings_norm(x)
        return x

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=None,
                return_dict=None, token_type_ids=None, **kwargs) -> MambaCodeModelOutput:
        self._check_extra(kwargs)
        padded = validate_inputs(self.config, self.embeddings.num_embeddings, input_ids, attention_mask,
                                 inputs_embeds, token_type_ids)
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        inputs_embeds = self.embed_tokens(input_ids, inputs_embeds, token_type_ids)
        mask = attention_mask.to(inputs_embeds.dtype).unsqueeze(-1) if padded else None  # no padding: no masking
        x = self.dropout(inputs_embeds)
        all_hidden = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            x = layer(x, mask)
            if output_hidden_states and i < len(self.layers) - 1:
                all_hidden.append(x)
        if self.norm_f is not None:
            x = self.norm_f(x)
        if output_hidden_states:
            all_hidden.append(x)
        hidden = tuple(all_hidden) if output_hidden_states else None
        if not return_dict:
            return tuple(t for t in (x, hidden) if t is not None)
        return MambaCodeModelOutput(last_hidden_state=x, hidden_states=hidden)


_SURROGATE = re.compile("[\ud800-\udfff]")


def fix_surrogates(text: str) -> str:
    """`text` with surrogate pairs joined into their character and lone surrogates replaced by U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Pool token states (B, L, d) to (B, d), ignoring padding."""
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device, dtype=hidden.dtype)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


# ---------------------------------------------------------------------------------------------- heads
class MambaCodeMLMHead(nn.Module):
    def __init__(self, config: MambaCodeConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden):
        return self.decoder(self.norm(F.gelu(self.dense(hidden)))) + self.bias


class MambaCodeForMaskedLM(MambaCodePreTrainedModel):
    _tied_weights_keys = {"lm_head.decoder.weight": "mambacode.embeddings.weight"}

    def __init__(self, config: MambaCodeConfig):
        super().__init__(config)
        self.mambacode = MambaCodeModel(config)
        self.lm_head = MambaCodeMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, token_type_ids=None, num_items_in_batch=None,
                **kwargs) -> MaskedLMOutput:
        self._check_extra(kwargs)
        out = self.mambacode(input_ids, attention_mask, inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                             output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self._label_loss(logits, labels, num_items_in_batch)
        loss = self._add_spectral_anchor(loss, self._batch_share(labels, num_items_in_batch))
        return self._return(MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states), return_dict)


class MambaCodeForRetrieval(MambaCodePreTrainedModel):
    """Bi-encoder for code search: one shared encoder for queries and code, pooled and L2-normalised.

    With both inputs given, the loss is the in-batch InfoNCE (query i's positive is code i; every other
    code in the batch is a negative) at temperature `config.retrieval_temperature` (a learnable
    log-inverse temperature if `config.learnable_temperature`).
    """

    def __init__(self, config: MambaCodeConfig):
        super().__init__(config)
        self.mambacode = MambaCodeModel(config)
        self.logit_scale = (nn.Parameter(torch.tensor(math.log(1.0 / config.retrieval_temperature)))
                            if config.learnable_temperature else None)
        self.post_init()

    def get_input_embeddings(self):
        return self.mambacode.embeddings

    def temperature(self) -> torch.Tensor:
        if self.logit_scale is not None:
            return torch.exp(-self.logit_scale.clamp(max=math.log(100.0)))
        return torch.tensor(self.config.retrieval_temperature)

    def embed(self, input_ids, attention_mask=None, output_hidden_states=None, token_type_ids=None,
              inputs_embeds=None):
        out = self.mambacode(input_ids, attention_mask, inputs_embeds=inputs_embeds,
                             output_hidden_states=output_hidden_states, token_type_ids=token_type_ids, return_dict=True)
        pooled = pool(out.last_hidden_state, attention_mask, self.config.pooling)
        return F.normalize(pooled.float(), dim=-1), out

    def forward(self, input_ids=None, attention_mask=None, code_input_ids=None, code_attention_mask=None,
                output_hidden_states=None, return_dict=None, return_loss: bool | None = True,
                token_type_ids=None, code_token_type_ids=None, inputs_embeds=None,
                **kwargs) -> MambaCodeRetrievalOutput:
        """Embed `input_ids` (and `code_input_ids` if given). With both, `logits` are the scaled similarities
        and, unless `return_loss=False`, `loss` is the in-batch InfoNCE. `return_loss` defaults to True as in
        CLIP, so `Trainer.evaluate()` reports `eval_loss` although the batches carry no labels. `inputs_embeds`
        (batch, length, hidden_size) stands in for `input_ids`. An unknown keyword argument is a TypeError."""
        self._check_extra(kwargs)
        emb, out = self.embed(input_ids, attention_mask, output_hidden_states, token_type_ids, inputs_embeds)
        code_emb = logits = loss = None
        if code_input_ids is not None:
            code_emb, _ = self.embed(code_input_ids, code_attention_mask, token_type_ids=code_token_type_ids)
            if len(code_emb) != len(emb):
                raise ValueError(f"code_input_ids has {len(code_emb)} rows but input_ids has {len(emb)}: the "
                                 "in-batch loss pairs query i with code i.")
            logits = emb @ code_emb.T / self.temperature().to(emb.device)
            if return_loss is not False:
                loss = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))
        loss = self._add_spectral_anchor(loss)
        output = MambaCodeRetrievalOutput(loss=loss, last_hidden_state=out.last_hidden_state, embeddings=emb,
                                          code_embeddings=code_emb, logits=logits, hidden_states=out.hidden_states)
        return self._return(output, return_dict)

    def _write_extra_files(self, folder: str) -> None:
        write_sentence_transformers_files(folder, self.config)

    @torch.no_grad()
    def encode(self, texts, tokenizer, batch_size: int = 32, max_length: int | None = None,
               show_progress_bar: bool | None = None, device=None, max_tokens: int | None = None) -> torch.Tensor:
        """Embed `texts` -> (n, d) float tensor of L2-normalised embeddings, in the input order.

        Texts are sorted by tokenized length so that each batch carries little padding. Inputs longer than
        `max_length` (default and upper bound: `config.max_position_embeddings`; must be >= 1) are truncated
        to their first tokens. `max_tokens` caps a batch's padded tokens (rows x its longest text; a longer
        text goes alone): long texts then go in fewer rows than `batch_size`. On CPU, batches of about 4,096
        tokens measured fastest for long texts (1.5x over 16,384: the activations of a large batch are fresh
        memory on every call). `encode([])` is an empty (0, d) tensor. Lone surrogates (e.g. "\\ud800", which
        no UTF-8 tokenizer accepts) become U+FFFD, and surrogate pairs are joined into their character. A text
        that tokenizes to no tokens at all gets a zero vector.
        """
        for name, value in (("max_length", max_length), ("batch_size", batch_size), ("max_tokens", max_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                none = {"max_length": " or None (= max_position_embeddings)", "max_tokens": " or None (no cap)"}
                raise ValueError(f"encode: {name}={value!r} is invalid: expected a positive integer"
                                 f"{none.get(name, '')}.")
        limit = self.config.max_position_embeddings
        max_length = limit if max_length is None else min(max_length, limit)
        return encode_texts(self, tokenizer, texts, max_length, batch_size, show_progress_bar, device,
                            max_tokens=max_tokens)


def length_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Batches of indices into `lengths` (token counts), longest first (ties in input order), zero-length
    entries left out: up to `batch_size` each, and with `max_tokens`, at most that many padded tokens (rows x
    the batch's longest, which is its first), one row at least."""
    order = sorted((i for i in range(len(lengths)) if lengths[i] > 0), key=lambda i: -lengths[i])
    batches, start = [], 0
    while start < len(order):
        rows = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // lengths[order[start]]))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def _padded(rows: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id lists padded to the longest, as a tokenizer's `padding=True`."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(longest - len(r), longest) if left else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


@torch.no_grad()
def encode_texts(model, tokenizer, texts, max_length: int, batch_size: int = 32,
                 show_progress_bar: bool | None = None, device=None, desc: str = "encode",
                 max_tokens: int | None = None) -> torch.Tensor:
    """The one embedding loop (`encode`, whole-pool evaluation): (n, d) L2-normalised float32 embeddings of
    `texts` by `model.embed(input_ids, attention_mask)` (any bi-encoder with that method), input order kept.

    Texts are sorted by tokenized length (longest first, ties in input order) and cut into batches of
    `batch_size` (and at most `max_tokens` padded tokens, see `length_batches`), each padded to its longest
    text; texts are truncated to `max_length` tokens. Each text is tokenized once (the batches pad those ids
    as the tokenizer's `padding=True` would, with its pad token and side). Texts with no tokens get a zero
    vector; surrogates are fixed as `fix_surrogates` does. The progress bar shows by default when there is
    more than one batch.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"encode: texts[{i}] is a {type(t).__name__}, expected a string.")
    result = torch.zeros(len(texts), model.config.hidden_size)
    if not texts:
        return result
    texts = [fix_surrogates(t) for t in texts]
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    batches = length_batches([len(ids) for ids in encoded], batch_size, max_tokens)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    if show_progress_bar is None:
        show_progress_bar = len(batches) > 1
    steps = batches
    try:
        from tqdm.auto import tqdm

        steps = tqdm(batches, desc=desc, disable=not show_progress_bar, leave=False)
    except ImportError:
        pass
    try:
        for idx in steps:
            if pad_id is None:  # no pad token: the tokenizer's own call says what it needs
                batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt")
                ids, mask = batch["input_ids"], batch["attention_mask"]
            else:
                ids, mask = _padded([encoded[i] for i in idx], pad_id, left)
            emb, _ = model.embed(ids.to(device), mask.to(device))
            result[idx] = emb.float().cpu()
    finally:
        model.train(was_training)
    return result


class _MambaCodeClassifier(MambaCodePreTrainedModel):
    """Encoder + dropout + linear classifier: the shared body of the token and sequence heads."""

    def __init__(self, config: MambaCodeConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.mambacode = MambaCodeModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()


class MambaCodeForTokenClassification(_MambaCodeClassifier):

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, token_type_ids=None, num_items_in_batch=None,
                **kwargs) -> TokenClassifierOutput:
        self._check_extra(kwargs)
        out = self.mambacode(input_ids, attention_mask, inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                             output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self._label_loss(logits, labels, num_items_in_batch)
        loss = self._add_spectral_anchor(loss, self._batch_share(labels, num_items_in_batch))
        return self._return(TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


class MambaCodeForSequenceClassification(_MambaCodeClassifier):

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_hidden_states=None, return_dict=None, token_type_ids=None, num_items_in_batch=None,
                **kwargs) -> SequenceClassifierOutput:
        self._check_extra(kwargs)
        out = self.mambacode(input_ids, attention_mask, inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                             output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(pool(out.last_hidden_state, attention_mask, self.config.pooling)))
        loss = None
        if labels is not None:
            problem = self.config.problem_type
            if problem is None:
                problem = ("regression" if self.num_labels == 1 else
                           "single_label_classification" if labels.dtype in (torch.long, torch.int) else
                           "multi_label_classification")
            if problem == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            elif problem == "single_label_classification":
                loss = self._label_loss(logits, labels, num_items_in_batch)
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
            if problem != "single_label_classification" and num_items_in_batch is not None:
                raise ValueError(f"num_items_in_batch applies to single-label classification only, not {problem!r}")
        share = self._batch_share(labels, num_items_in_batch) if num_items_in_batch is not None else None
        loss = self._add_spectral_anchor(loss, share)
        return self._return(SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


def count_parameters(config: MambaCodeConfig) -> int:
    """Exact parameter count of the bare encoder for `config`, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = MambaCodeModel(config)
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MambaCodePreTrainedModel",
    "MambaCodeModel",
    "MambaCodeForMaskedLM",
    "MambaCodeForRetrieval",
    "MambaCodeForTokenClassification",
    "MambaCodeForSequenceClassification",
    "MambaCodeModelOutput",
    "MambaCodeRetrievalOutput",
    "count_parameters",
    "encode_texts",
    "pool",
    "SENTENCE_TRANSFORMERS_TAGS",
]
