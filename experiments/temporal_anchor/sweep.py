"""The codec's keyframe anchor (imfcodec/codec/anchor.py) swept over thresholds and levels,
closed loop, on training clips: rate from the whole stream, per-frame LPIPS and PSNR, pulse
and tLP of the reconstructions (which the decoder rebuilds exactly).

    python experiments/temporal_anchor/sweep.py $IMFCODEC_DATA/train/{liveportrait_d10,liveportrait_d3,eamm_fear}.mp4 \\
        --frames 100 --levels 7,8 --anchors 0,15,30,60
"""
import argparse
import sys

import numpy as np
import torch

from imfbench.metrics import Metrics, pulse
from imfbench.source import test_source
from imfbench.sweep import code_closed_loop
from imfcodec.model import load_model

torch.set_num_threads(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--levels", default="7,8")
    p.add_argument("--anchors", default="0,15,30,60")
    a = p.parse_args()
    m = load_model(None, "cpu")
    met = Metrics(256, lambda *x: None, use_dists=False)
    for clip in a.clips:
        src, fps = test_source(clip, a.frames, 256)
        met.set_source(clip, src)
        for q in map(int, a.levels.split(",")):
            for anchor in map(int, a.anchors.split(",")):
                nbytes, dec, kf = code_closed_loop(m, src, fps, q, anchor=anchor)
                r = met(src, dec)
                lp = r["lpips"]
                print(f"{clip.split('/')[-1]:24s} q{q} anchor={anchor:3d} kbps={nbytes * 8 / (len(src) / float(fps)) / 1000:.2f} "
                      f"kf={kf} lpips={lp.mean():.4f} psnr={r['psnr'].mean():.2f} pulse={pulse(lp):.4f} "
                      f"tlp={np.nanmean(r['tlp']):.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
