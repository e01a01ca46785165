#!/usr/bin/env python
"""Real non-square clips as they are: face framing token-only (format version 3) against face
framing with the base layer (version 6), at one quality.

    python bench/aspect_real.py CLIP... [--frames 120] [--quality 4] [--model imf-cpu-base]
        [--out bench/results/aspect_real] [--decode-speed CLIP]

Each clip's first ``--frames`` frames at their own size (no padding, no scaling) are coded
by ``imfcodec.encode_frames`` with ``base_layer="off"`` (version 3) and with the model's
default (``auto``: version 6 where the level has a base picture size), every byte counted,
and decoded by ``imfcodec.decode_bytes``. Scores per stream: kbps; whole-frame LPIPS-alex
and PSNR-RGB; face-region LPIPS and PSNR on the face box (the per-edge median of
``imfcodec.codec.framing.FaceLocator``'s boxes on the source, every third frame, grown to
a square of 1.5 face widths and kept inside the frame); pulse (``imfbench.metrics.pulse``:
mean |LPIPS_t - LPIPS_t-1|) of the whole frame and of the face region.

``--decode-speed CLIP``: the frames/s of the ``imfcodec decode`` command (its summary
line: every layer, compositing and the output's encoder) on that clip's version-6 stream,
once, to a .y4m and to an .mp4. Outputs in OUT: rows.csv, summary.md (and speed.json).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from imfbench import common  # noqa: E402
from imfbench.metrics import pulse  # noqa: E402

COLUMNS = ["clip", "size", "stream", "version", "coding", "kbps", "base_kbps", "layer_kbps", "keyframes",
           "lpips", "psnr", "face_lpips", "face_psnr", "pulse", "face_pulse", "face_box"]
FACE_BOX_SCALE = 1.5        # the scored face region: a square of this many face widths


def face_box(frames: np.ndarray) -> tuple[int, int, int]:
    """(x, y, side) of the scored face region: the median detector box on the source,
    grown to a square of FACE_BOX_SCALE face widths, inside the frame."""
    from imfcodec.codec.framing import FaceLocator
    loc = FaceLocator()
    boxes = [b for b in (loc(f) for f in frames[::3]) if b is not None]
    H, W = frames.shape[1:3]
    if not boxes:
        raise SystemExit("no face found by the detector")
    x, y, w, h = np.median(np.array(boxes), axis=0)
    side = int(min(round(FACE_BOX_SCALE * max(w, h)), W, H))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(min(max(round(cx - side / 2), 0), W - side))
    y0 = int(min(max(round(cy - side / 2), 0), H - side))
    return x0, y0, side


class Scores:
    """Per-frame LPIPS-alex and PSNR-RGB (imfcodec.metrics), in batches."""

    def __init__(self):
        from imfcodec.metrics import get_lpips
        self.lpips = get_lpips("alex", "cpu")

    def __call__(self, src: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from imfcodec.metrics import psnr
        lp, ps = [], []
        with torch.inference_mode():
            for i in range(0, len(src), 4):
                a = torch.from_numpy(np.ascontiguousarray(src[i:i + 4])).permute(0, 3, 1, 2).float() / 255
                b = torch.from_numpy(np.ascontiguousarray(dec[i:i + 4])).permute(0, 3, 1, 2).float() / 255
                lp.append(self.lpips(a, b).double().numpy())
                ps.append(psnr(a, b).clamp(max=100).numpy())
        return np.concatenate(lp), np.concatenate(ps)


def run_clip(path: Path, args, model, score, out: Path) -> list[dict]:
    import imfcodec
    from imfcodec.format import container
    from imfcodec.media import video
    info = video.probe(path)
    src = np.stack(list(video.read_frames(path, max_frames=args.frames)))
    H, W = src.shape[1:3]
    bx, by, bs = face_box(src)
    rows = []
    for name, opts in (("v3 base off", {"base_layer": "off"}), ("v6 base auto", {})):
        data, st = imfcodec.encode_frames(iter(src), info.fps, model, args.quality, **opts)
        (out / "streams").mkdir(parents=True, exist_ok=True)
        (out / "streams" / f"{path.stem}_{data[4]}.imf").write_bytes(data)
        header, frames = imfcodec.decode_bytes(data, model)
        dec = np.stack(list(frames))
        lp, ps = score(src, dec)
        flp, fps_ = score(src[:, by:by + bs, bx:bx + bs], dec[:, by:by + bs, bx:bx + bs])
        r = {"clip": path.name, "size": f"{W}x{H}", "stream": name, "version": header.version,
             "coding": header.describe(), "kbps": round(st.kbps, 3),
             "base_kbps": round(header.kbps(st.base_bytes), 3), "layer_kbps": round(header.kbps(st.layer_bytes), 3),
             "keyframes": st.keyframes, "lpips": float(lp.mean()), "psnr": float(ps.mean()),
             "face_lpips": float(flp.mean()), "face_psnr": float(fps_.mean()),
             "pulse": pulse(lp), "face_pulse": pulse(flp), "face_box": f"{bx},{by},{bs}"}
        assert container.frames_in(container.parse(data)[1]) == len(src)
        rows.append(r)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    return rows


def decode_speed(path: Path, args, model, out: Path) -> dict:
    """frames/s of the imfcodec decode command on the clip's default (version-6) stream, one
    run each to .y4m and .mp4 (the stream run_clip wrote, else coded here)."""
    import imfcodec
    from imfcodec.format import container
    from imfcodec.media import video
    saved = out / "streams" / f"{path.stem}_{container.FRAMED_BASE_VERSION}.imf"
    if saved.exists():
        data = saved.read_bytes()
    else:
        src = video.read_frames(path, max_frames=args.frames)
        data, _ = imfcodec.encode_frames(src, video.probe(path).fps, model, args.quality)
    h, packets = container.parse(data)
    res = {"clip": path.name, "size": f"{h.width}x{h.height}", "version": data[4],
           "frames": container.frames_in(packets), "load_avg_before": os.getloadavg(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        imf = Path(d) / "s.imf"
        imf.write_bytes(data)
        for ext in ("y4m", "mp4"):
            p = subprocess.run([sys.executable, "-m", "imfcodec", "decode", str(imf), str(Path(d) / f"o.{ext}"),
                                "-q", "--model", args.model], capture_output=True, text=True, check=True)
            line = p.stdout.strip().splitlines()[-1]
            res[f"decode_{ext}_fps"] = float(re.search(r"([\d.]+) frames/s", line).group(1))
            res[f"decode_{ext}_line"] = line
    res["load_avg_after"] = os.getloadavg()
    print(res, flush=True)
    return res


def shown(path: str) -> str:
    """A clip's path as the summary prints it: under the data folder ($IMFCODEC_DATA, the
    shared faces/ folder), not this machine's."""
    return "$IMFCODEC_DATA/" + path.split("/faces/", 1)[1] if "/faces/" in path else path


def summary(rows: list[dict], args, speed: dict | None) -> str:
    lines = [f"# bench/aspect_real.py: face framing v3 (base off) vs v6 (base auto), q{args.quality}, "
             f"model {args.model}, first {args.frames} frames", "",
             f"Command: `python bench/aspect_real.py {' '.join(map(shown, args.clips))} --frames {args.frames} "
             f"--quality {args.quality} --model {args.model} --out {args.out}"
             + (f" --decode-speed {shown(args.decode_speed)}`" if args.decode_speed else "`"),
             "Clips at their own size (no padding); face region: "
             f"median detector box grown to {FACE_BOX_SCALE} face widths (square).", "",
             "| clip | size | stream | coding | kbps | base kbps | frame-layer kbps | keyframes | LPIPS | PSNR "
             "| face LPIPS | face PSNR | pulse | face pulse |", "|---" * 14 + "|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['size']} | v{r['version']} | {r['coding']} | {r['kbps']:.2f} "
                     f"| {r['base_kbps']:.2f} | {r['layer_kbps']:.2f} | {r['keyframes']} | {r['lpips']:.4f} "
                     f"| {r['psnr']:.2f} | {r['face_lpips']:.4f} | {r['face_psnr']:.2f} | {r['pulse']:.4f} "
                     f"| {r['face_pulse']:.4f} |")
    lines += ["", "## v6 minus v3, per clip", "",
              "| clip | kbps ratio | LPIPS | face LPIPS | PSNR | face PSNR | pulse | face pulse |", "|---" * 8 + "|"]
    for clip in dict.fromkeys(r["clip"] for r in rows):
        a, b = [r for r in rows if r["clip"] == clip]
        lines.append(f"| {clip} | {b['kbps'] / a['kbps']:.2f} | {b['lpips'] - a['lpips']:+.4f} "
                     f"| {b['face_lpips'] - a['face_lpips']:+.4f} | {b['psnr'] - a['psnr']:+.2f} "
                     f"| {b['face_psnr'] - a['face_psnr']:+.2f} | {b['pulse'] - a['pulse']:+.4f} "
                     f"| {b['face_pulse'] - a['face_pulse']:+.4f} |")
    if speed:
        lines += ["", f"## Decode speed, `imfcodec decode`, {speed['clip']} ({speed['size']}, "
                  f"{speed['frames']} frames, v{speed['version']})", "",
                  f"- to .y4m: {speed['decode_y4m_fps']:.1f} frames/s; to .mp4: {speed['decode_mp4_fps']:.1f} "
                  f"frames/s (one run each; {speed['cores']} cores shared, load average "
                  f"{speed['load_avg_before'][0]:.1f} before, {speed['load_avg_after'][0]:.1f} after)"]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str):
    from imfcodec.fileio import atomic_write
    atomic_write(path, lambda f: f.write(text.encode()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--model", default="imf-cpu-base")
    ap.add_argument("--decode-speed", default=None, metavar="CLIP")
    ap.add_argument("--out", default="bench/results/aspect_real")
    args = ap.parse_args(argv)
    import imfcodec
    import torch
    torch.set_num_threads(1)
    model = imfcodec.load_model(args.model, "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    score = Scores()
    rows = []
    for c in args.clips:
        rows += run_clip(Path(c), args, model, score, out)
        common.write_csv(out / "rows.csv", COLUMNS, [[r[k] for k in COLUMNS] for r in rows])
    speed = None
    if args.decode_speed:
        speed = decode_speed(Path(args.decode_speed), args, model, out)
        write_text(out / "speed.json", json.dumps(speed, indent=1) + "\n")
    text = summary(rows, args, speed)
    write_text(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
