"""Side-by-side strip for docs/: source | imfcodec | x264 at about the same rate, one val clip.

    python bench/strip.py      # after bench/rd_curve.py wrote bench/results/rd and runs/rd_anchors

Reads the streams the RD bench wrote (imf in bench/results/rd/streams, x264 in
runs/rd_anchors/streams) and their rates from streams.csv, decodes one frame of each (by
default frame 84, the middle of tpsmm_driving) and writes a labelled PNG: source, imfcodec
q1, x264 at its floor (CRF 51), imfcodec q4, x264 CRF 44.
"""
import argparse
import csv
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

import imfcodec
from imfbench.source import data_dir
from imfcodec.media import video

TILE, GAP, LABEL = 256, 8, 22


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default="tpsmm_driving", help="val clip name (default tpsmm_driving)")
    p.add_argument("--frame", type=int, default=84)
    p.add_argument("--val", type=Path, default=None, help="folder of the val clips (default: $IMFCODEC_DATA/val)")
    p.add_argument("--rd", type=Path, default=Path("bench/results/rd"), help="rd_curve.py --out")
    p.add_argument("--anchors", type=Path, default=Path("runs/rd_anchors"), help="rd_curve.py --reuse")
    p.add_argument("--out", type=Path, default=None, help="default docs/strip_VIDEO.png")
    a = p.parse_args(argv)
    vid, k = a.video, a.frame
    rows = {(r["codec"], r["setting"]): r for r in csv.DictReader(open(a.rd / "streams.csv"))
            if r["video"] == vid}
    if not rows:
        sys.exit(f"strip.py: no streams of {vid!r} in {a.rd / 'streams.csv'}")
    clip = next(data_dir("val", a.val, "--val").glob(f"{vid}.*"))
    src = video.to_uint8(video.to_model(np.stack(list(video.read_frames(clip, max_frames=k + 1))), TILE))
    m = imfcodec.load_model(None, "cpu")

    def imf(q):
        data = (a.rd / "streams" / f"{vid}_imf_q{q}.imf").read_bytes()
        return list(imfcodec.decode_bytes(data, m)[1])[k]

    def x264(crf):
        with av.open(str(a.anchors / "streams" / f"{vid}_x264_crf{crf}.h264"), format="h264") as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][k]

    def kbps(codec, setting):
        return float(rows[(codec, setting)]["kbps"])

    tiles = [(src[k], "source"),
             (imf(1), f"imfcodec q1, {kbps('imf', 'q1'):.1f} kbps"),
             (x264(51), f"x264 CRF 51 (its floor), {kbps('x264', 'crf51'):.1f} kbps"),
             (imf(4), f"imfcodec q4, {kbps('imf', 'q4'):.1f} kbps"),
             (x264(44), f"x264 CRF 44, {kbps('x264', 'crf44'):.1f} kbps")]
    img = Image.new("RGB", (TILE * len(tiles) + GAP * (len(tiles) - 1), TILE + LABEL), "white")
    draw = ImageDraw.Draw(img)
    for i, (picture, label) in enumerate(tiles):
        img.paste(Image.fromarray(picture), (i * (TILE + GAP), LABEL))
        draw.text((i * (TILE + GAP) + 4, 4), label, fill="black")
    out = a.out or Path(f"docs/strip_{vid}.png")
    img.save(out, optimize=True)
    print(f"{out}: {img.size[0]}x{img.size[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
