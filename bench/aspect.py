#!/usr/bin/env python
"""Webcam-shaped video: imfcodec's face framing against stretching, x264 and SVT-AV1.

    python bench/aspect.py --videos $IMFCODEC_DATA/val --aspect 16:9 --out DIR
        [--frames 80] [--qualities 2,4,6] [--sizes 456x256,320x180,228x128] [--clips N]
        [--codecs imf-square,imf-face,imf-stretch,x264,av1]
        [--layer-short N] [--layer-interval S] [--layer-crf-offset K] [--feather F]
    python bench/aspect.py --speed [--sizes 1280x720,640x360] [--frames 50]

Test source: each val clip's first N frames stretched to S x S (S = the model's coded size;
exactly the test source of bench/rd_curve.py), then widened to the aspect by repeating its
edge columns (``np.pad(mode="edge")``; rows for a portrait aspect): a camera frames a head
with room on the sides, and repeated edges add no second face, which reflection would
(half a mirrored face at each side). The face region is the original S x S area.

Coded, all at the same source: imfcodec with ``framing="face"`` and ``framing="stretch"``
on the wide frames; the square clip through today's path; x264 and SVT-AV1 (the
options and low-delay structure of bench/rd_curve.py) at each ``--sizes`` size, scaled
back to the wide size (bicubic) for scoring, and at S x S. Scores: face-region and
whole-frame PSNR-RGB and LPIPS-alex, kbps from every byte of the stream; LPIPS BD-rate of
imfcodec against each anchor size (the anchor's best size = the one where imfcodec's
BD-rate is highest), beside the square clip's BD-rate against the square anchors.

``--speed``: decode frames/s through ``imfcodec.decode_bytes`` (the networks, the frame
layer, compositing) of a synthetic head-like wide clip at each size, after a warm-up, by
the wall clock and by this process's CPU time; writes DIR/speed.json.
Outputs in DIR: aspect.csv (every coded point), bdrate.csv, summary.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")

import numpy as np

from imfbench import common  # noqa: E402
from imfbench.anchors import ANCHORS, AnchorRunner  # noqa: E402
from imfcodec.format import container  # noqa: E402
from imfbench.bdrate import bd_rate  # noqa: E402
from imfbench.metrics import Metrics  # noqa: E402
from imfbench.source import data_dir, find_videos, parse_aspect, test_source, widen  # noqa: E402

X264_CRFS = (37, 41, 44, 47, 51)
AV1_CRFS = (49, 54, 58, 61, 63)
CODECS = ["imf-square", "imf-face", "imf-stretch", "x264", "av1"]
COLUMNS = ["video", "codec", "size", "setting", "kbps", "face_psnr", "face_lpips", "psnr", "lpips"]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 456x256,320x180, got {text!r}") from None


def resize(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2
    if frames.shape[1:3] == (h, w):
        return frames
    up = w > frames.shape[2]
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC if up else cv2.INTER_AREA)
                     for f in frames])


class Scorer:
    def __init__(self, size: int, region: tuple[int, int, int]):
        self.m = Metrics(size, lambda *a: None, use_dists=False)
        self.top, self.left, self.s = region

    def __call__(self, wide_src, dec, square_src=None) -> dict:
        t, l, s = self.top, self.left, self.s
        whole = self.m(wide_src, dec)
        face = self.m(square_src if square_src is not None else wide_src[:, t:t + s, l:l + s],
                      np.ascontiguousarray(dec[:, t:t + s, l:l + s]))
        return {"psnr": whole["psnr"].mean(), "lpips": whole["lpips"].mean(),
                "face_psnr": face["psnr"].mean(), "face_lpips": face["lpips"].mean()}


def imf_point(model, frames, fps, q, framing, **opts) -> tuple[float, np.ndarray]:
    import imfcodec
    data, _ = imfcodec.encode_frames(iter(frames), fps, model, quality=q, framing=framing, **opts)
    header, it = imfcodec.decode_bytes(data, model)
    return container.kbps(len(data), len(frames), fps), np.stack(list(it))


def run_clip(path, args, model, streams, rows, save):
    vname = Path(path).stem
    S = model.config.image_size
    sq, fps = test_source(Path(path), args.frames, S)
    wide, (top, left) = widen(sq, args.aspect)
    H, W = wide.shape[1:3]
    score = Scorer(S, (top, left, S))
    square_score = Scorer(S, (0, 0, S))

    def add(codec, size, setting, kbps, m):
        rows.append({"video": vname, "codec": codec, "size": size, "setting": setting, "kbps": kbps, **m})
        save()                                          # after every point: a partial run is kept
        print(f"{vname} {codec} {size} {setting}: {kbps:.2f} kbps face {m['face_lpips']:.4f}/"
              f"{m['face_psnr']:.2f} dB whole {m['lpips']:.4f}/{m['psnr']:.2f} dB", flush=True)

    for q in args.qualities:
        if "imf-square" in args.codecs:
            kbps, dec = imf_point(model, sq, fps, q, "stretch")
            add("imf-square", f"{S}x{S}", f"q{q}", kbps, square_score(sq, dec))
        for framing in ("face", "stretch"):
            if f"imf-{framing}" in args.codecs:
                kbps, dec = imf_point(model, wide, fps, q, framing, **(args.layer_opts if framing == "face" else {}))
                add(f"imf-{framing}", f"{W}x{H}", f"q{q}", kbps, score(wide, dec, sq))
    for name, crfs in (("x264", X264_CRFS), ("av1", AV1_CRFS)):
        if name not in args.codecs:
            continue
        runner = AnchorRunner(ANCHORS[name], streams)
        for w, h in [(S, S)] + args.sizes:
            src = sq if (w, h) == (S, S) else resize(wide, w, h)
            for crf in crfs:
                r, dec = runner.run(f"{vname}_{w}x{h}", src, fps, crf)
                if (w, h) == (S, S):
                    add(f"{name}-square", f"{S}x{S}", f"crf{crf}", r.kbps, square_score(sq, dec))
                else:
                    add(name, f"{w}x{h}", f"crf{crf}", r.kbps, score(wide, resize(dec, W, H), sq))


def bd_tables(rows) -> list[dict]:
    out = []
    videos = sorted({r["video"] for r in rows})
    for v in videos:
        rv = [r for r in rows if r["video"] == v]

        def curve(codec, size=None):
            pts = [r for r in rv if r["codec"] == codec and (size is None or r["size"] == size)]
            return [p["kbps"] for p in pts], pts

        for test, anchors, metric in (("imf-face", ("x264", "av1"), "lpips"),
                                      ("imf-face", ("x264", "av1"), "face_lpips"),
                                      ("imf-stretch", ("x264", "av1"), "lpips"),
                                      ("imf-square", ("x264-square", "av1-square"), "lpips")):
            tr, tp = curve(test)
            for a in anchors:
                for size in sorted({r["size"] for r in rv if r["codec"] == a}):
                    ar, ap = curve(a, size)
                    d = bd_rate(ar, [p[metric] for p in ap], tr, [p[metric] for p in tp], higher_is_better=False)
                    out.append({"video": v, "test": test, "anchor": a, "size": size, "metric": metric,
                                "bd_rate_pct": d["bd_rate"]})
    return out


def summary(rows, bds, args) -> str:
    opts = getattr(args, "layer_opts", {})
    lines = [f"# bench/aspect.py, aspect {args.aspect_text}, {args.frames} frames, "
             f"qualities {','.join(map(str, args.qualities))}"
             + "".join(f", {k} {v:g}" for k, v in opts.items()), "",
             "## imfcodec per quality, mean over clips", "",
             "| codec | q | kbps | face LPIPS | face PSNR | whole LPIPS | whole PSNR |", "|---|---|---|---|---|---|---|"]
    for codec in ("imf-square", "imf-face", "imf-stretch"):
        for q in args.qualities:
            pts = [r for r in rows if r["codec"] == codec and r["setting"] == f"q{q}"]
            if pts:
                m = {k: np.mean([p[k] for p in pts]) for k in ("kbps", "face_lpips", "face_psnr", "lpips", "psnr")}
                lines.append(f"| {codec} | {q} | {m['kbps']:.2f} | {m['face_lpips']:.4f} | {m['face_psnr']:.2f} "
                             f"| {m['lpips']:.4f} | {m['psnr']:.2f} |")
    lines += ["", "## face framing against the same clip coded square, per clip", "",
              "| clip | q | face LPIPS - square LPIPS | rate / square rate |", "|---|---|---|---|"]
    for v in sorted({r["video"] for r in rows}):
        for q in args.qualities:
            f = [r for r in rows if r["video"] == v and r["codec"] == "imf-face" and r["setting"] == f"q{q}"]
            s = [r for r in rows if r["video"] == v and r["codec"] == "imf-square" and r["setting"] == f"q{q}"]
            if f and s:
                lines.append(f"| {v} | {q} | {f[0]['face_lpips'] - s[0]['face_lpips']:+.4f} "
                             f"| {f[0]['kbps'] / s[0]['kbps']:.2f} |")
    lines += ["", "## LPIPS BD-rate (%), mean over clips (negative: imfcodec needs fewer bits)", "",
              "| test | metric | anchor | size | BD-rate % | clips |", "|---|---|---|---|---|---|"]
    keys = sorted({(b["test"], b["metric"], b["anchor"], b["size"]) for b in bds})
    for k in keys:
        v = [b["bd_rate_pct"] for b in bds if (b["test"], b["metric"], b["anchor"], b["size"]) == k]
        ok = [x for x in v if np.isfinite(x)]
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | "
                     f"{np.mean(ok):+.1f} | {len(ok)}/{len(v)} |" if ok else
                     f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | n/a | 0/{len(v)} |")
    return "\n".join(lines + best_size_table(bds)) + "\n"


def best_size_table(bds) -> list[str]:
    """Per clip, imfcodec's LPIPS BD-rate against each anchor at its best size: of the sizes
    whose curve overlaps imfcodec's, the one where imfcodec's BD-rate is highest (the most
    favourable to the anchor); the mean over clips where one overlaps."""
    tests = sorted({(b["test"], b["metric"], b["anchor"]) for b in bds})
    videos = sorted({b["video"] for b in bds})
    lines = ["", "## LPIPS BD-rate (%) at each anchor's best size, per clip (size in brackets)", "",
             "| test | metric | anchor | " + " | ".join(videos) + " | mean |",
             "|---" * (len(videos) + 4) + "|"]
    for t in tests:
        cells, vals = [], []
        for v in videos:
            ok = [b for b in bds if (b["test"], b["metric"], b["anchor"]) == t and b["video"] == v
                  and np.isfinite(b["bd_rate_pct"])]
            best = max(ok, key=lambda b: b["bd_rate_pct"]) if ok else None
            cells.append(f"{best['bd_rate_pct']:+.1f} ({best['size']})" if best else "n/a")
            vals += [best["bd_rate_pct"]] if best else []
        mean = f"{np.mean(vals):+.1f} ({len(vals)}/{len(videos)})" if vals else "n/a"
        lines.append(f"| {t[0]} | {t[1]} | {t[2]} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def speed(args, model) -> dict:
    """Decode frames/s of a face-framed wide clip (synthetic head on a textured background)."""
    import imfcodec
    import torch
    out = {"torch_threads": torch.get_num_threads(), "cores": os.cpu_count(), "load_avg": os.getloadavg()}
    for w, h in args.sizes:
        rng = np.random.default_rng(0)
        bg = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
        bg = resize(bg[None], w, h)[0]
        yy, xx = np.mgrid[0:h, 0:w]
        frames = []
        for i in range(args.frames):
            cx, cy = w / 2 + 0.05 * w * np.sin(i / 10), h / 2
            m = ((xx - cx) / (0.18 * h)) ** 2 + ((yy - cy) / (0.25 * h)) ** 2 < 1
            f = bg.copy()
            f[m] = (220, 180, 150)
            frames.append(f)
        data, _ = imfcodec.encode_frames(frames, 25, model, 4, framing="face")
        list(imfcodec.decode_bytes(data, model)[1])              # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in imfcodec.decode_bytes(data, model)[1])
        # CPU time of this process: what the decode costs whatever else the machine runs
        # (with --threads 1, the frames/s of one otherwise idle core)
        out[f"{w}x{h}"] = {"decode_fps": round(n / (time.perf_counter() - t0), 1),
                           "decode_fps_cpu_time": round(n / (time.process_time() - c0), 1),
                           "frames": n, "bytes": len(data)}
        print(f"{w}x{h}: {out[f'{w}x{h}']}", flush=True)
    out["load_avg_after"] = os.getloadavg()
    return out


def write_csv(path: Path, columns: list, rows: list):
    """Rows as dicts (missing keys left empty), written atomically by imfbench's writer."""
    common.write_csv(path, columns, [[r.get(c, "") for c in columns] for r in rows])


def write_text(path: Path, text: str):
    from imfcodec.fileio import atomic_write
    atomic_write(path, lambda f: f.write(text.encode()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="+", default=None, help="clips or folders (default: $IMFCODEC_DATA/val)")
    ap.add_argument("--aspect", default="16:9")
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--qualities", default="2,4,6")
    ap.add_argument("--sizes", default=None, help="anchor sizes (default: the wide size, 0.7x, 0.5x); "
                                                  "with --speed the output sizes (1280x720,640x360)")
    ap.add_argument("--clips", type=int, default=None, help="the first N clips only")
    ap.add_argument("--codecs", default=",".join(CODECS), help=f"a subset of {','.join(CODECS)}")
    ap.add_argument("--model", default=None)
    for opt, kind, what in (("layer-short", int, "frame-layer short side in pixels"),
                            ("layer-interval", float, "a frame-layer picture every this many seconds"),
                            ("layer-crf-offset", int, "frame-layer VP9 CRF above the keyframe CRF"),
                            ("feather", float, "crop edge fade as a fraction of its side")):
        ap.add_argument(f"--{opt}", type=kind, default=None, help=f"imf-face: {what} (default: imfcodec.codec.framing's)")
    ap.add_argument("--summarize", default=None, metavar="CSV",
                    help="only recompute bdrate.csv and summary.md in --out from an aspect.csv")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: 1 for the RD run, torch's default for --speed)")
    ap.add_argument("--out", default="bench/results/aspect")
    args = ap.parse_args(argv)
    import imfcodec
    import torch
    if args.threads or not args.speed:
        torch.set_num_threads(args.threads or 1)
    model = imfcodec.load_model(args.model, "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.speed:
        args.sizes = parse_sizes(args.sizes or "1280x720,640x360")
        res = speed(args, model)
        write_text(out / "speed.json", json.dumps(res, indent=1) + "\n")
        return 0
    args.aspect_text, args.aspect = args.aspect, parse_aspect(args.aspect)
    names = {"layer_short": "layer_short", "layer_interval": "layer_interval",
             "layer_crf_offset": "layer_crf_offset", "feather": "feather_fraction"}
    args.layer_opts = {kw: getattr(args, a) for a, kw in names.items() if getattr(args, a) is not None}
    args.qualities = [int(q) for q in args.qualities.split(",")]
    if args.summarize:
        with open(args.summarize, newline="") as f:
            rows = [{k: (v if k in ("video", "codec", "size", "setting") else float(v)) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        return report(rows, args, out)
    args.codecs = args.codecs.split(",")
    if set(args.codecs) - set(CODECS):
        ap.error(f"--codecs: choose from {','.join(CODECS)}")
    S = model.config.image_size
    if args.sizes:
        args.sizes = parse_sizes(args.sizes)
    else:
        w, h = widen(np.zeros((1, S, S, 3), np.uint8), args.aspect)[0].shape[2:0:-1]
        args.sizes = [(2 * round(w * k / 2), 2 * round(h * k / 2)) for k in (1.0, 0.7, 0.5)]
    streams = out / "streams"
    streams.mkdir(exist_ok=True)
    videos = find_videos(args.videos or [data_dir("val", None, "--videos")], lambda *a: None)[:args.clips]
    rows = []
    for v in videos:
        run_clip(v, args, model, streams, rows, lambda: write_csv(out / "aspect.csv", COLUMNS, rows))
    return report(rows, args, out)


def report(rows, args, out: Path) -> int:
    bds = bd_tables(rows)
    write_csv(out / "bdrate.csv", ["video", "test", "anchor", "size", "metric", "bd_rate_pct"], bds)
    text = summary(rows, bds, args)
    write_text(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
