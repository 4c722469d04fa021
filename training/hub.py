"""Publishing a saved folder to the Hugging Face Hub: check that it is complete, then upload it as it is on
disk, with OUR model card (README.md). `Trainer.push_to_hub` would regenerate the card first and overwrite
ours (model-index, interpretability section and tags lost), so the scripts push through `push_folder`.

Offline (`HF_HUB_OFFLINE=1`) a push is refused up front with `HubUnavailableError`, a one-line message the
scripts print before exiting with status 3, instead of a traceback after training.
"""

from __future__ import annotations

import json
import os

# training leftovers that do not belong in a published model
IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "optimizer.*", "scheduler.*", "rng_state*",
                   "training_args.bin", ".tmp-*", "_*"]
HUB_EXIT_STATUS = 3


class HubUnavailableError(RuntimeError):
    """The Hub cannot be reached (offline mode, network, auth); the message is one line."""


def require_online(what: str = "--push_to_hub") -> None:
    """HubUnavailableError when huggingface_hub is in offline mode (HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise HubUnavailableError(f"{what} needs the Hugging Face Hub, but offline mode is on (HF_HUB_OFFLINE=1); "
                                  "unset HF_HUB_OFFLINE or do not push")


def check_folder(folder: str) -> list[str]:
    """Problems that make `folder` unfit to publish (empty list = fine): config, weights, tokenizer, a model
    card with front matter, and the remote-code files a config's auto_map names."""
    from .model_card import parse_front_matter

    if not os.path.isdir(folder):
        return [f"{folder} is not a folder"]
    problems = []
    names = set(os.listdir(folder))
    if "config.json" not in names:
        problems.append("config.json is missing (save the model with save_pretrained)")
    if not any(n.endswith(".safetensors") or n == "pytorch_model.bin" for n in names
               if not n.startswith("spectral_anchor")):
        problems.append("no weights (model.safetensors) found")
    if not names & {"tokenizer.json", "tokenizer_config.json"}:
        problems.append("no tokenizer files (tokenizer.json / tokenizer_config.json): save the tokenizer too")
    if "README.md" not in names:
        problems.append("README.md (the model card) is missing")
    else:
        try:
            with open(os.path.join(folder, "README.md"), encoding="utf-8") as f:
                parse_front_matter(f.read())
        except ValueError as exc:
            problems.append(f"README.md: {exc}")
    if "config.json" in names:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        for ref in (config.get("auto_map") or {}).values():
            module = ref.split("--")[-1].split(".")[0] + ".py"
            if module not in names:
                problems.append(f"auto_map names {ref} but {module} is not in the folder (trust_remote_code would fail)")
    return sorted(set(problems))


def push_folder(folder: str, repo_id: str, *, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload MambaCode model"):
    """Create `repo_id` if needed and upload `folder` (training leftovers excluded) in one commit; returns the
    `CommitInfo`. Refused offline; any Hub failure becomes a one-line `HubUnavailableError`."""
    require_online(f"pushing {folder} to {repo_id}")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, repo_type="model",
                                 commit_message=commit_message, ignore_patterns=IGNORE_PATTERNS)
    except OfflineModeIsEnabled:
        raise HubUnavailableError("cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE=1)") from None
    except Exception as exc:  # network, auth, permissions: say which, on one line
        reason = " ".join(str(exc).split())
        raise HubUnavailableError(f"pushing {folder} to {repo_id} failed ({type(exc).__name__}): {reason}") from exc


__all__ = ["IGNORE_PATTERNS", "HUB_EXIT_STATUS", "HubUnavailableError", "require_online", "check_folder",
           "push_folder"]
