"""Atomic file writes: a temporary file in the target's folder, then os.replace.

Reports, model cards, figures, exported models, search indexes and corpora all go through here, so an interrupted run never leaves a
half-written file where a finished one is expected.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def exchange_paths(a: str, b: str) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a!r} with {b!r}: {os.strerror(err)}")


def swap_directory(new: str, path: str) -> None:
    """Make the finished folder ``new`` (a sibling of ``path``) the folder ``path``: one rename, or one atomic
    exchange (``new`` is removed afterwards, holding the previous folder).

    Where the kernel cannot exchange, the old folder is renamed aside first and renamed back if the second
    rename fails, so ``path`` ends as the old complete folder, the new one, or (only if even that fails)
    absent, with the old folder's whereabouts in the error.
    """
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if exchange_paths(new, path):
        shutil.rmtree(new, ignore_errors=True)
        return
    aside = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
    os.rename(path, aside)  # onto the empty folder just made (POSIX replaces an empty directory)
    try:
        os.rename(new, path)
    except BaseException:
        try:
            os.rename(aside, path)
        except OSError as exc:
            raise OSError(f"{path!r}: the new folder could not be moved in and the previous one could not be "
                          f"moved back ({exc}); it is at {aside!r}") from exc
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_directory(path: str):
    """Yield a temporary folder beside `path`; on success it takes the place of `path` (`swap_directory`),
    on error it is removed and `path` stays as it was."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        yield tmp
        swap_directory(tmp, os.path.abspath(path))
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def atomic_write_text(path: str, text: str) -> str:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


__all__ = ["atomic_path", "atomic_directory", "atomic_write_text", "exchange_paths", "swap_directory"]
