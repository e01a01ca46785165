"""Atomic file writes: every output (streams, videos' siblings, models, checkpoints, caches)
goes to a temporary file in the same folder and replaces its target only when complete."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import IMFCodecError


class OutputError(IMFCodecError, OSError):
    """An output that cannot be written where it was asked for (one-line message)."""


def check_output_folder(path) -> Path:
    """``path`` as a Path, or an OutputError when the folder it goes in does not exist."""
    path = Path(path)
    if not path.parent.exists():
        raise OutputError(f"{path}: output folder does not exist")
    return path


def atomic_write(path, write: Callable[[Any], None]) -> None:
    """Write via ``write(fileobj)`` to a temp file in ``path``'s directory, then ``os.replace``;
    on any error the temp file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
