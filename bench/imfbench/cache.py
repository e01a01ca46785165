"""The row cache: each measured stream's result (per-frame values included) is kept in
DIR/cache as JSON + NPZ under a key of everything it depends on (clip content, frame count,
rate, codec options, coded size, metric settings, model). A rerun into the same folder skips
every stream whose key matches and whose stream file is still there, so an interrupted run
resumes where it stopped; ``--reuse DIR`` reads another run's cache the same way."""
from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from imfbench.common import Result
from imfcodec.fileio import atomic_write

_FIELDS = ["video", "codec", "setting", "order", "frames", "nbytes", "file_bytes", "kbps", "enc_fps",
           "dec_fps", "keyframes", "size", "keyframe_index", "options", "note"]


def source_digest(src: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(src).tobytes()).hexdigest()[:16]


class RowCache:
    def __init__(self, folder: Path, writable: bool = True):
        self.root = Path(folder)
        self.dir = self.root / "cache"
        self.writable = writable
        self.missing: Path | None = None
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _stem(self, video, codec, setting) -> Path:
        return self.dir / f"{video}__{codec.replace('@', '_at')}__{setting}"

    @staticmethod
    def digest(key: dict) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, video, codec, setting, key: dict, fps: Fraction) -> Result | None:
        """The cached row, or None; then ``self.missing`` is the stream file of a row whose key
        matched but whose stream is gone (a cache copied without its streams/), else None."""
        stem = self._stem(video, codec, setting)
        self.missing = None
        try:
            rec = json.loads(stem.with_suffix(".json").read_text())
            if rec.get("key") != self.digest(key):
                return None
            stream = (self.root / rec["stream"]).resolve()
            if not stream.exists():
                self.missing = stream
                return None
            with np.load(stem.with_suffix(".npz")) as z:
                per_frame = {k: z[k].astype(np.float64) for k in z.files}
        except (OSError, ValueError, KeyError):
            return None
        r = Result(**{k: rec[k] for k in _FIELDS}, fps=fps, stream=str(stream))
        r.per_frame = per_frame
        return r

    def put(self, r: Result, key: dict):
        if not self.writable:
            return
        stem = self._stem(r.video, r.codec, r.setting)

        def npz(f):
            np.savez_compressed(f, **{k: np.asarray(v, dtype=np.float64) for k, v in r.per_frame.items()})
        atomic_write(stem.with_suffix(".npz"), npz)
        rec = {k: getattr(r, k) for k in _FIELDS}
        rec.update(fps=str(r.fps), key=self.digest(key),
                   stream=str(Path(r.stream).resolve().relative_to(self.root.resolve())))
        data = json.dumps(rec, default=str).encode()
        atomic_write(stem.with_suffix(".json"), lambda f: f.write(data))
