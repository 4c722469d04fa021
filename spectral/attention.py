"""The effective attention matrices of selective SSM layers on one input (the matrices the kernels average).

For a Mamba-2 head (MambaCode's `BiMamba2Mixer` or transformers' `Mamba2Mixer`) the scan is the matrix
    M[t, s] = (C_t . B_s) dt_s exp(A sum_{k=s+1..t} dt_k)      for s <= t (zero above the diagonal)
with dt and the decay folded in, so that the SSM's output is y = M x + D x (x: the scan's input, per head
channel). For a transformers Mamba-1 channel c the same role is played by
    alpha_c[t, s] = sum_n C_t[n] exp(A[c, n] sum_{k=s+1..t} dt_k[c]) dt_s[c] B_s[n].
Matrices are returned in the input's token order: a MambaCode backward direction scans the reversed
sequence, so its matrix is the scan-order matrix flipped on both axes (upper triangular: token t reads
tokens s >= t). `spectral.plots.plot_attention_matrices` draws a grid of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .kernels import DIRECTIONS, find_encoder, iter_batches, mamba2_attention, mixer_kind


@dataclass
class AttentionMatrix:
    """One head's (or Mamba-1 channel's) effective attention on one input, token order, float64."""

    layer: int
    direction: str  # 'forward' | 'backward'
    index: int  # head (Mamba-2) or channel (Mamba-1)
    kind: str  # 'mamba2' | 'mamba'
    matrix: np.ndarray  # (n, n): row = output token t, column = input token s

    @property
    def name(self) -> str:
        unit = "channel" if self.kind == "mamba" else "head"
        return f"layer{self.layer}/{self.direction}/{unit}{self.index}"


def _one_sequence(inputs, tokenizer, max_length):
    batches = iter_batches(inputs, tokenizer, 1, max_length)
    ids, mask = batches[0]["input_ids"][:1], batches[0]["attention_mask"][:1]
    valid = torch.nonzero(mask[0], as_tuple=False).flatten()
    if valid.numel() == 0:
        raise ValueError("the input has no valid tokens (its attention_mask is zero).")
    ids = ids[:, int(valid[0]):int(valid[-1]) + 1]  # the sequence alone: no padding to carry along
    return ids, torch.ones_like(ids)


def _pick(requested, available: int, what: str) -> list[int]:
    if requested is None:
        return list(range(available))
    out = []
    for i in requested:
        j = int(i)
        if not -available <= j < available:
            raise ValueError(f"{what} {j} out of range: the model has {what}s 0..{available - 1}.")
        out.append(j % available)
    return list(dict.fromkeys(out))


@torch.no_grad()
def attention_matrices(model, inputs, tokenizer=None, *, layers=None, heads=None, max_length: int | None = 64,
                       ) -> list[AttentionMatrix]:
    """Effective attention matrices of `model` on the first sequence of `inputs` (see module docstring).

    inputs: a code string (with `tokenizer`), input_ids, or a tokenized batch (its first row is used,
    padding removed). layers: layer numbers (default all); heads: head numbers (Mamba-2, default all) or
    channel numbers (transformers Mamba-1, default 8 evenly spaced channels). `max_length` truncates the
    input (the matrices are n x n). Supports MambaCode mixer='mamba2' and transformers Mamba / Mamba-2.
    """
    from .hf_mamba import (capture_mixer_inputs, find_hf_backbone, hf_selective_parameters,
                           mamba_channel_attention, select_channels)

    ids, mask = _one_sequence(inputs, tokenizer, max_length)
    out: list[AttentionMatrix] = []
    backbone = find_hf_backbone(model)
    if backbone is not None:
        kind = mixer_kind(backbone)
        mixer0 = backbone.layers[0].mixer
        chosen_layers = _pick(layers, len(backbone.layers), "layer")
        if kind == "mamba":
            units = select_channels(mixer0.intermediate_size, 8 if heads is None else list(heads))
        else:
            units = _pick(heads, mixer0.num_heads, "head")
        device = next(backbone.parameters()).device
        was_training = backbone.training
        backbone.eval()
        try:
            captured = capture_mixer_inputs(backbone, ids.to(device), mask.to(device))
        finally:
            backbone.train(was_training)
        for i in chosen_layers:
            u, layer_mask = captured[i]
            p = hf_selective_parameters(backbone.layers[i].mixer, u, layer_mask)
            if kind == "mamba":
                M = mamba_channel_attention(p["dt"][0][:, units], p["A"][units], p["B"][0], p["C"][0])
            else:
                G = p["B"].shape[2]
                per = mixer0.num_heads // G
                M = torch.stack([mamba2_attention(p["dt"][0][:, [h]], p["A"][[h]], p["B"][0, :, h // per],
                                                  p["C"][0, :, h // per])[0] for h in units])
            for j, unit in enumerate(units):
                out.append(AttentionMatrix(i, "forward", unit, kind, M[j].cpu().numpy()))
        return out
    encoder = find_encoder(model)
    if mixer_kind(encoder) != "mamba2":
        raise ValueError("attention matrices are defined here for selective layers (MambaCode mixer='mamba2', "
                         "transformers' Mamba / Mamba-2); an s4d layer's operator is the Toeplitz matrix of its "
                         "kernel: use extract_kernels.")
    H = encoder.layers[0].mixer.ssm.num_heads
    chosen_layers = _pick(layers, len(encoder.layers), "layer")
    units = _pick(heads, H, "head")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        hidden = encoder(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                         return_dict=True).hidden_states
    finally:
        encoder.train(was_training)
    pad = torch.ones_like(hidden[0][..., :1])
    for i in chosen_layers:
        layer = encoder.layers[i]
        p = layer.mixer.ssm.selective_parameters(*layer.mixer_inputs(hidden[i], pad))
        dt, A, B, C = (p[k].double() for k in ("dt", "A", "B", "C"))
        for d, direction in enumerate(DIRECTIONS):
            sel = [d * H + h for h in units]
            M = mamba2_attention(dt[0][:, sel], A[sel], B[0, :, d], C[0, :, d])  # scan order
            if d == 1:
                M = M.flip(1, 2)  # back to token order
            for j, h in enumerate(units):
                out.append(AttentionMatrix(i, direction, h, "mamba2", M[j].cpu().numpy()))
    return out


def token_labels(tokenizer, inputs, max_length: int | None = 64) -> list[str] | None:
    """The tokens of the sequence `attention_matrices` used (for axis labels), or None without a tokenizer."""
    if tokenizer is None or not hasattr(tokenizer, "convert_ids_to_tokens"):
        return None
    ids, _ = _one_sequence(inputs, tokenizer, max_length)
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids[0].tolist())]


def save_attention_matrices(matrices: list[AttentionMatrix], path: str, tokens: list[str] | None = None) -> str:
    """One .npz: an array per matrix named like 'layer0/forward/head1', plus the tokens when given."""
    from mambacode.atomic import atomic_path

    arrays = {m.name: m.matrix for m in matrices}
    if tokens is not None:
        arrays["tokens"] = np.asarray(tokens)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


__all__ = ["AttentionMatrix", "attention_matrices", "token_labels", "save_attention_matrices"]
