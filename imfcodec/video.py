"""Reading and writing ordinary video files through PyAV, and model-size resampling.

Inputs: anything FFmpeg demuxes (mp4, mov, mkv, webm, y4m, ...), plus raw ``.yuv``
(planar 4:2:0) when its size and rate are given. Outputs by extension: ``.mp4``/``.mkv``
(x264, CRF 10, 4:2:0 for even sizes, 4:4:4 for odd ones), ``.y4m`` and ``.yuv`` (raw).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import IMFCodecError
from .fileio import check_output_folder


class VideoError(IMFCodecError, ValueError):
    """A file that cannot be read or written as video."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None      # None when the container does not say


def _open(path, raw_size=None, raw_fps=None):
    import av
    path = str(path)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video file")
    opts, fmt = {}, None
    if path.lower().endswith(".yuv"):
        if not raw_size:
            raise VideoError(f"{path}: raw .yuv input needs its size (e.g. --size 176x144)")
        fmt = "rawvideo"
        opts = {"video_size": f"{raw_size[0]}x{raw_size[1]}", "pixel_format": "yuv420p",
                "framerate": str(raw_fps or 25)}
    try:
        c = av.open(path, format=fmt, options=opts)
    except Exception as e:  # av raises many error types (InvalidDataError, ...)
        raise VideoError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
    if not c.streams.video:
        c.close()
        raise VideoError(f"{path}: contains no video stream")
    return c


def probe(path, raw_size=None, raw_fps=None) -> VideoInfo:
    c = _open(path, raw_size, raw_fps)
    try:
        s = c.streams.video[0]
        fps = s.average_rate or s.guessed_rate or Fraction(25)
        if raw_fps:
            fps = Fraction(raw_fps).limit_denominator(1001)
        w, h = s.codec_context.width, s.codec_context.height
        return VideoInfo(w, h, Fraction(fps), s.frames or None)
    finally:
        c.close()


def read_frames(path, raw_size=None, raw_fps=None, max_frames=None) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) uint8. Raises VideoError on undecodable data."""
    import av
    c = _open(path, raw_size, raw_fps)
    n = 0
    try:
        for frame in c.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
            n += 1
            if max_frames and n >= max_frames:
                break
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: video data is corrupt after {n} frames ({e})") from None
    finally:
        c.close()


def to_model(frames: np.ndarray | list, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float (N, 3, size, size) in [0, 1] (antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(frames)))
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def from_model(x: torch.Tensor, width: int, height: int) -> np.ndarray:
    """float (N, 3, S, S) in [0, 1] -> uint8 (N, height, width, 3)."""
    x = x.detach().float().cpu()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, S, S) in [0, 1] -> uint8 (N, S, S, 3), no resampling."""
    return (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class VideoWriter:
    """Write RGB frames to a video file atomically: frames go to a temporary file in the
    same folder, which replaces ``path`` only on :meth:`close` (``abort`` removes it)."""

    def __init__(self, path, width: int, height: int, fps: Fraction, crf: int = 10):
        import av
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in (".mp4", ".mkv", ".mov", ".y4m", ".yuv"):
            raise VideoError(f"{path}: unsupported output type {ext or '(none)'}; "
                             "use .mp4, .mkv, .mov, .y4m or .yuv")
        check_output_folder(self.path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=ext, dir=self.path.parent)
        os.close(fd)
        self.tmp = tmp
        self.width, self.height = width, height
        self.raw = ext == ".yuv"
        if self.raw:
            self._fh = open(tmp, "wb")
            return
        fmt = {".y4m": "yuv4mpegpipe"}.get(ext)
        self.container = av.open(tmp, mode="w", format=fmt)
        if ext == ".y4m":
            self.stream = self.container.add_stream("rawvideo", rate=fps)
            self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        else:
            self.stream = self.container.add_stream("libx264", rate=fps)
            even = width % 2 == 0 and height % 2 == 0
            self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
            self.stream.options = {"crf": str(crf), "preset": "medium"}
        self.stream.width, self.stream.height = width, height

    def write(self, rgb: np.ndarray):
        import av
        if self.raw:
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            if self.width % 2 or self.height % 2:
                raise VideoError("raw .yuv output is 4:2:0 and needs even width and height")
            for plane, (w, h) in zip(f.planes, [(self.width, self.height)] + [(self.width // 2, self.height // 2)] * 2):
                buf = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
                self._fh.write(buf.tobytes())
            return
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for p in self.stream.encode(frame):
            self.container.mux(p)

    def close(self):
        if self.raw:
            self._fh.close()
        else:
            for p in self.stream.encode(None):
                self.container.mux(p)
            self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            if self.raw:
                self._fh.close()
            else:
                self.container.close()
        except Exception:
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *a):
        if exc_type is None:
            self.close()
        else:
            self.abort()
