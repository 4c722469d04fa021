#!/usr/bin/env python
"""Push a saved model folder (e.g. runs/tiny/models/s4d) to the Hugging Face Hub.

    python scripts/push_to_hub.py --model_name_or_path runs/tiny/models/s4d --repo_id user/mambacode-s4d-tiny \
        [--private]

The folder is checked first (config, weights, tokenizer, a README.md model card with YAML front matter,
the remote-code files a MambaCode config's auto_map names), so a broken folder is never uploaded (exit
status 2). Then `huggingface_hub` creates the repository (if needed) and uploads the folder, with its own
model card, in one commit, leaving training checkpoints and optimizer states out. `--dry_run` stops after
the checks. Without network (or with HF_HUB_OFFLINE=1) it fails with a one-line message and exit status 3.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mambacode.training.hub import HUB_EXIT_STATUS, HubUnavailableError, check_folder, push_folder


@dataclass
class PushArguments:
    model_name_or_path: str = field(metadata={"help": "Saved model folder to publish."})
    repo_id: str = field(metadata={"help": "user-or-org/name on the Hub."})
    private: bool = field(default=False, metadata={"help": "Create the repository private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    commit_message: str = field(default="Upload MambaCode model")
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one / HF_TOKEN)."})
    dry_run: bool = field(default=False, metadata={"help": "Only check the folder."})


def main(argv=None) -> int:
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    folder = args.model_name_or_path
    problems = check_folder(folder)
    if problems:
        print(f"error: {folder} is not ready to push:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    if args.repo_id.count("/") != 1:
        print(f"error: --repo_id={args.repo_id!r}: expected 'user-or-org/name'", file=sys.stderr)
        return 2
    print(f"{folder}: ok (config, weights, tokenizer, model card)")
    if args.dry_run:
        return 0
    try:
        info = push_folder(folder, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                           commit_message=args.commit_message)
    except HubUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return HUB_EXIT_STATUS
    print(f"pushed to {getattr(info, 'commit_url', None) or args.repo_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
