"""The tokenizer files of an exported model folder, made to agree with the model.

`tokenizer.save_pretrained` writes what the tokenizer object carries, and that includes leftovers: the
`model_max_length` it was trained with (1024 for the corpus tokenizer) whatever the model accepts, the loader's
own flags (`is_local`, `local_files_only`, from `from_pretrained`) and, in transformers 5, the truncation and
padding state the last call left in the `tokenizers` backend (`tokenizer.json`'s `truncation` / `padding`, read
back as `max_length`, `stride`, ... in the tokenizer's init arguments). Then `tok(long, truncation=True)` cuts at
the wrong length and the model refuses the result. `tidy_tokenizer_files` rewrites the saved files so that the
tokenizer's limit is the model's and nothing from one call or one load is kept. Standard library only.
"""

from __future__ import annotations

import json
import os

# keys of tokenizer_config.json that describe one from_pretrained call or one __call__, not the tokenizer
STRAY_CONFIG_KEYS = ("is_local", "local_files_only", "cache_dir", "force_download", "proxies", "revision",
                     "subfolder", "token", "use_auth_token", "trust_remote_code", "_commit_hash", "_from_auto",
                     "max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "pad_token_type_id")


def model_max_length_of(config) -> int | None:
    """The longest input the model accepts (`max_position_embeddings`), or None if its config has no limit."""
    value = getattr(config, "max_position_embeddings", None)
    if value is None and isinstance(config, dict):
        value = config.get("max_position_embeddings")
    return int(value) if value is not None else None


def _rewrite_json(path: str, change) -> bool:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    new = change(dict(data))
    if new == data:
        return False
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(new, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)
    return True


def tidy_tokenizer_files(folder: str, model_max_length: int | None) -> list[str]:
    """Make the tokenizer saved in `folder` agree with its model: `model_max_length` set to the model's limit
    (left as it is when None), the stray keys of `STRAY_CONFIG_KEYS` dropped from `tokenizer_config.json`, and
    no truncation or padding state kept in `tokenizer.json`. Returns the names of the files it changed."""
    changed = []
    config_path = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(config_path):
        def fix_config(cfg):
            for key in STRAY_CONFIG_KEYS:
                cfg.pop(key, None)
            if model_max_length is not None:
                cfg["model_max_length"] = int(model_max_length)
            return cfg

        if _rewrite_json(config_path, fix_config):
            changed.append("tokenizer_config.json")
    fast_path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(fast_path):
        def fix_fast(tok):
            tok.update(truncation=None, padding=None)
            return tok

        if _rewrite_json(fast_path, fix_fast):
            changed.append("tokenizer.json")
    return changed


__all__ = ["STRAY_CONFIG_KEYS", "model_max_length_of", "tidy_tokenizer_files"]
