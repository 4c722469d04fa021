"""Where a model named on a command line lives: a folder, a checkpoint shipped with the package, or a Hub id.

Torch-free (the standard library only), so that commands can resolve `--model` before deciding whether they
need torch at all. `mambacode.pretrained` re-exports the first three functions.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_FILE = "shipped.json"
#: the model `mambacode index` uses when none is named: the code-search student distilled from all-MiniLM-L6-v2
DEFAULT_SEARCH_MODEL = "s4d-minilm-codesearch"


def pretrained_root() -> Path:
    """The folder holding the shipped checkpoints (the repository's `pretrained/`)."""
    from importlib.resources import files

    return Path(str(files("mambacode.shipped")))


def available_pretrained() -> list[str]:
    """Names of the shipped checkpoints (folders with a `shipped.json`), sorted."""
    root = pretrained_root()
    return sorted(p.name for p in root.iterdir() if (p / SHIPPED_FILE).is_file()) if root.is_dir() else []


def pretrained_path(name: str) -> str:
    """The folder of the shipped checkpoint `name`, for `AutoModel.from_pretrained(path, trust_remote_code=True)`.

    Raises ValueError naming the shipped checkpoints when `name` is not one of them."""
    names = available_pretrained()
    if name not in names:
        raise ValueError(f"pretrained_path: no shipped checkpoint {name!r}; shipped: {names or 'none'} "
                         f"(in {pretrained_root()})")
    return str(pretrained_root() / name)


def resolve_model(name_or_path: str) -> str:
    """`name_or_path` as a loader takes it: an existing folder (as given), else the folder of the shipped
    checkpoint of that name, else the string itself (a Hub id: 'name' or 'owner/name'). A path-like name
    (starting with '/', '.' or '~', or with more than one '/') that is no folder is a FileNotFoundError naming
    the shipped checkpoints."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"--model {name_or_path!r}: expected a model folder, a shipped name or a Hub id")
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in available_pretrained():
        return pretrained_path(name_or_path)
    if os.path.exists(name_or_path):
        raise FileNotFoundError(f"--model {name_or_path}: a file, not a model folder")
    # a Hub id is 'name' or 'owner/name'; anything else with a separator is meant as a folder
    path_like = (name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
                 or "\\" in name_or_path or (os.sep != "/" and os.sep in name_or_path))
    if path_like:
        raise FileNotFoundError(f"--model {name_or_path}: no such folder (shipped models: "
                                f"{', '.join(available_pretrained()) or 'none'}; or a Hub id 'owner/name')")
    return name_or_path


__all__ = ["available_pretrained", "pretrained_path", "pretrained_root", "resolve_model"]


def shipped_code_length(name_or_path: str, default: int = 256) -> int:
    """The code length a shipped retrieval model was evaluated with (`shipped.json`'s `max_code_length`), for a
    shipped name or folder; `default` for any other model."""
    import json

    folder = name_or_path if os.path.isdir(name_or_path) else (
        pretrained_path(name_or_path) if name_or_path in available_pretrained() else None)
    path = os.path.join(folder, SHIPPED_FILE) if folder else None
    if not path or not os.path.isfile(path):
        return default
    with open(path) as fh:
        value = json.load(fh).get("max_code_length")
    return int(value) if isinstance(value, int) and value > 0 else default
