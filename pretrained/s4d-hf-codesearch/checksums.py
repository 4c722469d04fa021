"""Weight-file integrity: a SHA-256 of every weight file, written by `save_pretrained`, checked by
`from_pretrained`.

Why: safetensors has no checksum, so a flipped byte loads silently, and a truncated file fails with a
deserialisation error that does not say which file. `save_pretrained` therefore writes `checksums.sha256`
(the `sha256sum` format, "<hex>  <file name>" per line, so `sha256sum -c checksums.sha256` works in the
folder), and `from_pretrained` first checks the layout of every `.safetensors` file (header length and data
size, which catches truncation cheaply) and then every listed hash. A folder without the file (one written
by another tool, or before this check existed) loads with a warning, not an error; a file that is there must
be well formed: at least one line, each a 64-digit hash and a plain file name of this folder (no folders, no
`..`, no absolute paths: nothing outside the folder is ever read), each name once.

This file is copied next to saved weights for `trust_remote_code`: it imports only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re

logger = logging.getLogger(__name__)

CHECKSUM_FILE = "checksums.sha256"
# transformers' weight files: model(.variant)(-0000i-of-0000n).safetensors, pytorch_model*.bin, their indices
WEIGHT_FILE = re.compile(r"^(model|pytorch_model|adapter_model)\b.*\.(safetensors|bin)(\.index\.json)?$")


class DamagedWeightsError(OSError):
    """A weight file is truncated, malformed, missing or differs from its recorded checksum."""


def weight_files(folder: str) -> list[str]:
    """Names of the weight files directly in `folder`, sorted."""
    return sorted(n for n in os.listdir(folder) if WEIGHT_FILE.match(n) and os.path.isfile(os.path.join(folder, n)))


def sha256(path: str, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: str) -> str:
    """Write `folder/checksums.sha256` for its weight files (atomically); returns its path."""
    lines = [f"{sha256(os.path.join(folder, name))}  {name}\n" for name in weight_files(folder)]
    path = os.path.join(folder, CHECKSUM_FILE)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)
    return path


def check_safetensors_layout(path: str) -> None:
    """Raise DamagedWeightsError unless the file's header parses and its tensors exactly fill the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
        if header_len < 0 or 8 + header_len > size:
            raise DamagedWeightsError(f"{path}: truncated or not a safetensors file ({size} bytes; the header "
                                      "alone needs more). Re-download or re-save it.")
        try:
            header = json.loads(fh.read(header_len))
        except ValueError as exc:
            raise DamagedWeightsError(f"{path}: the safetensors header is not valid JSON ({exc}).") from None
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        raise DamagedWeightsError(f"{path}: {size} bytes, but its header describes {expected} "
                                  f"({'truncated' if size < expected else 'trailing data'}). Re-download or re-save it.")


def _plain_name(name: str) -> bool:
    """A file name directly inside the folder: no separators, not '.' or '..', no drive, no NUL."""
    return (name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name
            and os.path.basename(name) == name and not os.path.isabs(name) and ":" not in name[:2])


def read_checksums(listing: str) -> dict:
    """{file name: hex digest} of a `checksums.sha256`; DamagedWeightsError naming the line for anything but
    well-formed lines with plain file names of its folder, for a repeated name, and for an empty file."""
    expected = {}
    try:
        with open(listing, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        raise DamagedWeightsError(f"{listing}: not UTF-8 text; expected '<sha256 hex>  <file name>' lines.") from None
    for number, line in enumerate(lines, 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not match:
            raise DamagedWeightsError(f"{listing}, line {number}: expected '<sha256 hex>  <file name>', "
                                      f"got {line.strip()[:120]!r}.")
        name = match.group(2)
        if not _plain_name(name):
            raise DamagedWeightsError(f"{listing}, line {number}: {name[:120]!r} is not a plain file name of this "
                                      "folder (no folders, '..' or absolute paths); nothing outside it is read.")
        if name in expected:
            raise DamagedWeightsError(f"{listing}, line {number}: {name!r} is listed twice.")
        expected[name] = match.group(1)
    if not expected:
        raise DamagedWeightsError(f"{listing} is empty: expected one '<sha256 hex>  <file name>' line per weight "
                                  "file (save_pretrained writes them); delete the file to load unverified.")
    return expected


def verify_folder(folder: str, listed_must_exist: bool = True) -> bool:
    """Check the weight files of `folder`; raise DamagedWeightsError naming the first bad file.

    Returns False (after a warning) when the folder has no checksum file, True when every hash matched.
    `listed_must_exist=False` skips listed files that are absent (a Hub download fetches one format only).
    """
    names = weight_files(folder)
    for name in names:
        if name.endswith(".safetensors"):
            check_safetensors_layout(os.path.join(folder, name))
    listing = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(listing):
        logger.warning("%s has no %s: its weight files are not verified (folders written by other tools or "
                       "before checksums were added have none; save_pretrained writes one).", folder, CHECKSUM_FILE)
        return False
    expected = read_checksums(listing)
    for name, digest in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            if listed_must_exist:
                raise DamagedWeightsError(f"{path} is listed in {CHECKSUM_FILE} but missing.")
            continue
        actual = sha256(path)
        if actual != digest:
            raise DamagedWeightsError(f"{path}: SHA-256 {actual} differs from {digest} recorded in {CHECKSUM_FILE}; "
                                      "the file is damaged (or was replaced without re-saving).")
    unlisted = [n for n in names if n not in expected]
    if unlisted:
        logger.warning("%s: weight files %s are not listed in %s and were not verified.", folder, unlisted,
                       CHECKSUM_FILE)
    return True


__all__ = ["CHECKSUM_FILE", "DamagedWeightsError", "verify_folder", "write_checksums", "weight_files",
           "check_safetensors_layout", "read_checksums", "sha256"]
