#!/usr/bin/env python
"""Side-by-side video: source | imfcodec | x264 | SVT-AV1, each at the rate nearest --kbps.

    python bench/side_by_side.py CLIP --kbps 10 --out out.mp4 [--frames 120] [--model imf-cpu]
        [--sizes 256,128,64] [--crf 24]

The test source is the one of bench/rd_curve.py (the clip's first --frames frames stretched
to the model's coded size S). imfcodec: the quality level whose .imf file is nearest to
--kbps (every byte counted; levels are searched from q4 toward the target). Each anchor:
its rd_curve.py options and ladder at each coded size in --sizes (below S: downscale, code,
decode, Lanczos upscale); among the streams within 20 % of --kbps the one with the lowest
mean LPIPS (the best size a sender could pick), else the stream nearest in rate. Under each
panel: codec, setting, coded size and the real kbps. Pulsing (a quality swing at each
keyframe refresh) shows in motion, not in a still.

Writes --out atomically (.mp4/.mkv/.mov: x264 at --crf; .gif: 256 colours, larger).
Exit status 0, or 2 with one error line for bad input.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")

import numpy as np  # noqa: E402

from imfbench.anchors import ANCHORS, AnchorRunner, ImfRunner, codec_name  # noqa: E402
from imfbench.common import BenchError, parse_int_list  # noqa: E402
from imfbench.run import default_sizes  # noqa: E402
from imfbench.source import test_source  # noqa: E402

NEAR = 0.20          # anchors: streams within 20 % of the target rate compete on LPIPS
LABEL_H = 34


def _lpips(src, dec) -> float:
    import torch
    from imfcodec.metrics import get_lpips
    m = get_lpips("alex", "cpu")
    vals = []
    with torch.inference_mode():
        for i in range(0, len(src), 8):
            a = torch.from_numpy(src[i:i + 8]).permute(0, 3, 1, 2).float() / 255
            b = torch.from_numpy(dec[i:i + 8]).permute(0, 3, 1, 2).float() / 255
            vals += m(a, b).tolist()
    return float(np.mean(vals))


def pick_imf(runner, src, fps, kbps, log):
    """The quality level whose rate is nearest to ``kbps`` (rate rises with quality)."""
    tried = {}

    def at(q):
        if q not in tried:
            tried[q] = runner.run("side", src, fps, q)
            log(f"imf q{q}: {tried[q][0].kbps:.2f} kbps")
        return tried[q][0].kbps
    q = 4
    step = 1 if at(q) < kbps else -1
    while 1 <= q + step <= 8 and (at(q) < kbps) == (step > 0):
        q += step
        at(q)
    best = min(tried, key=lambda k: abs(math.log(tried[k][0].kbps / kbps)))
    return tried[best]


def pick_anchor(runner, src, fps, kbps, sizes, log):
    test = src.shape[1]
    cands = []
    for s in sizes:
        ladder = runner.a.ladder if s == test else runner.a.small_ladder
        for crf in ladder:
            r, dec = runner.run("side", src, fps, crf, s)
            cands.append((r, dec))
    near = [c for c in cands if abs(math.log(c[0].kbps / kbps)) <= math.log(1 + NEAR)]
    if near:
        scored = [(_lpips(src, d), r, d) for r, d in near]
        lp, r, d = min(scored, key=lambda t: t[0])
        log(f"{runner.a.name}: {len(near)} streams within {NEAR:.0%} of {kbps} kbps; lowest LPIPS "
            f"{r.codec} {r.setting} ({r.kbps:.2f} kbps, LPIPS {lp:.4f})")
        return r, d
    r, d = min(cands, key=lambda c: abs(math.log(c[0].kbps / kbps)))
    log(f"{runner.a.name}: none within {NEAR:.0%}; nearest {r.codec} {r.setting} ({r.kbps:.2f} kbps)")
    return r, d


def label(text_lines, width):
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("RGB", (width, LABEL_H), (0, 0, 0))
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:                  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    for i, t in enumerate(text_lines):
        d.text((4, 2 + 15 * i), t, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def compose(panels, labels):
    """panels: list of (N, S, S, 3); labels: one list of lines per panel -> (N, S+LABEL_H, k*S, 3)."""
    s = panels[0].shape[1]
    bands = np.concatenate([label(t, s) for t in labels], axis=1)
    frames = np.concatenate(panels, axis=2)
    return np.concatenate([frames, np.broadcast_to(bands, (len(frames),) + bands.shape)], axis=1)


def write(out: Path, frames, fps, crf):
    from imfcodec.fileio import atomic_write
    if out.suffix.lower() == ".gif":
        from PIL import Image
        ims = [Image.fromarray(f) for f in frames]

        def save(fh):
            ims[0].save(fh, format="GIF", save_all=True, append_images=ims[1:],
                        duration=int(round(1000 / float(fps))), loop=0, optimize=True)
        atomic_write(out, save)
        return
    from imfcodec.media.video import VideoWriter
    w = VideoWriter(out, frames.shape[2], frames.shape[1], fps, crf=crf)
    try:
        for f in frames:
            w.write(np.ascontiguousarray(f))
    except BaseException:
        w.abort()
        raise
    w.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="side_by_side.py", description=__doc__.split("\n\n")[0])
    p.add_argument("clip", type=Path)
    p.add_argument("--kbps", type=float, required=True, help="target rate")
    p.add_argument("--out", type=Path, required=True, help="output .mp4/.mkv/.mov or .gif")
    p.add_argument("--frames", type=int, default=120, help="frames (default 120)")
    p.add_argument("--model", default=None, help="imfcodec model (default imf-cpu)")
    p.add_argument("--sizes", default=None, help="anchor coded sizes (default S, S/2, S/4)")
    p.add_argument("--crf", type=int, default=24, help="x264 CRF of the output video (default 24)")
    a = p.parse_args(argv)

    def fail(msg):
        print(f"side_by_side.py: error: {msg}", file=sys.stderr)
        return 2
    if not a.kbps > 0 or a.frames < 2:
        return fail("--kbps must be > 0 and --frames >= 2")
    if a.out.suffix.lower() not in (".mp4", ".mkv", ".mov", ".gif"):
        return fail(f"--out {a.out}: use .mp4, .mkv, .mov or .gif")
    if not a.out.resolve().parent.is_dir():
        return fail(f"--out {a.out}: folder does not exist")
    import tempfile

    import imfcodec
    try:
        model = imfcodec.load_model(a.model, "cpu")
        size = model.config.image_size
        sizes = parse_int_list(a.sizes, 16, size) if a.sizes else default_sizes(size)
        src, fps = test_source(a.clip, a.frames, size)
    except (imfcodec.IMFCodecError, BenchError, argparse.ArgumentTypeError) as e:
        return fail(f"{a.clip}: {e}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r_imf, d_imf = pick_imf(ImfRunner(model, Path(tmp)), src, fps, a.kbps, log)
        picks = [pick_anchor(AnchorRunner(ANCHORS[n], Path(tmp)), src, fps, a.kbps, sizes, log)
                 for n in ("x264", "av1")]
    panels = [src, d_imf] + [d for _, d in picks]
    labels = [["source", f"{a.clip.stem[:28]}"], [f"imfcodec {r_imf.setting}", f"{r_imf.kbps:.1f} kbps"]]
    for r, _ in picks:
        fam = "x264" if r.family == "x264" else "SVT-AV1"
        labels.append([f"{fam} {r.setting} @{r.size}px", f"{r.kbps:.1f} kbps"])
    write(a.out, compose(panels, labels), fps, a.crf)
    print(f"{a.out}: {len(src)} frames, target {a.kbps:g} kbps: imf {r_imf.setting} {r_imf.kbps:.2f}, "
          + ", ".join(f"{codec_name(r.family, r.size, size)} {r.setting} {r.kbps:.2f}" for r, _ in picks)
          + f" kbps; {os.path.getsize(a.out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
