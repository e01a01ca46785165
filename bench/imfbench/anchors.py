"""The codecs: imfcodec through its public API, and the block-codec anchors (x264, x265,
SVT-AV1, libvpx-vp9) through PyAV, at the test size or at a reduced size (downscale, code,
decode, Lanczos upscale), as a real-time sender short of rate would."""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from imfbench.common import BenchError, Result, kbps_of
from imfbench.source import downscale, upscale

WARMUP_FRAMES = 3
# encoder threading as the ffmpeg command line has it (slice+frame); PyAV's default would be
# slice threads, which makes x264 cut every picture into slices (more bits). Decoders keep
# PyAV's default (slice threads: no frame delay; frame-threaded h264 decoding through PyAV
# was seen to deadlock here).
THREAD_TYPE = "AUTO"
VP9_CPU_USED = 7


@dataclass(frozen=True)
class Anchor:
    """A conventional codec run through PyAV: encoder, stream format, options, ladders."""
    name: str
    encoder: str            # PyAV/FFmpeg encoder name
    fmt: str                # FFmpeg (de)muxer of the stream file
    ext: str
    ladder: tuple           # CRF values at the test size, high quality first
    small_ladder: tuple     # CRF values at reduced sizes (the low-rate end matters there)
    fast_ladder: tuple
    max_crf: int = 51

    def options(self, crf: int, gop: int) -> dict:
        """The exact encoder options (AVOptions) for one CRF; ``gop`` > frames coded."""
        if self.name == "x264":
            return {"preset": "medium", "crf": str(crf), "bf": "0", "g": str(gop),
                    "x264-params": "bframes=0"}
        if self.name == "x265":
            # info=0: no SEI carrying the encoder's version and full option string (~2.3 kB)
            return {"preset": "medium", "crf": str(crf), "bf": "0", "g": str(gop),
                    "x265-params": f"bframes=0:keyint={gop}:info=0:log-level=error"}
        if self.name == "av1":
            return {"preset": "8", "crf": str(crf), "g": str(gop), "svtav1-params": "pred-struct=1"}
        if self.name == "vp9":
            # WebRTC-style real time: one pass, no look-ahead, constant quality (crf, b=0)
            return {"deadline": "realtime", "cpu-used": str(VP9_CPU_USED), "lag-in-frames": "0",
                    "error-resilient": "0", "row-mt": "1", "crf": str(crf), "b": "0", "g": str(gop)}
        raise KeyError(self.name)

    def decoder(self) -> str:
        return {"obu": "libdav1d", "ivf": "vp9"}.get(self.fmt, self.fmt)


ANCHORS = {
    "x264": Anchor("x264", "libx264", "h264", ".h264", (18, 23, 28, 33, 37, 41, 44, 47, 51),
                   (35, 39, 43, 47, 51), (28, 41, 51)),
    "x265": Anchor("x265", "libx265", "hevc", ".hevc", (18, 23, 28, 33, 37, 41, 44, 47, 51),
                   (35, 39, 43, 47, 51), (28, 41, 51)),
    "av1": Anchor("av1", "libsvtav1", "obu", ".obu", (23, 30, 37, 43, 49, 54, 58, 61, 63),
                  (47, 53, 58, 61, 63), (35, 52, 63), max_crf=63),
    "vp9": Anchor("vp9", "libvpx-vp9", "ivf", ".ivf", (16, 24, 32, 40, 46, 52, 56, 60, 63),
                  (44, 50, 55, 59, 63), (32, 52, 63), max_crf=63),
}
CODECS = ["imf"] + list(ANCHORS)


def codec_name(anchor: str, size: int, test_size: int) -> str:
    """"x264" at the test size, "x264@128" at 128x128."""
    return anchor if size == test_size else f"{anchor}@{size}"


def split_annexb(data: bytes) -> list[tuple[int, int, int]]:
    """Annex-B NAL units of an H.264/HEVC byte stream: (unit start incl. start code,
    payload start, end). Emulation prevention guarantees 00 00 01 never occurs inside a NAL."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        s = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((s, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    return [(s, p, starts[k + 1][0] if k + 1 < len(starts) else len(data)) for k, (s, p) in enumerate(starts)]


def strip_x264_info_sei(data: bytes) -> tuple[bytes, int, str]:
    """Remove x264's informational SEI (user-data-unregistered, NAL type 6, holding the text
    'x264 - core ... - options: ...'). x264 has no switch to leave it out; it is ~0.6 kB of
    non-normative text, removed so the anchor is not charged for it (x265 gets ``info=0``).
    Returns (stream, bytes removed, the version text)."""
    keep, removed, info = [], 0, ""
    last = 0
    for s, p, e in split_annexb(data):
        if p < e and data[p] & 0x1F == 6 and b"x264 - core" in data[p:e]:
            keep.append(data[last:s])
            removed += e - s
            txt = data[p:e]
            k = txt.find(b"x264 - core")
            info = txt[k:].split(b"\x00")[0].decode("ascii", "replace")
            last = e
    keep.append(data[last:])
    return b"".join(keep), removed, info


def ivf_bytes(packets: list[bytes], width: int, height: int, fps: Fraction, fourcc=b"VP90") -> bytes:
    """An IVF file: 32-byte file header, then per frame a 12-byte header (size, pts) and the
    frame. VP9 has no raw elementary-stream format; IVF is the thinnest wrapper FFmpeg reads."""
    fps = Fraction(fps)
    head = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, fourcc, width, height,
                       fps.numerator, fps.denominator, len(packets), 0)
    return head + b"".join(struct.pack("<IQ", len(p), i) + p for i, p in enumerate(packets))


class AnchorRunner:
    """One block codec through PyAV: RGB -> [downscale] -> yuv420p -> stream file -> decode
    -> RGB -> [Lanczos upscale to the test size]."""

    def __init__(self, anchor: Anchor, streams: Path, strip_sei: bool = True):
        self.a, self.streams, self.strip_sei = anchor, streams, strip_sei
        self.info = ""

    def settings(self, crfs):
        return [(f"crf{c}", c, -c) for c in crfs]

    def _encode(self, src, fps, opts) -> list[tuple[bytes, bool]]:
        import av
        cc = av.CodecContext.create(self.a.encoder, "w")
        cc.width, cc.height, cc.pix_fmt = src.shape[2], src.shape[1], "yuv420p"
        cc.time_base = Fraction(1) / fps
        cc.framerate = fps
        cc.thread_type = THREAD_TYPE       # FFmpeg's own default; PyAV's is SLICE (x264: 2 slices)
        cc.options = dict(opts)
        out = []
        for i, rgb in enumerate(src):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            out += [(bytes(p), p.is_keyframe) for p in cc.encode(f)]
        out += [(bytes(p), p.is_keyframe) for p in cc.encode(None)]
        return out

    def decode_file(self, path) -> list[np.ndarray]:
        """The stream file's frames at its coded size, RGB uint8."""
        import av
        frames = []
        with av.open(str(path), format=self.a.fmt) as c:
            for p in c.demux(video=0):
                for f in p.decode():
                    frames.append(f.to_ndarray(format="rgb24"))
        return frames

    def packet_bytes(self, path) -> int:
        """The rate's bytes: packet (frame) payloads demuxed from the file read back."""
        import av
        nbytes = 0
        with av.open(str(path), format=self.a.fmt) as c:
            for p in c.demux(video=0):
                nbytes += p.size
        return nbytes

    def version_info(self) -> str:
        """x264's version text (from its SEI), from the last stream coded or a 2-frame encode."""
        if self.a.name == "x264" and not self.info:
            pk = self._encode(np.zeros((2, 64, 64, 3), np.uint8), Fraction(25), self.a.options(51, 3))
            self.info = strip_x264_info_sei(b"".join(d for d, _ in pk))[2]
        return self.info

    def warm_up(self, src, fps, first, size=None):
        import av
        pics = src[:WARMUP_FRAMES] if size in (None, src.shape[1]) else downscale(src[:WARMUP_FRAMES], size)
        pk = self._encode(pics, fps, self.a.options(first, len(src) + 1))
        cc = av.CodecContext.create(self.a.decoder(), "r")
        for data, _ in pk + [(None, False)]:
            for f in cc.decode(av.Packet(data) if data is not None else None):
                f.to_ndarray(format="rgb24")

    def path(self, vname, crf, size, test_size) -> Path:
        tag = "" if size == test_size else f"_s{size}"
        return self.streams / f"{vname}_{self.a.name}{tag}_crf{crf}{self.a.ext}"

    def run(self, vname, src, fps, crf, size=None) -> tuple[Result, np.ndarray]:
        n, test_size = len(src), src.shape[1]
        size = size or test_size
        opts = self.a.options(crf, n + 1)
        t0 = time.perf_counter()
        pics = src if size == test_size else downscale(src, size)
        packets = self._encode(pics, fps, opts)
        t_enc = time.perf_counter() - t0
        removed = 0
        if self.a.fmt == "ivf":
            data = ivf_bytes([d for d, _ in packets], size, size, fps)
        else:
            data = b"".join(d for d, _ in packets)
            if self.a.name == "x264" and self.strip_sei:
                data, removed, info = strip_x264_info_sei(data)
                self.info = info or self.info
        path = self.path(vname, crf, size, test_size)
        path.write_bytes(data)
        t0 = time.perf_counter()
        dec = self._decode_at(path, size, test_size, n)
        t_dec = time.perf_counter() - t0
        # raw elementary streams (H.264/HEVC/AV1): packet bytes = file size. VP9 in IVF:
        # the frames' bytes, without IVF's 32 + 12 x N bytes of file framing
        nbytes = self.packet_bytes(path)
        file_bytes = os.path.getsize(path)
        keys = [i for i, (_, k) in enumerate(packets) if k]
        r = Result(vname, codec_name(self.a.name, size, test_size), f"crf{crf}", -crf, n, fps, nbytes,
                   file_bytes, kbps_of(nbytes, fps, n), n / t_enc, n / t_dec, len(keys), size=size,
                   keyframe_index=keys, stream=str(path),
                   options={"encoder": self.a.encoder, "thread_type": THREAD_TYPE, "coded_size": size,
                            **opts})
        notes = []
        if removed:
            notes.append(f"x264 info SEI removed: {removed} B")
        if self.a.fmt == "ivf":
            if file_bytes - nbytes != 32 + 12 * len(packets):
                notes.append(f"IVF framing {file_bytes - nbytes} B != 32 + 12 x {len(packets)}")
        elif nbytes != file_bytes:
            notes.append(f"packet bytes {nbytes} != file bytes {file_bytes}")
        r.note = "; ".join(notes)
        return r, np.stack(dec)

    def _decode_at(self, path, size: int, test_size: int, n: int) -> list[np.ndarray]:
        """The stream file's n frames, upscaled from its coded size to the test size."""
        dec = self.decode_file(path)
        if size not in (0, test_size):
            dec = upscale(dec, test_size)
        if len(dec) != n:
            raise BenchError(f"{path}: decoded {len(dec)} frames, expected {n}")
        return dec

    def decode_middle(self, r: Result, test_size: int) -> np.ndarray:
        """The middle decoded frame of an existing stream, at the test size (for the grid)."""
        dec = self.decode_file(r.stream)
        mid = dec[r.frames // 2]
        return mid if r.size in (0, test_size) else upscale([mid], test_size)[0]

    def decode(self, r: Result, test_size: int) -> np.ndarray:
        """Every frame of an existing stream at the test size, as ``run`` measured them."""
        return np.stack(self._decode_at(r.stream, r.size, test_size, r.frames))


class ImfRunner:
    """imfcodec through its public API; one .imf file per quality in DIR/streams.
    ``base_layer``: imfcodec's --base-layer; a base-layer model coded with it off gives rows
    labelled ``imf-tokens`` (common.IMF_ROWS), everything else ``imf``."""

    def __init__(self, model, streams: Path, keyframe_codec: str | None = None, base_layer: str = "auto",
                 keyframe_preset: int | None = None, anchor: int | None = None):
        from imfcodec.media import keyframe
        from imfcodec.options import DEFAULT_KEYFRAME_CODEC, base_layer_mode
        self.model, self.streams = model, streams
        self.keyframe_codec = keyframe_codec or DEFAULT_KEYFRAME_CODEC
        self.base_layer = base_layer_mode(base_layer)
        # KeyframeError for a preset the keyframe codec has not
        self.keyframe_options = keyframe.preset_options(self.keyframe_codec, keyframe_preset)
        self.label = "imf-tokens" if self.base_layer == "off" and model.has_base_layer else "imf"
        self.anchor = anchor        # --imf-anchor: the keyframe anchor's threshold, None = the level's

    def _opts(self) -> dict:
        opts = {"keyframe_codec": self.keyframe_codec, "base_layer": self.base_layer}
        if self.anchor is not None:
            opts["anchor"] = self.anchor
        return {**opts, "keyframe_options": self.keyframe_options} if self.keyframe_options else opts

    def settings(self, qualities):
        return [(f"q{q}", q, q) for q in qualities]          # (label, value, order)

    def warm_up(self, src, fps, first, size=None):
        import imfcodec
        data, _ = imfcodec.encode_frames(iter(src[:WARMUP_FRAMES]), fps, self.model, quality=first,
                                         **self._opts())
        _, it = imfcodec.decode_bytes(data, self.model)
        list(it)

    def run(self, vname, src, fps, q, size=None) -> tuple[Result, np.ndarray]:
        import imfcodec
        n = len(src)
        t0 = time.perf_counter()
        data, st = imfcodec.encode_frames(iter(src), fps, self.model, quality=q, **self._opts())
        t_enc = time.perf_counter() - t0
        path = self.streams / f"{vname}_{self.label}_q{q}.imf"
        path.write_bytes(data)
        nbytes = os.path.getsize(path)                       # every byte of the file
        back = path.read_bytes()
        t0 = time.perf_counter()
        dec = self._decode_bytes(back, n, path)
        t_dec = time.perf_counter() - t0
        _, packets = imfcodec.parse(back)
        keys = [p.frame_index for p in packets if isinstance(p, imfcodec.KeyframePacket)]
        r = Result(vname, self.label, f"q{q}", q, n, fps, nbytes, nbytes, kbps_of(nbytes, fps, n),
                   n / t_enc, n / t_dec, len(keys), size=src.shape[1], keyframe_index=keys,
                   stream=str(path),
                   options={"quality": q, **self._opts(), "base_layer_bytes": st.base_bytes,
                            "model_id": self.model.model_id, "model_sha256": self.model.sha256})
        r.note = (f"header {st.header_bytes} B, keyframes {st.keyframe_bytes} B, "
                  f"tokens {st.token_bytes} B" + (f", base layer {st.base_bytes} B" if st.base_bytes else ""))
        return r, np.stack(dec)

    def _decode_bytes(self, data: bytes, n: int, path) -> list[np.ndarray]:
        """The stream's n frames (imfcodec decodes at the source's size)."""
        import imfcodec
        dec = list(imfcodec.decode_bytes(data, self.model)[1])
        if len(dec) != n:
            raise BenchError(f"{path}: decoded {len(dec)} frames, expected {n}")
        return dec

    def decode(self, r: Result, test_size: int) -> np.ndarray:
        """Every frame of an existing stream, as ``run`` measured them."""
        return np.stack(self._decode_bytes(Path(r.stream).read_bytes(), r.frames, r.stream))

    def decode_middle(self, r: Result, test_size: int) -> np.ndarray:
        import imfcodec
        _, frames = imfcodec.decode_bytes(Path(r.stream).read_bytes(), self.model)
        for i, f in enumerate(frames):
            if i == r.frames // 2:
                return f
        raise BenchError(f"{r.stream}: fewer than {r.frames // 2 + 1} frames")
