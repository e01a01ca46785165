#!/usr/bin/env python
"""How coarse can the token step be? Quality and token entropy against --step-scale.

    python tools/token_step.py $IMFCODEC_DATA/train/{lp_s20,mtalk_German_20s,sky_driving_2}.mp4

For each scale F, every quality's step_mult is multiplied by F; frames are decoded from the
clip's first frame (uncompressed) with quantized tokens, and the frame-to-frame token
differences' empirical entropy (bits per frame, summed over channels) is reported. Use
training clips: the chosen scale goes into `imfcodec export --step-scale`.
"""
import argparse

import numpy as np
import torch

from imfcodec.media import video
from imfcodec.metrics import get_lpips, psnr
from imfcodec.model import load_model


def entropy_bits(d: torch.Tensor) -> float:
    h = 0.0
    for c in range(d.shape[1]):
        _, cnt = torch.unique(d[:, c], return_counts=True)
        p = cnt.float() / cnt.sum()
        h += -(p * p.log2()).sum().item()
    return h


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--model", default="imf-cpu")
    ap.add_argument("--scales", default="1,4,8,16,32")
    ap.add_argument("--qualities", default="1,4")
    ap.add_argument("--frames", type=int, default=100)
    a = ap.parse_args(argv)
    m = load_model(a.model, "cpu")
    g, lp = m.generator, get_lpips("alex")
    base = [m.step_mult(q) / m.step_mult(4) for q in range(1, 9)]      # relative to q4
    clips = []                      # per clip: frames, float tokens, reference (once each)
    for c in a.clips:
        x = video.to_model(np.stack(list(video.read_frames(c, max_frames=a.frames))), m.config.image_size)
        with torch.no_grad():
            t = g.encode_token(x)
            clips.append((x, t, g.prepare_reference(x[:1], t[:1])))
    print("| scale | quality | PSNR dB | LPIPS-alex | token bits/frame |\n|---|---|---|---|---|")
    for F in [float(s) for s in a.scales.split(",")]:
        for q in [int(s) for s in a.qualities.split(",")]:
            mult = base[q - 1] * F
            P, L, H = [], [], []
            for x, t, ref in clips:
                with torch.no_grad():
                    qs = g.quantize(t, mult)
                    H.append(entropy_bits((qs[1:] - qs[:-1]).long()))
                    idx = list(range(1, len(x), 6))
                    xh = g.decode_frame(g.dequantize(qs[idx], mult), ref)
                    P.append(psnr(xh, x[idx]).mean().item())
                    L.append(lp(xh, x[idx]).mean().item())
            print(f"| {F:g} | {q} | {np.mean(P):.2f} | {np.mean(L):.4f} | {np.mean(H):.1f} |")

if __name__ == "__main__":
    main()
