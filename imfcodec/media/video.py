"""Reading and writing ordinary video files through PyAV, and model-size resampling.

Inputs: anything FFmpeg demuxes (mp4, mov, mkv, webm, y4m, ...), plus raw ``.yuv``
(planar 4:2:0) when its size and rate are given. Outputs by extension: ``.mp4``/``.mkv``
(x264, CRF 10, 4:2:0 for even sizes, 4:4:4 for odd ones), ``.y4m`` and ``.yuv`` (raw).

``-`` (:data:`PIPE`) names the standard streams: as an input, a video piped to stdin
(Y4M from ``ffmpeg -f yuv4mpegpipe -``, or any format FFmpeg recognizes from its first
bytes), read as it arrives; as an output, Y4M written to stdout frame by frame.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import IMFCodecError, describe
from ..fileio import check_output_folder, commit, discard, temp_file

PIPE = "-"      # input from stdin / output to stdout


class VideoError(IMFCodecError, ValueError):
    """A file that cannot be read or written as video."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None      # None when the container does not say


class _PipeReader:
    """stdin for PyAV, as it arrives: PyAV asks for 32 KiB at a time, and a buffered
    ``read(n)`` on a pipe waits until it has all n bytes (several frames of a small video);
    ``read1`` returns what the pipe holds. No ``seek``: PyAV treats it as a stream."""

    def __init__(self, f):
        self.f = f

    def read(self, n: int = -1) -> bytes:
        return self.f.read1(n if n >= 0 else 1 << 16)


def _raw_options(raw_size, raw_fps) -> dict:
    return {"video_size": f"{raw_size[0]}x{raw_size[1]}", "pixel_format": "yuv420p",
            "framerate": str(raw_fps or 25)}


def _open_stdin(raw_size=None, raw_fps=None):
    """stdin as a video; with ``raw_size``, raw planar 4:2:0 (``ffmpeg -f rawvideo -``)."""
    import av
    if sys.stdin.isatty():
        raise VideoError("input '-' reads a video from standard input, but it is a terminal; "
                         "pipe one in (ffmpeg -i IN -f yuv4mpegpipe - | imfcodec encode - OUT.imf)")
    fmt, opts = ("rawvideo", _raw_options(raw_size, raw_fps)) if raw_size else (None, {})
    try:
        c = av.open(_PipeReader(sys.stdin.buffer), mode="r", format=fmt, options=opts)
    except av.error.FFmpegError as e:
        raise VideoError(f"standard input: not a readable video ({describe(e)})") from None
    if not c.streams.video:
        c.close()
        raise VideoError("standard input: contains no video stream")
    return c


def _open(path, raw_size=None, raw_fps=None):
    import av
    path = str(path)
    if path == PIPE:
        return _open_stdin(raw_size, raw_fps)
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video file")
    opts, fmt = {}, None
    if path.lower().endswith(".yuv"):
        if not raw_size:
            raise VideoError(f"{path}: raw .yuv input needs its size (e.g. --size 176x144)")
        fmt, opts = "rawvideo", _raw_options(raw_size, raw_fps)
    try:
        c = av.open(path, format=fmt, options=opts)
    except Exception as e:  # av raises many error types (InvalidDataError, ...)
        raise VideoError(f"{path}: not a readable video ({describe(e)})") from None
    if not c.streams.video:
        c.close()
        raise VideoError(f"{path}: contains no video stream")
    return c


def _info(c, raw_fps=None) -> VideoInfo:
    s = c.streams.video[0]
    fps = s.average_rate or s.guessed_rate or Fraction(25)
    if raw_fps:
        fps = Fraction(raw_fps).limit_denominator(1001)
    w, h = s.codec_context.width, s.codec_context.height
    return VideoInfo(w, h, Fraction(fps), s.frames or None)


def probe(path, raw_size=None, raw_fps=None) -> VideoInfo:
    if str(path) == PIPE:
        raise VideoError("standard input cannot be probed without reading it; use read_video")
    c = _open(path, raw_size, raw_fps)
    try:
        return _info(c, raw_fps)
    finally:
        c.close()


def read_video(path, raw_size=None, raw_fps=None, max_frames=None) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Open a video once (a file, or :data:`PIPE` for stdin): its info and an iterator of
    RGB frames (H, W, 3) uint8, decoded as they are drawn."""
    c = _open(path, raw_size, raw_fps)
    try:
        info = _info(c, raw_fps)
    except BaseException:
        c.close()
        raise
    return info, _frames(c, "standard input" if str(path) == PIPE else path, max_frames)


def read_frames(path, raw_size=None, raw_fps=None, max_frames=None) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) uint8. Raises VideoError on undecodable data."""
    yield from read_video(path, raw_size, raw_fps, max_frames)[1]


def _frames(c, path, max_frames=None) -> Iterator[np.ndarray]:
    import av
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


class _AllOrNothing:
    """An output used in a ``with`` block: closed (committed) when the block ends normally,
    aborted (nothing left behind) when it raises."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *a):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class VideoWriter(_AllOrNothing):
    """Write RGB frames to a video file atomically: frames go to a temporary file in the
    same folder, which replaces ``path`` only on :meth:`close` (``abort`` removes it) and
    then has ordinary permissions. ``path`` :data:`PIPE` writes Y4M to stdout as it goes."""

    def __init__(self, path, width: int, height: int, fps: Fraction, crf: int = 10):
        self.to_stdout = str(path) == PIPE
        self.path = Path(path)
        self.tmp = None
        if self.to_stdout:
            if sys.stdout.isatty():
                raise VideoError("output '-' writes Y4M video to standard output, but it is a "
                                 "terminal; pipe it (| ffplay -) or name an output file")
            ext, target = ".y4m", sys.stdout.buffer
        else:
            ext = self.path.suffix.lower()
            if ext not in (".mp4", ".mkv", ".mov", ".y4m", ".yuv"):
                raise VideoError(f"{path}: unsupported output type {ext or '(none)'}; "
                                 "use .mp4, .mkv, .mov, .y4m or .yuv (or - for Y4M on stdout)")
            check_output_folder(self.path)
            target = self.tmp = temp_file(self.path, suffix=ext)
        self.width, self.height = width, height
        self.raw = ext == ".yuv"
        self._fh = self.container = None
        try:
            self._open(target, ext, fps, crf)
        except BaseException:
            self.abort()
            raise

    def _open(self, target, ext, fps, crf):
        import av
        if self.raw:
            self._fh = open(target, "wb")
            return
        try:
            self.container = av.open(target, mode="w", format={".y4m": "yuv4mpegpipe"}.get(ext))
            even = self.width % 2 == 0 and self.height % 2 == 0
            if ext == ".y4m":
                self.stream = self.container.add_stream("rawvideo", rate=fps)
            else:
                self.stream = self.container.add_stream("libx264", rate=fps)
                # veryfast: 1.9 ms a 256x256 frame where medium took 4.8, for a file 6 % larger
                # at this near-lossless CRF; the saved core time goes to the decoder (issue 36)
                self.stream.options = {"crf": str(crf), "preset": "veryfast"}
                # one thread: the output is encoded beside the networks (BackgroundWriter), whose
                # threads already fill the cores; x264's own (1.5 per core) made a 2-core decode
                # 10x slower by stalling the networks' thread pool (issue 36)
                self.stream.thread_count = 1
            self.stream.pix_fmt = "yuv420p" if even else "yuv444p"
            self.stream.width, self.stream.height = self.width, self.height
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot open for writing ({describe(e)})") from None

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
        if self.to_stdout:
            sys.stdout.buffer.flush()
        else:
            commit(self.tmp, self.path)

    def abort(self):
        try:
            if self._fh is not None:
                self._fh.close()
            if self.container is not None:
                self.container.close()
        except Exception:       # the partial output is thrown away; its error does not matter
            pass
        if self.tmp is not None:
            discard(self.tmp)


class BackgroundWriter(_AllOrNothing):
    """A :class:`VideoWriter` whose frames are encoded on a thread of their own, so that the
    output's encoder (x264, which PyAV runs without the GIL) works while the caller decodes
    the next frames. ``depth`` frames at most wait in between. The output is opened here, so
    an unwritable one fails at once; an error on the thread is raised by the next
    :meth:`write` or by :meth:`close`, and the output is then thrown away, as
    :meth:`VideoWriter.abort` does."""

    _END = None

    def __init__(self, path, width: int, height: int, fps: Fraction, depth: int = 16):
        self.writer = VideoWriter(path, width, height, fps)
        self.frames: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None
        self.aborted = False
        self.thread = threading.Thread(target=self._run, name="imfcodec-writer", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while (f := self.frames.get()) is not self._END:
                if not self.aborted:
                    self.writer.write(f)
        except BaseException as e:      # handed to the caller's thread
            self.error = e
            while self.frames.get() is not self._END:      # let the caller's puts go through
                pass

    def _check(self):
        if self.error is not None:
            raise self.error

    def write(self, rgb: np.ndarray):
        self._check()
        self.frames.put(rgb)

    def _stop(self):
        if self.thread.is_alive():
            self.frames.put(self._END)
            self.thread.join()

    def close(self):
        self._stop()
        try:
            self._check()
            self.writer.close()
        except BaseException:
            self.writer.abort()
            raise

    def abort(self):
        self.aborted = True         # the thread skips the frames still queued
        self._stop()
        self.writer.abort()
