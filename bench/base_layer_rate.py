"""What the base layer (issue 15, format version 4) costs per quality level: every frame at
the model's size, scaled by ``imfcodec.baselayer.thumbnail`` and coded by its VP9 stream at
each level's size and CRF of ``imfcodec.model.DEFAULT_BASE_LADDER``, counted as the 'B'
packets the file holds (``container.packet_to_bytes``: payload plus packet framing).

    python bench/base_layer_rate.py ../shared/data/faces/train/eamm_fear.mp4 --frames 125

Columns: clip, level, size, crf, kbps (B packets), payload bytes per frame, framing bytes
per frame, PSNR of the decoded base picture against the thumbnail (dB). Training clips
only when the numbers tune the ladder.
"""
from __future__ import annotations

import argparse
import csv
import sys

import numpy as np

from imfcodec import baselayer, video
from imfcodec.container import BasePacket, kbps, packet_to_bytes
from imfcodec.model import DEFAULT_BASE_LADDER


def measure(path: str, frames: int, image_size: int) -> list[dict]:
    info, it = video.read_video(path)
    x = video.to_model(np.stack([f for _, f in zip(range(frames), it)]), image_size)
    rows = []
    for q, level in enumerate(DEFAULT_BASE_LADDER, 1):
        size, crf = level["base_size"], level["base_crf"]
        if not size:
            continue
        enc, total, payload, psnrs = baselayer.BaseEncoder(crf), 0, 0, []
        pics = baselayer.thumbnail(x, size)
        for i, pic in enumerate(pics):
            data, dec = enc.encode(pic)
            payload += len(data)
            total += len(packet_to_bytes(BasePacket(i, data, i > 0)))
            mse = np.mean((dec.astype(np.float64) - pic) ** 2)
            psnrs.append(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))
        n = len(pics)
        rows.append({"clip": path.rsplit("/", 1)[-1], "quality": q, "size": size, "crf": crf,
                     "kbps": round(kbps(total, n, info.fps), 2), "payload_per_frame": round(payload / n, 1),
                     "framing_per_frame": round((total - payload) / n, 1), "psnr": round(float(np.mean(psnrs)), 2)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=125)
    p.add_argument("--image-size", type=int, default=256, help="the model's coded size (default 256)")
    args = p.parse_args(argv)
    w = csv.DictWriter(sys.stdout, ["clip", "quality", "size", "crf", "kbps", "payload_per_frame",
                                    "framing_per_frame", "psnr"])
    w.writeheader()
    for c in args.clips:
        w.writerows(measure(c, args.frames, args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
