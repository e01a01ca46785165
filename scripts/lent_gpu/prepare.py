"""Build the two payloads a lent GPU session carries (each call: 64 MiB with the repo).

    python scripts/lent_gpu/prepare.py --ckpt RUN/best.pt

.gpu/a (first call, stashed on the machine): the ImageNet VGG16 / AlexNet-LPIPS weights as
fp16 (the device restores fp32 and writes its own manifest), the discriminator of --ckpt,
the val clips. .gpu/b (second call): the training clips. Clips are the training frame
cache (square, 256x256) re-encoded with x264 CRF 18 (23,005 frames: 25 MB; the source mp4s
are 90 MB at 512x512), decoded there with OpenCV (the device image has no PyAV).
"""
import argparse
import csv
import os
import shutil
from pathlib import Path

import av
import torch

from imfcodec.assets import cache_dir
from imfcodec.train.data import build_cache


def encode(arr, path, crf):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = arr.shape[1]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(crf), "preset": "slow"}
        for fr in arr:
            c.mux(s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")))
        c.mux(s.encode())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="training checkpoint whose discriminator goes along")
    data = os.environ.get("IMFCODEC_DATA")     # a folder holding train/ and val/, as training reads it
    p.add_argument("--data", default=data, required=data is None,
                   help="the clips: a folder holding train/ and val/ (default: $IMFCODEC_DATA)")
    p.add_argument("--manifest", default=None, help="the clips' MANIFEST.csv (default: beside --data)")
    p.add_argument("--out", default=".gpu")
    p.add_argument("--crf", type=int, default=18)
    a = p.parse_args()
    a.manifest = a.manifest or str(Path(a.data).parent / "MANIFEST.csv")
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "a/val").mkdir(parents=True)
    (out / "b/train").mkdir(parents=True)
    home = cache_dir()
    for name in ("vgg16_features.pt", "alexnet_lpips.pt"):
        st = torch.load(home / name, weights_only=True)
        torch.save({k: v.half() for k, v in st.items()}, out / "a" / name)
    shutil.copy(home / "manifest.json", out / "a/manifest.json")
    ck = torch.load(a.ckpt, map_location="cpu", weights_only=True)
    torch.save({"step": ck["step"], "discriminator": {k: v.half() for k, v in ck["discriminator"].items()}},
               out / "a/disc.pt")
    rows = list(csv.DictReader(open(a.manifest)))
    for split, dest in (("val", out / "a/val"), ("train", out / "b/train")):
        files = [Path(a.data) / split / r["file"] for r in rows if r["split"] == split]
        for clip in build_cache(files, 256, home / "frames" / "256"):
            encode(clip.array(), dest / f"{clip.name}.mp4", a.crf)
    for d in ("a", "b"):
        mb = sum(f.stat().st_size for f in (out / d).rglob("*") if f.is_file()) / 1e6
        print(f"{out / d}: {mb:.1f} MB")
    fidelity(sorted((out / "b/train").glob("*.mp4"))[::9], home / "frames" / "256")


def fidelity(videos, cache):
    """What the re-encoding costs the training frames: LPIPS / PSNR against the cache."""
    import numpy as np
    from imfcodec.metrics import get_lpips
    from imfcodec.media.video import read_frames
    lpips, lp, ps = get_lpips("alex", "cpu"), [], []
    for v in videos:
        ref = np.load(next(cache.glob(f"{v.stem}-*.npy")), mmap_mode="r")
        dec = np.stack(list(read_frames(v, max_frames=40)))[::4]
        a = torch.from_numpy(np.array(ref[:40:4])).permute(0, 3, 1, 2) / 255.0
        b = torch.from_numpy(dec).permute(0, 3, 1, 2) / 255.0
        with torch.no_grad():
            lp.append(lpips(b, a).mean().item())
        ps.append(10 * np.log10(1 / ((a - b) ** 2).mean().item()))
    print(f"re-encoded training frames against the cache ({len(videos)} clips, every 4th of 40 "
          f"frames): LPIPS {np.mean(lp):.4f}, PSNR {np.mean(ps):.2f} dB")


if __name__ == "__main__":
    main()
