"""Extra libvpx-vp9 options for the keyframe chain, judged at equal bytes on LPIPS and PSNR.

    python tools/vp9_options.py --options "" sharpness=4 sharpness=7 --crf 34,38,42

Codes one 256x256 picture every ``--every`` frames of the first 150 of each clip the way
the codec's keyframe packets do (one low-delay VP9 chain: a key picture, then pictures
predicted from the previous one) with the codec's options plus each set of extras (comma
separated key=value; "" = the codec's own), and prints mean bytes per picture, LPIPS-alex
and PSNR-RGB of the decoded pictures. Compare sets at equal bytes (across CRFs), not at
equal CRF: most options buy quality with bytes.
"""
import argparse

import numpy as np
import torch

from imfbench.source import data_dir
from imfcodec.media import keyframe, video
from imfcodec.metrics import get_lpips, psnr

CLIPS = ["liveportrait_d3", "iplap_129", "dpe_d", "spec_MEAD_W015_level_1_neutral_030",
         "sgex_390", "mtrk_duda_video"]


def run(pictures, crf, extra, lpips):
    n, nbytes, lp, ps = 0, 0, 0.0, 0.0
    for pics in pictures:
        enc, dec = keyframe.KeyframeEncoder("vp9", crf, extra), keyframe.KeyframeDecoder("vp9")
        for i, rgb in enumerate(pics):
            data = enc.encode(rgb, intra=(i == 0))
            y = torch.from_numpy(dec.decode(data, predicted=i > 0)).permute(2, 0, 1)[None] / 255.0
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255.0
            with torch.no_grad():
                lp += lpips(y, x).item()
            ps += psnr(y, x).item()
            nbytes += len(data)
            n += 1
    return nbytes / n, lp / n, ps / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--options", nargs="+", default=[""], help='extra option sets, e.g. "" sharpness=4')
    p.add_argument("--crf", default="34,38,42")
    p.add_argument("--every", type=int, default=12, help="frames between pictures (default 12: 0.5 s)")
    p.add_argument("--data", default=None, help="folder of the clips (default: $IMFCODEC_DATA/train)")
    a = p.parse_args(argv)
    lpips = get_lpips("alex", "cpu")
    pictures = []
    for c in CLIPS:
        frames = list(video.read_frames(data_dir("train", a.data) / f"{c}.mp4", max_frames=150))[::a.every]
        x = video.to_model(np.stack(frames), 256)
        pictures.append(list(video.to_uint8(x)))
    print("| extra options | CRF | bytes / picture | LPIPS | PSNR |")
    print("|---|---|---|---|---|")
    for opts in a.options:
        extra = dict(kv.split("=", 1) for kv in opts.split(",") if kv)
        for crf in (int(c) for c in a.crf.split(",")):
            b, lp, ps = run(pictures, crf, extra, lpips)
            print(f"| {opts or '(codec)'} | {crf} | {b:.0f} | {lp:.4f} | {ps:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
