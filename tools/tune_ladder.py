"""Sweep keyframe CRF, refresh threshold and keyframe spacing of one quality level on training clips.

    python tools/tune_ladder.py $IMFCODEC_DATA/train/{liveportrait_d10,mtalk_German_20s}.mp4 \\
        --quality 4 --crf 24,28,32,36,40 --drop 2,3,4.5,6 --min-interval 0.5,1 --out runs/tune_q4

For every (keyframe CRF, refresh drop, min keyframe interval) setting it codes each clip
exactly as `imfcodec encode` would (same encoder, same 256x256 test source as
bench/rd_curve.py, every byte of the .imf counted) and scores the encoder's closed-loop
reconstruction (Encoder.recon, which is what the decoder rebuilds) with bench/rd_curve.py's
PSNR, MS-SSIM and LPIPS-alex. Writes OUT/sweep.csv (one row per clip and setting) and
prints, per setting, the mean kbps / LPIPS / PSNR / keyframes over the clips, marking the
settings on the lower convex hull of mean LPIPS against mean kbps: the only settings a
quality ladder should use. Tune on training clips, never on the val clips the
model card reports.
"""
import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from imfbench.bdrate import lower_hull
from imfbench.common import parse_int_list
from imfbench.metrics import Metrics
from imfbench.source import test_source
from imfbench.sweep import code_closed_loop

from imfcodec.format import container
from imfcodec.options import DEFAULT_KEYFRAME_CODEC
from imfcodec.model import DEFAULT_MODEL, load_model


def float_list(text: str) -> list[float]:
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number list {text!r} (use e.g. 2,3.5,5)") from None
    if not out:
        raise argparse.ArgumentTypeError(f"empty number list {text!r}")
    return out


def code_clip(model, src: np.ndarray, fps, quality: int, codec: str, drop: float,
              min_interval: float, crf: int | None = None) -> tuple[int, np.ndarray, int]:
    """(file bytes, closed-loop reconstructions uint8 (N, S, S, 3), keyframes) at one setting."""
    return code_closed_loop(model, src, fps, quality, keyframe_codec=codec, refresh_drop=drop,
                            min_keyframe_interval=min_interval, keyframe_crf=crf)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--quality", type=int, default=4, help="level whose token step is used (1..8)")
    p.add_argument("--crf", type=lambda t: parse_int_list(t, 0, 63), required=True,
                   help="keyframe CRFs of the keyframe codec, e.g. 24,28,32")
    p.add_argument("--drop", type=float_list, required=True, help="refresh drops in dB, e.g. 2,3,4.5")
    p.add_argument("--min-interval", type=float_list, default=None,
                   help="shortest time between keyframes in seconds, e.g. 0.5,1 (default: the "
                        "level's own, from the model's quality table)")
    p.add_argument("--frames", type=int, default=200, help="frames per clip (default 200)")
    p.add_argument("--keyframe-codec", default=DEFAULT_KEYFRAME_CODEC,
                   choices=list(container.KEYFRAME_CODEC_IDS))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    model = load_model(a.model, "cpu")
    metrics = Metrics(model.config.image_size, lambda item, kind, reason: print(reason), use_dists=False)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.min_interval is None:
        # the interval the encoder takes at this level: its Encoder runs --base-layer auto
        a.min_interval = [model.min_keyframe_interval(a.quality, base=model.base_layer_at(a.quality),
                                                      codec=a.keyframe_codec)]
    rows = []
    for path in a.videos:
        src, fps = test_source(path, a.frames, model.config.image_size)
        for crf in a.crf:
            for drop, gap in ((d, g) for d in a.drop for g in a.min_interval):
                t0 = time.perf_counter()
                nbytes, rec, keys = code_clip(model, src, fps, a.quality, a.keyframe_codec, drop, gap, crf)
                m = metrics(src, rec)
                ps, lp = float(np.mean(m["psnr"])), float(np.mean(m["lpips"]))
                kbps = container.kbps(nbytes, len(src), fps)
                rows.append({"clip": path.stem, "quality": a.quality, "crf": crf, "drop": drop,
                             "min_interval": gap,
                             "frames": len(src), "bytes": nbytes, "kbps": round(kbps, 3),
                             "psnr": round(ps, 3), "ms_ssim": round(float(np.mean(m["ms_ssim"])), 5),
                             "lpips": round(lp, 5), "keyframes": keys})
                print(f"{path.stem} crf {crf} drop {drop} gap {gap}: {kbps:.2f} kbps LPIPS {lp:.4f} "
                      f"PSNR {ps:.2f} keyframes {keys} ({time.perf_counter() - t0:.0f} s)", flush=True)
    with open(a.out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    settings = sorted({(r["crf"], r["drop"], r["min_interval"]) for r in rows})
    mean = {s: [np.mean([r[k] for r in rows if (r["crf"], r["drop"], r["min_interval"]) == s])
                for k in ("kbps", "lpips", "psnr", "keyframes")] for s in settings}
    hull = lower_hull([(mean[s][0], mean[s][1]) for s in settings])
    print(f"\nmean over {len(a.videos)} clips, quality {a.quality} token step ('*' = on the "
          f"lower convex hull of LPIPS against kbps)")
    print(" crf  drop  gap    kbps   LPIPS    PSNR  keyframes")
    for i, s in sorted(enumerate(settings), key=lambda t: mean[t[1]][0]):
        k, lp, ps, n = mean[s]
        print(f"{'*' if i in hull else ' '}{s[0]:3d} {s[1]:5.1f} {s[2]:4.1f} {k:7.2f} {lp:7.4f} {ps:7.2f} {n:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
