"""Results, errors, small parsers, the run log and atomic CSV writing."""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from imfcodec.fileio import atomic_write


class BenchError(Exception):
    """A problem with one item (video, codec, setting): it is skipped and reported."""


# imfcodec's row labels: "imf" as it codes by default (with the model's base layer where the
# model and level have one), "imf-tokens" for a base-layer model coded token-only
# (--base-layer off). One bench run has one imf runner, so at most one of them.
IMF_ROWS = ("imf", "imf-tokens")


def is_imf(codec: str) -> bool:
    return codec in IMF_ROWS


@dataclass
class Result:
    """One coded stream of one clip and its per-frame measurements."""
    video: str
    codec: str                  # "imf", "imf-tokens", "x264" (test size) or "x264@128" (coded at 128x128)
    setting: str                # "q4", "crf41"
    order: int                  # sort key: quality rises with it
    frames: int
    fps: Fraction
    nbytes: int                 # counted stream bytes (what the rate is computed from)
    file_bytes: int
    kbps: float
    enc_fps: float
    dec_fps: float
    keyframes: int
    size: int = 0               # coded size (square); the test size for imf and full-size anchors
    per_frame: dict = field(default_factory=dict)     # metric -> (N,) array
    mid_frame: np.ndarray | None = None         # decoded middle frame (for the image grid)
    mid_frame_src: np.ndarray | None = None     # the source's middle frame
    keyframe_index: list = field(default_factory=list)
    stream: str = ""
    options: dict = field(default_factory=dict)
    note: str = ""

    @property
    def family(self) -> str:
        """The codec without its size: "x264@128" -> "x264"."""
        return self.codec.split("@")[0]

    def mean(self, metric: str) -> float:
        v = self.per_frame.get(metric)
        if v is None or len(v) == 0 or np.all(np.isnan(v)):
            return float("nan")
        return float(np.nanmean(v))


def parse_int_list(text: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """'1-8', '1,4,8', '2-4,8' -> sorted unique ints (inclusive ranges)."""
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if a > b:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad number list {text!r} (use e.g. 1-8 or 1,4,8)") from None
    if not out:
        raise argparse.ArgumentTypeError(f"empty number list {text!r}")
    bad = [v for v in out if (lo is not None and v < lo) or (hi is not None and v > hi)]
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: values must be in {lo}..{hi}, got {bad}")
    return sorted(out)


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "video"


def fmt_num(v, digits=4):
    if v is None:
        return "nan"
    v = float(v)
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def kbps_of(nbytes: int, fps: Fraction, frames: int) -> float:
    """Rate in kbit/s of ``nbytes`` carrying ``frames`` frames at ``fps`` frames/s: the
    codec's own rate formula (``imfcodec.format.container.kbps``), for imfcodec and anchors alike."""
    from imfcodec.format.container import kbps
    return kbps(nbytes, frames, fps)


def write_csv(path: Path, header: list, rows: list):
    """Write a CSV file atomically (a reader never sees half a table)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


class Log:
    """Per-step lines to stderr (through tqdm, so the bar stays intact) and to DIR/log.txt."""

    def __init__(self, path: Path, quiet: bool = False):
        self.fh = open(path, "a", encoding="utf-8")
        self.quiet = quiet
        self.bar = None

    def __call__(self, msg: str):
        self.fh.write(msg + "\n")
        self.fh.flush()
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self):
        self.fh.close()
