"""The base layer (issue 15): every frame, downscaled to a small square picture and coded by
one low-delay VP9 stream beside the tokens. It carries what motion from the keyframe cannot:
mouth interior, eyes, occlusions, lighting. The frame decoder reads the decoded picture
(:class:`imfcodec.models.imf.BaseStem`), so the picture stays anchored to the source
between keyframes instead of drifting.

One home for how the picture is made and coded, used alike by the codec, by training
(:func:`code_chain`, the pictures the decoder will really get) and by the benches:

* :func:`thumbnail`: frames in the model's [0, 1] layout -> uint8 pictures, antialiased
  bilinear (the same filter that brings a clip to the coded size, ``video.to_model``);
* :class:`BaseEncoder` / :class:`BaseDecoder`: one VP9 stream, a key picture first and
  predicted pictures after it, one packet per frame; the encoder decodes its own packets
  so its closed loop sees the decoder's pictures.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..format.container import BASE_SIZES
from .keyframe import KeyframeDecoder, KeyframeEncoder, KeyframeError, max_pixels_for
from .video import to_uint8

CODEC = "vp9"
# low delay as in the keyframe chain (no lookahead, no alt-ref, one packet per picture)
OPTIONS: dict = {}
SIZES = BASE_SIZES                # the picture sizes a stream may use (the header stores one)


def thumbnail(x: torch.Tensor, size: int) -> np.ndarray:
    """Frames (B, 3, S, S) float in [0, 1] -> base pictures (B, size, size, 3) uint8."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return to_uint8(x)


def to_tensor(pics) -> torch.Tensor:
    """uint8 pictures (B, b, b, 3) or (b, b, 3) -> float (B, 3, b, b) in [0, 1]."""
    a = np.asarray(pics)
    if a.ndim == 3:
        a = a[None]
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0


class BaseEncoder:
    """Base pictures -> VP9 packets, plus the picture the decoder will get from each."""

    def __init__(self, crf: int):
        self.crf = int(crf)
        self.enc = KeyframeEncoder(CODEC, self.crf, OPTIONS)
        self.dec = KeyframeDecoder(CODEC)
        self.n = 0

    def encode(self, pic: np.ndarray, key: bool = False) -> tuple[bytes, np.ndarray]:
        """One uint8 picture (b, b, 3) -> (packet, decoded picture). The first is a key
        picture, and so is one asked for with ``key``; the rest are predicted."""
        intra = self.n == 0 or key
        data = self.enc.encode(pic, intra=intra)
        out = self.dec.decode(data, predicted=not intra)
        self.n += 1
        return data, out


class BaseDecoder:
    """VP9 base packets -> uint8 pictures; refuses a picture larger than ``size`` squared
    (padded to 64-pixel superblocks, as libvpx counts) before FFmpeg allocates it, and any
    other size after decoding."""

    def __init__(self, size: int):
        self.size = int(size)
        self.dec = KeyframeDecoder(CODEC, max_pixels=max_pixels_for(self.size, self.size))
        self.n = 0

    def decode(self, data: bytes, predicted: bool | None = None) -> np.ndarray:
        """One packet -> its picture (b, b, 3) uint8; ``predicted`` (default: all but the
        first) as the stream marks the picture."""
        pic = self.dec.decode(data, predicted=self.n > 0 if predicted is None else predicted)
        if pic.shape[:2] != (self.size, self.size):
            raise KeyframeError(f"base-layer picture is {pic.shape[1]}x{pic.shape[0]}, "
                                f"the header says {self.size}x{self.size}")
        self.n += 1
        return pic


def code_chain(pics: np.ndarray, crf: int) -> np.ndarray:
    """Code a short run of pictures (N, b, b, 3) as one base stream; return what the decoder
    gets (the last one is a predicted picture, as almost every base picture in use is)."""
    enc = BaseEncoder(crf)
    return np.stack([enc.encode(p)[1] for p in pics])
