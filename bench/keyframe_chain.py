"""Keyframe codecs on the pictures a refresh would send: AV1 intra vs the VP9 chain.

    python bench/keyframe_chain.py ../shared/data/faces/train/liveportrait_d10.mp4 \\
        ../shared/data/faces/train/eamm_fear.mp4 --every 30 --crf 38

Takes one 256x256 picture every ``--every`` frames (the first 250 frames, as
bench/rd_curve.py does) and codes them the way imfcodec's keyframe packets do: each picture
as its own AV1 intra picture at CRF c, and all of them as one VP9 chain (first picture a
key frame, the rest inter frames predicted from the previous picture) at CRF c + offset.
Prints mean bytes and PSNR-RGB of the first picture and of the rest, per clip.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from imfbench.source import test_source

from imfcodec import keyframe, video  # noqa: E402
from imfcodec.metrics import psnr as _psnr  # noqa: E402
from imfcodec.model import VP9_CRF_OFFSET  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-RGB of two uint8 pictures, the same [0, 1] conversion as the codec's."""
    return float(_psnr(video.to_model(a, a.shape[0]), video.to_model(b, b.shape[0])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--every", type=int, default=30, help="frames between pictures (default 30)")
    p.add_argument("--crf", type=int, nargs="+", default=[38], help="AV1 CRF(s) (default 38)")
    p.add_argument("--offset", type=int, default=VP9_CRF_OFFSET,
                   help=f"VP9 CRF = AV1 CRF + offset (default {VP9_CRF_OFFSET}, the codec's)")
    a = p.parse_args(argv)
    print("| clip | AV1 CRF | AV1 intra: bytes / dB | VP9 CRF | VP9 first (key): bytes / dB "
          "| VP9 rest (inter): bytes / dB |")
    print("|---|---|---|---|---|---|")
    for v in a.videos:
        src, _ = test_source(Path(v), 250, 256)
        pics = [np.ascontiguousarray(src[i]) for i in range(0, len(src), a.every)]
        for crf in a.crf:
            intra = [(len(b := keyframe.encode(x, "av1", crf)), psnr(keyframe.decode(b, "av1"), x)) for x in pics]
            enc = keyframe.KeyframeEncoder("vp9", crf + a.offset)
            dec = keyframe.KeyframeDecoder("vp9")
            chain = []
            for i, x in enumerate(pics):
                b = enc.encode(x, intra=i == 0)
                chain.append((len(b), psnr(dec.decode(b, predicted=i > 0), x)))
            m = lambda rows: f"{np.mean([r[0] for r in rows]):.0f} / {np.mean([r[1] for r in rows]):.2f}"  # noqa: E731
            print(f"| {Path(v).stem} | {crf} | {m(intra)} | {crf + a.offset} | {m(chain[:1])} "
                  f"| {m(chain[1:])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
