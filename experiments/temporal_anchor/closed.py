"""Closed-loop probe of the base-anchored keyframe skip (see probe.py): the encoder's own
reconstruction is the composed frame, so the refresh rule sees it (its reference level,
the keyframe's own-token reconstruction, is not composed)."""
import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from imfbench.metrics import Metrics, pulse
from imfbench.source import test_source
from imfcodec.codec.encoder import Encoder
from imfcodec.format import container
from imfcodec.model import load_model

torch.set_num_threads(1)


def mask(b, bk, tau, s, alpha=1.0):
    d = (b - bk).abs().mean(1, keepdim=True)
    d = F.interpolate(d, size=(s, s), mode="bilinear", align_corners=False)
    return alpha * (1 - d / tau).clamp(0, 1)


def gmask(g, k, tau, pool=8):
    """Where the generated frame agrees with the keyframe at low resolution."""
    d = (F.avg_pool2d(g, pool) - F.avg_pool2d(k, pool)).abs().mean(1, keepdim=True)
    d = F.interpolate(d, size=g.shape[-2:], mode="bilinear", align_corners=False)
    return (1 - d / tau).clamp(0, 1)


class Proxy:
    def __init__(self, m, enc, tau, alpha, gtau=0.0):
        self.m, self.enc, self.tau, self.alpha, self.gtau = m, enc, tau, alpha, gtau

    def __getattr__(self, k):
        return getattr(self.m, k)

    def decode(self, q, mult, ref, base=None):
        out = self.m.decode(q, mult, ref, base)
        e = self.enc
        if e.K is None or e.in_key or (self.tau <= 0 and self.gtau <= 0):
            return out
        w = self.alpha
        if self.tau > 0:
            w = w * mask(base, e.bk, self.tau, out.shape[-1])
        if self.gtau > 0:
            w = w * gmask(out, e.K, self.gtau)
        return w * e.K + (1 - w) * out


class AEncoder(Encoder):
    def __init__(self, *a, tau=0.0, alpha=1.0, gtau=0.0, **k):
        super().__init__(*a, anchor=0, **k)          # the codec's own anchor off: the proxy composes
        self.K = self.bk = None
        self.in_key = False
        self.m = Proxy(self.m, self, tau, alpha, gtau)

    def _keyframe(self, x, intra, base=None):
        self.in_key = True
        try:
            out = super()._keyframe(x, intra, base)
        finally:
            self.in_key = False
        self.K, self.bk = self.recon, base
        return out


def run(model, src, fps, q, **kw):
    s = src.shape[1]
    enc = AEncoder(model, s, s, fps, q, **kw)
    packets, recon = [], []
    with torch.no_grad():
        for f in src:
            packets += enc.push(f)
            recon.append(enc.recon.float().clamp(0, 1))
        packets += enc.flush()
    _, sizes = container.assemble(enc.header(enc.index), packets)
    return sizes.total, torch.cat(recon), enc.stats.keyframe_indices


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--levels", default="2,4,6,8")
    p.add_argument("--variants", default="0:1,0.03:1,0.03:0.5")
    a = p.parse_args()
    m = load_model(None, "cpu")
    met = Metrics(256, lambda *x: None, use_dists=False)
    for clip in a.clips:
        src, fps = test_source(clip, a.frames, 256)
        met.set_source(clip, src)
        for q in map(int, a.levels.split(",")):
            for v in a.variants.split(","):
                tau, alpha, gtau = (list(map(float, v.split(":"))) + [0.0])[:3]
                nbytes, recon, kfs = run(m, src, fps, q, tau=tau, alpha=alpha, gtau=gtau)
                kbps = nbytes * 8 / (len(src) / float(fps)) / 1000
                dec = (recon.permute(0, 2, 3, 1) * 255).round().byte().numpy()
                r = met(src, dec)
                lp = r["lpips"]
                print(f"{clip.split('/')[-1]:24s} q{q} tau={tau} a={alpha} g={gtau} kbps={kbps:.2f} kf={len(kfs)} "
                      f"lpips={lp.mean():.4f} psnr={r['psnr'].mean():.2f} pulse={pulse(lp):.4f} "
                      f"tlp={np.nanmean(r['tlp']):.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
