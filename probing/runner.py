"""Run the probes for several models on one probe set: features -> pair features -> DirectProbe + linear."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .directprobe import DirectProbe
from .features import cached_token_features, model_key, pair_features
from .linear import probe_with_control
from .sampling import ProbeSet

PROBES = ("directprobe", "linear")


def valid_pairs(token_feats: dict[int, np.ndarray], probe_set: ProbeSet, task: str) -> np.ndarray:
    """Pairs whose two code tokens both have features (not cut by the model's truncation)."""
    F = next(iter(token_feats.values()))
    ok = ~np.isnan(F[:, 0])
    tp = probe_set.tasks[task]
    off = probe_set.token_offsets()
    return ok[off[tp.snippet] + tp.u] & ok[off[tp.snippet] + tp.v]


def probe_layers(token_feats: dict[int, np.ndarray], probe_set: ProbeSet, tasks: Sequence[str],
                 probes: Sequence[str] = PROBES, mask: dict[str, np.ndarray] | None = None, seed: int = 0,
                 directprobe_kwargs: dict | None = None, progress: bool = True) -> dict:
    """{task: {layer: {"directprobe": {...}, "linear": {...}, "n_train", "n_test"}}} for one model."""
    for p in probes:
        if p not in PROBES:
            raise ValueError(f"unknown probe {p!r}: expected one of {', '.join(PROBES)}")
    out = {}
    jobs = [(t, l) for t in tasks for l in sorted(token_feats)]
    for task, layer in tqdm(jobs, desc="probes", disable=not progress, unit="layer"):
        tp = probe_set.tasks[task]
        keep = valid_pairs(token_feats, probe_set, task) if mask is None else mask[task]
        X = pair_features(token_feats[layer], probe_set, task)[keep].astype(np.float64)
        y, test = tp.label[keep], tp.is_test[keep]
        res = {"n_train": int((~test).sum()), "n_test": int(test.sum()), "n_dropped": int((~keep).sum())}
        if res["n_train"] == 0 or res["n_test"] == 0 or len(np.unique(y[~test])) < 2:
            res["error"] = "not enough pairs (need train and test pairs of at least two classes)"
            out.setdefault(task, {})[str(layer)] = res
            continue
        if "directprobe" in probes:
            dp = DirectProbe(random_state=seed, **(directprobe_kwargs or {})).fit(X[~test], y[~test])
            res["directprobe"] = dp.evaluate(X[test], y[test])
        if "linear" in probes:
            snip = tp.snippet[keep]
            tu = [probe_set.texts[s][i] for s, i in zip(snip, tp.u[keep])]
            tv = [probe_set.texts[s][i] for s, i in zip(snip, tp.v[keep])]
            res["linear"] = probe_with_control(X, y, test, tu, tv, n_classes=len(tp.classes), seed=seed)
        out.setdefault(task, {})[str(layer)] = res
    return out


class EmbeddingsFirst(torch.nn.Module):
    """transformers' `MambaModel` returns hidden_states = (block 1, ..., block N, final norm), unlike BERT,
    Mamba2Model or MambaCode (embeddings, block 1, ..., block N). Probing reads index 0 as the embedding
    output and index i as block i's output, so this wrapper puts the embedding output first and leaves the
    final norm out (`last_hidden_state` is unchanged)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=True, return_dict=True):
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                         use_cache=False, return_dict=True)
        embeddings = self.model.get_input_embeddings()(input_ids)
        return BaseModelOutput(last_hidden_state=out.last_hidden_state,
                               hidden_states=(embeddings, *out.hidden_states[:-1]))


def load_model(name_or_path: str, device: str = "cpu"):
    """AutoTokenizer (fast) + AutoModel, offline-friendly; importing mambacode registers its classes.

    Any encoder whose forward returns `hidden_states` works (BERT, RoFormer, MambaCode, transformers'
    Mamba / Mamba-2, ...); a transformers `MambaModel` is wrapped in `EmbeddingsFirst` so that its layer
    indices mean what they mean for the others.
    """
    import mambacode.modeling  # noqa: F401  (registers MambaCode with Auto*, also inside the `mambacode` command)
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"--model_name_or_path {name_or_path}: could not load a tokenizer ({e})") from e
    model = AutoModel.from_pretrained(name_or_path)
    if type(model).__name__ == "MambaModel":
        model = EmbeddingsFirst(model)
    return model.to(device), tok


def probe_models(models: Sequence[str], probe_set: ProbeSet, tasks: Sequence[str], layers=None,
                 probes: Sequence[str] = PROBES, cache_dir: str | None = None, batch_size: int = 8,
                 max_length: int = 512, device: str = "cpu", seed: int = 0, progress: bool = True,
                 directprobe_kwargs: dict | None = None) -> dict:
    """Probe every model on the same pairs: a pair truncated by any model (one of its tokens beyond that
    model's `max_length`) is dropped for all of them, so the models are compared on equal pairs; a model's
    accuracy therefore depends on the company it is probed in. `probe_set.pairs[task]` records `n_used` and
    `dropped_by` (model -> pairs that model truncated), which every report table prints."""
    feats, extraction = {}, {}
    for name in models:
        model, tok = load_model(name, device)
        feats[name], extraction[name] = cached_token_features(
            model, tok, probe_set, cache_dir, model_key(name, model), layers=layers, batch_size=batch_size,
            max_length=max_length, progress=progress)
        del model
    valid = {t: {m: valid_pairs(feats[m], probe_set, t) for m in models} for t in tasks}
    mask = {t: np.logical_and.reduce(list(valid[t].values())) for t in tasks}
    results = {"language": probe_set.language, "models": list(models), "tasks": list(tasks),
               "probe_set": {"meta": probe_set.meta, "fingerprint": probe_set.fingerprint(),
                             "pairs": {t: {"n": int(len(probe_set.tasks[t])), "n_used": int(mask[t].sum()),
                                           "dropped_by": {m: int((~valid[t][m]).sum()) for m in models},
                                           "classes": probe_set.tasks[t].classes,
                                           "available": probe_set.tasks[t].available} for t in tasks}},
               "extraction": extraction, "results": {}}
    for name in models:
        results["results"][name] = probe_layers(feats[name], probe_set, tasks, probes=probes, mask=mask,
                                                seed=seed, directprobe_kwargs=directprobe_kwargs,
                                                progress=progress)
    return results
