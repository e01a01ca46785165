"""The test source (every codec's input and every metric's reference) and the resampling a
reduced-resolution sender and its receiver do."""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np

from imfbench.common import BenchError

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".m4v", ".ts", ".flv", ".mpg", ".mpeg"}


def data_dir(split: str, given=None, flag: str = "--data") -> Path:
    """A bench's clips: the folder given on its command line, else ``$IMFCODEC_DATA/<split>``
    (``train``: tuning sweeps; ``val``: what the results report). Without either the script
    exits with one line naming both."""
    if given:
        return Path(given)
    from imfcodec.train.datapath import MissingDataError, data_dir as env_dir
    try:
        return env_dir(split, flag)
    except MissingDataError as e:
        raise SystemExit(f"error: {e}") from None


def find_videos(paths, skip) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            skip(str(p), "video", "no such file or folder")
        elif p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS)
            if not found:
                skip(str(p), "video", f"folder has no video files ({', '.join(sorted(VIDEO_EXTS))})")
            out += found
        else:
            out.append(p)
    return out


def test_source(path: Path, frames: int, size: int) -> tuple[np.ndarray, Fraction]:
    """The clip's first ``frames`` frames at size x size, uint8 (N, S, S, 3), and its fps."""
    from imfcodec.media import video
    try:
        info = video.probe(path)
        chunks, buf = [], []
        for f in video.read_frames(path, max_frames=frames):
            buf.append(f)
            if len(buf) == 16:
                chunks.append(video.to_uint8(video.to_model(np.stack(buf), size)))
                buf = []
        if buf:
            chunks.append(video.to_uint8(video.to_model(np.stack(buf), size)))
    except Exception as e:  # VideoError and anything FFmpeg raises on a broken file
        raise BenchError(f"cannot read as video: {e}") from None
    if not chunks:
        raise BenchError("no decodable frames")
    return np.ascontiguousarray(np.concatenate(chunks)), Fraction(info.fps)


def downscale(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) -> (N, size, size, 3): antialiased bilinear (the same filter as the
    test source, ``imfcodec.media.video.to_model``), rounded to uint8; what a sender does before
    coding a reduced resolution."""
    from imfcodec.media import video
    out = [video.to_uint8(video.to_model(frames[i:i + 32], size)) for i in range(0, len(frames), 32)]
    return np.ascontiguousarray(np.concatenate(out))


def upscale(frames, size: int) -> np.ndarray:
    """uint8 frames -> (N, size, size, 3) with Lanczos (PIL, a = 3); what the receiver shows."""
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in frames])


def widen(frames: np.ndarray, aspect: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad (N, S, S, 3) to the aspect (width / height) by repeating edge columns (rows for
    aspect < 1), even sizes. Returns the frames and the face region's (top, left)."""
    n, s = frames.shape[:2]
    if aspect >= 1:
        w = max(s, 2 * round(s * aspect / 2))
        left = (w - s) // 2
        return np.pad(frames, ((0, 0), (0, 0), (left, w - s - left), (0, 0)), mode="edge"), (0, left)
    h = max(s, 2 * round(s / aspect / 2))
    top = (h - s) // 2
    return np.pad(frames, ((0, 0), (top, h - s - top), (0, 0), (0, 0)), mode="edge"), (top, 0)


def parse_aspect(text: str) -> float:
    try:
        a, b = (float(v) for v in text.split(":"))
        if a > 0 and b > 0:
            return a / b
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"aspect must look like 16:9, got {text!r}")


def sweep_parser(doc: str, configs_help: str) -> argparse.ArgumentParser:
    """The arguments of a sweep over encoder settings on training clips (imfbench.sweep,
    experiments/multi_ref_probe): model, clips, a JSON list of configs, frames, --data."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("clips", help="comma-separated clip names under --data")
    p.add_argument("configs", help=configs_help)
    p.add_argument("frames", type=int, nargs="?", default=150)
    p.add_argument("--data", default=None, help="folder of the clips (default: $IMFCODEC_DATA/train)")
    return p


def sweep_clips(args, size: int) -> list[tuple[np.ndarray, Fraction]]:
    """The sweep's clips (:func:`test_source` of each, first ``args.frames`` frames)."""
    data = data_dir("train", args.data)
    return [test_source(data / c, args.frames, size) for c in args.clips.split(",")]
