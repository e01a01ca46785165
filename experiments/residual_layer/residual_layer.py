"""A residual layer in the closed loop (RDAC's idea with a real block codec): code
X_t - G_t, where G_t is imfcodec's closed-loop output at level q (exactly what its decoder
rebuilds), offset to mid-grey, with a low-delay SVT-AV1 chain (the rd bench's AV1 anchor
settings: preset 8, pred-struct 1) at size s and CRF c; the decoder would add it back.
Scored against imfcodec alone and against the same AV1 chain on the source itself
(``grey``: G = mid-grey, which is plain SVT-AV1), on the same 256x256 test source as
bench/rd_curve.py. Rate: imfcodec's whole file plus the residual stream's packets.

    python experiments/residual_layer/residual_layer.py $IMFCODEC_DATA/train/{liveportrait_d10,mtalk_German_20s,eamm_fear}.mp4 \
        --frames 125 --levels 1,4 --sizes 256 --crfs 63,56 --out experiments/residual_layer/results/rows.csv

Writes OUT (one row per clip and variant) and OUT with .md: the means over the clips.
"""
import argparse
import csv
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from imfbench.metrics import Metrics, pulse
from imfbench.source import test_source
from imfbench.sweep import code_closed_loop
from imfcodec.model import load_model
from imfcodec.options import DEFAULT_MODEL

torch.set_num_threads(2)


def resize(frames, size, out=None):
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if t.shape[-1] == size:
        return frames
    t = F.interpolate(t, size=(size, size), mode="bicubic" if size > t.shape[-1] else "bilinear",
                      antialias=size < t.shape[-1], align_corners=False)
    return t.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def resize_f(frames, size):
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if t.shape[-1] == size:
        return frames.astype(np.float32)
    t = F.interpolate(t, size=(size, size), mode="bicubic" if size > t.shape[-1] else "bilinear",
                      antialias=size < t.shape[-1], align_corners=False)
    return t.permute(0, 2, 3, 1).numpy()


def av1_chain(pics, crf, fps, preset=8, codec="av1"):
    """Low-delay coding of uint8 pics (N, s, s, 3): (bytes, decoded pics)."""
    if codec == "av1":
        enc = av.CodecContext.create("libsvtav1", "w")
        opts = {"preset": str(preset), "crf": str(crf), "g": "100000", "svtav1-params": "pred-struct=1"}
        dname = "libdav1d"
    else:
        enc = av.CodecContext.create("libvpx-vp9", "w")
        opts = {"deadline": "realtime", "cpu-used": "7", "lag-in-frames": "0", "crf": str(crf), "b": "0",
                "g": "100000", "row-mt": "1"}
        dname = "vp9"
    enc.width = enc.height = pics.shape[1]
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1) / fps
    enc.framerate = fps
    enc.options = opts
    pk = []
    for i, p in enumerate(pics):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(p), format="rgb24").reformat(format="yuv420p")
        f.pts = i
        pk += [bytes(x) for x in enc.encode(f)]
    pk += [bytes(x) for x in enc.encode(None)]
    dec = av.CodecContext.create(dname, "r")
    out = []
    for d in pk:
        for f in dec.decode(av.Packet(d)):
            out.append(f.to_ndarray(format="rgb24"))
    for f in dec.decode(None):
        out.append(f.to_ndarray(format="rgb24"))
    assert len(out) == len(pics), (len(out), len(pics))
    return sum(map(len, pk)), np.stack(out)


def score(M, src, dec, nbytes, fps):
    pf = M(src, dec)
    lp = pf["lpips"]
    # tLP (TecoGAN): mean_t |LPIPS(src[t-1],src[t]) - LPIPS(out[t-1],out[t])|
    return dict(kbps=nbytes * 8 / 1000 / (len(src) / float(fps)), lpips=float(np.nanmean(lp)),
                psnr=float(np.nanmean(pf["psnr"])), pulse=pulse(lp))


def tlp(M, src, dec):
    a = torch.from_numpy(np.ascontiguousarray(src)).permute(0, 3, 1, 2).float() / 255
    b = torch.from_numpy(np.ascontiguousarray(dec)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ls = M.lpips(a[:-1], a[1:]).double().numpy()
        ld = M.lpips(b[:-1], b[1:]).double().numpy()
    return float(np.mean(np.abs(ls - ld)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=125)
    ap.add_argument("--levels", default="1,2,4")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--crfs", default="63,58,53,48,43")
    ap.add_argument("--codec", default="av1")
    ap.add_argument("--grey-crfs", default="63,56,50,44")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = load_model(DEFAULT_MODEL, "cpu")
    M = Metrics(256, lambda *x: None, use_dists=False)
    rows = []
    levels = [int(v) for v in a.levels.split(",")]
    sizes = [int(v) for v in a.sizes.split(",")]
    crfs = [int(v) for v in a.crfs.split(",")]
    for clip in a.clips:
        src, fps = test_source(Path(clip), a.frames, 256)
        M.set_source(clip, src)
        preds = {"grey": (0, np.full_like(src, 128), 0)}
        for q in levels:
            t0 = time.time()
            preds[f"q{q}"] = code_closed_loop(model, src, fps, q)
            r = score(M, src, preds[f"q{q}"][1], preds[f"q{q}"][0], fps)
            r.update(clip=Path(clip).stem, pred=f"q{q}", size=0, crf=-1, keyframes=preds[f"q{q}"][2],
                     tlp=tlp(M, src, preds[f"q{q}"][1]))
            rows.append(r); print(r, f"{time.time()-t0:.1f}s", flush=True)
        for name, (nb, g, kf) in preds.items():
            for s in sizes:
                for c in ([int(v) for v in a.grey_crfs.split(',')] if name == 'grey' else crfs):
                    t0 = time.time()
                    res = np.clip(src.astype(np.int16) - g + 128, 0, 255).astype(np.uint8)
                    rb, rdec = av1_chain(resize(res, s), c, fps, codec=a.codec)
                    up = resize_f(rdec, 256) - 128.0
                    dec = np.clip(g.astype(np.float32) + up, 0, 255).round().astype(np.uint8)
                    r = score(M, src, dec, nb + rb, fps)
                    r.update(clip=Path(clip).stem, pred=name, size=s, crf=c, keyframes=kf, tlp=tlp(M, src, dec),
                             resid_kbps=rb * 8 / 1000 / (len(src) / float(fps)))
                    rows.append(r); print(r, f"{time.time()-t0:.1f}s", flush=True)
        with open(a.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader(); w.writerows(rows)
    summarize(rows, Path(a.out).with_suffix(".md"), " ".join(sys.argv[1:]))


def summarize(rows, out: Path, argv: str):
    keys = []
    for r in rows:
        k = (r["pred"], r["size"], r["crf"])
        if k not in keys:
            keys.append(k)
    clips = sorted({r["clip"] for r in rows})
    lines = [f"Means over {len(clips)} training clips ({', '.join(clips)}); "
             f"`python experiments/residual_layer/residual_layer.py {argv}`.", "",
             "| prediction | residual size | residual CRF | kbps | residual kbps | LPIPS | PSNR dB | pulse | tLP |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pred, size, crf in keys:
        rs = [r for r in rows if (r["pred"], r["size"], r["crf"]) == (pred, size, crf)]
        if len(rs) != len(clips):
            continue
        m = {k: float(np.mean([r.get(k, 0.0) for r in rs])) for k in ("kbps", "resid_kbps", "lpips", "psnr", "pulse", "tlp")}
        name = {"grey": "none (plain SVT-AV1)"}.get(pred, f"imfcodec {pred}")
        lines.append(f"| {name} | {size or '-'} | {crf if crf >= 0 else '-'} | {m['kbps']:.2f} | {m['resid_kbps']:.2f} | "
                     f"{m['lpips']:.4f} | {m['psnr']:.2f} | {m['pulse']:.4f} | {m['tlp']:.4f} |")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
