#!/usr/bin/env python
"""Push a saved model folder (e.g. runs/tiny/models/s4d) to the Hugging Face Hub.

    python scripts/push_to_hub.py runs/tiny/models/s4d --repo_id user/mambacode-s4d-tiny [--private]

The folder is checked first (config, weights, tokenizer, a README.md model card with YAML front matter,
the remote-code files a MambaCode config's auto_map names), so a broken folder is never uploaded. Then
`huggingface_hub` creates the repository (if needed) and uploads the folder in one commit, leaving
training checkpoints and optimizer states out. `--dry_run` stops after the checks. Without network (or
with HF_HUB_OFFLINE=1) it fails with a clear message and exit status 3.
"""

import argparse
import json
import os
import sys

IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "optimizer.*", "scheduler.*", "rng_state*",
          "training_args.bin", ".tmp-*"]


def check_folder(folder: str) -> list[str]:
    """Problems that make `folder` unfit to publish (empty list = fine)."""
    problems = []
    if not os.path.isdir(folder):
        return [f"{folder} is not a folder"]
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
        from mambacode.training.model_card import parse_front_matter

        try:
            parse_front_matter(open(os.path.join(folder, "README.md"), encoding="utf-8").read())
        except ValueError as exc:
            problems.append(f"README.md: {exc}")
    if "config.json" in names:
        config = json.load(open(os.path.join(folder, "config.json")))
        for ref in (config.get("auto_map") or {}).values():
            module = ref.split("--")[-1].split(".")[0] + ".py"
            if module not in names:
                problems.append(f"auto_map names {ref} but {module} is not in the folder (trust_remote_code would fail)")
    return sorted(set(problems))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="saved model folder")
    p.add_argument("--repo_id", required=True, help="user-or-org/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="branch to push to")
    p.add_argument("--commit_message", default="Upload MambaCode model")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in one / HF_TOKEN)")
    p.add_argument("--dry_run", action="store_true", help="only check the folder")
    args = p.parse_args(argv)

    problems = check_folder(args.folder)
    if problems:
        print(f"error: {args.folder} is not ready to push:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    if "/" not in args.repo_id or args.repo_id.count("/") != 1:
        print(f"error: --repo_id={args.repo_id!r}: expected 'user-or-org/name'", file=sys.stderr)
        return 2
    print(f"{args.folder}: ok (config, weights, tokenizer, model card)")
    if args.dry_run:
        return 0
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        api = HfApi(token=args.token)
        api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=args.repo_id, folder_path=args.folder, revision=args.revision,
                                 commit_message=args.commit_message, ignore_patterns=IGNORE)
    except OfflineModeIsEnabled as exc:
        print(f"error: cannot push to the Hub: offline mode is on (HF_HUB_OFFLINE=1): {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # network, auth, permissions: say which and stop
        print(f"error: pushing {args.folder} to {args.repo_id} failed ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 3
    print(f"pushed to {getattr(info, 'commit_url', None) or args.repo_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
