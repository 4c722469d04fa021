"""Per-layer code-token features from any Hugging Face encoder, cached on disk per model and layer.

Each snippet is tokenised with offsets; every code token (a tree-sitter leaf, by character span) gets the
mean of the hidden states of the sub-words whose character span overlaps it. Works with anything whose
forward accepts `output_hidden_states=True` and returns `hidden_states` (BERT, RoFormer, MiniLM,
MambaCode). Layer 0 is the embedding output, layer i the output of block i.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .sampling import PAIR_MODE, ProbeSet


def check_tokenizer(tokenizer) -> None:
    """Offsets are needed to align sub-words with code tokens; only fast tokenizers provide them."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} does not provide offset mappings (it is a slow, pure-Python "
            "tokenizer); probing aligns sub-words to code tokens by `return_offsets_mapping=True`: load a fast "
            "tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True) or a `tokenizers`-backed "
            "PreTrainedTokenizerFast)")


def alignment_matrix(token_spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """(n_code_tokens, n_subwords) row-normalised weights: 1/k for each of the k overlapping sub-words.

    A sub-word overlaps a code token if their half-open character spans intersect; special tokens
    (empty spans) overlap nothing. A code token with no sub-word (cut by truncation) gets a zero row.
    """
    spans = np.asarray(token_spans, dtype=np.int64).reshape(-1, 2)
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    nonempty = offs[:, 1] > offs[:, 0]
    W = (offs[None, :, 0] < spans[:, None, 1]) & (offs[None, :, 1] > spans[:, None, 0]) & nonempty[None, :]
    W = W.astype(np.float64)
    cnt = W.sum(1, keepdims=True)
    return np.divide(W, cnt, out=np.zeros_like(W), where=cnt > 0)


def _forward_kwargs(model) -> set:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return {"input_ids", "attention_mask"}


@torch.no_grad()
def extract_token_features(model, tokenizer, probe_set: ProbeSet, layers: Sequence[int] | None = None,
                           batch_size: int = 8, max_length: int | None = 512, device=None,
                           progress: bool = True) -> tuple[dict[int, np.ndarray], dict]:
    """Features of every code token of `probe_set`: {layer: (n_tokens, hidden) float32} and stats.

    Rows of tokens that no sub-word covers (truncated) are NaN; `stats` counts them and reports the
    throughput in model tokens per second.
    """
    check_tokenizer(tokenizer)
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    accepted = _forward_kwargs(model)
    if max_length is None:
        max_length = getattr(tokenizer, "model_max_length", 512)
        if not max_length or max_length > 100_000:
            max_length = 512
    offsets_all = probe_set.token_offsets()
    feats: dict[int, np.ndarray] = {}
    n_model_tokens, t0 = 0, time.perf_counter()
    order = np.argsort([len(c) for c in probe_set.codes])  # similar lengths per batch: less padding
    n_layers_seen = None
    try:
        for b in tqdm(range(0, len(order), batch_size), desc="features", disable=not progress, unit="batch"):
            idx = order[b: b + batch_size]
            codes = [probe_set.codes[i] for i in idx]
            enc = tokenizer(codes, return_offsets_mapping=True, truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            offsets = enc.pop("offset_mapping").numpy()
            inputs = {k: v.to(device) for k, v in enc.items() if k in accepted}
            out = model(**inputs, output_hidden_states=True, return_dict=True)
            hidden = getattr(out, "hidden_states", None)
            if hidden is None:
                raise ValueError(f"{type(model).__name__} returned no hidden_states for output_hidden_states=True; "
                                 "probing needs a per-layer encoder output")
            if n_layers_seen is None:
                n_layers_seen = len(hidden)
                use = list(range(n_layers_seen)) if layers is None else list(layers)
                bad = [l for l in use if not -n_layers_seen <= l < n_layers_seen]
                if bad:
                    raise ValueError(f"layers {bad} out of range: the model has hidden states 0..{n_layers_seen - 1}")
                use = [l % n_layers_seen for l in use]
                dim = hidden[0].shape[-1]
                feats = {l: np.full((probe_set.n_tokens, dim), np.nan, dtype=np.float32) for l in use}
            mask = enc["attention_mask"].numpy().astype(bool)
            n_model_tokens += int(mask.sum())
            for row, s in enumerate(idx):
                valid = mask[row]
                W = alignment_matrix(probe_set.spans[s], offsets[row][valid])
                covered = W.sum(1) > 0
                lo = offsets_all[s]
                for l in feats:
                    H = hidden[l][row][torch.as_tensor(valid, device=hidden[l].device)].float().cpu().numpy()
                    F = (W @ H).astype(np.float32)
                    F[~covered] = np.nan
                    feats[l][lo: lo + len(W)] = F
    finally:
        model.train(was_training)
    elapsed = time.perf_counter() - t0
    n_missing = int(np.isnan(next(iter(feats.values()))[:, 0]).sum()) if feats else 0
    stats = {"model_tokens": n_model_tokens, "seconds": elapsed,
             "tokens_per_second": n_model_tokens / elapsed if elapsed > 0 else float("nan"),
             "code_tokens": probe_set.n_tokens, "code_tokens_uncovered": n_missing,
             "n_hidden_states": n_layers_seen}
    return feats, stats


def model_key(name_or_path: str, model=None) -> str:
    """Cache key of a model: its name plus a hash of its config and (for local folders) weight files."""
    h = hashlib.sha1(str(name_or_path).encode())
    if model is not None and hasattr(model, "config"):
        h.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    if os.path.isdir(str(name_or_path)):
        for n in sorted(os.listdir(name_or_path)):
            if n.endswith((".safetensors", ".bin", ".pt")):
                st = os.stat(os.path.join(name_or_path, n))
                h.update(f"{n}:{st.st_size}:{st.st_mtime_ns}".encode())
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in os.path.basename(str(name_or_path).rstrip("/")))
    return f"{safe[:60]}-{h.hexdigest()[:12]}"


def cached_token_features(model, tokenizer, probe_set: ProbeSet, cache_dir: str | None, key: str,
                          layers: Sequence[int] | None = None, **kwargs) -> tuple[dict[int, np.ndarray], dict]:
    """`extract_token_features` with an on-disk cache: `<cache_dir>/<key>/<probe fingerprint>/layer_XX.npy`."""
    if cache_dir is None:
        return extract_token_features(model, tokenizer, probe_set, layers=layers, **kwargs)
    folder = os.path.join(cache_dir, key, probe_set.fingerprint())
    stats_path = os.path.join(folder, "stats.json")
    if os.path.exists(stats_path):
        with open(stats_path) as f:
            stats = json.load(f)
        n = stats["n_hidden_states"]
        want = list(range(n)) if layers is None else [l % n for l in layers]
        paths = {l: os.path.join(folder, f"layer_{l:02d}.npy") for l in want}
        if all(os.path.exists(p) for p in paths.values()):
            stats = dict(stats, cached=True)
            return {l: np.load(p) for l, p in paths.items()}, stats
    feats, stats = extract_token_features(model, tokenizer, probe_set, layers=layers, **kwargs)
    os.makedirs(folder, exist_ok=True)
    for l, F in feats.items():
        np.save(os.path.join(folder, f"layer_{l:02d}.npy"), F)
    with open(stats_path, "w") as f:
        json.dump(stats, f)
    return feats, dict(stats, cached=False)


def pair_features(token_feats: np.ndarray, probe_set: ProbeSet, task: str) -> np.ndarray:
    """(n_pairs, d or 2d) features of a task's pairs: h_u - h_v for distance, [h_u ; h_v] otherwise."""
    tp = probe_set.tasks[task]
    off = probe_set.token_offsets()
    hu = token_feats[off[tp.snippet] + tp.u]
    hv = token_feats[off[tp.snippet] + tp.v]
    return hu - hv if PAIR_MODE[task] == "diff" else np.concatenate([hu, hv], axis=1)
