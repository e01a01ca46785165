"""Keyframe codecs on the pictures a refresh would send: AV1 intra vs the VP9 chain.

    python tools/keyframe_chain.py $IMFCODEC_DATA/train/liveportrait_d10.mp4 \\
        $IMFCODEC_DATA/train/eamm_fear.mp4 --every 30 --crf 38

Takes one 256x256 picture every ``--every`` frames (the first 250 frames, as
bench/rd_curve.py does) and codes them the way imfcodec's keyframe packets do: each picture
as its own AV1 intra picture at CRF c, and all of them as one VP9 chain (first picture a
key frame, the rest inter frames predicted from the previous picture) at CRF c + offset.
Prints mean bytes and PSNR-RGB of the first picture and of the rest, per clip.

``--sweep`` compares the two chained keyframe codecs instead, as the codec runs them
(``imfcodec.media.keyframe.KeyframeEncoder``): the VP9 chain at VP9 CRFs 30..50 and the SVT-AV1
low-delay chain (``av1-chain``) at CRFs 34..63, every picture of the chain counted; prints
each curve (total bytes / mean PSNR) and the PSNR BD-rate of the AV1 chain against VP9's:

    python tools/keyframe_chain.py $IMFCODEC_DATA/train/{eamm_fear,liveportrait_d10,hmeme_nice}.mp4 \\
        --every 12 --sweep

``--presets 2 1 0`` compares SVT-AV1 presets of the AV1 chain instead, each against the
first, at the ladder's CRFs (30, 37, 43, 48, 53): PSNR and LPIPS-alex BD-rate per clip and
the milliseconds to encode the first (key) picture and the others (on one core):

    python tools/keyframe_chain.py $IMFCODEC_DATA/train/{eamm_fear,liveportrait_d10,hmeme_nice}.mp4 \\
        --every 12 --presets 2 1 0
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imfbench.bdrate import bd_rate
from imfbench.source import test_source

from imfcodec.media import keyframe, video  # noqa: E402
from imfcodec.metrics import psnr as _psnr  # noqa: E402
from imfcodec.codec.ladder import VP9_CRF_OFFSET  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-RGB of two uint8 pictures, the same [0, 1] conversion as the codec's."""
    return float(_psnr(video.to_model(a, a.shape[0]), video.to_model(b, b.shape[0])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--every", type=int, default=30, help="frames between pictures (default 30)")
    p.add_argument("--crf", type=int, nargs="+", default=[38], help="AV1 CRF(s) (default 38)")
    p.add_argument("--offset", type=int, default=VP9_CRF_OFFSET,
                   help=f"VP9 CRF = AV1 CRF + offset (default {VP9_CRF_OFFSET}, the codec's)")
    p.add_argument("--sweep", action="store_true",
                   help="compare the VP9 chain and the AV1 chain over a CRF sweep (BD-rate)")
    p.add_argument("--presets", nargs="+", metavar="P",
                   help="compare these SVT-AV1 presets of the AV1 chain, each against the first")
    a = p.parse_args(argv)
    if a.presets:
        return presets(a)
    if a.sweep:
        return sweep(a)
    print("| clip | AV1 CRF | AV1 intra: bytes / dB | VP9 CRF | VP9 first (key): bytes / dB "
          "| VP9 rest (inter): bytes / dB |")
    print("|---|---|---|---|---|---|")
    m = lambda rows: f"{np.mean([r[0] for r in rows]):.0f} / {np.mean([r[1] for r in rows]):.2f}"  # noqa: E731
    for v in a.videos:
        pics = pictures(v, a.every)
        for crf in a.crf:
            intra = [(len(b := keyframe.encode(x, "av1", crf)), psnr(keyframe.decode(b, "av1"), x)) for x in pics]
            rows = code_chain(pics, "vp9", crf + a.offset)
            print(f"| {Path(v).stem} | {crf} | {m(intra)} | {crf + a.offset} | {m(rows[:1])} "
                  f"| {m(rows[1:])} |")
    return 0


def pictures(video: str, every: int) -> list:
    """One 256x256 picture every ``every`` frames of the clip's first 250."""
    src, _ = test_source(Path(video), 250, 256)
    return [np.ascontiguousarray(src[i]) for i in range(0, len(src), every)]


def code_chain(pics: list, codec: str, crf: int, options: dict | None = None,
               lpips=None) -> list[tuple]:
    """``pics`` as one chain of ``codec`` (the first a key picture, the rest predicted), as
    the codec's keyframe packets: per picture its bytes, PSNR and seconds to encode (and with
    ``lpips``, a metric module, its LPIPS)."""
    enc, dec = keyframe.KeyframeEncoder(codec, crf, options), keyframe.KeyframeDecoder(codec)
    rows = []
    for i, x in enumerate(pics):
        t = time.perf_counter()
        b = enc.encode(x, intra=i == 0)
        secs = time.perf_counter() - t
        y = dec.decode(b, predicted=i > 0)
        row = (len(b), psnr(y, x), secs)
        if lpips is not None:
            with torch.no_grad():
                row += (lpips(video.to_model(y, y.shape[0]), video.to_model(x, x.shape[0])).item(),)
        rows.append(row)
    enc.close()
    return rows


SWEEP_CRFS = {"vp9": (30, 34, 38, 42, 46, 50), "av1-chain": (34, 40, 46, 52, 58, 63)}


def chain(pics: list, codec: str, crf: int) -> tuple[int, float, float]:
    """One chain of ``pics``: total bytes, mean PSNR, seconds per picture to encode."""
    rows = code_chain(pics, codec, crf)
    return sum(r[0] for r in rows), float(np.mean([r[1] for r in rows])), float(np.mean([r[2] for r in rows]))


def sweep(a) -> int:
    print("| clip | pictures | VP9 chain: bytes / dB per CRF | AV1 chain: bytes / dB per CRF "
          "| AV1 chain BD-rate (PSNR) | AV1 ms / picture |")
    print("|---|---|---|---|---|---|")
    bds = []
    for v in a.videos:
        pics = pictures(v, a.every)
        curves = {c: [chain(pics, c, crf) for crf in crfs] for c, crfs in SWEEP_CRFS.items()}
        (rv, qv), (ra, qa) = ([[r[k] for r in curves[c]] for k in (0, 1)] for c in SWEEP_CRFS)
        bd = bd_rate(rv, qv, ra, qa)["bd_rate"]
        bds.append(bd)
        fmt = lambda rows: ", ".join(f"{r[0]} / {r[1]:.2f}" for r in rows)  # noqa: E731
        print(f"| {Path(v).stem} | {len(pics)} | {fmt(curves['vp9'])} | {fmt(curves['av1-chain'])} "
              f"| {bd:+.1f} % | {1000 * np.mean([r[2] for r in curves['av1-chain']]):.0f} |", flush=True)
    print(f"\nmean BD-rate of the AV1 chain against the VP9 chain: {np.nanmean(bds):+.1f} %")
    return 0


PRESET_CRFS = (30, 37, 43, 48, 53)      # the AV1 chain's ladder (imfcodec.model.LADDER_AV1_CHAIN_CRF)


def presets(a) -> int:
    from imfcodec.metrics import get_lpips
    torch.set_num_threads(1)
    lp = get_lpips("alex")
    ref, *others = a.presets
    print(f"| clip | preset | PSNR BD-rate vs {ref} | LPIPS BD-rate vs {ref} | first picture ms | others ms |")
    print("|---|---|---|---|---|---|")
    bds = {p: [] for p in others}
    for v in a.videos:
        pics = pictures(v, a.every)
        curves = {}
        for p in a.presets:
            rows = [code_chain(pics, "av1-chain", crf, {"preset": p}, lp) for crf in PRESET_CRFS]
            curves[p] = ([sum(r[0] for r in c) for c in rows], [np.mean([r[1] for r in c]) for c in rows],
                         [np.mean([r[3] for r in c]) for c in rows],
                         1000 * np.mean([c[0][2] for c in rows]), 1000 * np.mean([r[2] for c in rows for r in c[1:]]))
        for p in a.presets:
            r, q, l, first, rest = curves[p]
            if p == ref:
                bp = bl = 0.0
            else:
                bp = bd_rate(curves[ref][0], curves[ref][1], r, q)["bd_rate"]
                bl = bd_rate(curves[ref][0], curves[ref][2], r, l, higher_is_better=False)["bd_rate"]
                bds[p].append((bp, bl))
            print(f"| {Path(v).stem} | {p} | {bp:+.1f} % | {bl:+.1f} % | {first:.0f} | {rest:.0f} |", flush=True)
    for p, v in bds.items():
        print(f"\npreset {p} against {ref}, mean over {len(v)} clips: PSNR BD-rate "
              f"{np.nanmean([x[0] for x in v]):+.1f} %, LPIPS {np.nanmean([x[1] for x in v]):+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
