"""Probe (not in the codec): the keyframe anchor turned on per keyframe, only where the
keyframe is sharper than the generator's rebuild of it. The encoder knows both: the
keyframe picture's PSNR against the source and ``base_psnr`` (the generator's frame from the
keyframe's own token, which the refresh rule already measures). Anchor on when their gap is
at least GAP dB. A real stream would need a flag per keyframe; this probe only scores the
closed loop.

    python experiments/temporal_anchor/adaptive.py $IMFCODEC_DATA/train/{liveportrait_d3,eamm_fear,hmeme_nice,liveportrait_d10}.mp4 \\
        --levels 4,5 --gaps off,0,2,4
"""
import argparse
import sys

import numpy as np
import torch

from imfbench.metrics import Metrics, pulse
from imfbench.source import test_source
from imfcodec.codec.encoder import Encoder
from imfcodec.format import container
from imfcodec.media import video
from imfcodec.metrics import psnr
from imfcodec.model import load_model

torch.set_num_threads(1)


class GapEncoder(Encoder):
    def __init__(self, *a, gap=None, **k):
        super().__init__(*a, **k)
        self.gap, self.on, self.keys = gap, 0, 0

    def _keyframe(self, x, intra, base=None):
        out = super()._keyframe(x, intra, base)
        g = min(psnr(self.recon, x).item(), 100.0) - self.base_psnr
        self.keys += 1
        if self.gap is None or g < self.gap:
            self.anchor = None
        else:
            self.on += 1
        return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--levels", default="4,5")
    p.add_argument("--gaps", default="off,0,2,4")
    a = p.parse_args()
    m = load_model(None, "cpu")
    met = Metrics(256, lambda *x: None, use_dists=False)
    for clip in a.clips:
        src, fps = test_source(clip, a.frames, 256)
        met.set_source(clip, src)
        for q in map(int, a.levels.split(",")):
            for gs in a.gaps.split(","):
                gap = None if gs == "off" else float(gs)
                enc = GapEncoder(m, 256, 256, fps, q, anchor=30, gap=gap)
                pk, rec = [], []
                with torch.no_grad():
                    for f in src:
                        pk += enc.push(f)
                        rec.append(video.to_uint8(enc.recon)[0])
                    pk += enc.flush()
                _, sizes = container.assemble(enc.header(enc.index), pk)
                r = met(src, np.stack(rec))
                lp = r["lpips"]
                print(f"{clip.split('/')[-1]:24s} q{q} gap={gs:>3s} kbps={sizes.total * 8 / (len(src) / float(fps)) / 1000:.2f} "
                      f"kf={enc.keys} anchored={enc.on} lpips={lp.mean():.4f} psnr={r['psnr'].mean():.2f} "
                      f"pulse={pulse(lp):.4f} tlp={np.nanmean(r['tlp']):.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
