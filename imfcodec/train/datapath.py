"""Where training and validation clips come from: a path given on the command line, else the
``IMFCODEC_DATA`` environment variable, a folder holding ``train/`` and ``val/`` clip folders.
No path in the package or the configs points at a particular machine's data.

Torch-free, so a command without data fails in one line before anything loads.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import IMFCodecError

DATA_ENV = "IMFCODEC_DATA"
SPLITS = ("train", "val")


class MissingDataError(IMFCodecError, ValueError):
    """Neither a data path nor $IMFCODEC_DATA was given."""


def data_dir(split: str, flag: str = "--data") -> Path:
    """``$IMFCODEC_DATA/<split>`` (``split`` is ``train`` or ``val``); a one-line error naming
    both ``flag`` and the variable when the variable is not set."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = os.environ.get(DATA_ENV)
    if not root:
        raise MissingDataError(f"no {split} clips: pass {flag} DIR or set {DATA_ENV} "
                               f"(a folder holding train/ and val/ clip folders)")
    return Path(root) / split


def data_paths(given, split: str = "train", flag: str = "--data") -> list[str]:
    """The paths given (files or folders of clips), else ``[$IMFCODEC_DATA/<split>]``."""
    if given:
        return [str(p) for p in given]
    return [str(data_dir(split, flag))]
