"""SSM-Interpret for transformers' own `MambaModel` / `Mamba2Model` (and their heads, e.g. `...ForCausalLM`).

These layers are causal (one scan direction): every record has direction "forward". Nothing here runs
transformers' scan for the numbers: a forward pre-hook on each mixer captures the mixer's actual input
(after the block's RMSNorm) and its padding mask on the real model, and the selective parameters are
recomputed from the mixer's weights in float64, exactly as the layer's slow torch path computes them:

    u <- u * mask;  in_proj(u) -> (x, gate) [Mamba-1] or (gate, xBC, dt) [Mamba-2]
    x (Mamba-2: xBC) <- act(causal depthwise conv1d(.)) * mask
    Mamba-1: (dt_r, B, C) = x_proj(x); dt = softplus(dt_proj(dt_r));   A = -exp(A_log)  (d_inner, N)
    Mamba-2: (x, B, C) = split(xBC);   dt = clamp(softplus(dt + dt_bias), time_step_limit);  A = -exp(A_log)  (H,)

The SSM then maps its input x (after the conv and the activation; the conv is a separate short causal filter,
not folded in, because the activation between them is nonlinear) to y = M x + D x, with

- Mamba-2, per head h (B, C shared by the heads of one group):
      M_h[t, s] = (C_t . B_s) dt_s[h] exp(A_h sum_{k=s+1..t} dt_k[h])                       (s <= t)
- Mamba-1, per channel c (every channel of d_inner has its own dt and its own N decay rates A[c, :]):
      alpha_c[t, s] = sum_n C_t[n] exp(sum_{k=s+1..t} dt_k[c] A[c, n]) dt_s[c] B_s[n]          (s <= t)

The effective kernel of a head / channel is row t of that matrix read by lag l = t - s, averaged over
positions and inputs (PAPER.md section 4; the rule of `kernels.mamba2_records`), with its spread and count.
Mamba-1 has d_inner channels (1536 in mamba-130m): `channels` picks which are recorded (default 16 evenly
spaced ones, first and last included; "all" for every channel); the record's `index` is the channel number,
so two checkpoints of one architecture pair up. With `include_conv=True` the layer's conv1d is recorded too
(kind "conv1d", like MambaCode's hf_conv): the dominant tap pattern of the x channels (index 0) and, for
Mamba-2, of the B/C channels (index 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import (KernelRecord, _Mamba2Accumulator, batched_lag_moments, dominant_taps, iter_batches,
                      mamba2_attention, valid_span)

HF_MIXERS = {"MambaMixer": "mamba", "Mamba2Mixer": "mamba2"}  # by class name, like MambaCode's mixers
DEFAULT_CHANNELS = 16


# ------------------------------------------------------------------------------------------ model access
def find_hf_backbone(model):
    """The module holding `.layers` of a transformers Mamba / Mamba-2 model (bare or with a head), or None."""
    candidates = [model]
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), torch.nn.Module):
        candidates.insert(0, getattr(model, prefix))
    for backbone in candidates:
        layers = getattr(backbone, "layers", None)
        if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
            continue
        kinds = {HF_MIXERS.get(type(getattr(layer, "mixer", None)).__name__) for layer in layers}
        if len(kinds) == 1 and None not in kinds:
            return backbone
    return None


def hf_mixer_kind(backbone) -> str:
    """'mamba' (Mamba-1) or 'mamba2'."""
    return HF_MIXERS[type(backbone.layers[0].mixer).__name__]


def select_channels(d_inner: int, channels=DEFAULT_CHANNELS) -> list[int]:
    """Mamba-1 channels to record: an int k (k evenly spaced, first and last included), 'all', or a list."""
    if isinstance(channels, str):
        text = channels.strip().lower()
        if text == "all":
            return list(range(d_inner))
        try:
            channels = int(text) if "," not in text else [int(c) for c in text.split(",") if c.strip()]
        except ValueError:
            raise ValueError(f"channels={channels!r} is invalid: expected a count, 'all' or a comma-separated "
                             "list of channel numbers.") from None
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if channels < 1:
            raise ValueError(f"channels={channels} is invalid: expected at least 1.")
        return sorted({int(round(c)) for c in np.linspace(0, d_inner - 1, min(int(channels), d_inner))})
    out = sorted({int(c) for c in channels})
    bad = [c for c in out if not 0 <= c < d_inner]
    if bad or not out:
        raise ValueError(f"channels {bad or '[]'} out of range: the Mamba layers have channels 0..{d_inner - 1}.")
    return out


@torch.no_grad()
def capture_mixer_inputs(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list:
    """[(u, mask)] per layer: the input each mixer received in a forward of the real model, and the padding
    mask it was given (None = no masking, as transformers passes for an unpadded batch)."""
    emb = backbone.get_input_embeddings()
    if input_ids.numel() and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < emb.num_embeddings:
        raise ValueError(f"input id {int(input_ids.max())} is outside the model's vocabulary ({emb.num_embeddings} "
                         "embeddings): the tokenizer does not belong to this checkpoint (pass its own tokenizer, "
                         "e.g. --tokenizer_name_or_path).")
    captured: list = [None] * len(backbone.layers)

    def hook(i):
        def pre_hook(module, args, kwargs):
            u = args[0] if args else kwargs["hidden_states"]
            captured[i] = (u.detach(), kwargs.get("attention_mask"))
        return pre_hook

    handles = [layer.mixer.register_forward_pre_hook(hook(i), with_kwargs=True)
               for i, layer in enumerate(backbone.layers)]
    try:
        backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    missing = [i for i, c in enumerate(captured) if c is None]
    if missing:
        raise RuntimeError(f"the forward pass never called the mixers of layers {missing}.")
    return captured


def causal_depthwise_conv(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """(b, n, ch) -> (b, n, ch): y[t] = bias + sum_j w[j] x[t - (k-1) + j], zeros before the start (float64)."""
    w = conv.weight.detach().to(x)
    b = None if conv.bias is None else conv.bias.detach().to(x)
    k = w.shape[-1]
    return F.conv1d(x.transpose(1, 2), w, b, padding=k - 1, groups=w.shape[0])[..., :x.shape[1]].transpose(1, 2)


def _linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight.detach().to(x), None if layer.bias is None else layer.bias.detach().to(x))


@torch.no_grad()
def hf_selective_parameters(mixer, u: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """The SSM's inputs of one transformers Mamba / Mamba-2 mixer for its input u (b, n, d), in float64.

    Mamba-1: x (b, n, d_inner), dt (b, n, d_inner) after softplus, A (d_inner, N), B, C (b, n, N), D (d_inner,),
    gate (b, n, d_inner). Mamba-2: x (b, n, H, P), dt (b, n, H), A (H,), B, C (b, n, G, N), D (H,),
    gate (b, n, H * P).
    """
    kind = HF_MIXERS.get(type(mixer).__name__)
    if kind is None:
        raise TypeError(f"{type(mixer).__name__} is not a transformers MambaMixer or Mamba2Mixer.")
    u = u.double()
    m = None if mask is None else mask.to(u)[..., None]
    if m is not None:
        u = u * m
    act = mixer.act
    if kind == "mamba":
        x, gate = _linear(u, mixer.in_proj).chunk(2, dim=-1)
        x = act(causal_depthwise_conv(x, mixer.conv1d))
        if m is not None:
            x = x * m
        R, N = mixer.time_step_rank, mixer.ssm_state_size
        dt_r, B, C = _linear(x, mixer.x_proj).split([R, N, N], dim=-1)
        dt = F.softplus(_linear(dt_r, mixer.dt_proj))
        A = -torch.exp(mixer.A_log.detach().to(u))
        return {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": mixer.D.detach().to(u), "gate": gate}
    b, n, _ = u.shape
    I, H, P, G, N = (mixer.intermediate_size, mixer.num_heads, mixer.head_dim, mixer.n_groups,
                     mixer.ssm_state_size)
    gate, xbc, dt = _linear(u, mixer.in_proj).split([I, mixer.conv_dim, H], dim=-1)
    xbc = act(causal_depthwise_conv(xbc, mixer.conv1d))
    if m is not None:
        xbc = xbc * m
    x, B, C = xbc.split([I, G * N, G * N], dim=-1)
    dt = F.softplus(dt + mixer.dt_bias.detach().to(u))
    lo, hi = mixer.time_step_limit
    dt = dt.clamp(min=lo, max=hi)
    return {"x": x.reshape(b, n, H, P), "dt": dt, "A": -torch.exp(mixer.A_log.detach().to(u)),
            "B": B.reshape(b, n, G, N), "C": C.reshape(b, n, G, N), "D": mixer.D.detach().to(u), "gate": gate}


# ------------------------------------------------------------------------------------------ operators
def mamba_channel_attention(dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Implicit attention (c, n, n) of Mamba-1 channels on one sequence.

    dt: (n, c) after softplus, A: (c, N), B, C: (n, N). alpha[c, t, s] = sum_k C_t[k] B_s[k] dt_s[c]
    exp(A[c, k] (cum[t, c] - cum[s, c])) for s <= t, cum = cumsum(dt); zero above the diagonal.
    """
    n = dt.shape[0]
    cum = dt.cumsum(0).T  # (c, n)
    seg = cum[:, :, None] - cum[:, None, :]  # (c, t, s)
    causal = torch.ones(n, n, dtype=torch.bool, device=dt.device).tril()
    expo = (seg[..., None] * A[:, None, None, :]).masked_fill(~causal[None, :, :, None], float("-inf"))
    cb = C[:, None, :] * B[None, :, :]  # (t, s, N)
    return (torch.exp(expo) * cb[None]).sum(-1) * dt.T[:, None, :]


def channel_lag_moments(dt, A, B, C, valid, max_lag: int, budget: int = 1 << 22):
    """Mamba-1: sum and sum of squares over sequences and positions of alpha_c[t, t - l], shapes (c, lags).

    dt: (b, n, c) for the chosen channels; A: (c, N); B, C: (b, n, N); valid: (b, n) bool, one contiguous run
    per row. Only pairs of valid positions enter. Works in lag layout (t, l), `budget` entries at a time.
    """
    b, n, ch = dt.shape
    N = A.shape[-1]
    lags = min(max_lag, n)
    t = torch.arange(n, device=dt.device)[:, None]
    src = t - torch.arange(lags, device=dt.device)[None, :]  # (n, lags): s = t - l
    in_range = src >= 0
    src = src.clamp(min=0)
    total = torch.zeros(ch, lags, dtype=torch.float64, device=dt.device)
    total_sq = torch.zeros_like(total)
    step = max(1, budget // (n * lags * N))
    for j in range(b):
        m = valid[j]
        if not m.any():
            continue
        keep = (m[:, None] & m[src] & in_range)[..., None, None]  # (n, lags, 1, 1)
        cb = C[j][:, None, :] * B[j][src]  # (n, lags, N): C_t[k] B_{t-l}[k]
        cum = dt[j].cumsum(0)  # (n, c)
        for c0 in range(0, ch, step):
            cs = slice(c0, c0 + step)
            seg = cum[:, None, cs] - cum[src][:, :, cs]  # (n, lags, cc) = sum_{k=t-l+1..t} dt_k
            expo = (seg[..., None] * A[cs]).masked_fill(~keep, float("-inf"))  # (n, lags, cc, N)
            alpha = torch.einsum("tlck,tlk->tlc", torch.exp(expo), cb) * dt[j][src][:, :, cs]
            total[cs] += alpha.sum(0).T
            total_sq[cs] += alpha.square().sum(0).T
    return total, total_sq


# ------------------------------------------------------------------------------------------ records
@torch.no_grad()
def conv1d_records(backbone, length: int) -> list[KernelRecord]:
    """Dominant tap pattern of every layer's causal depthwise conv1d (x channels; Mamba-2: also B/C channels)."""
    records = []
    for i, layer in enumerate(backbone.layers):
        mixer = layer.mixer
        w = mixer.conv1d.weight.detach().double().cpu()[:, 0]  # (channels, k)
        k = w.shape[-1]
        if length < k:
            raise ValueError(f"length={length} is shorter than the conv1d kernel ({k} taps).")
        parts = [w] if hf_mixer_kind(backbone) == "mamba" else list(w.split(
            [mixer.intermediate_size, w.shape[0] - mixer.intermediate_size]))
        for j, taps in enumerate(parts):
            mode, energy = dominant_taps(taps)
            kernel = np.zeros(length)
            kernel[:k] = mode.flip(0).numpy()  # cross-correlation taps -> causal convolution kernel
            records.append(KernelRecord(i, "forward", j, "conv1d", kernel, extra={
                "energy_fraction": energy, "taps": k, "channels": "x" if j == 0 else "B,C"}))
    return records


@torch.no_grad()
def hf_mamba_records(model, inputs, tokenizer=None, length: int = 4096, batch_size: int = 16,
                     max_length: int | None = None, progress: bool | None = None, channels=DEFAULT_CHANNELS,
                     include_conv: bool = True) -> list[KernelRecord]:
    """Effective kernels of every layer x head (Mamba-2) or chosen channel (Mamba-1); see the module docstring."""
    backbone = find_hf_backbone(model)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} is not a transformers MambaModel / Mamba2Model.")
    kind = hf_mixer_kind(backbone)
    batches = iter_batches(inputs, tokenizer, batch_size, max_length)
    mixer0 = backbone.layers[0].mixer
    if kind == "mamba":
        chans = select_channels(mixer0.intermediate_size, channels)
        rows = len(chans)
    else:
        rows = mixer0.num_heads
    acc = [_Mamba2Accumulator(rows, length) for _ in backbone.layers]
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        from tqdm.auto import tqdm

        show = len(batches) > 1 if progress is None else progress
        for batch in tqdm(batches, desc=f"{kind} kernels", disable=not show):
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            spans = [valid_span(row) for row in mask]
            valid = torch.zeros(ids.shape, dtype=torch.bool, device=device)
            for b, (start, end) in enumerate(spans):
                valid[b, start:end] = True
            for i, (u, layer_mask) in enumerate(capture_mixer_inputs(backbone, ids, mask)):
                p = hf_selective_parameters(backbone.layers[i].mixer, u, layer_mask)
                if kind == "mamba":
                    s, ss = channel_lag_moments(p["dt"][..., chans], p["A"][chans], p["B"], p["C"], valid, length)
                    acc[i].add(slice(0, rows), s, ss)
                else:
                    G = p["B"].shape[2]
                    per = rows // G
                    for g in range(G):
                        heads = slice(g * per, (g + 1) * per)
                        s, ss = batched_lag_moments(p["dt"][..., heads], p["A"][heads], p["B"][:, :, g],
                                                    p["C"][:, :, g], valid, length)
                        acc[i].add(heads, s, ss)
                for start, end in spans:
                    if end > start:
                        acc[i].add_count(end - start, length)
    finally:
        backbone.train(was_training)
    sequences = sum(int(row.any()) for batch in batches for row in batch["attention_mask"])
    records = []
    for i, a in enumerate(acc):
        count, mean, spread = a.moments()
        for r in range(rows):
            index = chans[r] if kind == "mamba" else r
            records.append(KernelRecord(i, "forward", index, kind, mean[r].numpy(), spread=spread[r].numpy(),
                                        count=count.numpy().astype(np.int64),
                                        extra={"sequences": sequences, "source": "transformers"}))
    if include_conv:
        records.extend(conv1d_records(backbone, length))
    return records


def hf_architecture(model) -> dict:
    """What decides the set and shape of a transformers Mamba model's kernels (for shift reports)."""
    backbone = find_hf_backbone(model)
    config = getattr(model, "config", None) or getattr(backbone, "config", None)
    fields = ("model_type", "hidden_size", "state_size", "expand", "intermediate_size", "num_heads", "head_dim",
              "n_groups", "conv_kernel", "time_step_rank")
    arch = {"source": "transformers", **{f: getattr(config, f) for f in fields if getattr(config, f, None) is not None}}
    layers = []
    for layer in backbone.layers:
        mixer = layer.mixer
        n = mixer.num_heads if hf_mixer_kind(backbone) == "mamba2" else mixer.intermediate_size
        layers.append((type(mixer).__name__, n, tuple(mixer.conv1d.weight.shape)))
    arch["mixer"] = hf_mixer_kind(backbone)
    arch["num_hidden_layers"] = len(layers)
    arch["layer_structure"] = layers
    return arch


__all__ = ["find_hf_backbone", "hf_mixer_kind", "select_channels", "capture_mixer_inputs", "hf_selective_parameters",
           "mamba_channel_attention", "channel_lag_moments", "hf_mamba_records", "conv1d_records",
           "hf_architecture", "causal_depthwise_conv", "HF_MIXERS", "DEFAULT_CHANNELS"]
