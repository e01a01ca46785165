"""Keyframes: the pictures the model warps from, coded through PyAV (raw codec bitstreams).

Two kinds of keyframe codec:

* intra (``av1``, ``hevc``, ``h264``): every keyframe is a self-contained picture. AV1
  (SVT-AV1 encoder, dav1d decoder) is the strongest intra coder of the three on 256x256
  talking heads (docs/bitstream.md).
* chained (``vp9``): one low-delay VP9 stream (libvpx, no lag) runs through all keyframes
  of a clip. The first keyframe, and any the encoder marks as intra, is a VP9 key picture;
  a refresh keyframe is a VP9 inter picture predicted from the previous keyframe, which
  the decoder already holds. A talking head a second later is mostly the same face and
  background, so a refresh usually costs a fraction of an intra picture (38-48 % of AV1's
  bytes at equal PSNR on 3 of 4 training clips, about the same where the whole picture
  moves: docs/bitstream.md). :class:`KeyframeEncoder` /
  :class:`KeyframeDecoder` keep that state; both ends decode the same packets with the
  same decoder, so the encoder's closed loop sees exactly the decoder's pictures.
"""
from __future__ import annotations

from fractions import Fraction

import os

import numpy as np

from ..format.container import CHAINED_CODECS as CHAINED   # refresh keyframes predicted from the previous
from ..options import KEYFRAME_PRESETS
from ..errors import IMFCodecError, describe

# SVT-AV1 prints a banner per encoder to stderr, and an "error" line for an encoder dropped
# mid-stream (an encode stopped by bad input): its failures reach us as FFmpeg errors anyway,
# so keep it quiet (fatal only) unless the user set SVT_LOG
os.environ.setdefault("SVT_LOG", "0")

ENCODERS = {"av1": "libsvtav1", "hevc": "libx265", "h264": "libx264", "vp9": "libvpx-vp9",
            "av1-chain": "libsvtav1"}
DECODERS = {"av1": "libdav1d", "hevc": "hevc", "h264": "h264", "vp9": "vp9", "av1-chain": "libdav1d"}
# SVT-AV1's low-delay structure (pred-struct 1): no lookahead, one packet out per picture in,
# key pictures only when asked (keyint -1). A slow preset because a keyframe is one picture
# in many; 0 saves more rate but stalls a live call at each refresh (docs/notes/keyframe-chain.md).
AV1_CHAIN_PRESET = "1"


class KeyframeError(IMFCodecError, ValueError):
    pass


def _options(codec: str, crf: int) -> dict:
    if codec == "av1":
        return {"crf": str(crf), "preset": "6", "svtav1-params": "tune=0"}
    if codec == "av1-chain":
        return {"crf": str(crf), "preset": AV1_CHAIN_PRESET,
                "svtav1-params": "pred-struct=1:lookahead=0:keyint=-1"}
    if codec == "hevc":
        return {"crf": str(crf), "preset": "medium", "x265-params": "keyint=1:log-level=error:info=0"}
    if codec == "vp9":
        # low delay: no lookahead, no alt-ref, one packet out per picture in; key pictures
        # only when asked. qmin = crf keeps libvpx from boosting key pictures, so every
        # keyframe gets about the same quality; cpu-used 0 is libvpx's slowest search.
        return {"crf": str(crf), "qmin": str(crf), "b": "0", "lag-in-frames": "0",
                "auto-alt-ref": "0", "deadline": "good", "cpu-used": "0", "g": "1000000"}
    return {"crf": str(crf), "preset": "medium"}


def encoder_settings(codec: str, crf: int, extra: dict | None = None) -> dict:
    """The encoder and every option a keyframe (or base-layer) picture of ``codec`` at ``crf``
    is coded with: what makes two encodes give the same bytes (the bench's cache key)."""
    _check_codec(codec, ENCODERS)
    return {"encoder": ENCODERS[codec], **_options(codec, crf), **(extra or {})}


PRESETS = KEYFRAME_PRESETS


def preset_options(codec: str, preset: int | None) -> dict | None:
    """The keyframe options that set SVT-AV1's ``preset`` (0..13; None: the codec's own),
    for ``imfcodec encode --keyframe-preset`` and the bench's ``--imf-keyframe-preset``.
    KeyframeError for a codec that is not SVT-AV1 or a preset out of range."""
    if preset is None:
        return None
    _check_codec(codec, ENCODERS)
    if ENCODERS[codec] != "libsvtav1":
        raise KeyframeError(f"a keyframe preset is an SVT-AV1 preset: it needs keyframe codec av1-chain "
                            f"or av1, not {codec}")
    if preset not in PRESETS:
        raise KeyframeError(f"SVT-AV1 presets are {PRESETS.start}..{PRESETS.stop - 1}, got {preset!r}")
    return {"preset": str(preset)}


def _check_codec(codec: str, table: dict):
    if codec not in table:
        raise KeyframeError(f"unknown keyframe codec {codec!r}; choose from {', '.join(table)}")


def _context(codec: str, crf: int, w: int, h: int, extra: dict | None = None):
    import av
    opts = encoder_settings(codec, crf, extra)
    cc = av.CodecContext.create(opts.pop("encoder"), "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    cc.time_base = Fraction(1, 25)
    cc.options = opts
    cc.thread_count = 1     # one small picture: the same bytes on every machine, whatever its cores
    return cc


def _frame(rgb: np.ndarray, pts: int = 0, key: bool = False):
    import av
    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
    f.pts = pts
    if key:
        f.pict_type = av.video.frame.PictureType.I
    return f


def encode(rgb: np.ndarray, codec: str = "av1", crf: int = 40, options: dict | None = None) -> bytes:
    """One RGB picture (S, S, 3) uint8 -> intra bitstream bytes (4:2:0). ``options``: extra
    encoder options (strings, e.g. ``{"sharpness": "4"}``) over the codec's own."""
    _check_codec(codec, ENCODERS)
    h, w, _ = rgb.shape
    cc = _context(codec, crf, w, h, options)
    packets = list(cc.encode(_frame(rgb, key=True))) + list(cc.encode(None))
    return b"".join(bytes(p) for p in packets)


def decode(data: bytes, codec: str = "av1") -> np.ndarray:
    """Intra bitstream -> RGB picture (H, W, 3) uint8."""
    return KeyframeDecoder(codec).decode(data, predicted=False)


class KeyframeEncoder:
    """RGB keyframes -> bitstream packets, one per picture. For an intra codec every call
    is independent; for a chained codec (:data:`CHAINED`) one low-delay stream spans the
    calls and ``intra=False`` asks for a picture predicted from the previous one.
    ``options``: extra encoder options over the codec's own (bench/vp9_options.py)."""

    def __init__(self, codec: str = "av1", crf: int = 40, options: dict | None = None):
        _check_codec(codec, ENCODERS)
        self.codec, self.crf, self.options = codec, crf, dict(options or {})
        self.chained = codec in CHAINED
        self.cc = None
        self.n = 0

    def encode(self, rgb: np.ndarray, intra: bool = True) -> bytes:
        if not self.chained:
            return encode(rgb, self.codec, self.crf, self.options)
        h, w, _ = rgb.shape
        if self.cc is None or (self.cc.width, self.cc.height) != (w, h):
            self.cc, intra = _context(self.codec, self.crf, w, h, self.options), True
        packets = list(self.cc.encode(_frame(rgb, self.n, key=intra)))
        self.n += 1
        if len(packets) != 1:       # the low-delay options promise exactly one
            raise KeyframeError(f"{self.codec} encoder gave {len(packets)} packets for one picture")
        return bytes(packets[0])

    def close(self):
        """End a chained stream (SVT-AV1 complains on stderr about an encoder dropped
        without its end of stream). Low delay: nothing is left to come out."""
        if self.cc is not None:
            list(self.cc.encode(None))
            self.cc = None


def max_pixels_for(width: int, height: int) -> int:
    """The ``max_pixels`` bound of a chained decoder for width x height pictures: libvpx's
    check counts the size padded to 64-pixel superblocks."""
    pad = lambda n: -(-n // 64) * 64       # noqa: E731
    return pad(width) * pad(height)


class KeyframeDecoder:
    """Bitstream packets -> RGB pictures; keeps the reference picture of a chained codec.
    ``max_pixels``: FFmpeg's decoders refuse a picture larger than this before allocating
    it (a 56-byte AV1 picture can claim 8192x8192), so a stream's keyframes cost at most
    its coded size in memory."""

    def __init__(self, codec: str = "av1", max_pixels: int | None = None):
        _check_codec(codec, DECODERS)
        self.codec = codec
        self.chained = codec in CHAINED
        self.max_pixels = max_pixels
        self.cc = None

    def decode(self, data: bytes, predicted: bool = False) -> np.ndarray:
        import av
        if predicted and (not self.chained or self.cc is None):
            raise KeyframeError("predicted keyframe without the keyframe it is predicted from")
        if self.cc is None or not self.chained:
            self.cc = av.CodecContext.create(DECODERS[self.codec], "r")
            self.cc.thread_count = 1
            opts = {"max_pixels": str(self.max_pixels)} if self.max_pixels else {}
            if self.chained and DECODERS[self.codec] == "libdav1d":
                opts["max_frame_delay"] = "1"     # one picture out per packet in, as libvpx
            self.cc.options = opts
        try:
            frames = list(self.cc.decode(av.Packet(data)))
            if not self.chained:
                frames += list(self.cc.decode(None))
        except av.error.FFmpegError as e:     # the decoder refused the bytes
            self.cc = None          # a broken picture leaves no usable reference
            raise KeyframeError(f"{self.codec} keyframe picture does not decode "
                                f"({describe(e)})") from None
        if len(frames) != 1:
            self.cc = None
            raise KeyframeError(f"{self.codec} keyframe picture does not decode "
                                f"({'no picture' if not frames else 'several pictures'})")
        return frames[0].to_ndarray(format="rgb24")
