"""Training data: a decoded-frame cache and deterministic (reference, current) pair sampling.

Decoding mp4 at every step is too slow on 2 cores, so each clip is decoded once, squared
(centre crop, or a crop around the face: ``crop="face"``) and scaled to the model's size, and stored as a uint8 ``.npy`` array
(N, S, S, 3) that is memory-mapped afterwards. Pairs are drawn by a generator seeded with
(seed, step, rank), so a resumed run sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import IMFCodecError
from ..fileio import atomic_write
from ..media.video import VideoError, read_frames, to_uint8

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".y4m", ".m4v")
CACHE_VERSION = 1


def frame_cache_root(size: int) -> Path:
    """Where decoded training frames of model size ``size`` are cached (under the backbone
    weights' cache folder, :func:`imfcodec.assets.cache_dir`)."""
    from ..assets import cache_dir
    return cache_dir() / "frames" / str(size)


class DataError(IMFCodecError, ValueError):
    pass


def list_videos(dirs) -> list[Path]:
    files = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS)
        else:
            raise DataError(f"data path not found: {d}")
    return files


CROPS = ("centre", "face")
FACE_SAMPLES = 16           # frames of a clip the face is looked for in (evenly spread)


def face_origin(frames: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the square of side min(H, W) that imfcodec.codec.framing's first crop
    would be for the median face box of (N, H, W, 3) frames: the centred square, moved only
    as far as it takes to hold the face with a margin; centred when no face is found."""
    from ..codec.framing import CropTracker, FaceLocator
    n, h, w, _ = frames.shape
    track = CropTracker(w, h, min(h, w), window=FACE_SAMPLES)
    locate = FaceLocator()
    for i in np.linspace(0, n - 1, min(n, FACE_SAMPLES)).round().astype(int):
        track.observe(locate(np.asarray(frames[i])))
    return track.target()


def square_frames(frames: np.ndarray, size: int, crop: str = "centre") -> np.ndarray:
    """Crop (N, H, W, 3) uint8 to a square (centred, or around the face) and resize to
    size x size."""
    if crop not in CROPS:
        raise DataError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    n, h, w, _ = frames.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    if crop == "face" and h != w:
        x0, y0 = face_origin(frames)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(0, n, 32):
        x = torch.from_numpy(frames[i:i + 32, y0:y0 + s, x0:x0 + s]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + 32] = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out


@dataclass
class Clip:
    name: str
    path: Path          # the cached .npy
    frames: int

    def array(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")


def _key(video: Path, size: int, max_frames: int | None, crop: str = "centre") -> str:
    """Cache key from the file's bytes, not its path or mtime: a data folder that is copied
    or mounted afresh (new mtimes) reuses the cache instead of decoding everything again."""
    # "face2": the face crop's placement of issue 19's fix (the least move that holds the face)
    tag = f"{size}|{max_frames}|v{CACHE_VERSION}|" + ("" if crop == "centre" else f"{crop}2|")
    h = hashlib.sha1(tag.encode())
    with open(video, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def build_cache(dirs, size: int, cache_root: Path, max_frames: int | None = None,
                log=print, reader=None, crop: str = "centre") -> list[Clip]:
    """Decode every readable video under ``dirs`` once into ``cache_root``; return the clips.
    ``reader(path, max_frames=...)`` yields a video's RGB frames (default
    :func:`imfcodec.media.video.read_frames`). ``crop``: how a non-square clip is squared
    (:func:`square_frames`).

    Unreadable or frameless videos are skipped with a warning naming the file. An empty
    result is a :class:`DataError`.
    """
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    clips = []
    for video in list_videos(dirs):
        out = cache_root / f"{video.stem}-{_key(video, size, max_frames, crop)}.npy"
        if not out.exists():
            try:
                frames = np.stack(list((reader or read_frames)(video, max_frames=max_frames)))
            except (VideoError, ValueError) as e:
                warnings.warn(f"skipping {video}: {e}")
                continue
            arr = square_frames(frames, size, crop)
            atomic_write(out, lambda f: np.save(f, arr))
            log(f"cached {video.name}: {len(arr)} frames -> {out.name}")
        n = np.load(out, mmap_mode="r").shape[0]
        if n < 2:
            warnings.warn(f"skipping {video}: fewer than 2 frames")
            continue
        clips.append(Clip(video.stem, out, n))
    if not clips:
        raise DataError(f"no readable video with 2+ frames in {', '.join(map(str, dirs))}")
    return clips


def cache_bytes(clips) -> int:
    return sum(c.path.stat().st_size for c in clips)


def code_reference(x: torch.Tensor, crf: int) -> torch.Tensor:
    """One frame (3, S, S) in [0, 1] as the decoder sees a keyframe: a VP9 key picture at
    ``crf`` through the codec's own keyframe encoder and decoder, back in [0, 1]."""
    from ..media import keyframe
    rgb = to_uint8(x[None])[0]
    out = keyframe.decode(keyframe.encode(rgb, "vp9", crf), "vp9")
    return torch.from_numpy(out).permute(2, 0, 1).float() / 255.0


class PairSampler:
    """Draws (x_r, x_c) pairs from the same clip with a random gap and shared augmentation."""

    def __init__(self, clips, max_gap=60, color_jitter=0.05, scale_jitter=0.05, seed=0,
                 ref_coding=0.0, ref_crf=(26, 46), ref_coding_start=0,
                 base_sizes=(), base_crf=(40, 63), base_dropout=0.0):
        self.clips = clips
        self.base_sizes, self.base_crf, self.base_dropout = tuple(base_sizes), base_crf, base_dropout
        self.ref_coding, self.ref_crf, self.ref_start = ref_coding, ref_crf, ref_coding_start
        self.arrays = [c.array() for c in clips]
        w = np.array([c.frames for c in clips], np.float64)
        self.p = w / w.sum()
        self.max_gap, self.cj, self.sj, self.seed = max_gap, color_jitter, scale_jitter, seed

    def batch(self, step: int, n: int, rank: int = 0):
        """(x_r, x_c), each (n, 3, S, S) float in [0, 1], a pure function of (seed, step, rank).
        With ``base_sizes``: (x_r, x_c, base), base (n, 3, b, b) the coded base pictures of
        x_c (or None for a token-only batch)."""
        rng = np.random.default_rng([self.seed, step, rank])
        refs, curs, prevs = [], [], []
        for _ in range(n):
            ci = rng.choice(len(self.clips), p=self.p)
            arr = self.arrays[ci]
            m = arr.shape[0]
            gap = int(rng.integers(1, min(self.max_gap, m - 1) + 1))
            i = int(rng.integers(0, m - gap))
            r, c = (i, i + gap) if rng.random() < 0.5 else (i + gap, i)
            refs.append(np.asarray(arr[r]))
            curs.append(np.asarray(arr[c]))
            if self.base_sizes:
                prevs.append(np.asarray(arr[max(c - 1, 0)]))
        base = bool(self.base_sizes)
        x = torch.from_numpy(np.stack(refs + curs + prevs)).permute(0, 3, 1, 2).float() / 255.0
        x = self._augment(x, rng, n)
        x_r = x[:n].contiguous()
        if self.ref_coding > 0 and step >= self.ref_start:
            for k in np.flatnonzero(rng.random(n) < self.ref_coding):
                x_r[k] = code_reference(x_r[k], int(rng.integers(self.ref_crf[0], self.ref_crf[1] + 1)))
        if not base:
            return x_r, x[n:2 * n].contiguous()
        return x_r, x[n:2 * n].contiguous(), self._base(x[n:2 * n], x[2 * n:], rng, n)

    def _base(self, cur, prev, rng, n):
        """The base pictures of ``cur`` as the decoder gets them: the previous frame and this
        one coded as a two-picture base stream at one drawn size and per-sample CRFs."""
        from ..media import baselayer
        size = int(self.base_sizes[rng.integers(len(self.base_sizes))])
        crfs = rng.integers(self.base_crf[0], self.base_crf[1] + 1, n)
        if rng.random() < self.base_dropout:
            return None
        pc, pp = baselayer.thumbnail(cur, size), baselayer.thumbnail(prev, size)
        out = [baselayer.code_chain(np.stack([pp[k], pc[k]]), int(crfs[k]))[-1] for k in range(n)]
        return baselayer.to_tensor(np.stack(out))

    def _augment(self, x, rng, n):
        """Flip, zoom and colour jitter, identical for the frames drawn together (a pair, and
        with a base layer the frame before the current one)."""
        b = x.shape[0]
        k = b // n
        flip = rng.random(n) < 0.5
        zoom = 1.0 + rng.uniform(-self.sj, self.sj, n)
        shift = rng.uniform(-self.sj, self.sj, (n, 2))
        gain = 1.0 + rng.uniform(-self.cj, self.cj, (n, 3))
        bias = rng.uniform(-self.cj, self.cj, (n, 1))
        theta = np.zeros((n, 2, 3), np.float32)
        theta[:, 0, 0] = np.where(flip, -1.0, 1.0) / zoom
        theta[:, 1, 1] = 1.0 / zoom
        theta[:, :, 2] = shift
        theta = torch.from_numpy(np.concatenate([theta] * k))
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        g = torch.from_numpy(np.concatenate([gain] * k)).float().view(b, 3, 1, 1)
        o = torch.from_numpy(np.concatenate([bias] * k)).float().view(b, 1, 1, 1)
        return (x * g + o).clamp(0, 1)


def val_frames(clips, frames: int) -> list[torch.Tensor]:
    """First ``frames`` frames of each val clip as (N, 3, S, S) float tensors."""
    out = []
    for c in clips:
        a = np.array(c.array()[:frames])
        out.append(torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0)
    return out

