#!/usr/bin/env python
"""Rate-distortion bench: imfcodec against x264, x265 and SVT-AV1 on the same test source.

    python bench/rd_curve.py --videos FILE_OR_DIR [...] --out DIR
        [--codecs imf,x264,x265,av1] [--qualities 1-8] [--frames 250] [--model NAME_OR_PATH]
        [--ladder x264=18,23,...] [--detail VIDEO] [--fast]

Test conditions (the full text is bench/conditions.md):

* test source = the clip's first N frames, resized (stretched, antialiased bilinear) to
  S x S with S = the model's coded size (``model.config.image_size``; 256 for imf-cpu),
  rounded to uint8 RGB; frame rate = the clip's real rate. Every codec codes exactly these
  frames and every metric compares against them.
* imfcodec through its public API (``encode_frames`` / ``decode_bytes``); the .imf file is
  written to DIR/streams, read back, and its size on disk is the rate (every byte).
* anchors through PyAV, low delay (no B-frames), one keyframe at the start (GOP > N):
  x264 and x265 preset medium over a CRF ladder down to CRF 51, SVT-AV1 preset 8,
  ``pred-struct=1`` (low delay) up to CRF 63. Raw elementary streams (.h264, .hevc, .obu)
  in DIR/streams; rate = the packet bytes read back from that file (= the file size).
* metrics per frame, then averaged over frames: PSNR over RGB, MS-SSIM, LPIPS-alex.
* speed: encode and decode frames/s, wall clock, after a warm-up, in the same run.

Outputs in DIR: rd.csv, bdrate.csv, frames.csv (per frame), streams.csv (per stream:
bytes, keyframes, options), rd_<metric>.png, perframe_<video>.png, grid_<video>.png,
meta.json (machine, versions, options), log.txt, skipped.csv.

Exit status: 0 when at least one video ran, 1 when none did, 2 for a bad command line.
Uses only the public API of ``imfcodec`` and PyAV, as a user would.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")   # SVT-AV1: errors only, no banner per encoder

import numpy as np

from imfcodec.config import PRECISIONS  # torch-free
from imfcodec.container import KEYFRAME_CODEC_IDS  # torch-free

RD_COLUMNS = ["video", "codec", "setting", "kbps", "psnr", "ms_ssim", "lpips", "enc_fps", "dec_fps"]
METRICS = ["psnr", "ms_ssim", "lpips"]
HIGHER_IS_BETTER = {"psnr": True, "ms_ssim": True, "lpips": False}
METRIC_LABEL = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS-alex (lower is better)"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".m4v", ".ts", ".flv", ".mpg", ".mpeg"}
PSNR_CAP = 100.0          # dB, for a frame identical to its source (MSE 0)
WARMUP_FRAMES = 3
# encoder threading as the ffmpeg command line has it (slice+frame); PyAV's default would be
# slice threads, which makes x264 cut every picture into slices (more bits). Decoders keep
# PyAV's default (slice threads: no frame delay; frame-threaded h264 decoding through PyAV
# was seen to deadlock here).
THREAD_TYPE = "AUTO"
METRIC_BATCH = 8

CODECS = ["imf", "x264", "x265", "av1"]


@dataclass(frozen=True)
class Anchor:
    """A conventional codec run through PyAV: encoder, raw stream format, options, ladder."""
    name: str
    encoder: str            # PyAV/FFmpeg encoder name
    fmt: str                # FFmpeg raw elementary-stream (de)muxer
    ext: str
    ladder: tuple           # CRF values, high quality first
    fast_ladder: tuple

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
        raise KeyError(self.name)


ANCHORS = {
    "x264": Anchor("x264", "libx264", "h264", ".h264",
                   (18, 23, 28, 33, 37, 41, 44, 47, 51), (28, 41, 51)),
    "x265": Anchor("x265", "libx265", "hevc", ".hevc",
                   (18, 23, 28, 33, 37, 41, 44, 47, 51), (28, 41, 51)),
    "av1": Anchor("av1", "libsvtav1", "obu", ".obu",
                  (23, 30, 37, 43, 49, 54, 58, 61, 63), (35, 52, 63)),
}
FAST_FRAMES = 8
FAST_QUALITIES = (2, 6)


class BenchError(Exception):
    """A problem with one item (video, codec, setting): it is skipped and reported."""


# ---- small helpers ---------------------------------------------------------------------
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
    """Rate in kbit/s of ``nbytes`` carrying ``frames`` frames at ``fps`` frames/s."""
    return nbytes * 8 * float(fps) / frames / 1000.0


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


# ---- logging -----------------------------------------------------------------------------
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


@dataclass
class Result:
    video: str
    codec: str
    setting: str
    order: int                  # sort key: quality rises with it
    frames: int
    fps: Fraction
    nbytes: int                 # counted stream bytes (what the rate is computed from)
    file_bytes: int
    kbps: float
    enc_fps: float
    dec_fps: float
    keyframes: int
    per_frame: dict = field(default_factory=dict)     # metric -> (N,) array
    mid_frame: np.ndarray | None = None         # decoded middle frame (for the image grid)
    mid_frame_src: np.ndarray | None = None     # the source's middle frame
    keyframe_index: list = field(default_factory=list)
    stream: str = ""
    options: dict = field(default_factory=dict)
    note: str = ""

    def mean(self, metric: str) -> float:
        v = self.per_frame.get(metric)
        if v is None or len(v) == 0 or np.all(np.isnan(v)):
            return float("nan")
        return float(np.mean(v))


# ---- test source and metrics ---------------------------------------------------------------
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
    from imfcodec import video
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


class Metrics:
    """PSNR-RGB, MS-SSIM and LPIPS-alex per frame (imfcodec.metrics), NaN where undefined."""

    def __init__(self, size: int, log, skip):
        import torch  # noqa: F401
        from imfcodec.metrics import MS_SSIM_MIN_SIDE
        self.use_msssim = size >= MS_SSIM_MIN_SIDE
        self.msssim_note = ("" if self.use_msssim else
                            f"MS-SSIM undefined below {MS_SSIM_MIN_SIDE} px (test size {size}): NaN")
        if not self.use_msssim:
            skip("ms_ssim", "metric", self.msssim_note)
        self.lpips = None
        self.lpips_note = ""
        try:
            from imfcodec.assets import MissingWeightsError
            from imfcodec.metrics import get_lpips
            try:
                self.lpips = get_lpips("alex", "cpu")
            except MissingWeightsError as e:
                self.lpips_note = f"LPIPS weights missing, LPIPS is NaN ({str(e).splitlines()[0]})"
        except ImportError as e:
            self.lpips_note = f"LPIPS unavailable ({e}), LPIPS is NaN"
        if self.lpips_note:
            skip("lpips", "metric", self.lpips_note)

    def __call__(self, src: np.ndarray, dec: np.ndarray) -> dict:
        import torch
        from imfcodec.metrics import ms_ssim, psnr
        n = len(src)
        out = {m: np.full(n, np.nan) for m in METRICS}
        with torch.inference_mode():
            for i in range(0, n, METRIC_BATCH):
                a = torch.from_numpy(src[i:i + METRIC_BATCH]).permute(0, 3, 1, 2).float() / 255.0
                b = torch.from_numpy(dec[i:i + METRIC_BATCH]).permute(0, 3, 1, 2).float() / 255.0
                out["psnr"][i:i + len(a)] = psnr(a, b).clamp(max=PSNR_CAP).numpy()
                if self.use_msssim:
                    out["ms_ssim"][i:i + len(a)] = ms_ssim(a, b).double().numpy()
                if self.lpips is not None:
                    out["lpips"][i:i + len(a)] = self.lpips(a, b).double().numpy()
        return out


# ---- codecs ---------------------------------------------------------------------------------
class ImfRunner:
    """imfcodec through its public API; one .imf file per quality in DIR/streams."""

    def __init__(self, model, streams: Path, keyframe_codec: str | None = None):
        from imfcodec.codec import DEFAULT_KEYFRAME_CODEC
        self.model, self.streams = model, streams
        self.keyframe_codec = keyframe_codec or DEFAULT_KEYFRAME_CODEC

    def settings(self, qualities):
        return [(f"q{q}", q, q) for q in qualities]          # (label, value, order)

    def warm_up(self, src, fps, first):
        import imfcodec
        data, _ = imfcodec.encode_frames(iter(src[:WARMUP_FRAMES]), fps, self.model, quality=first,
                                         keyframe_codec=self.keyframe_codec)
        _, it = imfcodec.decode_bytes(data, self.model)
        list(it)

    def run(self, vname, src, fps, q) -> Result:
        import imfcodec
        n = len(src)
        t0 = time.perf_counter()
        data, st = imfcodec.encode_frames(iter(src), fps, self.model, quality=q,
                                          keyframe_codec=self.keyframe_codec)
        t_enc = time.perf_counter() - t0
        path = self.streams / f"{vname}_imf_q{q}.imf"
        path.write_bytes(data)
        nbytes = os.path.getsize(path)                       # every byte of the file
        back = path.read_bytes()
        t0 = time.perf_counter()
        header, frames = imfcodec.decode_bytes(back, self.model)
        dec = list(frames)
        t_dec = time.perf_counter() - t0
        if len(dec) != n:
            raise BenchError(f"decoded {len(dec)} frames, expected {n}")
        _, packets = imfcodec.parse(back)
        keys = [p.frame_index for p in packets if isinstance(p, imfcodec.KeyframePacket)]
        r = Result(vname, "imf", f"q{q}", q, n, fps, nbytes, nbytes, kbps_of(nbytes, fps, n),
                   n / t_enc, n / t_dec, len(keys), keyframe_index=keys, stream=str(path),
                   options={"quality": q, "keyframe_codec": self.keyframe_codec,
                            "model_id": self.model.model_id,
                            "model_sha256": self.model.sha256})
        r.note = (f"header {st.header_bytes} B, keyframes {st.keyframe_bytes} B, "
                  f"tokens {st.token_bytes} B")
        return r, np.stack(dec)


class AnchorRunner:
    """x264 / x265 / SVT-AV1 through PyAV: RGB -> yuv420p -> raw elementary stream file."""

    def __init__(self, anchor: Anchor, streams: Path, strip_sei: bool = True):
        self.a, self.streams, self.strip_sei = anchor, streams, strip_sei
        self.info = ""

    def settings(self, crfs):
        return [(f"crf{c}", c, -c) for c in crfs]

    def _encode(self, src, fps, opts) -> list[bytes]:
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

    def _decode_file(self, path) -> list[np.ndarray]:
        import av
        frames = []
        with av.open(str(path), format=self.a.fmt) as c:
            for p in c.demux(video=0):
                for f in p.decode():
                    frames.append(f.to_ndarray(format="rgb24"))
        return frames

    def warm_up(self, src, fps, first):
        import av
        pk = self._encode(src[:WARMUP_FRAMES], fps, self.a.options(first, len(src) + 1))
        cc = av.CodecContext.create(self.a.fmt if self.a.fmt != "obu" else "libdav1d", "r")
        for data, _ in pk + [(None, False)]:
            for f in cc.decode(av.Packet(data) if data is not None else None):
                f.to_ndarray(format="rgb24")

    def run(self, vname, src, fps, crf) -> Result:
        import av
        n = len(src)
        opts = self.a.options(crf, n + 1)
        t0 = time.perf_counter()
        packets = self._encode(src, fps, opts)
        t_enc = time.perf_counter() - t0
        data = b"".join(d for d, _ in packets)
        removed = 0
        if self.a.name == "x264" and self.strip_sei:
            data, removed, info = strip_x264_info_sei(data)
            self.info = info or self.info
        path = self.streams / f"{vname}_{self.a.name}_crf{crf}{self.a.ext}"
        path.write_bytes(data)
        t0 = time.perf_counter()
        dec = self._decode_file(path)
        t_dec = time.perf_counter() - t0
        if len(dec) != n:
            raise BenchError(f"decoded {len(dec)} frames, expected {n}")
        # the rate: packet bytes of the stream read back from the file (raw elementary stream,
        # so this is also the file size; no container overhead exists to count or not)
        nbytes = 0
        with av.open(str(path), format=self.a.fmt) as c:
            for p in c.demux(video=0):
                nbytes += p.size
        file_bytes = os.path.getsize(path)
        keys = [i for i, (_, k) in enumerate(packets) if k]
        r = Result(vname, self.a.name, f"crf{crf}", -crf, n, fps, nbytes, file_bytes,
                   kbps_of(nbytes, fps, n), n / t_enc, n / t_dec, len(keys), keyframe_index=keys,
                   stream=str(path), options={"encoder": self.a.encoder, "thread_type": THREAD_TYPE, **opts})
        notes = []
        if removed:
            notes.append(f"x264 info SEI removed: {removed} B")
        if nbytes != file_bytes:
            notes.append(f"packet bytes {nbytes} != file bytes {file_bytes}")
        r.note = "; ".join(notes)
        return r, np.stack(dec)


class Reuse:
    """Anchor results of an earlier run (its streams.csv, rd.csv and frames.csv)."""

    def __init__(self, folder: Path):
        import pandas as pd
        self.dir = Path(folder)
        try:
            self.streams = pd.read_csv(self.dir / "streams.csv", dtype={"setting": str})
            self.rd = pd.read_csv(self.dir / "rd.csv", dtype={"setting": str})
            self.frames = pd.read_csv(self.dir / "frames.csv", dtype={"setting": str})
        except (OSError, ValueError) as e:
            raise BenchError(f"--reuse {folder}: not a bench output folder ({e})") from None

    def get(self, vname, codec, label, n, size, fps):
        if codec not in ANCHORS:
            return None
        st = self.streams[(self.streams.video == vname) & (self.streams.codec == codec)
                          & (self.streams.setting == label)]
        if len(st) != 1:
            return None
        st = st.iloc[0]
        if int(st.frames) != n or st["size"] != f"{size}x{size}" or Fraction(st.fps) != fps:
            return None
        rd = self.rd[(self.rd.video == vname) & (self.rd.codec == codec) & (self.rd.setting == label)].iloc[0]
        fr = self.frames[(self.frames.video == vname) & (self.frames.codec == codec)
                         & (self.frames.setting == label)].sort_values("frame")
        stream = (self.dir / st.file).resolve()
        if len(fr) != n or not stream.exists():
            return None
        r = Result(vname, codec, label, -int(label[3:]), n, fps, int(st.bytes), int(st.file_bytes),
                   float(st.kbps), float(rd.enc_fps), float(rd.dec_fps), int(st.keyframes),
                   keyframe_index=[int(i) for i in fr.frame[fr.keyframe == 1]], stream=str(stream),
                   options=json.loads(st.options),
                   note="; ".join(x for x in [str(st.note) if isinstance(st.note, str) else "",
                                              f"reused from {self.dir}"] if x))
        r.per_frame = {m: fr[m].to_numpy(dtype=np.float64) for m in METRICS}
        return r


# ---- Bjontegaard delta rate ----------------------------------------------------------------
def bd_rate(rate_anchor, q_anchor, rate_test, q_test, higher_is_better: bool = True) -> dict:
    """Bjontegaard delta rate (%) of the test curve against the anchor: the average
    difference of log-rate at equal quality, over the quality interval both curves cover,
    with log-rate interpolated as a piecewise cubic Hermite (PCHIP) function of quality.

    -50 means the test codec needs half the anchor's rate. Quality is negated for
    lower-is-better metrics (LPIPS). Returns bd_rate (NaN without overlap or with fewer than
    two distinct points on a curve), overlap_lo/overlap_hi (in the metric's own units) and
    overlap_width."""
    from scipy.interpolate import PchipInterpolator
    nan = {"bd_rate": float("nan"), "overlap_lo": float("nan"), "overlap_hi": float("nan"),
           "overlap_width": 0.0}
    sign = 1.0 if higher_is_better else -1.0

    def curve(rate, q):
        rate, q = np.asarray(rate, float), sign * np.asarray(q, float)
        ok = np.isfinite(rate) & np.isfinite(q) & (rate > 0)
        rate, q = rate[ok], q[ok]
        if len(q) == 0:
            return q, q
        order = np.argsort(q, kind="stable")
        q, lr = q[order], np.log(rate[order])
        keep = np.concatenate([[True], np.diff(q) > 0])          # PCHIP needs strictly rising x
        return q[keep], lr[keep]

    qa, la = curve(rate_anchor, q_anchor)
    qt, lt = curve(rate_test, q_test)
    if len(qa) < 2 or len(qt) < 2:
        return {**nan, "note": "fewer than 2 usable points"}
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return {**nan, "note": "no overlap in quality"}
    ia = PchipInterpolator(qa, la).integrate(lo, hi)
    it = PchipInterpolator(qt, lt).integrate(lo, hi)
    bd = (math.exp((it - ia) / (hi - lo)) - 1.0) * 100.0
    a, b = sorted((sign * lo, sign * hi))
    return {"bd_rate": bd, "overlap_lo": a, "overlap_hi": b, "overlap_width": b - a, "note": ""}


# ---- outputs ------------------------------------------------------------------------------
def write_csv(path: Path, header: list, rows: list):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def rd_rows(results: list[Result]) -> list:
    return [[r.video, r.codec, r.setting, fmt_num(r.kbps, 3), fmt_num(r.mean("psnr"), 3),
             fmt_num(r.mean("ms_ssim"), 5), fmt_num(r.mean("lpips"), 5), fmt_num(r.enc_fps, 2),
             fmt_num(r.dec_fps, 2)] for r in results]


def bdrate_table(results: list[Result]) -> list:
    header = ["video", "anchor", "metric", "bd_rate_pct", "overlap_lo", "overlap_hi",
              "overlap_width", "imf_points", "anchor_points", "note"]
    rows, per = [], {}
    videos = list(dict.fromkeys(r.video for r in results))
    for v in videos:
        imf = [r for r in results if r.video == v and r.codec == "imf"]
        if not imf:
            continue
        for an in [c for c in CODECS if c != "imf"]:
            anc = [r for r in results if r.video == v and r.codec == an]
            if not anc:
                continue
            for m in METRICS:
                d = bd_rate([r.kbps for r in anc], [r.mean(m) for r in anc],
                            [r.kbps for r in imf], [r.mean(m) for r in imf], HIGHER_IS_BETTER[m])
                per.setdefault((an, m), []).append(d["bd_rate"])
                rows.append([v, an, m, fmt_num(d["bd_rate"], 2), fmt_num(d["overlap_lo"], 5),
                             fmt_num(d["overlap_hi"], 5), fmt_num(d["overlap_width"], 5), len(imf),
                             len(anc), d["note"]])
    for (an, m), vals in per.items():
        ok = [x for x in vals if math.isfinite(x)]
        mean = float(np.mean(ok)) if ok else float("nan")
        rows.append(["mean", an, m, fmt_num(mean, 2), "nan", "nan", "nan", "", "",
                     f"mean of per-video BD-rates over {len(ok)} of {len(vals)} videos with overlap"])
    return header, rows


def plot_rd(results: list[Result], out: Path, log) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    videos = list(dict.fromkeys(r.video for r in results))
    for m in METRICS:
        if all(math.isnan(r.mean(m)) for r in results):
            log(f"rd_{m}.png not made: {m} is NaN everywhere")
            continue
        ncol = min(len(videos), 3)
        nrow = math.ceil(len(videos) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.8 * nrow), squeeze=False)
        for ax, v in zip(axes.flat, videos):
            for c in CODECS:
                rs = sorted((r for r in results if r.video == v and r.codec == c), key=lambda r: r.order)
                if rs:
                    ax.plot([r.kbps for r in rs], [r.mean(m) for r in rs], "o-", ms=3, label=c)
            ax.set_xscale("log")
            ax.set_title(v, fontsize=9)
            ax.set_xlabel("kbps (log)")
            ax.set_ylabel(METRIC_LABEL[m])
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(videos):]:
            ax.axis("off")
        fig.tight_layout()
        p = out / f"rd_{m}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p.name)
    return made


def closest(rs: list[Result], kbps: float) -> Result | None:
    return min(rs, key=lambda r: abs(math.log(r.kbps / kbps))) if rs else None


def plot_detail(results: list[Result], video: str, out: Path, log) -> list[str]:
    """Per-frame quality of one clip (imf at its middle quality, anchors at the closest
    rate) and an image grid of its middle frame: source | imf qQ | each anchor at the
    setting closest in kbps, one row per imf quality."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    rs = [r for r in results if r.video == video]
    imf = sorted((r for r in rs if r.codec == "imf"), key=lambda r: r.order)
    anchors = {c: [r for r in rs if r.codec == c] for c in CODECS if c != "imf"}
    anchors = {c: v for c, v in anchors.items() if v}
    # per-frame plot
    if imf:
        ref = imf[len(imf) // 2]
        picks = [ref] + [closest(v, ref.kbps) for v in anchors.values()]
    else:
        picks = [sorted(v, key=lambda r: r.order)[len(v) // 2] for v in anchors.values()]
    shown = [m for m in METRICS if any(np.isfinite(p.per_frame[m]).any() for p in picks)]
    if picks and shown:
        fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), sharex=True, squeeze=False)
        for ax, m in zip(axes[:, 0], shown):
            for p in picks:
                ax.plot(np.arange(p.frames), p.per_frame[m], lw=1,
                        label=f"{p.codec} {p.setting} ({p.kbps:.1f} kbps)")
            if imf:
                for k in picks[0].keyframe_index:
                    ax.axvline(k, color="grey", lw=0.6, ls=":")
            ax.set_ylabel(METRIC_LABEL[m], fontsize=8)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        axes[0, 0].set_title(f"{video}: per-frame quality" + (" (dotted: imf keyframes)" if imf else ""),
                             fontsize=9)
        axes[-1, 0].set_xlabel("frame")
        fig.tight_layout()
        p = out / f"perframe_{video}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p.name)
    # image grid at matched rates
    src = next((r.mid_frame_src for r in rs if r.mid_frame_src is not None), None)
    rows = imf if imf else []
    if src is not None and rows:
        cols = 2 + len(anchors)
        fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 2.6 * len(rows)), squeeze=False)
        for i, r in enumerate(rows):
            cells = [("source", src), (f"imf {r.setting}\n{r.kbps:.1f} kbps", r.mid_frame)]
            for c, v in anchors.items():
                a = closest(v, r.kbps)
                far = " (nearest)" if abs(math.log(a.kbps / r.kbps)) > math.log(1.25) else ""
                cells.append((f"{c} {a.setting}\n{a.kbps:.1f} kbps{far}", a.mid_frame))
            for ax, (title, img) in zip(axes[i], cells):
                ax.imshow(img, interpolation="nearest")
                ax.set_title(title, fontsize=8)
                ax.axis("off")
        fig.suptitle(f"{video}, frame {rows[0].frames // 2}: source, imf and anchors at the closest rate",
                     fontsize=9)
        fig.tight_layout()
        p = out / f"grid_{video}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p.name)
    elif rows == []:
        log(f"grid_{video}.png not made: no imf results for that clip")
    return made


# ---- meta ---------------------------------------------------------------------------------
def _lib_version(fragment: str, symbol: str, is_func: bool) -> str:
    """Version string of a codec library loaded into this process (PyAV's bundled copies)."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S+\.so[.\d]*)", f.read())))
        for lib in libs:
            if fragment in os.path.basename(lib).lower():
                d = ctypes.CDLL(lib)
                if is_func:
                    fn = getattr(d, symbol)
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
                return ctypes.c_char_p.in_dll(d, symbol).value.decode()
    except Exception:
        pass
    return "unknown"


def machine_info() -> dict:
    import torch
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available()}


def codec_versions(anchors: list[str], x264_info: str) -> dict:
    import av
    out = {"pyav": av.__version__,
           "ffmpeg_libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}}
    for name in anchors:
        a = ANCHORS[name]
        try:
            c = av.codec.Codec(a.encoder, "w")
            d = {"encoder": a.encoder, "long_name": c.long_name}
        except Exception as e:
            d = {"encoder": a.encoder, "error": str(e)}
        if name == "x264":
            m = re.search(r"core (\d+)( r\d+ \w+)?", x264_info or "")
            d["version"] = f"x264 core {m.group(1)}{m.group(2) or ''}" if m else "unknown"
            d["info_sei"] = x264_info
        elif name == "x265":
            d["version"] = "x265 " + _lib_version("libx265", "x265_version_str", False)
        elif name == "av1":
            d["version"] = "SVT-AV1 " + _lib_version("libsvtav1enc", "svt_av1_get_version", True)
            d["decoder"] = "libdav1d " + _lib_version("libdav1d", "dav1d_version", True)
        out[name] = d
    return out


# ---- main ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd_curve.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", required=True, metavar="FILE_OR_DIR",
                   help="video files, or folders whose video files are all used")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma list of imf,x264,x265,av1")
    p.add_argument("--qualities", default=None, metavar="LIST",
                   help="imfcodec quality levels, e.g. 1-8 or 1,4,8 (default 1-8)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 250)")
    p.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                   help="imfcodec model: shipped name or model file (default: imf-cpu)")
    p.add_argument("--device", default="auto", help="device for imfcodec (auto, cpu, cuda)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="imfcodec's network arithmetic (default auto: bf16 on a CPU with native bf16)")
    p.add_argument("--imf-keyframe-codec", default=None, choices=list(KEYFRAME_CODEC_IDS),
                   help="imfcodec's keyframe codec (default: the codec's default)")
    p.add_argument("--size", type=int, default=None,
                   help="test size S (default: the model's coded size, 256 without imf)")
    p.add_argument("--ladder", action="append", default=[], metavar="CODEC=LIST",
                   help="CRF ladder of an anchor, e.g. x264=18,28,37,44,51 (repeatable)")
    p.add_argument("--detail", default=None, metavar="VIDEO",
                   help="clip for the per-frame plot and image grid (default: the first that ran)")
    p.add_argument("--keep-sei", action="store_true",
                   help="keep x264's informational SEI in its streams (counted in its rate)")
    p.add_argument("--fast", action="store_true",
                   help=f"smoke test: {FAST_FRAMES} frames, qualities {FAST_QUALITIES}, 3 CRFs per anchor")
    p.add_argument("--reuse", default=None, metavar="DIR",
                   help="take anchor results (streams, per-frame metrics, speeds) from an earlier "
                        "run's output folder where video, setting, frame count and size match, "
                        "instead of re-running them: anchors do not change when the model does")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    streams = out / "streams"
    try:
        streams.mkdir(parents=True, exist_ok=True)
        (out / "log.txt").write_text("")
    except OSError as e:
        print(f"rd_curve.py: error: cannot use --out {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    log = Log(out / "log.txt", args.quiet)
    skipped: list[tuple[str, str, str]] = []

    def skip(item, kind, reason):
        skipped.append((item, kind, reason))
        log(f"SKIP {kind} {item}: {reason}")

    try:
        return _run(args, argv, out, streams, log, skip, skipped)
    finally:
        log.close()


def _run(args, argv, out, streams, log, skip, skipped) -> int:
    t_start = time.time()
    argv = list(sys.argv[1:] if argv is None else argv)
    log("rd_curve.py " + " ".join(argv))
    # codecs
    asked = [c.strip() for c in args.codecs.split(",") if c.strip()]
    codecs = []
    for c in asked:
        if c not in CODECS:
            skip(c, "codec", f"unknown codec {c!r}; choose from {', '.join(CODECS)}")
        elif c not in codecs:
            codecs.append(c)
    import av
    for c in list(codecs):
        if c in ANCHORS:
            try:
                av.codec.Codec(ANCHORS[c].encoder, "w")
            except Exception:
                skip(c, "codec", f"encoder {ANCHORS[c].encoder} is not in this PyAV build")
                codecs.remove(c)
    if not codecs:
        print(f"rd_curve.py: error: no usable codec in --codecs {args.codecs!r} "
              f"(choose from {', '.join(CODECS)})", file=sys.stderr)
        return 2
    # settings
    try:
        qualities = (list(FAST_QUALITIES) if args.fast and args.qualities is None else
                     parse_int_list(args.qualities or "1-8", 1, 8))
        ladders = {n: list(a.fast_ladder if args.fast else a.ladder) for n, a in ANCHORS.items()}
        for spec in args.ladder:
            name, _, lst = spec.partition("=")
            if name not in ANCHORS:
                raise argparse.ArgumentTypeError(f"--ladder {spec!r}: unknown anchor {name!r} "
                                                 f"(choose from {', '.join(ANCHORS)})")
            hi = 63 if name == "av1" else 51
            ladders[name] = sorted(parse_int_list(lst, 0, hi))
    except argparse.ArgumentTypeError as e:
        print(f"rd_curve.py: error: {e}", file=sys.stderr)
        return 2
    frames = args.frames or (FAST_FRAMES if args.fast else 250)
    if frames < 1:
        print("rd_curve.py: error: --frames must be >= 1", file=sys.stderr)
        return 2
    # model
    import torch
    model = None
    if "imf" in codecs:
        import imfcodec
        try:
            model = imfcodec.load_model(args.model, args.device, args.precision)
        except imfcodec.IMFCodecError as e:
            skip("imf", "codec", f"model not loaded: {e}")
            codecs.remove("imf")
    size = args.size or (model.config.image_size if model is not None else 256)
    if model is not None and size != model.config.image_size:
        log(f"note: test size {size} differs from the model's coded size {model.config.image_size}")
    size_from = ("the model's coded size" if model is not None and size == model.config.image_size
                 else "--size" if args.size else "default, no imf model")
    log(f"test size {size}x{size} ({size_from}), "
        f"{frames} frames per clip, codecs {','.join(codecs)}, imf qualities {qualities}, "
        + ", ".join(f"{c} crf {ladders[c]}" for c in codecs if c in ANCHORS))
    metrics = Metrics(size, log, skip)
    reuse = None
    if args.reuse:
        try:
            reuse = Reuse(args.reuse)
        except BenchError as e:
            print(f"rd_curve.py: error: {e}", file=sys.stderr)
            return 2
    runners = {}
    if model is not None:
        runners["imf"] = ImfRunner(model, streams, args.imf_keyframe_codec)
        kc = runners["imf"].keyframe_codec
        log(f"imf keyframe codec {kc}; per quality: keyframe CRF, refresh drop dB / min interval s "
            + ", ".join(f"q{q} {model.keyframe_crf(q, kc)} {model.refresh_drop(q):g}/"
                        f"{model.min_keyframe_interval(q):g}" for q in qualities))
    for c in codecs:
        if c in ANCHORS:
            runners[c] = AnchorRunner(ANCHORS[c], streams, strip_sei=not args.keep_sei)
    plan = {c: (runners[c].settings(qualities) if c == "imf" else runners[c].settings(ladders[c]))
            for c in runners}
    # videos
    videos = find_videos(args.videos, skip)
    names = {}
    for p in videos:
        base = safe_name(p.stem)
        name, k = base, 2
        while name in names.values():
            name, k = f"{base}_{k}", k + 1
        names[p] = name
    results: list[Result] = []
    ran: list[str] = []
    from tqdm import tqdm
    total = len(videos) * sum(len(v) for v in plan.values())
    bar = tqdm(total=total, unit="run", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
    log.bar = bar
    for path in videos:
        vname = names[path]
        bar.set_description(vname)
        try:
            src, fps = test_source(path, frames, size)
        except BenchError as e:
            skip(str(path), "video", str(e))
            bar.update(sum(len(v) for v in plan.values()))
            continue
        n = len(src)
        log(f"[{vname}] {path}: {n} frames at {float(fps):.4g} fps ({fps}), test size {size}x{size}"
            + (f" (clip has only {n} < {frames} frames)" if n < frames else ""))
        ok = 0
        for c, settings in plan.items():
            runner = runners[c]
            reused = {}
            if reuse is not None:
                for label, _, _ in settings:
                    r = reuse.get(vname, c, label, n, size, fps)
                    if r is not None:
                        mid = runner._decode_file(r.stream)[n // 2]
                        r.mid_frame, r.mid_frame_src = mid, src[n // 2]
                        reused[label] = r
                        results.append(r)
                        ok += 1
                        log(f"[{vname}] {c} {label}: reused kbps={r.kbps:.3f} psnr={r.mean('psnr'):.3f} "
                            f"lpips={fmt_num(r.mean('lpips'), 5)}")
                        bar.update(1)
                settings = [s for s in settings if s[0] not in reused]
                if not settings:
                    continue
            try:
                runner.warm_up(src, fps, settings[0][1])
            except Exception as e:
                skip(f"{vname}:{c}", "codec", f"warm-up failed: {type(e).__name__}: {e}")
                bar.update(len(settings))
                continue
            for label, value, _ in settings:
                bar.set_postfix_str(f"{c} {label}")
                try:
                    r, dec = runner.run(vname, src, fps, value)
                except Exception as e:
                    skip(f"{vname}:{c}:{label}", "setting", f"{type(e).__name__}: {e}")
                    bar.update(1)
                    continue
                r.per_frame = metrics(src, dec)
                r.mid_frame = dec[n // 2]
                r.mid_frame_src = src[n // 2]
                results.append(r)
                ok += 1
                log(f"[{vname}] {c} {label}: kbps={r.kbps:.3f} psnr={r.mean('psnr'):.3f} "
                    f"ms_ssim={fmt_num(r.mean('ms_ssim'), 5)} lpips={fmt_num(r.mean('lpips'), 5)} "
                    f"enc={r.enc_fps:.1f}fps dec={r.dec_fps:.1f}fps bytes={r.nbytes} "
                    f"keyframes={r.keyframes}" + (f" ({r.note})" if r.note else ""))
                bar.update(1)
        if ok:
            ran.append(vname)
        del src
    bar.close()
    log.bar = None
    # outputs
    write_csv(out / "rd.csv", RD_COLUMNS, rd_rows(results))
    head, rows = bdrate_table(results)
    write_csv(out / "bdrate.csv", head, rows)
    frame_rows = []
    for r in results:
        for i in range(r.frames):
            frame_rows.append([r.video, r.codec, r.setting, i, fmt_num(r.per_frame["psnr"][i], 3),
                               fmt_num(r.per_frame["ms_ssim"][i], 5), fmt_num(r.per_frame["lpips"][i], 5),
                               int(i in set(r.keyframe_index))])
    write_csv(out / "frames.csv", ["video", "codec", "setting", "frame", "psnr", "ms_ssim", "lpips",
                                   "keyframe"], frame_rows)
    write_csv(out / "streams.csv",
              ["video", "codec", "setting", "frames", "fps", "size", "bytes", "file_bytes", "kbps",
               "keyframes", "file", "options", "note"],
              [[r.video, r.codec, r.setting, r.frames, str(r.fps), f"{size}x{size}", r.nbytes,
                r.file_bytes, fmt_num(r.kbps, 3), r.keyframes, os.path.relpath(r.stream, out),
                json.dumps(r.options, sort_keys=True), r.note] for r in results])
    write_csv(out / "skipped.csv", ["item", "kind", "reason"], skipped)
    made = []
    if results:
        detail = args.detail if args.detail in ran else (ran[0] if ran else None)
        if args.detail and args.detail not in ran:
            log(f"note: --detail {args.detail!r} is not a clip that ran; using {detail!r}")
        try:
            made += plot_rd(results, out, log)
            if detail:
                made += plot_detail(results, detail, out, log)
        except Exception as e:   # a plot must never cost the numbers
            skip("plots", "output", f"plotting failed: {type(e).__name__}: {e}")
            write_csv(out / "skipped.csv", ["item", "kind", "reason"], skipped)
    x264_info = runners["x264"].info if "x264" in runners else ""
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": argv,
        "machine": machine_info(),
        "test_source": {"size": [size, size], "size_from": size_from,
                        "frames": frames, "resize": "imfcodec.video.to_model (bilinear, antialias, "
                        "stretch) then to_uint8", "fps": "clip's real rate (imfcodec.video.probe)"},
        "imf": None if model is None else {
            "model_id": model.model_id, "sha256": model.sha256, "image_size": model.config.image_size,
            "token_dim": model.config.token_dim, "device": str(model.device),
            "precision": str(model.dtype).replace("torch.", ""), "qualities": qualities,
            "model_arg": args.model, "imfcodec_version": __import__("imfcodec").__version__},
        "anchors": {c: {"ladder": ladders[c], "options": ANCHORS[c].options("<crf>", "<frames+1>"),
                        "encoder": ANCHORS[c].encoder, "thread_type": THREAD_TYPE,
                        "format": ANCHORS[c].fmt, "strip_x264_info_sei": c == "x264" and not args.keep_sei}
                    for c in runners if c in ANCHORS},
        "versions": codec_versions([c for c in runners if c in ANCHORS], x264_info),
        "metrics": {"psnr": f"10 log10(1/MSE) over RGB in [0,1] per frame, capped at {PSNR_CAP} dB, "
                            "mean over frames",
                    "ms_ssim": metrics.msssim_note or "pytorch_msssim 5-scale defaults, data_range 1, "
                               "per frame, mean over frames",
                    "lpips": metrics.lpips_note or "LPIPS v0.1 AlexNet, inputs [0,1], per frame, mean over frames"},
        "timing": f"wall clock (time.perf_counter), frames / seconds, after a {WARMUP_FRAMES}-frame "
                  "warm-up encode+decode per clip and codec; encode: RGB frames in -> bytes; "
                  "decode: stream bytes -> RGB frames",
        "videos_ran": ran, "skipped": [dict(zip(["item", "kind", "reason"], s)) for s in skipped],
        "outputs": ["rd.csv", "bdrate.csv", "frames.csv", "streams.csv", "skipped.csv"] + made,
        "seconds": round(time.time() - t_start, 1),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    summary = (f"rd_curve: {len(ran)} video(s) ran, {len(results)} streams, "
               f"{len(skipped)} item(s) skipped"
               + (f" ({'; '.join(f'{k} {i}' for i, k, _ in skipped)}; see {out / 'skipped.csv'})"
                  if skipped else "")
               + f"; results in {out}")
    log.fh.write(summary + "\n")
    print(summary)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
