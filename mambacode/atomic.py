"""Atomic file writes: a temporary file in the target's folder, then os.replace.

Reports, model cards, figures, exported models, search indexes and corpora all go through here, so an interrupted run never leaves a
half-written file where a finished one is expected.

Temporaries left by a killed run (``kill -9``, power loss) are cleaned up by the next write into the same
folder. Each temporary is named after its writer, ``.tmp-<host>-<pid>-<random>`` (the corpus builder's
``.<name>.building-<host>-<pid>-<random>`` and a swap's ``.<name>.old-<host>-<pid>-<random>`` alike, with
``<host>`` 8 hex digits of a hash of the machine's name), and :func:`remove_stale_temporaries` removes one
when its writer is gone: a process of this machine that no longer runs, or, for a temporary of another
machine (a shared disk) or an unnamed one of older versions (``.tmp-`` + mkstemp's 8 characters), when it is
older than ``STALE_SECONDS`` (a day). A live writer's temporary is never touched; nothing else is.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: a temporary of another machine, or one without its writer's name, is stale after this many seconds
STALE_SECONDS = 24 * 3600
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMPORARY = re.compile(r"^(?:\.tmp-|\..+\.(?:building|old)-)(?:(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-)?"
                        r"[a-z0-9_]{8}(?:\.[A-Za-z0-9_.]*)?$")


def temp_prefix(stem: str = ".tmp-") -> str:
    """The name prefix of a temporary this process makes: `stem` + `<host>-<pid>-` (see the module docstring)."""
    return f"{stem}{_HOST}-{os.getpid()}-"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or no way to tell: assume it runs
        return True
    return True


def remove_stale_temporaries(directory: str, max_age: float = STALE_SECONDS) -> list[str]:
    """Remove the temporaries of this package in `directory` whose writer is gone (module docstring);
    returns their names. Best effort: entries that vanish or cannot be removed are left alone."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = None  # read only when an entry needs it
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None:
            continue
        host, pid = match.group("host"), match.group("pid")
        if host == _HOST:
            stale = not _running(int(pid))
        else:
            now = time.time() if now is None else now
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > max_age
            except OSError:
                continue
        if not stale:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
        logger.info("removed %s: a temporary left by an interrupted run (%s)", entry.path,
                    f"process {pid} is gone" if host == _HOST else f"older than {max_age:.0f} s")
    return removed


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so the mask is never changed, even briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix, dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600, widened as any new file is (the umask decides)
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
    aside = tempfile.mkdtemp(prefix=temp_prefix(f".{os.path.basename(path)}.old-"), dir=os.path.dirname(path))
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
    remove_stale_temporaries(parent)
    tmp = tempfile.mkdtemp(prefix=temp_prefix(), dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700, widened as any new folder is (the umask decides)
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


__all__ = ["STALE_SECONDS", "atomic_path", "atomic_directory", "atomic_write_text", "current_umask", "exchange_paths",
           "remove_stale_temporaries", "swap_directory", "temp_prefix"]
