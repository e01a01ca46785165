"""Keyframes: intra coding of single pictures through PyAV (raw codec bitstreams).

Default AV1 (SVT-AV1 encoder, dav1d decoder). Measured on a 256x256 talking-head frame
(docs/bitstream.md): AV1 reaches ~29 dB at ~850 bytes where x265 intra needs ~1.6 kB for
~31.7 dB and x264 ~1.9 kB for ~29 dB, so AV1 is the default; HEVC and H.264 are options.
"""
from __future__ import annotations

from fractions import Fraction

import os

import numpy as np

from .errors import IMFCodecError

# SVT-AV1 prints a banner per encoder to stderr; keep errors only unless the user set SVT_LOG
os.environ.setdefault("SVT_LOG", "1")

ENCODERS = {"av1": "libsvtav1", "hevc": "libx265", "h264": "libx264"}
DECODERS = {"av1": "libdav1d", "hevc": "hevc", "h264": "h264"}


class KeyframeError(IMFCodecError, ValueError):
    pass


def _options(codec: str, crf: int) -> dict:
    if codec == "av1":
        return {"crf": str(crf), "preset": "6", "svtav1-params": "tune=0"}
    if codec == "hevc":
        return {"crf": str(crf), "preset": "medium", "x265-params": "keyint=1:log-level=error:info=0"}
    return {"crf": str(crf), "preset": "medium"}


def encode(rgb: np.ndarray, codec: str = "av1", crf: int = 40) -> bytes:
    """One RGB picture (S, S, 3) uint8 -> intra bitstream bytes (4:2:0)."""
    import av
    if codec not in ENCODERS:
        raise KeyframeError(f"unknown keyframe codec {codec!r}; choose from {', '.join(ENCODERS)}")
    h, w, _ = rgb.shape
    cc = av.CodecContext.create(ENCODERS[codec], "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    cc.time_base = Fraction(1, 25)
    cc.options = _options(codec, crf)
    cc.thread_count = 1     # one small picture: the same bytes on every machine, whatever its cores
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    return b"".join(bytes(p) for p in packets)


def decode(data: bytes, codec: str = "av1") -> np.ndarray:
    """Intra bitstream -> RGB picture (H, W, 3) uint8."""
    import av
    if codec not in DECODERS:
        raise KeyframeError(f"unknown keyframe codec {codec!r}")
    try:
        cc = av.CodecContext.create(DECODERS[codec], "r")
        frames = list(cc.decode(av.Packet(data))) + list(cc.decode(None))
    except Exception as e:
        raise KeyframeError(f"keyframe picture does not decode ({type(e).__name__})") from None
    if not frames:
        raise KeyframeError("keyframe picture does not decode (no picture)")
    return frames[0].to_ndarray(format="rgb24")
