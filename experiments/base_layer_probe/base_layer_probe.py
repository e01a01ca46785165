"""Groundwork for a base layer (issue 15): is a coded thumbnail of every frame worth its
bytes when fused with the shipped token-only model *without training*?

For each clip the shipped model codes the frames token-only from ONE keyframe (no refresh:
the drift the base layer is meant to end), and every frame is also downscaled to SxS and
coded as one low-delay real-time stream (VP9 or SVT-AV1 through PyAV). Scored at the
model's 256x256 against the source, with every byte counted (keyframe + tokens + thumbnails):

* ``imf-1key``: the token-only frames alone;
* ``up``: the decoded thumbnail, bicubic-upscaled (the "thumbnail plus upscaler" ablation);
* ``lfB``: band fusion, the IMF frame with its content below BxB replaced by the thumbnail's,
  ``x_imf + up(down_B(thumb)) - up(down_B(x_imf))`` (B <= S).

    python experiments/base_layer_probe/base_layer_probe.py $IMFCODEC_DATA/train/mph_-2KGPYEFnsU_11.mp4 \
        --frames 150 --sizes 96,128 --crfs 45 --bands 32,64 --out probe.csv

Tune on training clips only. Columns: clip, mode, kbps, lpips (alex), psnr, pulse (mean
|LPIPS_t - LPIPS_t-1|). Results and what they mean: docs/MODEL_CARD.md, "Base layer groundwork".
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from imfcodec.codec import encoder as codec
from imfcodec.format import container
from imfcodec.media import video
from imfcodec.errors import IMFCodecError
from imfcodec.metrics import get_lpips, psnr
from imfcodec.model import load_model

THUMB_CODECS = {"vp9": ("libvpx-vp9", "vp9"), "av1": ("libsvtav1", "libdav1d")}


def _down(x: torch.Tensor, s: int) -> torch.Tensor:
    return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)


def _up(x: torch.Tensor, s: int) -> torch.Tensor:
    return F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)


def _options(name: str, crf: int) -> dict:
    if name == "vp9":       # WebRTC-like real time, one packet per picture
        return {"crf": str(crf), "b": "0", "lag-in-frames": "0", "auto-alt-ref": "0",
                "deadline": "realtime", "cpu-used": "8", "g": "100000", "error-resilient": "0"}
    return {"crf": str(crf), "preset": "10",
            "svtav1-params": "pred-struct=1:lookahead=0:keyint=-1:tune=0"}


def code_thumbnails(thumbs: np.ndarray, name: str, crf: int) -> tuple[np.ndarray, int]:
    """(N, s, s, 3) uint8 -> (decoded (N, s, s, 3) uint8, bytes of the coded stream)."""
    import av
    enc_name, dec_name = THUMB_CODECS[name]
    enc = av.CodecContext.create(enc_name, "w")
    enc.width, enc.height = thumbs.shape[2], thumbs.shape[1]
    enc.pix_fmt, enc.time_base, enc.framerate = "yuv420p", Fraction(1, 30), Fraction(30)
    enc.thread_count, enc.options = 1, _options(name, crf)
    packets = []
    for i, t in enumerate(thumbs):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(t), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        packets += enc.encode(f)
    packets += enc.encode(None)
    dec = av.CodecContext.create(dec_name, "r")
    out = [d.to_ndarray(format="rgb24") for p in packets for d in dec.decode(p)]
    out += [d.to_ndarray(format="rgb24") for d in dec.decode(None)]
    if len(out) != len(thumbs):
        raise IMFCodecError(f"{name} thumbnail stream gave {len(out)} pictures for {len(thumbs)}")
    return np.stack(out), sum(p.size for p in packets)


def token_only(model, frames: list, fps, quality: int) -> tuple[torch.Tensor, int]:
    """The closed-loop reconstructions (N, 3, S, S) from one keyframe, and the stream's bytes."""
    h, w = frames[0].shape[:2]
    enc = codec.Encoder(model, w, h, fps, quality=quality, refresh_drop=0, max_keyframe_interval=1e6)
    packets, recs = [], []
    for f in frames:
        packets += enc.push(f)
        recs.append(enc.recon.float().cpu())
    packets += enc.flush()
    _, sizes = container.assemble(enc.header(enc.index), packets)
    return torch.cat(recs), sizes.total


def probe(path, model, lp, frames: int, quality: int, codecs, sizes, crfs, bands) -> list[dict]:
    info = video.probe(path)
    src = list(video.read_frames(path, max_frames=frames))
    n, s_model = len(src), model.config.image_size
    x = video.to_model(np.stack(src), s_model)

    def score(y):
        with torch.no_grad():
            lpips = torch.cat([lp(y[i:i + 16], x[i:i + 16]).flatten() for i in range(0, n, 16)])
        return {"lpips": lpips.mean().item(), "psnr": psnr(y, x).mean().item(),
                "pulse": (lpips[1:] - lpips[:-1]).abs().mean().item()}

    def kbps(nbytes):
        return container.kbps(nbytes, n, info.fps)

    clip, rows = str(path).split("/")[-1], []

    def add(mode, nbytes, y):
        rows.append({"clip": clip, "mode": mode, "kbps": kbps(nbytes), **score(y)})
        print(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in rows[-1].items()), flush=True)

    x_imf, imf_bytes = token_only(model, src, info.fps, quality)
    add("imf-1key", imf_bytes, x_imf)
    for name in codecs:
        for s in sizes:
            thumbs = video.to_uint8(_down(x, s))
            for crf in crfs:
                dec, nbytes = code_thumbnails(thumbs, name, crf)
                t = _up(torch.from_numpy(dec).permute(0, 3, 1, 2).float() / 255, s_model)
                tag = f"{name}{s}c{crf}"
                add(f"{tag} up", nbytes, t)
                for b in (b for b in bands if b <= s):
                    y = (x_imf + _up(_down(t, b), s_model) - _up(_down(x_imf, b), s_model)).clamp(0, 1)
                    add(f"{tag} lf{b}", nbytes + imf_bytes, y)
    return rows


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", help="video files (training clips)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--quality", type=int, default=4, help="token step of this level")
    ap.add_argument("--codecs", default="vp9", help="thumbnail codecs: vp9, av1")
    ap.add_argument("--sizes", default="64,96", help="thumbnail sizes")
    ap.add_argument("--crfs", default="45", help="thumbnail CRFs")
    ap.add_argument("--bands", default="32,64", help="fusion bands B (the thumbnail's below BxB)")
    ap.add_argument("--out", help="CSV written")
    a = ap.parse_args(argv)
    try:
        codecs = [c for c in a.codecs.split(",") if c]
        bad = [c for c in codecs if c not in THUMB_CODECS]
        if bad:
            raise IMFCodecError(f"unknown thumbnail codec {bad[0]!r}; choose from vp9, av1")
        model = load_model(None, "cpu", "fp32")
        lp = get_lpips("alex")
        rows = []
        for c in a.clips:
            rows += probe(c, model, lp, a.frames, a.quality, codecs, _ints(a.sizes), _ints(a.crfs),
                          _ints(a.bands))
        if a.out:
            pd.DataFrame(rows).to_csv(a.out, index=False, float_format="%.4f")
    except (IMFCodecError, ValueError, OSError) as e:
        print(f"base_layer_probe: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
