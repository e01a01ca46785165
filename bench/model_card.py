#!/usr/bin/env python
"""Tables for docs/MODEL_CARD.md and the README from measured bench outputs.

    python bench/model_card.py --rd bench/results/rd --speed bench/results/speed.json \
        [--streams bench/results/speed_streams.json ...] --out bench/results/summary.md

Reads rd.csv / streams.csv / bdrate.csv written by bench/rd_curve.py and the JSON written
by bench/speed.py (and its --streams runs); averages over the clips (every clip weighs the same); writes markdown.
No number is typed by hand: re-run the benches, then this.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def quality_table(rd: pd.DataFrame, streams: pd.DataFrame) -> str:
    imf = rd[rd.codec == "imf"].merge(streams[["video", "codec", "setting", "keyframes"]],
                                      on=["video", "codec", "setting"])
    imf["q"] = imf.setting.str[1:].astype(int)
    g = imf.groupby("q").agg(kbps=("kbps", "mean"), psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"),
                             lpips=("lpips", "mean"), keyframes=("keyframes", "mean"),
                             enc_fps=("enc_fps", "mean"), dec_fps=("dec_fps", "mean"), clips=("video", "count"))
    lines = ["| quality | kbps | PSNR dB | MS-SSIM | LPIPS-alex | keyframes / clip | enc fps | dec fps |",
             "|---|---|---|---|---|---|---|---|"]
    for q, r in g.iterrows():
        lines.append(f"| {q} | {r.kbps:.2f} | {r.psnr:.2f} | {r.ms_ssim:.4f} | {r.lpips:.4f} | "
                     f"{r.keyframes:.1f} | {r.enc_fps:.1f} | {r.dec_fps:.1f} |")
    return "\n".join(lines)


def anchor_table(rd: pd.DataFrame, codec: str) -> str:
    a = rd[rd.codec == codec].copy()
    if a.empty:
        return f"(no {codec} rows)"
    a["crf"] = a.setting.str.extract(r"(\d+)").astype(int)
    g = a.groupby("crf").agg(kbps=("kbps", "mean"), psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"),
                             lpips=("lpips", "mean"), enc_fps=("enc_fps", "mean"), dec_fps=("dec_fps", "mean"))
    lines = [f"| {codec} CRF | kbps | PSNR dB | MS-SSIM | LPIPS-alex | enc fps | dec fps |",
             "|---|---|---|---|---|---|---|"]
    for crf, r in g.iterrows():
        lines.append(f"| {crf} | {r.kbps:.2f} | {r.psnr:.2f} | {r.ms_ssim:.4f} | {r.lpips:.4f} | "
                     f"{r.enc_fps:.1f} | {r.dec_fps:.1f} |")
    return "\n".join(lines)


def bdrate_summary(bd: pd.DataFrame) -> str:
    if bd.empty:
        return "(no BD-rate rows)"
    cols = [c for c in bd.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in bd.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def speed_table(s: dict) -> str:
    g = s["gmacs"]
    return "\n".join([
        "| what | value |", "|---|---|",
        f"| generator parameters | {s['params_total_M']:.2f} M |",
        f"| per-frame decode cost (IMF_D + IMF_A + D_F) | {g['decode_frame']:.2f} GMAC |",
        f"| token encoder E_T | {g['token_encoder']:.2f} GMAC |",
        f"| reference preparation (once per keyframe) | {g['prepare_reference']:.2f} GMAC |",
        f"| decode, networks only, per frame | {s['decode_frame_ms_median']:.1f} ms "
        f"({s['decode_fps_networks']:.1f} frames/s) |",
        f"| decode through the API (keyframes, resampling, uint8) | {s['api_decode_fps']:.1f} frames/s |",
        f"| encode through the API (closed loop: E_T + decoder) | {s['api_encode_fps']:.1f} frames/s |",
        f"| token encoder per frame | {s['token_encoder_ms']:.1f} ms |",
        f"| {s['keyframe_codec'].upper()} intra keyframe encode / decode | {s['keyframe_encode_ms']:.0f} / {s['keyframe_decode_ms']:.1f} ms |",
        f"| peak memory (RSS) | {s['peak_rss_MB']:.0f} MB |",
        f"| machine | {s['cpu']}, {s['cores']} cores, torch {s['torch']}, {s['torch_threads']} threads |",
    ])


def streams_table(runs: list[dict]) -> str:
    """bench/speed.py --streams results: batched MultiDecoder against sequential Decoders."""
    lines = ["| device, precision | streams | batched: total frames/s | per stream | step ms | "
             "peak RSS MB | sequential: total frames/s | step ms | batched / sequential |",
             "|" + "---|" * 9]
    for s in runs:
        where = s["gpu"] or s["cpu"]
        for r in s["results"]:
            q = r["sequential"]
            spread = (f" ({min(r['total_fps_runs'])}-{max(r['total_fps_runs'])})"
                      if "total_fps_runs" in r else "")
            qspread = (f" ({min(q['total_fps_runs'])}-{max(q['total_fps_runs'])})"
                       if "total_fps_runs" in q else "")
            lines.append(f"| {where}, {s['precision']} | {r['streams']} | {r['total_fps']}{spread} | "
                         f"{r['per_stream_fps']} | {r['step_ms']} | {r['peak_rss_MB']:.0f} | "
                         f"{q['total_fps']}{qspread} | {q['step_ms']} | {r['speedup_total_fps']:.2f} |")
    lines.append("")
    lines.append("Medians over each run's repeats (spread in brackets); machine load when each "
                 "run started (1-min load average): " +
                 ", ".join(f"{s['precision']} {s['load_average_before'][0]}" for s in runs) + ".")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rd", required=True, help="output folder of bench/rd_curve.py")
    ap.add_argument("--speed", default=None, help="JSON written by bench/speed.py")
    ap.add_argument("--streams", nargs="*", default=[],
                    help="JSONs written by bench/speed.py --streams")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rd_dir = Path(args.rd)
    rd = pd.read_csv(rd_dir / "rd.csv")
    streams = pd.read_csv(rd_dir / "streams.csv")
    bd = pd.read_csv(rd_dir / "bdrate.csv") if (rd_dir / "bdrate.csv").exists() else pd.DataFrame()
    parts = ["### imfcodec by quality level (mean over clips)", quality_table(rd, streams)]
    for c in ("x264", "x265", "av1"):
        if (rd.codec == c).any():
            parts += [f"### {c} (mean over clips)", anchor_table(rd, c)]
    parts += ["### BD-rate of imfcodec against each anchor", bdrate_summary(bd)]
    if args.speed:
        parts += ["### Speed and cost at the native resolution", speed_table(json.loads(Path(args.speed).read_text()))]
    if args.streams:
        parts += ["### Many streams on one machine (batched MultiDecoder)",
                  streams_table([json.loads(Path(p).read_text()) for p in args.streams])]
    Path(args.out).write_text("\n\n".join(parts) + "\n")
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
