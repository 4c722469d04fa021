"""The query encoder of an index, exported at index time and run in numpy at search time (no torch).

`mambacode search` used to import torch and transformers and load the model for every call: 8-23 s on two busy
cores, for a forward that costs milliseconds. The shipped models are small s4d encoders, and a query is short,
so `mambacode index` writes what a query's forward needs into the index (`query_encoder.npz`): the weights as
float32 arrays, each layer's S4D kernels materialised by the model itself up to the longest length it will
see (the skip term D folded into lag 0, as `S4DMixer` does), the short-convolution taps with their scale folded
in (as `ShortConv` does), and the tokenizer (`tokenizers` JSON). `NumpyQueryEncoder` then runs the forward of
`MambaCodeForRetrieval.encode` for one text at a time (no padding, so no mask) in float32 numpy, as the model
computes (the GELU's erf in float64; measured within 1e-7 of a float64 run, 2.5x faster): embeddings
(+ absolute positions, token type 0, LayerNorm when the config has them), per layer pre-norm, GELU projections,
the causal / anti-causal convolutions as Toeplitz matmuls (`direct_convolution`), the gate, the residual, the
final LayerNorm, pooling and L2 normalisation. Only `numpy` and `tokenizers` are imported.

Models it cannot run (the `mamba2` mixer, sentence-transformers models, adapters around a projection) get a
`query_encoder.npz` that says why; search then loads the model with torch, as before, and says so.
"""

from __future__ import annotations

import io
import json
import math
import os
import re

import numpy as np

FILE = "query_encoder.npz"
FORMAT = "mambacode-query-encoder"
VERSION = 1
_PROJECTIONS = ("proj_v", "proj_uf", "proj_ub", "proj_cf", "proj_cb", "proj_ol", "proj_o")


# ------------------------------------------------------------------------------------------ export (torch)
def unsupported_reason(model) -> str | None:
    """Why `NumpyQueryEncoder` cannot reproduce `model`'s `encode`, or None when it can."""
    import torch

    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "mambacode" or not hasattr(model, "mambacode"):
        return f"{type(model).__name__} is not a MambaCode retrieval model"
    if config.mixer != "s4d":
        return f"mixer {config.mixer!r} (the numpy query encoder runs s4d only)"
    if config.pooling not in ("mean", "cls", "max"):
        return f"pooling {config.pooling!r}"
    if config.position_embedding_type not in (None, "absolute"):
        return f"position_embedding_type {config.position_embedding_type!r}"
    for i, layer in enumerate(model.mambacode.layers):
        for name in _PROJECTIONS:
            if type(getattr(layer, name)) is not torch.nn.Linear:
                return f"layer {i}'s {name} is a {type(getattr(layer, name)).__name__} (an adapter), not a Linear"
    return None


def _json_bytes(value) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def export_query_encoder(folder: str, model, tokenizer, max_length: int) -> str | None:
    """Write `folder/query_encoder.npz` for `model` (in eval mode) and `tokenizer`, for texts of up to
    `max_length` tokens. Returns None, or the reason the model cannot run in numpy (then the file records only
    that reason and search loads the model with torch)."""
    reason = unsupported_reason(model)
    meta = {"format": FORMAT, "version": VERSION, "supported": reason is None, "reason": reason}
    arrays = {}
    if reason is None:
        meta_fields, arrays = _export_arrays(model, max_length)
        meta.update(meta_fields)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            reason = f"tokenizer {type(tokenizer).__name__} has no `tokenizers` backend"
            meta.update(supported=False, reason=reason)
            arrays = {}
        else:
            arrays["tokenizer"] = np.frombuffer(backend.to_str().encode("utf-8"), dtype=np.uint8)
    arrays["meta"] = _json_bytes(meta)
    with open(os.path.join(folder, FILE), "wb") as fh:
        np.savez(fh, **arrays)
    return reason


def _export_arrays(model, max_length: int) -> tuple[dict, dict]:
    import torch

    config = model.config
    encoder = model.mambacode
    length = max(1, min(int(max_length), config.max_position_embeddings))
    out = {}

    def put(name, tensor):
        out[name] = tensor.detach().to("cpu", torch.float32).numpy().copy()

    with torch.no_grad():
        put("embeddings", encoder.embeddings.weight)
        if encoder.position_embeddings is not None:
            put("position_embeddings", encoder.position_embeddings.weight[:length])
        if encoder.token_type_embeddings is not None:  # `encode` passes no token types: row 0 everywhere
            put("token_type_row", encoder.token_type_embeddings.weight[0])
        if encoder.embeddings_norm is not None:
            put("embeddings_norm.weight", encoder.embeddings_norm.weight)
            put("embeddings_norm.bias", encoder.embeddings_norm.bias)
        short_conv = []
        for i, layer in enumerate(encoder.layers):
            p = f"layers.{i}."
            put(p + "norm.weight", layer.norm.weight)
            put(p + "norm.bias", layer.norm.bias)
            for name in _PROJECTIONS:
                lin = getattr(layer, name)
                put(p + name + ".weight", lin.weight)
                put(p + name + ".bias", lin.bias if lin.bias is not None else torch.zeros(lin.out_features))
            ssm = layer.mixer.ssm
            k = ssm.kernel.materialize(length)  # (2, G, L), the model's own kernel computation
            k = torch.cat([k[..., :1] + ssm.kernel.D.to(k.dtype).unsqueeze(-1), k[..., 1:]], dim=-1)
            put(p + "kernel", k)
            conv = layer.mixer.short_conv
            short_conv.append(conv is not None)
            if conv is not None:  # the taps with the per-channel scale folded in, as ShortConv.forward does
                d, w = conv.hidden_size, conv.conv.weight
                put(p + "short_conv_f", w[:d] * conv.scale[0].view(d, 1, 1))
                put(p + "short_conv_b", w[d:].flip(-1) * conv.scale[1].view(d, 1, 1))
        if encoder.norm_f is not None:
            put("norm_f.weight", encoder.norm_f.weight)
            put("norm_f.bias", encoder.norm_f.bias)
    first_conv = next((layer.mixer.short_conv for layer in encoder.layers if layer.mixer.short_conv is not None), None)
    meta = {
        "hidden_size": config.hidden_size, "num_layers": len(encoder.layers), "max_length": length,
        "layer_norm_eps": config.layer_norm_eps, "direction_merge": config.direction_merge,
        "pooling": config.pooling, "short_conv": short_conv,
        "short_conv_groups": first_conv.groups if first_conv is not None else None,
        "short_conv_padding": first_conv.conv.padding[0] if first_conv is not None else None,
        "hybrid_fusion": getattr(config, "hybrid_fusion", None),
    }
    return meta, out


# ------------------------------------------------------------------------------------------ numpy forward
def read_export(data: bytes, where: str) -> tuple[dict, dict, str | None]:
    """(meta, arrays, tokenizer JSON) of a `query_encoder.npz` given as bytes (`CodeIndex.extra` holds them,
    checked against the manifest); `where` names the file in errors. Unsupported models: no arrays, no JSON."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode("utf-8"))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(f"{where}: query encoder format {meta.get('format')!r} version "
                                 f"{meta.get('version')}, this mambacode reads {FORMAT!r} version {VERSION} "
                                 "(re-run `mambacode index`)")
            arrays = {name: npz[name] for name in npz.files if name not in ("meta", "tokenizer")}
            tokenizer = bytes(npz["tokenizer"]).decode("utf-8") if "tokenizer" in npz.files else None
    except (OSError, KeyError, ValueError) as exc:
        if str(exc).startswith(where):
            raise
        raise ValueError(f"{where}: not a query encoder export ({exc}; re-run `mambacode index`)") from None
    return meta, arrays, tokenizer


_SURROGATE = re.compile("[\ud800-\udfff]")


def fix_surrogates(text: str) -> str:
    """As `encode` does before tokenizing: surrogate pairs joined into their character, lone ones U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_ERF = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)), as torch's default `F.gelu` (math.erf in float64)."""
    erf = _ERF(x.astype(np.float64) / math.sqrt(2.0)).astype(x.dtype)
    return 0.5 * x * (1.0 + erf)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def toeplitz_convolution(u: np.ndarray, k: np.ndarray, anticausal: bool) -> np.ndarray:
    """y[t] = sum_s k[t - s] u[s] (causal) or sum_s k[s - t] u[s] (anti-causal), per channel group:
    u (L, d), k (G, >= L) over G contiguous channel groups."""
    length, d = u.shape
    groups = k.shape[0]
    lag = np.arange(length)[:, None] - np.arange(length)[None, :]  # t - s
    if anticausal:
        lag = -lag
    T = np.where(lag >= 0, k[:, np.clip(lag, 0, None)], 0.0)  # (G, L, L)
    y = np.einsum("gts,sgc->tgc", T, u.reshape(length, groups, d // groups))
    return y.reshape(length, d)


def grouped_same_convolution(u: np.ndarray, w: np.ndarray, groups: int, padding: int) -> np.ndarray:
    """torch's grouped cross-correlation with zero 'same' padding: u (L, d), w (d, d / groups, taps)."""
    length, d = u.shape
    taps = w.shape[-1]
    per = d // groups
    padded = np.zeros((length + 2 * padding, d), u.dtype)
    padded[padding:padding + length] = u
    y = np.zeros((length, d), u.dtype)
    for m in range(taps):
        window = padded[m:m + length].reshape(length, groups, per)  # (L, g, in)
        tap = w[:, :, m].reshape(groups, per, per)  # (g, out, in)
        y += np.einsum("lgi,goi->lgo", window, tap).reshape(length, d)
    return y


class NumpyQueryEncoder:
    """`MambaCodeForRetrieval.encode` for texts one at a time, in numpy, from an index's `query_encoder.npz`."""

    dtype = np.float32

    def __init__(self, meta: dict, arrays: dict, tokenizer_json: str):
        from tokenizers import Tokenizer

        self.meta, self.arrays = meta, arrays
        self._weights: dict[str, np.ndarray] = {}  # transposed weights in `dtype`, converted on first use
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self._truncation = None

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "NumpyQueryEncoder":
        """The encoder of an export's bytes; ValueError (with the export's reason) for an unsupported model."""
        meta, arrays, tokenizer_json = read_export(data, where)
        if not meta["supported"]:
            raise ValueError(f"{where}: the model has no numpy query encoder ({meta['reason']})")
        return cls(meta, arrays, tokenizer_json)

    @classmethod
    def load(cls, index_dir: str) -> "NumpyQueryEncoder":
        """The exported encoder of the index folder `index_dir` (read without checking: `Searcher` takes the
        checked bytes from `CodeIndex.extra`)."""
        path = os.path.join(index_dir, FILE)
        if not os.path.exists(path):
            raise ValueError(f"{path}: no query encoder in this index (built before they were exported)")
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read(), path)

    @property
    def hybrid_fusion(self) -> dict | None:
        return self.meta.get("hybrid_fusion")

    def token_ids(self, text: str, max_length: int) -> list[int]:
        """The ids the model's tokenizer gives `text` with truncation=True, max_length=`max_length`."""
        if self._truncation != max_length:
            self.tokenizer.enable_truncation(max_length)
            self._truncation = max_length
        return self.tokenizer.encode(fix_surrogates(text)).ids

    def encode(self, texts: list[str], max_length: int) -> np.ndarray:
        """(n, d) float32 L2-normalised embeddings; a text with no tokens gets a zero vector."""
        if max_length > self.meta["max_length"]:
            raise ValueError(f"query encoder exported for at most {self.meta['max_length']} tokens, asked for "
                             f"{max_length} (re-run `mambacode index` with a longer --query_max_length)")
        out = np.zeros((len(texts), self.meta["hidden_size"]), np.float32)
        for row, text in enumerate(texts):
            ids = self.token_ids(text, max_length)
            if ids:
                pooled = self.pooled(ids)
                out[row] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out

    def pooled(self, ids: list[int]) -> np.ndarray:
        """The pooled final states (d,) of one unpadded sequence of token ids, in `dtype`."""
        a, meta = self.arrays, self.meta
        eps = meta["layer_norm_eps"]
        length = len(ids)
        x = a["embeddings"][np.asarray(ids)].astype(self.dtype)
        if "position_embeddings" in a:
            x = x + a["position_embeddings"][:length]
        if "token_type_row" in a:
            x = x + a["token_type_row"]
        if "embeddings_norm.weight" in a:
            x = layer_norm(x, a["embeddings_norm.weight"], a["embeddings_norm.bias"], eps)
        for i in range(meta["num_layers"]):
            x = self._layer(x, f"layers.{i}.", meta["short_conv"][i])
        if "norm_f.weight" in a:
            x = layer_norm(x, a["norm_f.weight"], a["norm_f.bias"], eps)
        if meta["pooling"] == "cls":
            return x[0]
        if meta["pooling"] == "max":
            return x.max(axis=0)
        return x.mean(axis=0)

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self._weights.get(name)
        if weight is None:
            weight = self._weights[name] = self.arrays[name + ".weight"].T.astype(self.dtype, copy=False)
        return x @ weight + self.arrays[name + ".bias"]

    def _layer(self, x: np.ndarray, p: str, short_conv: bool) -> np.ndarray:
        a, meta = self.arrays, self.meta
        h = layer_norm(x, a[p + "norm.weight"], a[p + "norm.bias"], meta["layer_norm_eps"])
        u_f, u_b = gelu(self._linear(h, p + "proj_uf")), gelu(self._linear(h, p + "proj_ub"))
        k = a[p + "kernel"].astype(self.dtype, copy=False)  # (2, G, L_max), D folded into lag 0
        y_f, y_b = toeplitz_convolution(u_f, k[0], False), toeplitz_convolution(u_b, k[1], True)
        if short_conv:
            groups, padding = meta["short_conv_groups"], meta["short_conv_padding"]
            w_f, w_b = (a[p + name].astype(self.dtype, copy=False) for name in ("short_conv_f", "short_conv_b"))
            y_f = y_f + grouped_same_convolution(u_f, w_f, groups, padding)
            y_b = y_b + grouped_same_convolution(u_b, w_b, groups, padding)
        c_f, c_b = self._linear(y_f, p + "proj_cf"), self._linear(y_b, p + "proj_cb")
        z = c_f * c_b if meta["direction_merge"] == "mul" else c_f + c_b
        gate = gelu(self._linear(z, p + "proj_ol")) * gelu(self._linear(h, p + "proj_v"))
        return x + self._linear(gate, p + "proj_o")


__all__ = ["FILE", "NumpyQueryEncoder", "export_query_encoder", "gelu", "read_export", "unsupported_reason"]
