"""Atomic file writes: every output (streams, videos, models, checkpoints, caches) goes to a
temporary file in the same folder and replaces its target only when complete.

A finished output gets the permissions ``open()`` would have given it (``0o666`` less the
umask), not the temporary file's ``0600``.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import IMFCodecError

_UMASK_LOCK = threading.Lock()


class OutputError(IMFCodecError, OSError):
    """An output that cannot be written where it was asked for (one-line message)."""


def check_output_folder(path) -> Path:
    """``path`` as a Path, or an OutputError when the folder it goes in does not exist or
    cannot be written to."""
    path = Path(path)
    if not path.parent.exists():
        raise OutputError(f"{path}: output folder does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output folder is not writable")
    return path


def _umask() -> int:
    """The process umask. Linux shows it in /proc/self/status; elsewhere it is read by setting
    and restoring it, under a lock so that our own threads never see the temporary value."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits of a new ordinary file, as ``open(path, "w")`` would create it."""
    return 0o666 & ~_umask()


def temp_file(path, suffix: str = ".tmp") -> str:
    """An empty temporary file next to ``path`` (same folder, so :func:`commit` is atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return tmp


def commit(tmp, path) -> None:
    """Give the finished temporary file ordinary permissions and move it onto ``path``."""
    os.chmod(tmp, new_file_mode())
    os.replace(tmp, path)


def discard(tmp) -> None:
    """Remove a temporary file (no error if it is already gone)."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def atomic_write(path, write: Callable[[Any], None]) -> None:
    """Write via ``write(fileobj)`` to a temp file in ``path``'s directory, then ``os.replace``;
    on any error the temp file is removed and ``path`` is left as it was."""
    tmp = temp_file(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def atomic_copy(src, dst) -> None:
    """Copy ``src`` onto ``dst`` atomically (a reader of ``dst`` sees the old or the new file)."""
    import shutil
    with open(src, "rb") as s:
        atomic_write(dst, lambda f: shutil.copyfileobj(s, f))
