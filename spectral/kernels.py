"""Kernels of every MambaCode layer as 1-D arrays: the input of SSM-Interpret (PAPER.md section 4).

- `s4d`: the exact LTI kernel of each layer x direction x kernel group, computed in float64 from the
  parameters (same discretisation as the model's float32 `S4DKernel.materialize`; D skip excluded).
- `mamba2`: the input-dependent effective kernel of each layer x direction x head. On real inputs, the
  head's implicit attention alpha[t, s] = (C_t . B_s) dt_s exp(A sum_{k=s+1..t} dt_k) (s <= t, scan
  order) is read by lag l = t - s and averaged over positions and inputs; `spread` is its standard
  deviation across (position, input) per lag and `count` the number of samples per lag. Only valid
  (unpadded) positions enter; the kernel is as long as the longest input (capped at `length`).
- `hf_conv`: the short 'same' convolution beside each direction, one record per direction x conv group:
  the dominant tap pattern of the group (first singular vector of the (out x in, k) taps, output scale
  applied, divided by sqrt(out x in) so its level is the RMS per channel pair), zero-padded to `length`
  so that its rfft is the group's frequency response. Taps are stored as a causal kernel (the 'same'
  padding only shifts the phase). `energy_fraction` says how much of the taps' energy that mode carries.
- transformers' own `MambaModel` / `Mamba2Model` (and heads): causal effective kernels by the same rule,
  per head (kind 'mamba2') or per Mamba-1 channel (kind 'mamba'), plus their conv1d (kind 'conv1d'); see
  `spectral.hf_mamba`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

DIRECTIONS = ("forward", "backward")
SUPPORTED = ("MambaCode models (MambaCodeModel or a MambaCodeFor* head) with mixer='s4d' (exact LTI kernels) "
             "or mixer='mamba2' (input-dependent effective kernels: pass inputs=), with or without hf_conv; "
             "transformers' MambaModel / Mamba2Model or their heads, e.g. MambaForCausalLM, Mamba2ForCausalLM "
             "(causal, input-dependent: pass inputs=)")
SSM_KINDS = ("s4d", "mamba2", "mamba")  # record kinds of SSM kernels (the spectra the report classifies)
SHORT_CONV_KINDS = ("hf_conv", "conv1d")  # short convolutions beside / before the SSM


MIXER_CLASSES = ("S4DMixer", "BiMamba2Mixer")  # by name: remote-code models have their own class objects


class UnsupportedModelError(ValueError):
    """The model has no MambaCode SSM mixers to analyse."""


@dataclass
class KernelRecord:
    """One kernel: where it sits (layer, direction, index of group/head), what it is (kind), its taps."""

    layer: int
    direction: str  # 'forward' | 'backward'
    index: int  # S4D kernel group, Mamba-2 head within the direction, Mamba-1 channel, or conv group
    kind: str  # 's4d' | 'mamba2' | 'mamba' (transformers' Mamba-1, per channel) | 'hf_conv' | 'conv1d'
    kernel: np.ndarray  # 1-D, lag 0 first
    spread: np.ndarray | None = None  # mamba2 / mamba: std across tokens and inputs, per lag
    count: np.ndarray | None = None  # mamba2 / mamba: number of (position, input) samples per lag
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.layer, self.direction, self.kind, self.index)

    @property
    def name(self) -> str:
        return f"layer{self.layer}/{self.direction}/{self.kind}{self.index}"

    def to_dict(self, with_kernel: bool = False) -> dict:
        out = {"layer": self.layer, "direction": self.direction, "index": self.index, "kind": self.kind,
               "length": int(self.kernel.shape[-1]), **self.extra}
        if with_kernel:
            out["kernel"] = self.kernel.tolist()
            if self.spread is not None:
                out["spread"] = self.spread.tolist()
                out["count"] = self.count.tolist()
        return out


# ------------------------------------------------------------------------------------------ model access
def find_encoder(model):
    """The MambaCode encoder (the module holding `.layers`) inside `model`, or UnsupportedModelError.

    Classes are matched by name, so models loaded through `trust_remote_code` (other class objects) work.
    """
    candidates = [model]
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), torch.nn.Module):
        candidates.insert(0, getattr(model, prefix))
    for enc in candidates:
        layers = getattr(enc, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) and all(
                type(getattr(getattr(layer, "mixer", None), "ssm", None)).__name__ in MIXER_CLASSES
                for layer in layers):
            return enc
    raise UnsupportedModelError(
        f"{type(model).__name__} has no MambaCode SSM mixers (expected .layers[i].mixer.ssm to be an S4DMixer or "
        f"a BiMamba2Mixer). Supported: {SUPPORTED}."
    )


def mixer_kind(model) -> str:
    """'s4d' or 'mamba2' (MambaCode; all layers share the mixer), or for transformers' own models 'mamba2'
    (Mamba2Model) or 'mamba' (MambaModel). Every kind but 's4d' needs inputs."""
    from .hf_mamba import find_hf_backbone, hf_mixer_kind

    backbone = find_hf_backbone(model)
    if backbone is not None:
        return hf_mixer_kind(backbone)
    ssm = find_encoder(model).layers[0].mixer.ssm
    return "s4d" if type(ssm).__name__ == "S4DMixer" else "mamba2"


# ------------------------------------------------------------------------------------------ s4d
@torch.no_grad()
def s4d_layer_kernels(ssm, length: int) -> np.ndarray:
    """(2, G, length) float64 kernels of one S4DMixer (D excluded)."""
    from mambacode.modeling.s4d import s4d_kernel

    k = ssm.kernel
    p = [t.detach().double() for t in (k.log_step, k.A_real, k.A_imag, k.C)]
    # remote-code copies saved before the field existed have no attribute: they are conjugate-pair kernels
    return s4d_kernel(*p, length, getattr(k, "conjugate_pairs", True)).cpu().numpy()


# ------------------------------------------------------------------------------------------ hf_conv
def dominant_taps(taps: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(mode, energy_fraction) of a (rows, k) float64 tap matrix: the first singular vector scaled by its
    singular value / sqrt(rows) (the RMS level per row), sign fixed so its largest tap is positive."""
    u, s, vt = torch.linalg.svd(taps, full_matrices=False)
    mode = s[0] * vt[0] / np.sqrt(taps.shape[0])
    if mode[mode.abs().argmax()] < 0:
        mode = -mode
    energy = float(s[0] ** 2 / (s ** 2).sum()) if s.sum() > 0 else float("nan")
    return mode, energy


@torch.no_grad()
def hf_conv_records(short_conv, layer: int, length: int) -> list[KernelRecord]:
    """One record per direction x conv group of a ShortConv (see module docstring)."""
    conv = short_conv.conv
    d = short_conv.hidden_size
    groups = conv.groups // 2
    size = d // groups
    w = conv.weight.detach().double().cpu()  # (2d, d/g, k)
    scale = short_conv.scale.detach().double().cpu().reshape(2 * d)
    w = w * scale[:, None, None]
    k = w.shape[-1]
    if length < k:
        raise ValueError(f"length={length} is shorter than the hf_conv kernel ({k} taps).")
    records = []
    for j in range(2 * groups):
        mode, energy = dominant_taps(w[j * size:(j + 1) * size].reshape(-1, k))  # (out x in, k)
        kernel = np.zeros(length)
        kernel[:k] = mode.flip(0).numpy()  # cross-correlation taps -> convolution kernel
        records.append(KernelRecord(layer, DIRECTIONS[j // groups], j % groups, "hf_conv", kernel,
                                    extra={"energy_fraction": energy, "taps": k}))
    return records


# ------------------------------------------------------------------------------------------ mamba2
def iter_batches(inputs, tokenizer=None, batch_size: int = 16, max_length: int | None = None):
    """Normalise `inputs` into a list of {'input_ids', 'attention_mask'} LongTensor batches.

    inputs: a list of code strings (needs `tokenizer`), a dict/BatchEncoding with input_ids (and
    attention_mask), a LongTensor of input_ids (B, L), or an iterable of such dicts.
    """
    if inputs is None:
        raise ValueError("selective kernels (mixer='mamba2', transformers' Mamba / Mamba-2) depend on the input: "
                         "pass inputs= (a list of code strings with tokenizer=, tokenized batches, or a LongTensor "
                         "of input_ids).")
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        if tokenizer is None:
            raise ValueError("inputs is a list of strings: pass tokenizer= to tokenize them.")
        kwargs = {"truncation": max_length is not None, "max_length": max_length}
        out = []
        for i in range(0, len(inputs), batch_size):
            enc = tokenizer(list(inputs[i:i + batch_size]), padding=True, return_tensors="pt", **kwargs)
            out.append({"input_ids": enc["input_ids"], "attention_mask": enc.get("attention_mask")})
        return out
    if isinstance(inputs, torch.Tensor):
        inputs = {"input_ids": inputs}
    if isinstance(inputs, Mapping):
        inputs = [inputs]
    if not isinstance(inputs, Iterable):
        raise TypeError(f"inputs of type {type(inputs).__name__} is not supported: pass code strings with "
                        "tokenizer=, a dict with input_ids/attention_mask, a LongTensor, or a list of dicts.")
    out = []
    for batch in inputs:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise TypeError("each tokenized batch must be a mapping with 'input_ids' (and 'attention_mask').")
        ids = torch.as_tensor(batch["input_ids"]).long()
        if ids.ndim == 1:
            ids = ids[None]
        mask = batch.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).long().reshape(ids.shape)
        if max_length is not None:
            ids, mask = ids[:, :max_length], mask[:, :max_length]
        for i in range(0, ids.shape[0], batch_size):
            out.append({"input_ids": ids[i:i + batch_size], "attention_mask": mask[i:i + batch_size]})
    if not out:
        raise ValueError("inputs is empty: an effective (selective) kernel needs at least one sequence.")
    return out


def valid_span(mask_row: torch.Tensor) -> tuple[int, int]:
    """(start, end) of the one contiguous run of valid positions; error if the mask has holes."""
    pos = torch.nonzero(mask_row, as_tuple=False).flatten()
    if pos.numel() == 0:
        return 0, 0
    start, end = int(pos[0]), int(pos[-1]) + 1
    if end - start != pos.numel():
        raise ValueError("attention_mask has padding between tokens; only left or right padding is supported "
                         "(the scan decays across holes, so the valid tokens' kernel is not separable).")
    return start, end


def mamba2_attention(dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Implicit attention alpha (H, n, n) of the heads of one direction on one sequence (scan order).

    dt: (n, H) after softplus; A: (H,) negative; B, C: (n, N). alpha[h, t, s] = (C_t . B_s) dt[s, h]
    exp(A_h (c[t, h] - c[s, h])) for s <= t, c = cumsum(dt), zero above the diagonal.
    """
    n = dt.shape[0]
    c = dt.cumsum(0).T  # (H, n)
    seg = c[:, :, None] - c[:, None, :]  # (H, t, s) = sum_{k=s+1..t} dt_k
    causal = torch.ones(n, n, dtype=torch.bool, device=dt.device).tril()
    decay = torch.exp((A[:, None, None] * seg).masked_fill(~causal, float("-inf")))
    return (C @ B.T)[None] * dt.T[:, None, :] * decay


def batched_lag_moments(dt, A, B, C, valid, max_lag: int, budget: int = 1 << 22):
    """Sum and sum of squares over sequences and positions of alpha[h, t, t - l], shapes (H, lags).

    dt: (b, n, H); B, C: (b, n, N); valid: (b, n) bool, one contiguous run per row. Only pairs of valid
    positions enter; because the runs are contiguous, the decay between two valid positions never crosses
    padding, so this equals `mamba2_attention` on each unpadded sequence. Sequences are processed in
    groups of at most `budget` attention entries to bound memory.
    """
    b, n, H = dt.shape
    lags = min(max_lag, n)
    step = max(1, budget // (H * n * lags))
    t = torch.arange(n, device=dt.device)[:, None]
    src = t - torch.arange(lags, device=dt.device)[None, :]  # (n, lags): s = t - l
    in_range = src >= 0
    src = src.clamp(min=0)
    total = torch.zeros(H, lags, dtype=torch.float64, device=dt.device)
    total_sq = torch.zeros_like(total)
    for g in range(0, b, step):
        sl = slice(g, g + step)
        m = valid[sl]
        # everything in lag layout (t, l) directly: no (t, s) tensor per head, no gather on it
        keep = m[:, :, None] & m[:, src] & in_range  # (g, n, lags)
        cb = torch.gather(C[sl] @ B[sl].transpose(1, 2), 2, src.expand(m.shape[0], n, lags))  # C_t . B_{t-l}
        dt_h = dt[sl].transpose(1, 2)  # (g, H, n)
        c = dt_h.cumsum(-1)
        seg = c[..., :, None] - c[..., src]  # (g, H, n, lags) = sum_{k=t-l+1..t} dt_k
        decay = torch.exp((A[None, :, None, None] * seg).masked_fill(~keep[:, None], float("-inf")))
        diag = cb[:, None] * dt_h[..., src] * decay
        total += diag.sum((0, 2))
        total_sq += diag.square().sum((0, 2))
    return total, total_sq


class _Mamba2Accumulator:
    """Running sums per layer x (direction, head) x lag."""

    def __init__(self, heads: int, length: int):
        self.sum = torch.zeros(heads, length, dtype=torch.float64)
        self.sumsq = torch.zeros(heads, length, dtype=torch.float64)
        self.count = torch.zeros(length, dtype=torch.float64)
        self.max_lag = 0

    def add(self, rows: slice, s: torch.Tensor, ss: torch.Tensor) -> None:
        lags = s.shape[-1]
        self.sum[rows, :lags] += s.cpu()
        self.sumsq[rows, :lags] += ss.cpu()

    def add_count(self, n: int, length: int) -> None:
        lags = min(n, length)
        self.count[:lags] += torch.arange(n, n - lags, -1, dtype=torch.float64)
        self.max_lag = max(self.max_lag, lags)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count, mean, spread) per lag up to the longest valid span: spread is the standard deviation."""
        lags = self.max_lag
        if lags == 0:
            raise ValueError("inputs contain no valid tokens (every attention_mask is zero).")
        count = self.count[:lags]
        mean = self.sum[:, :lags] / count
        var = (self.sumsq[:, :lags] / count - mean.square()).clamp(min=0)
        return count, mean, var.sqrt()


@torch.no_grad()
def mamba2_records(encoder, inputs, tokenizer=None, length: int = 4096, batch_size: int = 16,
                   max_length: int | None = None, progress: bool | None = None) -> list[KernelRecord]:
    """Effective kernels of every Mamba-2 layer x direction x head on `inputs` (see module docstring)."""
    if max_length is None:  # longer inputs would be rejected by the model
        max_length = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    batches = iter_batches(inputs, tokenizer, batch_size, max_length)
    layers = encoder.layers
    ssm0 = layers[0].mixer.ssm
    H = ssm0.num_heads
    device = next(encoder.parameters()).device
    acc = [_Mamba2Accumulator(2 * H, length) for _ in layers]
    was_training = encoder.training
    encoder.eval()
    try:
        from tqdm.auto import tqdm

        show = len(batches) > 1 if progress is None else progress
        it = tqdm(batches, desc="mamba2 kernels", disable=not show)
        for batch in it:
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            # hidden_states[i] is layer i's input; the layer turns it into its mixer's inputs
            hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                             return_dict=True).hidden_states
            pad = mask.to(hidden[0].dtype).unsqueeze(-1)  # x 1 where valid: exact without padding too
            spans = [valid_span(row) for row in mask]
            Lb = ids.shape[1]
            for i, layer in enumerate(layers):
                p = layer.mixer.ssm.selective_parameters(*layer.mixer_inputs(hidden[i], pad))
                dt, A = p["dt"].double(), p["A"].double()
                Bm, Cm = p["B"].double(), p["C"].double()
                valid = torch.zeros(len(spans), Lb, dtype=torch.bool, device=dt.device)
                for b, (start, end) in enumerate(spans):
                    valid[b, start:end] = True
                for direction in (0, 1):
                    # scan order: the backward direction's sequence is reversed (its padding first)
                    v = valid if direction == 0 else valid.flip(1)
                    heads = slice(direction * H, (direction + 1) * H)
                    s, ss = batched_lag_moments(dt[:, :, heads], A[heads], Bm[:, :, direction],
                                                Cm[:, :, direction], v, length)
                    acc[i].add(heads, s, ss)
                for (start, end) in spans:
                    if end > start:
                        acc[i].add_count(end - start, length)
    finally:
        encoder.train(was_training)
    sequences = sum(int(row.any()) for batch in batches for row in batch["attention_mask"])
    records = []
    for i, a in enumerate(acc):
        count, mean, spread = a.moments()
        for direction in (0, 1):
            for h in range(H):
                row = direction * H + h
                records.append(KernelRecord(i, DIRECTIONS[direction], h, "mamba2", mean[row].numpy(),
                                            spread=spread[row].numpy(), count=count.numpy().astype(np.int64),
                                            extra={"sequences": sequences}))
    return records


# ------------------------------------------------------------------------------------------ entry point
def extract_kernels(model, length: int = 4096, inputs=None, *, tokenizer=None, batch_size: int = 16,
                    max_length: int | None = None, include_hf_conv: bool = True,
                    progress: bool | None = None, channels=16) -> list[KernelRecord]:
    """One `KernelRecord` per layer x direction x kernel group / head (and hf_conv group).

    s4d: exact kernels of length `length`. mamba2: effective kernels over `inputs` (code strings with
    `tokenizer`, or tokenized batches; see `iter_batches`), as long as the longest input, capped at
    `length`; `max_length` truncates inputs. Raises UnsupportedModelError for models without SSM mixers.
    transformers' MambaModel / Mamba2Model (or a head around one): the same effective kernels, direction
    "forward" only, per head (Mamba-2) or per channel of `channels` (Mamba-1: a count of evenly spaced
    channels, 'all', or a list); `include_hf_conv` then records their conv1d (see `spectral.hf_mamba`).
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length={length!r} is invalid: expected an integer >= 2.")
    from .hf_mamba import find_hf_backbone, hf_mamba_records

    records: list[KernelRecord] = []
    if find_hf_backbone(model) is not None:
        records = hf_mamba_records(model, inputs, tokenizer, length, batch_size, max_length, progress,
                                   channels=channels, include_conv=include_hf_conv)
    else:
        encoder = find_encoder(model)
        kind = mixer_kind(encoder)
        if kind == "s4d":
            for i, layer in enumerate(encoder.layers):
                k = s4d_layer_kernels(layer.mixer.ssm, length)
                for direction in (0, 1):
                    for g in range(k.shape[1]):
                        records.append(KernelRecord(i, DIRECTIONS[direction], g, "s4d", k[direction, g]))
        else:
            records.extend(mamba2_records(encoder, inputs, tokenizer, length, batch_size, max_length, progress))
        if include_hf_conv:
            for i, layer in enumerate(encoder.layers):
                if layer.mixer.short_conv is not None:
                    records.extend(hf_conv_records(layer.mixer.short_conv, i, length))
    order = {"s4d": 0, "mamba2": 0, "mamba": 0, "hf_conv": 1, "conv1d": 1}
    records.sort(key=lambda r: (r.layer, order[r.kind], DIRECTIONS.index(r.direction), r.index))
    return records


__all__ = ["KernelRecord", "extract_kernels", "find_encoder", "mixer_kind", "UnsupportedModelError",
           "mamba2_attention", "iter_batches", "dominant_taps", "DIRECTIONS", "SUPPORTED", "SSM_KINDS",
           "SHORT_CONV_KINDS"]
