#!/usr/bin/env python
"""Rate-distortion bench: imfcodec against x264, x265, SVT-AV1 and libvpx-vp9, each anchor at
the test size and at reduced coded sizes, on the same test source.

    python bench/rd_curve.py --videos FILE_OR_DIR [...] --out DIR
        [--codecs imf,x264,x265,av1,vp9] [--qualities 1-8] [--frames 250] [--model NAME_OR_PATH]
        [--sizes 256,128,64] [--ladder x264=18,23,...] [--dists-every 16] [--detail VIDEO] [--fast]
        [--reuse DIR ...] [--remeter-dists]

The test conditions are in bench/conditions.md; the code is the imfbench package next to this
script (bench/imfbench). Every measured stream is cached in DIR/cache: run the same command
again into the same DIR and it resumes where it stopped.

Outputs in DIR: rd.csv, hulls.csv, bdrate.csv, frames.csv, streams.csv, skipped.csv,
rd_<metric>.png, perframe_<video>.png, grid_<video>.jpg, meta.json, log.txt, streams/, cache/.
Exit status: 0 when at least one video ran, 1 when none did, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("SVT_LOG", "1")   # SVT-AV1: errors only, no banner per encoder

from imfbench.anchors import ANCHORS, CODECS  # noqa: E402  (torch-free)
from imfbench.metrics import DISTS_EVERY  # noqa: E402
from imfbench.run import FAST_FRAMES, FAST_QUALITIES  # noqa: E402
from imfcodec.options import DEFAULT_MODEL, PRECISIONS  # noqa: E402  (torch-free)
from imfcodec.format.container import KEYFRAME_CODEC_IDS  # noqa: E402  (torch-free)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rd_curve.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", required=True, metavar="FILE_OR_DIR",
                   help="video files, or folders whose video files are all used")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reruns resume)")
    p.add_argument("--codecs", default=",".join(CODECS), help=f"comma list of {','.join(CODECS)}")
    p.add_argument("--qualities", default=None, metavar="LIST",
                   help="imfcodec quality levels, e.g. 1-8 or 1,4,8 (default 1-8)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 250)")
    p.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                   help=f"imfcodec model: shipped name or model file (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="device for imfcodec (auto, cpu, cuda)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="imfcodec's network arithmetic (default auto: bf16 on a CPU with native bf16)")
    p.add_argument("--base-layer", default="auto", choices=["auto", "on", "off"],
                   help="imfcodec's base layer (imfcodec encode --base-layer): with a base-layer "
                        "model, off gives rows labelled imf-tokens (default auto)")
    p.add_argument("--imf-keyframe-codec", default=None, choices=list(KEYFRAME_CODEC_IDS),
                   help="imfcodec's keyframe codec (default: the codec's default)")
    p.add_argument("--imf-keyframe-preset", type=int, default=None, metavar="0..13",
                   help="imfcodec's SVT-AV1 keyframe preset (imfcodec encode --keyframe-preset; "
                        "default: the codec's own); part of the cache key")
    p.add_argument("--imf-anchor", type=int, default=None, metavar="0..255",
                   help="imfcodec's keyframe anchor threshold (imfcodec encode --anchor; 0: off; "
                        "default: the level's); part of the cache key")
    p.add_argument("--size", type=int, default=None,
                   help="test size S (default: the model's coded size, 256 without imf)")
    p.add_argument("--sizes", default=None, metavar="LIST",
                   help="coded sizes of the anchors (default S, S/2, S/4, none below 32: 256,128,64); "
                        "below S: downscale, code, decode, Lanczos upscale to S")
    p.add_argument("--ladder", action="append", default=[], metavar="CODEC=LIST",
                   help=f"CRF ladder of an anchor at every size, e.g. x264=18,28,37,44,51 (repeatable; "
                        f"anchors: {','.join(ANCHORS)})")
    p.add_argument("--dists-every", type=int, default=DISTS_EVERY, metavar="K",
                   help=f"DISTS on one frame in each run of K, at a seeded offset, the same frames for "
                        f"every codec (default {DISTS_EVERY}; a VGG16 pass per frame)")
    p.add_argument("--no-dists", action="store_true", help="skip DISTS (NaN)")
    p.add_argument("--detail", default=None, metavar="VIDEO",
                   help="clip for the per-frame plot and image grid (default: the first that ran)")
    p.add_argument("--keep-sei", action="store_true",
                   help="keep x264's informational SEI in its streams (counted in its rate)")
    p.add_argument("--fast", action="store_true",
                   help=f"smoke test: {FAST_FRAMES} frames, qualities {FAST_QUALITIES}, 3 CRFs per anchor")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="also take measured streams from an earlier run's cache (DIR/cache) where "
                        "everything they depend on matches (source, options, size, metrics, model); "
                        "repeatable, the first folder that has a row wins")
    p.add_argument("--remeter-dists", action="store_true",
                   help="rows an earlier run (this folder or --reuse) measured with DISTS on frames 0, "
                        "25, 50, ..., or without tLP, are not coded again: their saved streams are "
                        "decoded and DISTS (on this run's frames) and tLP measured")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    streams = out / "streams"
    try:
        streams.mkdir(parents=True, exist_ok=True)
        (out / "log.txt").open("a").close()
    except OSError as e:
        print(f"rd_curve.py: error: cannot use --out {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    from imfbench.common import Log
    from imfbench.run import run
    log = Log(out / "log.txt", args.quiet)
    skipped: list[tuple[str, str, str]] = []

    def skip(item, kind, reason):
        skipped.append((item, kind, reason))
        log(f"SKIP {kind} {item}: {reason}")

    try:
        return run(args, argv, out, streams, log, skip, skipped)
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
