"""How many bits the token packets spend, and what a better token coder could save: codes
training clips with the codec and reads each T packet back, then prints bits per frame for
  * the file (the rANS strings as written: CompressAI's Rans64, 8 + 4k bytes per packet);
  * the ideal cost of the same symbols under the model's own tables (zero-mean Gaussian per
    (quality, channel)), so the difference is the coder's per-packet overhead;
  * a Gaussian with each channel's fitted std (what better tables alone would give);
  * the same with the std scaled by the previous frame's difference in that channel
    (a context model: s = a * std_c * (1 + k |d_prev|) / (1 + k mean|d_prev|), a and k fitted);
  * second-order prediction (code d - w d_prev).
The fitted rows are fitted on the same symbols: upper bounds of what a coder could save.
Measured, not built: docs/MODEL_CARD.md ("Token coding").

    python experiments/token_rate_probe/token_rate_probe.py imf-cpu-base eamm_fear.mp4,hmeme_nice.mp4 1,4 150
"""
import argparse
import sys

import numpy as np
import torch
from scipy.stats import norm

from imfbench.source import data_dir, test_source

from imfcodec.api import encode_frames
from imfcodec.format.container import TokenPacket, parse
from imfcodec.entropy import SCALE_MIN
from imfcodec.model import load_model


def gauss_bits(d: np.ndarray, s: np.ndarray) -> float:
    s = np.maximum(s, SCALE_MIN)
    p = norm.cdf((d + 0.5) / s) - norm.cdf((d - 0.5) / s)
    return float(-np.log2(np.maximum(p, 1e-9)).sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("clips", help="comma list of clips under --data")
    p.add_argument("qualities", help="comma list of quality levels")
    p.add_argument("frames", type=int)
    p.add_argument("--data", default=None, help="folder of the clips (default: $IMFCODEC_DATA/train)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    m = load_model(a.model, "cpu")
    srcs = [test_source(data_dir("train", a.data) / c, a.frames, m.config.image_size) for c in a.clips.split(",")]
    for q in (int(v) for v in a.qualities.split(",")):
        d_all, prev_all, tok_bytes, file_bytes, packets, frames = [], [], 0, 0, 0, 0
        for src, fps in srcs:
            data, _ = encode_frames(iter(src), fps, m, quality=q)
            file_bytes += len(data)
            frames += len(src)
            prev = np.zeros(m.config.token_dim)
            for pk in parse(data)[1]:
                if isinstance(pk, TokenPacket):
                    tok_bytes, packets = tok_bytes + len(pk.payload), packets + 1
                    for row in m.entropy.decode(pk.payload, pk.count, q).numpy():
                        d_all.append(row)
                        prev_all.append(prev)
                        prev = row
                else:
                    prev = np.zeros(m.config.token_dim)     # a keyframe: the next difference starts anew
        d, prev = np.array(d_all, float), np.array(prev_all, float)
        n = len(d)
        table = m.entropy.gaussian.scale_table[m.entropy.index_table[q - 1].long()].numpy()
        std = d.std(0)
        ctx = min((gauss_bits(d, s * std[None] * (1 + k * np.abs(prev)) / (1 + k * np.abs(prev).mean(0))[None]), k, s)
                  for k in (0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2) for s in (0.6, 0.7, 0.8, 0.9, 1.0))
        second = min((gauss_bits(np.round(d - w * prev), np.round(d - w * prev).std(0)[None]), w)
                     for w in (0, 0.2, 0.4, 0.6, 0.8, 1.0))
        print(f"q{q}: {n} coded frames in {packets} packets; tokens {100 * tok_bytes / file_bytes:.1f} % of the files; "
              f"bits per frame: file {8 * tok_bytes / n:.1f}, ideal under the tables {gauss_bits(d, table[None]) / n:.1f}, "
              f"fitted std {gauss_bits(d, std[None]) / n:.1f}, context {ctx[0] / n:.1f} (k {ctx[1]}, a {ctx[2]}), "
              f"second order {second[0] / n:.1f} (w {second[1]})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
