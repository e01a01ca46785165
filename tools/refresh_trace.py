"""Where the encoder refreshes keyframes, and what each frame's PSNR is, for one clip.

    python tools/refresh_trace.py $IMFCODEC_DATA/val/liveportrait_d12.mp4 5 6

prints, per quality level: file bytes, keyframe indices, and PSNR (dB) of every 6th
decoded frame. Uses the same 256x256 test source as bench/rd_curve.py.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from imfbench.source import test_source

from imfcodec.api import decode_bytes, encode_frames  # noqa: E402
from imfcodec.metrics import psnr  # noqa: E402
from imfcodec.model import DEFAULT_MODEL, load_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", type=Path)
    p.add_argument("qualities", type=int, nargs="+", help="quality levels, e.g. 5 6")
    a = p.parse_args(argv)
    m = load_model(DEFAULT_MODEL, "cpu")
    src, fps = test_source(a.clip, 250, m.config.image_size)
    for q in a.qualities:
        data, st = encode_frames(src, fps, m, q)
        _, frames = decode_bytes(data, m, "cpu")
        rec = np.stack(list(frames))
        p = psnr(*(torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0 for v in (rec, src)))
        print(f"q{q} {len(data)} B keyframes at {st.keyframe_indices}")
        print("  PSNR every 6th frame:", " ".join(f"{v:.0f}" for v in p[::6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
