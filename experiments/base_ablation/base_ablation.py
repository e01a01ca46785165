"""Issue 15's ablation: what each part of the base-layer codec is worth, per clip and level.

    python experiments/base_ablation/base_ablation.py --model imf-cpu-base.pt --videos $IMFCODEC_DATA/val \
        --qualities 2,4,6 --out experiments/base_ablation/results

Three rows per clip and level, every byte counted, scored on the same frames as the RD
bench (imfbench.source / imfbench.metrics: PSNR, LPIPS-alex, DISTS, pulse, flicker):

* ``tokens``: the model with ``--base-layer off``: the paper's token-only codec (for an
  extension of imf-cpu, exactly the shipped model's streams);
* ``base-only``: the level's base stream alone, upscaled to the test size with Lanczos (what
  the base layer is worth without IMF; its bytes are the stream's base packets);
* ``tokens+base``: the base-layer codec (``--base-layer on``).

Writes ablation.csv and summary.md (means over clips) to --out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


from imfbench.common import BenchError, parse_int_list, write_csv
from imfbench.metrics import Metrics, summary
from imfbench.source import find_videos, test_source, upscale

COLUMNS = ["video", "quality", "variant", "kbps", "base_kbps", "keyframes", "psnr", "lpips", "dists",
           "pulse", "flicker"]


def run_clip(model, path: Path, qualities, frames: int, metrics: Metrics, log) -> list[dict]:
    from imfcodec.format import container
    from imfcodec.api import decode_bytes, encode_frames
    src, fps = test_source(path, frames, model.config.image_size)
    metrics.set_source(path.stem, src)
    rows = []
    for q in qualities:
        for variant, mode in (("tokens", "off"), ("tokens+base", "on")):
            data, stats = encode_frames(iter(src), fps, model, quality=q, base_layer=mode)
            header, packets = container.parse(data)
            dec = np.stack(list(decode_bytes(data, model)[1]))
            base_bytes = sum(len(container.packet_to_bytes(p)) for p in packets
                             if isinstance(p, container.BasePacket))
            rows.append(_row(path.stem, q, variant, header.kbps(len(data)), header.kbps(base_bytes),
                             stats.keyframes, metrics(src, dec)))
            if mode == "on":      # the same base stream, alone and upscaled
                from imfcodec.media.baselayer import BaseDecoder
                bd = BaseDecoder(header.base_layer.size)
                pics = np.stack([bd.decode(x) for p in packets if isinstance(p, container.BasePacket)
                                 for x in p.pictures])
                up = upscale(pics, src.shape[1])
                rows.append(_row(path.stem, q, "base-only", header.kbps(base_bytes), header.kbps(base_bytes),
                                 0, metrics(src, up)))
            log(" ".join(f"{k}={v}" for k, v in rows[-1].items()))
    return rows


def _row(video, q, variant, kbps, base_kbps, keyframes, per_frame) -> dict:
    s = summary(per_frame)
    return {"video": video, "quality": q, "variant": variant, "kbps": round(kbps, 3),
            "base_kbps": round(base_kbps, 3), "keyframes": keyframes,
            **{k: round(s[k], 5) for k in ("psnr", "lpips", "dists", "pulse", "flicker")}}


def write_summary(out: Path, rows: list[dict], model, argv):
    import pandas as pd
    d = pd.DataFrame(rows)
    m = d.groupby(["quality", "variant"], sort=False)[["kbps", "base_kbps", "keyframes", "psnr", "lpips",
                                                      "dists", "pulse", "flicker"]].mean().reset_index()
    lines = [f"# Base-layer ablation ({d.video.nunique()} clip(s): {', '.join(d.video.unique())})", "",
             f"`python experiments/base_ablation/base_ablation.py {' '.join(argv)}`; model {model.model_id} "
             f"(sha256 {model.sha256[:16]}). Means over clips; `base-only` is the base stream "
             "alone, Lanczos-upscaled.", "",
             "| q | variant | kbps | base kbps | keyframes | PSNR | LPIPS | DISTS | pulse | flicker |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in m.itertuples():
        lines.append(f"| {r.quality} | {r.variant} | {r.kbps:.2f} | {r.base_kbps:.2f} | {r.keyframes:.1f} | "
                     f"{r.psnr:.2f} | {r.lpips:.4f} | {r.dists:.4f} | {r.pulse:.4f} | {r.flicker:.3f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a base-layer model (name or file)")
    p.add_argument("--videos", nargs="+", required=True)
    p.add_argument("--qualities", default="4")
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from imfcodec.errors import IMFCodecError
    from imfcodec.model import load_model
    try:
        model = load_model(args.model)
        if not model.has_base_layer:
            raise BenchError(f"{args.model}: a token-only model; the ablation needs a base-layer one")
        qualities = parse_int_list(args.qualities, 1, len(model.quality_table))
        videos = find_videos(args.videos, skip=lambda *a: None)
    except (IMFCodecError, BenchError) as e:
        print(f"base_ablation: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = Metrics(model.config.image_size, skip=lambda *a: None)
    rows, t0 = [], time.time()
    for v in videos:
        rows += run_clip(model, v, qualities, args.frames, metrics, lambda s: print(f"[{v.stem}] {s}", flush=True))
        write_csv(out / "ablation.csv", COLUMNS, [[r[c] for c in COLUMNS] for r in rows])
    write_summary(out, rows, model, argv)
    print(f"base_ablation: {len(rows)} rows in {time.time() - t0:.0f} s; {out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
