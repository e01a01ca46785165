"""What the base layer (issue 15, format version 5) costs per quality level: every frame at
the model's size, scaled by ``imfcodec.media.baselayer.thumbnail`` and coded by its VP9 stream at
each level's size and CRF of ``imfcodec.model.DEFAULT_BASE_LADDER``, counted as the 'B'
packets the file holds (``container.packet_to_bytes``: the pictures of ``--packet-frames``
frames deflated together, plus packet framing), as a stream with no refresh keyframes
groups them.

    python tools/base_layer_rate.py $IMFCODEC_DATA/train/eamm_fear.mp4 --frames 125

Columns: clip, level, size, crf, kbps (B packets), VP9 picture bytes per frame, B-packet
bytes per frame (what the file holds), PSNR of the decoded base picture against the
thumbnail (dB). Training clips only when the numbers tune the ladder.
"""
from __future__ import annotations

import argparse
import csv
import sys

import numpy as np

from imfcodec.media import baselayer, video
from imfcodec.options import DEFAULT_PACKET_FRAMES
from imfcodec.format.container import BasePacket, kbps, packet_to_bytes
from imfcodec.codec.ladder import DEFAULT_BASE_LADDER


def measure(path: str, frames: int, image_size: int, packet_frames: int = DEFAULT_PACKET_FRAMES) -> list[dict]:
    info, it = video.read_video(path)
    x = video.to_model(np.stack([f for _, f in zip(range(frames), it)]), image_size)
    rows = []
    for q, level in enumerate(DEFAULT_BASE_LADDER, 1):
        size, crf = level["base_size"], level["base_crf"]
        if not size:
            continue
        enc, coded, psnrs = baselayer.BaseEncoder(crf), [], []
        pics = baselayer.thumbnail(x, size)
        for pic in pics:
            data, dec = enc.encode(pic)
            coded.append(data)
            mse = np.mean((dec.astype(np.float64) - pic) ** 2)
            psnrs.append(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))
        n, payload = len(pics), sum(map(len, coded))
        # frame 0 is the keyframe's own packet; then groups of packet_frames token frames
        groups = [(0, coded[:1])] + [(i, coded[i:i + packet_frames]) for i in range(1, n, packet_frames)]
        total = sum(len(packet_to_bytes(BasePacket(i, tuple(g), key=i == 0))) for i, g in groups)
        rows.append({"clip": path.rsplit("/", 1)[-1], "quality": q, "size": size, "crf": crf,
                     "kbps": round(kbps(total, n, info.fps), 2), "picture_bytes_per_frame": round(payload / n, 1),
                     "packet_bytes_per_frame": round(total / n, 1), "psnr": round(float(np.mean(psnrs)), 2)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=125)
    p.add_argument("--image-size", type=int, default=256, help="the model's coded size (default 256)")
    p.add_argument("--packet-frames", type=int, default=DEFAULT_PACKET_FRAMES,
                   help=f"token frames per packet, so base pictures per B packet (default {DEFAULT_PACKET_FRAMES})")
    args = p.parse_args(argv)
    w = csv.DictWriter(sys.stdout, ["clip", "quality", "size", "crf", "kbps", "picture_bytes_per_frame",
                                    "packet_bytes_per_frame", "psnr"])
    w.writeheader()
    for c in args.clips:
        w.writerows(measure(c, args.frames, args.image_size, args.packet_frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
