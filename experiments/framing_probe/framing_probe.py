#!/usr/bin/env python
"""Where face framing's face-region error comes from (issue 19), clip by clip.

    python experiments/framing_probe/framing_probe.py --videos CLIP [CLIP ...] [--frames 40] [--quality 4]
        [--aspect 16:9] [--fixed-crop] [--feather F] --out FILE.md

The test source of bench/aspect.py (the val clip at S x S, widened by repeating its edge
columns; the face region is the original S x S square). Each clip is coded square (today's
path) and face-framed at the same quality, and the report gives:

* the face locator's boxes (every ``framing.DETECT_EVERY``-th frame; misses), the crop's
  position over time against the original square, and both encodes' keyframes;
* the face region split by columns into the crop's interior, its feather band and the
  pixels only the frame layer covers, with each part's share and MSE, face-framed vs square;
* face-region LPIPS of the face-framed decode, of the square decode, and of hybrids that
  take one part from the square decode (or the source): how much of the gap each part holds;
* whole-frame LPIPS.

``--fixed-crop``: a locator that always reports a face in the frame's centre (the crop on the
original square): the error left when the crop is placed perfectly. ``--feather F``: the
crop's fade as a fraction of its side (default: framing.FEATHER_FRACTION).
Runs in about 10 s a clip (2 cores).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from imfbench.metrics import Metrics
from imfbench.source import parse_aspect, test_source, widen

PARTS = ("interior", "feather", "layer-only")


def column_parts(crop_x: np.ndarray, left: int, side: int, width: int, feather: int) -> np.ndarray:
    """(N, side): for each frame and face-region column, 0 crop interior, 1 feather band,
    2 frame layer only."""
    cols = left + np.arange(side)
    out = np.full((len(crop_x), side), 2)
    for i, x0 in enumerate(crop_x):
        fl, fr = (feather if x0 > 0 else 0), (feather if x0 + side < width else 0)
        inside = (cols >= x0) & (cols < x0 + side)
        out[i][inside] = 1
        out[i][(cols >= x0 + fl) & (cols < x0 + side - fr)] = 0
    return out


def probe(path: Path, args, model) -> list[str]:
    import imfcodec
    from imfcodec.format import container
    from imfcodec.codec import framing
    S = model.config.image_size
    sq, fps = test_source(path, args.frames, S)
    wide, (top, left) = widen(sq, args.aspect)
    if top:
        raise SystemExit("framing_probe: portrait aspects are not split by columns; use a landscape --aspect")
    N, H, W = wide.shape[:3]
    boxes = {}
    find = framing.FaceLocator()

    def locate(frame):
        box = (W / 2 - S / 4, H / 2 - S / 4, S / 2, S / 2) if args.fixed_crop else find(frame)
        boxes[len(boxes) * framing.DETECT_EVERY] = box
        return box

    feather = {} if args.feather is None else {"feather_fraction": args.feather}
    d_sq, st_sq = imfcodec.encode_frames(iter(sq), fps, model, quality=args.quality, framing="stretch")
    dec_sq = np.stack(list(imfcodec.decode_bytes(d_sq, model)[1]))
    d_fc, st_fc = imfcodec.encode_frames(iter(wide), fps, model, quality=args.quality, framing="face",
                                         locator=locate, **feather)
    header, packets = container.parse(d_fc)
    dec_fc = np.stack(list(imfcodec.decode_bytes(d_fc, model)[1]))
    crops = [(p.frame_index, p.x) for p in packets if isinstance(p, container.CropPacket)]
    crop_x = np.zeros(N, int)
    for i, x in crops:
        crop_x[i:] = x
    feather = header.framing.feather
    part = column_parts(crop_x, left, S, W, feather)
    face = np.ascontiguousarray(dec_fc[:, :, left:left + S])

    found = [b for b in boxes.values() if b is not None]
    cx = np.array([b[0] + b[2] / 2 for b in found]) - left if found else np.array([np.nan])
    lines = [f"## {path.stem}", "",
             f"- square: {container.kbps(len(d_sq), N, fps):.2f} kbps, keyframes {st_sq.keyframe_indices}",
             f"- face-framed: {container.kbps(len(d_fc), N, fps):.2f} kbps (frame layer and crop packets "
             f"{st_fc.layer_bytes} bytes), keyframes {st_fc.keyframe_indices}, feather {feather} px",
             f"- face boxes: {len(found)} of {len(boxes)} looks found a face; centre x in the original "
             f"square {np.nanmin(cx):.0f}..{np.nanmax(cx):.0f} (median {np.nanmedian(cx):.0f}, "
             f"sd {np.nanstd(cx):.1f}; the square's centre is {S // 2}), width "
             + (f"{min(b[2] for b in found):.0f}..{max(b[2] for b in found):.0f}" if found else "-"),
             f"- crop x over time (frame: x; the original square is at x = {left}): "
             + ", ".join(f"{i}: {x}" for i, x in crops), "",
             "| part of the face region | share | MSE face-framed | MSE square |", "|---|---|---|---|"]
    err_fc = ((face.astype(np.float64) - sq) ** 2).mean(axis=(1, 3))      # (N, S) per column
    err_sq = ((dec_sq.astype(np.float64) - sq) ** 2).mean(axis=(1, 3))
    for k, name in enumerate(PARTS):
        sel = part == k
        if sel.any():
            lines.append(f"| {name} | {sel.mean():.3f} | {err_fc[sel].mean():.1f} | {err_sq[sel].mean():.1f} |")
    lines.append(f"| all | 1.000 | {err_fc.mean():.1f} | {err_sq.mean():.1f} |")

    metrics = Metrics(S, lambda *a: None, use_dists=False)

    def lpips(x):
        return float(metrics(sq, np.ascontiguousarray(x))["lpips"].mean())

    def hybrid(parts, src):
        h = face.copy()
        for i in range(N):
            cols = np.isin(part[i], parts)
            h[i][:, cols] = src[i][:, cols]
        return h

    rows = [("face-framed", face), ("square", dec_sq),
            ("face-framed, layer-only columns from the square decode", hybrid([2], dec_sq)),
            ("face-framed, feather and layer-only columns from the square decode", hybrid([1, 2], dec_sq)),
            ("face-framed, interior columns from the square decode", hybrid([0], dec_sq)),
            ("face-framed, feather and layer-only columns from the source", hybrid([1, 2], sq))]
    lines += ["", "| face-region LPIPS of | LPIPS |", "|---|---|"]
    lines += [f"| {name} | {lpips(x):.4f} |" for name, x in rows]
    whole = metrics(wide, dec_fc)
    lines += ["", f"Whole frame, face-framed: LPIPS {whole['lpips'].mean():.4f}, PSNR {whole['psnr'].mean():.2f} dB.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="+", required=True)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--aspect", default="16:9")
    ap.add_argument("--fixed-crop", action="store_true")
    ap.add_argument("--feather", type=float, default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch

    import imfcodec
    from imfcodec.fileio import atomic_write
    torch.set_num_threads(1)
    args.aspect_text, args.aspect = args.aspect, parse_aspect(args.aspect)
    model = imfcodec.load_model(None, "cpu")
    lines = [f"# experiments/framing_probe/framing_probe.py: {args.frames} frames, q{args.quality}, aspect {args.aspect_text}"
             + (", crop fixed on the original square" if args.fixed_crop else "")
             + (f", feather {args.feather:g} of the side" if args.feather else ", default feather"), "",
             "`python experiments/framing_probe/framing_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`", ""]
    for v in args.videos:
        lines += probe(Path(v), args, model)
        print("\n".join(lines[-30:]), flush=True)
    atomic_write(Path(args.out), lambda f: f.write(("\n".join(lines) + "\n").encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
