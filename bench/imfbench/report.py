"""What a run writes: rd.csv, hulls.csv, bdrate.csv, frames.csv, streams.csv, plots, and the
machine/version records for meta.json."""
from __future__ import annotations

import json
import math
import os
import platform
import re
from pathlib import Path

import numpy as np

from imfbench.anchors import ANCHORS
from imfbench.bdrate import bd_rate, best_size
from imfbench.common import Result, fmt_num, is_imf, write_csv
from imfcodec.fileio import atomic_write
from imfbench.metrics import HIGHER_IS_BETTER, METRIC_LABEL, METRICS, summary

RD_COLUMNS = ["video", "codec", "setting", "size", "kbps", "psnr", "ms_ssim", "lpips", "dists",
              "pulse", "flicker", "tlp", "enc_fps", "dec_fps"]
BD_COLUMNS = ["video", "anchor", "metric", "bd_rate_pct", "overlap_lo", "overlap_hi",
              "overlap_width", "imf_points", "anchor_points", "note"]
HULL = "best"          # the best-size curve of codec X is reported as anchor "X@best"


def rd_rows(results: list[Result]) -> list:
    rows = []
    for r in results:
        s = summary(r.per_frame)
        rows.append([r.video, r.codec, r.setting, r.size, fmt_num(r.kbps, 3), fmt_num(s["psnr"], 3),
                     fmt_num(s["ms_ssim"], 5), fmt_num(s["lpips"], 5), fmt_num(s["dists"], 5),
                     fmt_num(s["pulse"], 5), fmt_num(s["flicker"], 4), fmt_num(s["tlp"], 5), fmt_num(r.enc_fps, 2),
                     fmt_num(r.dec_fps, 2)])
    return rows


def families(results: list[Result]) -> list[str]:
    return [a for a in ANCHORS if any(r.family == a for r in results)]


def hull_rows(results: list[Result]) -> list:
    """Per clip, anchor family and metric: the streams on its best-size curve."""
    rows = []
    for v in dict.fromkeys(r.video for r in results):
        for fam in families(results):
            rs = [r for r in results if r.video == v and r.family == fam]
            for m in METRICS:
                for r in best_size(rs, m, HIGHER_IS_BETTER[m]):
                    rows.append([v, fam, m, r.codec, r.setting, r.size, fmt_num(r.kbps, 3),
                                 fmt_num(r.mean(m), 5)])
    return rows


def anchor_curves(results: list[Result], video: str) -> dict:
    """anchor name -> (metric -> list of Results): each coded size, and each family's
    best-size curve (which depends on the metric)."""
    rs = [r for r in results if r.video == video and not is_imf(r.codec)]
    curves = {}
    for fam in families(rs):
        mine = [r for r in rs if r.family == fam]
        for c in dict.fromkeys(r.codec for r in mine):
            curves[c] = {m: [r for r in mine if r.codec == c] for m in METRICS}
        if len({r.size for r in mine}) > 1:
            curves[f"{fam}@{HULL}"] = {m: best_size(mine, m, HIGHER_IS_BETTER[m]) for m in METRICS}
    return curves


def bdrate_table(results: list[Result]) -> tuple[list, list]:
    rows, per = [], {}
    for v in dict.fromkeys(r.video for r in results):
        imf = [r for r in results if r.video == v and is_imf(r.codec)]
        if not imf:
            continue
        for an, by_metric in anchor_curves(results, v).items():
            for m in METRICS:
                anc = by_metric[m]
                d = bd_rate([r.kbps for r in anc], [r.mean(m) for r in anc],
                            [r.kbps for r in imf], [r.mean(m) for r in imf], HIGHER_IS_BETTER[m])
                per.setdefault((an, m), []).append(d["bd_rate"])
                rows.append([v, an, m, fmt_num(d["bd_rate"], 2), fmt_num(d["overlap_lo"], 5),
                             fmt_num(d["overlap_hi"], 5), fmt_num(d["overlap_width"], 5), len(imf),
                             len(anc), d["note"]])
    for (an, m), vals in per.items():
        ok = [x for x in vals if math.isfinite(x)]
        mean = float(np.mean(ok)) if ok else float("nan")
        rows.append(["mean", an, m, fmt_num(mean, 2), "nan", "nan", "nan", "", "",
                     f"mean of per-video BD-rates over {len(ok)} of {len(vals)} videos with overlap"])
    return BD_COLUMNS, rows


def write_tables(results: list[Result], out: Path, skipped: list, size: int, complete: bool = False):
    write_csv(out / "rd.csv", RD_COLUMNS, rd_rows(results))
    text = summary_md(results, complete).encode()
    atomic_write(out / "summary.md", lambda f: f.write(text))
    write_csv(out / "hulls.csv", ["video", "anchor", "metric", "codec", "setting", "size", "kbps", "value"],
              hull_rows(results))
    write_csv(out / "bdrate.csv", *bdrate_table(results))
    frame_rows = []
    for r in results:
        keys = set(r.keyframe_index)
        pf = r.per_frame
        for i in range(r.frames):
            frame_rows.append([r.video, r.codec, r.setting, i, fmt_num(pf["psnr"][i], 3),
                               fmt_num(pf["ms_ssim"][i], 5), fmt_num(pf["lpips"][i], 5),
                               fmt_num(pf["dists"][i], 5), fmt_num(pf["flicker"][i], 4),
                               fmt_num(pf["tlp"][i], 5) if "tlp" in pf else "nan", int(i in keys)])
    write_csv(out / "frames.csv", ["video", "codec", "setting", "frame", "psnr", "ms_ssim", "lpips",
                                   "dists", "flicker", "tlp", "keyframe"], frame_rows)
    write_csv(out / "streams.csv",
              ["video", "codec", "setting", "frames", "fps", "size", "coded_size", "bytes", "file_bytes",
               "kbps", "keyframes", "file", "options", "note"],
              [[r.video, r.codec, r.setting, r.frames, str(r.fps), f"{size}x{size}", f"{r.size}x{r.size}",
                r.nbytes, r.file_bytes, fmt_num(r.kbps, 3), r.keyframes, os.path.relpath(r.stream, out),
                json.dumps(r.options, sort_keys=True), r.note] for r in results])
    write_csv(out / "skipped.csv", ["item", "kind", "reason"], skipped)


# ---- plots ------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


COLORS = {"imf": "k", "imf-tokens": "k", "x264": "tab:blue", "x265": "tab:orange", "av1": "tab:green", "vp9": "tab:red"}


def plot_rd(results: list[Result], out: Path, log) -> list[str]:
    """Quality against rate per clip: imf, each anchor's best-size curve (thick), and its
    single-size curves (thin, dashed)."""
    plt = _plt()
    made = []
    videos = list(dict.fromkeys(r.video for r in results))
    for m in METRICS:
        if all(math.isnan(r.mean(m)) for r in results):
            log(f"rd_{m}.png not made: {m} is NaN everywhere")
            continue
        ncol = min(len(videos), 3)
        nrow = math.ceil(len(videos) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 4.2 * nrow), squeeze=False)
        for ax, v in zip(axes.flat, videos):
            imf = sorted((r for r in results if r.video == v and is_imf(r.codec)), key=lambda r: r.order)
            if imf:
                ax.plot([r.kbps for r in imf], [r.mean(m) for r in imf], "o-", ms=3, color="k", lw=2,
                        label=imf[0].codec)
            for an, by_m in anchor_curves(results, v).items():
                rs = sorted(by_m[m], key=lambda r: r.kbps)
                fam = an.split("@")[0]
                best = an.endswith(f"@{HULL}")
                if rs:
                    ax.plot([r.kbps for r in rs], [r.mean(m) for r in rs], "-" if best else "--",
                            marker=None if best else ".", ms=3, lw=2 if best else 0.7,
                            alpha=1 if best else 0.5, color=COLORS.get(fam),
                            label=an if best or "@" not in an else None)
            ax.set_xscale("log")
            ax.set_title(v, fontsize=9)
            ax.set_xlabel("kbps (log)")
            ax.set_ylabel(METRIC_LABEL[m])
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(videos):]:
            ax.axis("off")
        fig.suptitle("thick: best coded size (convex hull over sizes); thin dashed: one size each", fontsize=9)
        fig.tight_layout()
        p = out / f"rd_{m}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p.name)
    return made


def closest(rs: list[Result], kbps: float) -> Result | None:
    return min(rs, key=lambda r: abs(math.log(r.kbps / kbps))) if rs else None


def matched_picks(results: list[Result], video: str, kbps: float) -> list[Result]:
    """Per anchor family, the stream on its LPIPS best-size curve closest in rate to ``kbps``."""
    rs = [r for r in results if r.video == video]
    picks = []
    for fam in families(rs):
        hull = best_size([r for r in rs if r.family == fam], "lpips", False) or \
            [r for r in rs if r.family == fam]
        picks.append(closest(hull, kbps))
    return [p for p in picks if p is not None]


def plot_detail(results: list[Result], video: str, out: Path, log) -> list[str]:
    """Per-frame LPIPS / DISTS / PSNR of one clip (imf at its middle quality, each anchor at
    the best-size stream closest in rate: the sawtooth at a matched rate) and an image grid of
    its middle frame, one row per imf quality."""
    plt = _plt()
    made = []
    rs = [r for r in results if r.video == video]
    imf = sorted((r for r in rs if is_imf(r.codec)), key=lambda r: r.order)
    if imf:
        ref = imf[len(imf) // 2]
        picks = [ref] + matched_picks(results, video, ref.kbps)
    else:
        picks = matched_picks(results, video, float(np.median([r.kbps for r in rs])))
    shown = [m for m in ("lpips", "dists", "psnr") if any(np.isfinite(p.per_frame[m]).any() for p in picks)]
    if picks and shown:
        fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.8 * len(shown)), sharex=True, squeeze=False)
        for ax, m in zip(axes[:, 0], shown):
            for p in picks:
                y = p.per_frame[m]
                ok = np.isfinite(y)
                ax.plot(np.arange(p.frames)[ok], y[ok], lw=1, color=COLORS.get(p.family),
                        marker="o" if m == "dists" else None, ms=3,
                        label=f"{p.codec} {p.setting} ({p.kbps:.1f} kbps, pulse {summary(p.per_frame)['pulse']:.3f})")
            if imf:
                for k in picks[0].keyframe_index:
                    ax.axvline(k, color="grey", lw=0.6, ls=":")
            ax.set_ylabel(METRIC_LABEL[m], fontsize=8)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        axes[0, 0].set_title(f"{video}: per-frame quality at a matched rate (anchors: best coded size)"
                             + (" (dotted: imf keyframes)" if imf else ""), fontsize=9)
        axes[-1, 0].set_xlabel("frame")
        fig.tight_layout()
        p = out / f"perframe_{video}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p.name)
    src = next((r.mid_frame_src for r in rs if r.mid_frame_src is not None), None)
    if src is not None and imf:
        fams = families(rs)
        cols = 2 + len(fams)
        fig, axes = plt.subplots(len(imf), cols, figsize=(2.4 * cols, 2.6 * len(imf)), squeeze=False)
        for i, r in enumerate(imf):
            cells = [("source", src), (f"imf {r.setting}\n{r.kbps:.1f} kbps", r.mid_frame)]
            for a in matched_picks(results, video, r.kbps):
                far = " (nearest)" if abs(math.log(a.kbps / r.kbps)) > math.log(1.25) else ""
                cells.append((f"{a.codec} {a.setting}\n{a.kbps:.1f} kbps{far}", a.mid_frame))
            for ax, (title, img) in zip(axes[i], cells):
                if img is not None:
                    ax.imshow(img, interpolation="nearest")
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.suptitle(f"{video}, frame {imf[0].frames // 2}: source, imf, and each anchor's best-size "
                     "stream closest in rate", fontsize=9)
        fig.tight_layout()
        p = out / f"grid_{video}.jpg"          # photographs: JPEG q85 is ~0.4 MB where PNG was ~2 MB
        fig.savefig(p, dpi=100, pil_kwargs={"quality": 85})
        plt.close(fig)
        made.append(p.name)
    elif not imf:
        log(f"grid_{video}.jpg not made: no imf results for that clip")
    return made


# ---- meta -------------------------------------------------------------------------------------
def _lib_version(fragment: str, symbol: str, is_func: bool) -> str:
    """Version string of a codec library loaded into this process (PyAV's bundled copies)."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S+\.so[.\d]*)", f.read())))
        for lib in libs:
            if fragment in os.path.basename(lib).lower():
                d = ctypes.CDLL(lib)
                if is_func:
                    fn = getattr(d, symbol)
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
                return ctypes.c_char_p.in_dll(d, symbol).value.decode()
    except Exception:
        pass
    return "unknown"


def machine_info() -> dict:
    import torch
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available()}


def codec_versions(anchors: list[str], x264_info: str) -> dict:
    import av
    out = {"pyav": av.__version__,
           "ffmpeg_libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}}
    for name in anchors:
        a = ANCHORS[name]
        try:
            c = av.codec.Codec(a.encoder, "w")
            d = {"encoder": a.encoder, "long_name": c.long_name}
        except Exception as e:
            d = {"encoder": a.encoder, "error": str(e)}
        if name == "x264":
            m = re.search(r"core (\d+)( r\d+ \w+)?", x264_info or "")
            d["version"] = f"x264 core {m.group(1)}{m.group(2) or ''}" if m else "unknown"
            d["info_sei"] = x264_info
        elif name == "x265":
            d["version"] = "x265 " + _lib_version("libx265", "x265_version_str", False)
        elif name == "av1":
            d["version"] = "SVT-AV1 " + _lib_version("libsvtav1enc", "svt_av1_get_version", True)
            d["decoder"] = "libdav1d " + _lib_version("libdav1d", "dav1d_version", True)
        elif name == "vp9":
            d["version"] = "libvpx " + _lib_version("libvpx", "vpx_codec_version_str", True)
        out[name] = d
    return out


def summary_md(results: list[Result], complete: bool) -> str:
    """summary.md: mean BD-rate of imf against every anchor curve, and pulse / flicker / tLP of imf
    and of each anchor's best-size stream closest in rate, averaged over clips."""
    _, rows = bdrate_table(results)
    means = {(r[1], r[2]): (r[3], r[9]) for r in rows if r[0] == "mean"}
    videos = list(dict.fromkeys(r.video for r in results))
    anchors_ = list(dict.fromkeys(a for a, _ in means))
    lines = [f"# RD summary ({len(videos)} clip(s): {', '.join(videos)}"
             + ("" if complete else "; PARTIAL run, not all clips done") + ")", "",
             "BD-rate of imfcodec against each anchor curve, mean over clips with overlap "
             "(negative: imfcodec needs less rate); `@best` = the best coded size per rate "
             "(convex hull over sizes).", "",
             "| anchor | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for a in anchors_:
        cells = []
        for m in METRICS:
            v, note = means.get((a, m), ("nan", ""))
            k = re.search(r"over (\d+) of (\d+)", note)
            cells.append(f"{v} %" + (f" ({k.group(1)}/{k.group(2)})" if k else ""))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Temporal quality at matched rates: imfcodec at each quality level and, per clip, each "
              "anchor's LPIPS best-size stream closest in rate; means over clips.", "",
              "| imf quality | codec | kbps | LPIPS | DISTS | pulse | flicker | tLP |", "|---|---|---|---|---|---|---|---|"]
    quals = sorted({r.setting for r in results if is_imf(r.codec)}, key=lambda s: int(s[1:]))
    for q in quals:
        acc = {}
        for v in videos:
            ref = next((r for r in results if r.video == v and is_imf(r.codec) and r.setting == q), None)
            if ref is None:
                continue
            for p in [ref] + matched_picks(results, v, ref.kbps):
                s = summary(p.per_frame)
                acc.setdefault(p.family, []).append([p.kbps, s["lpips"], s["dists"], s["pulse"], s["flicker"],
                                                     s["tlp"]])
        for fam, vals in acc.items():
            m = np.nanmean(np.array(vals, dtype=float), axis=0)
            lines.append(f"| {q} | {fam}{'' if is_imf(fam) else '@best'} | {m[0]:.2f} | {m[1]:.4f} | "
                         f"{m[2]:.4f} | {m[3]:.4f} | {m[4]:.3f} | {m[5]:.4f} |")
    return "\n".join(lines) + "\n"
