"""Probe: where does the pulse come from, and does a base-layer-anchored keyframe skip cut it?

Codes clips closed loop (imf-cpu-base), capturing each frame's reconstruction, its decoded
base picture and the keyframes. Reports the per-frame LPIPS sawtooth (keyframe frames vs the
rest) and variants that compose the last keyframe's picture K into the frame where the base
picture has not changed since the keyframe:  m = clamp(1 - |up(b_t) - up(b_k)| / tau, 0, 1),
out = m K + (1 - m) G_t (open loop: the encoder's refresh decisions are the baseline's).
"""
import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from imfbench.metrics import Metrics, pulse, tlp_per_frame
from imfbench.source import test_source
from imfcodec.codec.encoder import Encoder
from imfcodec.format import container
from imfcodec.media import video
from imfcodec.model import load_model

torch.set_num_threads(1)


def run(model, src, fps, q):
    s = src.shape[1]
    enc = Encoder(model, s, s, fps, q)
    bases = []
    orig = enc._base_picture

    def cap(x, key):
        b = orig(x, key)
        bases.append(b)
        return b
    enc._base_picture = cap
    packets, recon = [], []
    with torch.no_grad():
        for f in src:
            packets += enc.push(f)
            recon.append(enc.recon.float().clamp(0, 1))
        packets += enc.flush()
    _, sizes = container.assemble(enc.header(enc.index), packets)
    return sizes.total, torch.cat(recon), (torch.cat(bases) if bases else None), enc.stats.keyframe_indices


def compose(recon, bases, kfs, tau, blur=0):
    out = recon.clone()
    kset = set(kfs)
    k = 0
    s = recon.shape[-1]
    for t in range(len(recon)):
        if t in kset:
            k = t
            continue
        d = (bases[t] - bases[k]).abs().mean(0, keepdim=True)[None]
        if blur:
            d = F.max_pool2d(d, 2 * blur + 1, 1, blur)
        d = F.interpolate(d, size=(s, s), mode="bilinear", align_corners=False)[0]
        m = (1 - d / tau).clamp(0, 1)
        out[t] = m * recon[k] + (1 - m) * recon[t]
    return out


def score(met, src, out, kfs):
    dec = (out.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    r = met(src, dec)
    lp = r["lpips"]
    isk = np.zeros(len(lp), bool)
    isk[kfs] = True
    return dict(lpips=lp.mean(), psnr=r["psnr"].mean(), pulse=pulse(lp), tlp=np.nanmean(r["tlp"]),
                lp_key=lp[isk].mean(), lp_pred=lp[~isk].mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=125)
    p.add_argument("--levels", default="4,8")
    p.add_argument("--taus", default="0.02,0.05,0.1")
    a = p.parse_args()
    m = load_model(None, "cpu")
    met = Metrics(256, lambda *x: None, use_dists=False)
    for clip in a.clips:
        src, fps = test_source(clip, a.frames, 256)
        met.set_source(clip, src)
        for q in map(int, a.levels.split(",")):
            nbytes, recon, bases, kfs = run(m, src, fps, q)
            kbps = nbytes * 8 / (len(src) / float(fps)) / 1000
            rows = [("base", score(met, src, recon, kfs))]
            if bases is not None:
                for tau in map(float, a.taus.split(",")):
                    rows.append((f"tau{tau}", score(met, src, compose(recon, bases, kfs, tau), kfs)))
                    rows.append((f"tau{tau}b1", score(met, src, compose(recon, bases, kfs, tau, 1), kfs)))
            for name, r in rows:
                print(f"{clip.split('/')[-1]} q{q} {kbps:.1f}kbps kf={len(kfs)} {name:10s} " +
                      " ".join(f"{k}={v:.4f}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
