"""Publishing a saved folder to the Hugging Face Hub: check that it is complete, then upload it as it is on
disk, with OUR model card (README.md). `Trainer.push_to_hub` would regenerate the card first and overwrite
ours (model-index, interpretability section and tags lost), so the scripts push through `push_folder`.

Offline (`HF_HUB_OFFLINE=1`), or with the Hub out of reach (network down, no or wrong token), a push is refused
up front with `HubUnavailableError`, a one-line message the scripts print before exiting with status 3, instead of
a traceback (from `Trainer`'s own repository creation) or a failure after training.
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


def require_hub(repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Create `repo_id` on the Hub if needed (what `Trainer` does first with --push_to_hub) and return its full id;
    `HubUnavailableError` in one line when offline mode is on or the Hub cannot be reached, or refuses (network,
    auth, permissions). The scripts call it before training, so a push that cannot happen costs no training."""
    require_online()
    from huggingface_hub import HfApi, constants

    try:
        return HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise HubUnavailableError(f"--push_to_hub needs the Hugging Face Hub ({constants.ENDPOINT}), but creating "
                                  f"the repository {repo_id!r} there failed ({type(exc).__name__}): {reason}") from None


def card_for_repo(folder: str, repo_id: str) -> str | None:
    """The model card to publish as `repo_id` when it differs from `folder/README.md`, else None: a card whose
    `base_model` is a sibling name (a shipped checkpoint such as 's4d-hf-mlm', published beside this one) gets
    it prefixed with `repo_id`'s namespace, since the Hub accepts only repository ids there."""
    from huggingface_hub import ModelCard

    from .model_card import is_sibling_name

    path = os.path.join(folder, "README.md")
    if "/" not in repo_id or not os.path.exists(path):
        return None
    card = ModelCard.load(path)
    base = card.data.to_dict().get("base_model")
    if not isinstance(base, str) or not is_sibling_name(base):
        return None
    card.data.base_model = f"{repo_id.split('/')[0]}/{base}"
    return str(card)


def _upload_view(folder: str, card: str, into: str) -> str:
    """`into`, mirroring `folder` with links to its files, except README.md, which is `card`."""
    for root, _, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        os.makedirs(os.path.join(into, rel), exist_ok=True)
        for name in files:
            if rel == "." and name == "README.md":
                continue
            os.symlink(os.path.abspath(os.path.join(root, name)), os.path.join(into, rel, name))
    with open(os.path.join(into, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(card)
    return into


def push_folder(folder: str, repo_id: str, *, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload MambaCode model"):
    """Create `repo_id` if needed and upload `folder` (training leftovers excluded) in one commit; returns the
    `CommitInfo`. The card is the folder's, but for a sibling `base_model`, named in `repo_id`'s namespace
    (`card_for_repo`). Refused offline; any Hub failure becomes a one-line `HubUnavailableError`."""
    require_online(f"pushing {folder} to {repo_id}")
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        card = card_for_repo(folder, repo_id)
        with tempfile.TemporaryDirectory(prefix="mambacode-push-") as tmp:
            source = folder if card is None else _upload_view(folder, card, tmp)
            return api.upload_folder(repo_id=repo_id, folder_path=source, revision=revision, repo_type="model",
                                     commit_message=commit_message, ignore_patterns=IGNORE_PATTERNS)
    except OfflineModeIsEnabled:
        raise HubUnavailableError("cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE=1)") from None
    except Exception as exc:  # network, auth, permissions: say which, on one line
        reason = " ".join(str(exc).split())
        raise HubUnavailableError(f"pushing {folder} to {repo_id} failed ({type(exc).__name__}): {reason}") from exc


__all__ = ["IGNORE_PATTERNS", "HUB_EXIT_STATUS", "HubUnavailableError", "require_online", "require_hub",
           "check_folder", "card_for_repo", "push_folder"]
