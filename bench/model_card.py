#!/usr/bin/env python
"""Write every measured table of the docs from bench/results.

    python bench/model_card.py            # README.md tables, docs/benchmarks.md, docs/MODEL_CARD.md tables
    python bench/model_card.py --check    # exit 1 if any of them differs from what bench/results gives

No number in those tables is typed by hand: re-run a bench, then this. README.md and
docs/MODEL_CARD.md keep their prose; only the text between `<!-- table:NAME -->` and
`<!-- /table -->` is rewritten. docs/benchmarks.md is written whole.

Sources (each written by a bench script; bench/conditions.md says how):
    results/rd_base/   bench/rd_curve.py, the default model against the anchors (rd.csv, hulls.csv,
                       bdrate.csv, streams.csv, summary_q1-q6.md)
    results/rd_anchor/ bench/rd_curve.py --codecs imf --qualities 6,7,8: the levels the keyframe
                       anchor changed, coded again; their imf rows replace rd_base's, and the
                       q1-q8 BD-rates are computed again from the merged rows (imfbench.report)
    results/rd_anchor_off/  the same levels (and q4) with --imf-anchor 0: the ablation
    results/rd/        bench/rd_curve.py, the token-only imf-cpu with the VP9 keyframe chain
    results/aspect/    bench/aspect.py (summary.md, speed.json)
    results/speed*.json  bench/speed.py
Only the standard library is used, so the test suite can run it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

ANCHORS = {"x264": "x264", "x265": "x265", "av1": "SVT-AV1", "vp9": "VP9 real-time"}
HEADLINE_QUALITIES = (1, 4, 8)
CLIPS_NOTE = "mean over the clips"


# ---- reading ----------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mean(values) -> float:
    values = [float(v) for v in values]
    return math.fsum(values) / len(values)


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(v: float) -> str:
    return f"{v:+.1f} %".replace("+", "+" if v > 0 else "")


class RD:
    """One bench/rd_curve.py output folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rd = read_csv(folder / "rd.csv")
        self.hulls = read_csv(folder / "hulls.csv")
        self.bd = read_csv(folder / "bdrate.csv")
        self.streams = read_csv(folder / "streams.csv") if (folder / "streams.csv").exists() else []
        self.clips = list(dict.fromkeys(r["video"] for r in self.rd))
        self.by_key = {(r["video"], r["codec"], r["setting"]): r for r in self.rd}
        self.overlay: Path | None = None      # the run whose imf rows were put in (with_imf)
        self.overlay_levels: list[str] = []

    def imf(self, q: int) -> list[dict]:
        return [r for r in self.rd if r["codec"] == "imf" and r["setting"] == f"q{q}"]

    def qualities(self) -> list[int]:
        return sorted({int(r["setting"][1:]) for r in self.rd if r["codec"] == "imf"})

    def keyframes(self, q: int) -> float:
        return mean(s["keyframes"] for s in self.streams if s["codec"] == "imf" and s["setting"] == f"q{q}")

    def matched(self, video: str, family: str, kbps: float) -> dict:
        """The stream on the family's LPIPS best-size curve closest in log-rate to kbps
        (imfbench.report.matched_picks)."""
        hull = [h for h in self.hulls if h["video"] == video and h["anchor"] == family and h["metric"] == "lpips"]
        pick = min(hull, key=lambda h: abs(math.log(float(h["kbps"]) / kbps)))
        return self.by_key[(video, pick["codec"], pick["setting"])]

    def with_imf(self, folder: Path) -> "RD":
        """These results with the imf rows of another run (same clips and test source) in place
        of theirs, level by level, and the BD-rates computed again from the merged rows."""
        new = read_csv(folder / "rd.csv")
        levels = {(r["video"], r["setting"]) for r in new if r["codec"] == "imf"}
        self.overlay, self.overlay_levels = folder, sorted({s for _, s in levels})

        def merged(mine, theirs):
            return ([r for r in mine if not (r["codec"] == "imf" and (r["video"], r["setting"]) in levels)]
                    + [r for r in theirs if r["codec"] == "imf"])
        self.rd = merged(self.rd, new)
        self.streams = merged(self.streams, read_csv(folder / "streams.csv"))
        self.by_key = {(r["video"], r["codec"], r["setting"]): r for r in self.rd}
        self.bd = bd_rows(self.rd)
        return self

    def bd_mean(self, anchor: str, metric: str) -> tuple[float, str]:
        row = next(r for r in self.bd if r["video"] == "mean" and r["anchor"] == anchor and r["metric"] == metric)
        n = re.search(r"over (\d+) of (\d+)", row["note"])
        return float(row["bd_rate_pct"]), f"{n[1]}/{n[2]}"


def bd_rows(rd: list[dict]) -> list[dict]:
    """bdrate.csv's rows computed from rd.csv's rows (each stream's per-frame means), as
    bench/rd_curve.py computes them (imfbench.report.bdrate_table: the same values from the
    same rows); needs the bench library, which `make setup` installs."""
    from fractions import Fraction

    import numpy as np
    from imfbench.common import Result
    from imfbench.report import bdrate_table
    metrics = ("psnr", "ms_ssim", "lpips", "dists")
    results = [Result(r["video"], r["codec"], r["setting"], 0, 1, Fraction(25), 0, 0, float(r["kbps"]), 0, 0, 0,
                      size=int(r["size"]), per_frame={m: np.array([float(r[m])]) for m in metrics}) for r in rd]
    cols, rows = bdrate_table(results)
    return [dict(zip(cols, (str(c) for c in row))) for row in rows]


def q6_bd(rd: RD, path: Path) -> dict:
    """The q1-q6 BD-rates (anchor -> metric -> value): from summary_q1-q6.md, or computed again
    from the rows when another run's imf rows were put in (RD.with_imf)."""
    if rd.overlay is None:
        return summary_bd(path)
    out: dict = {}
    for x in bd_rows([r for r in rd.rd if r["codec"] != "imf" or int(r["setting"][1:]) <= 6]):
        if x["video"] == "mean":
            out.setdefault(x["anchor"], {})[x["metric"]] = float(x["bd_rate_pct"])
    return out


def summary_bd(path: Path) -> dict:
    """anchor -> metric -> 'x %' cell, from the BD-rate table of an rd_curve summary.md."""
    lines = path.read_text().splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("| anchor |"))
    metrics = [c.strip() for c in lines[head].strip("|").split("|")][1:]
    out = {}
    for l in lines[head + 2:]:
        if not l.startswith("|"):
            break
        cells = [c.strip() for c in l.strip("|").split("|")]
        out[cells[0]] = {m: float(c.split(" %")[0]) for m, c in zip(metrics, cells[1:])}
    return out


# ---- tables ------------------------------------------------------------------------------------
def headline_table(rd: RD) -> str:
    """q1 / q4 / q8 of imfcodec, and per clip each anchor's LPIPS best-size stream closest in
    rate; each cell: kbps / LPIPS / PSNR dB, means over the clips."""
    def cell(rs):
        return (f"{mean(r['kbps'] for r in rs):.1f} / {mean(r['lpips'] for r in rs):.3f} / "
                f"{mean(r['psnr'] for r in rs):.1f}")
    rows = []
    for q in HEADLINE_QUALITIES:
        imf = rd.imf(q)
        rows.append([f"q{q}", f"**{cell(imf)}**"] +
                    [cell([rd.matched(r["video"], fam, float(r["kbps"])) for r in imf]) for fam in ANCHORS])
    return md_table(["level", "imfcodec"] + list(ANCHORS.values()), rows)


def headline_bd(rd: RD, q6: dict) -> str:
    whole = ", ".join(f"{n} {pct(rd.bd_mean(a + '@best', 'lpips')[0])}" for a, n in ANCHORS.items())
    low = ", ".join(f"{n} {pct(q6[a + '@best']['lpips'])}" for a, n in ANCHORS.items())
    return (f"LPIPS BD-rate against each codec's best size, {CLIPS_NOTE} (negative: imfcodec needs "
            f"fewer bits): q1-q8: {whole}; q1-q6: {low}.")


def quality_table(rd: RD) -> str:
    rows = []
    for q in rd.qualities():
        rs = rd.imf(q)
        rows.append([q, f"{mean(r['kbps'] for r in rs):.2f}", f"{mean(r['psnr'] for r in rs):.2f}",
                     f"{mean(r['ms_ssim'] for r in rs):.4f}", f"{mean(r['lpips'] for r in rs):.4f}",
                     f"{mean(r['dists'] for r in rs):.4f}", f"{mean(r['pulse'] for r in rs):.4f}",
                     f"{rd.keyframes(q):.1f}" if rd.streams else "-", len(rs)])
    return md_table(["quality", "kbps", "PSNR dB", "MS-SSIM", "LPIPS-alex", "DISTS", "pulse",
                     "keyframes / clip", "clips"], rows)


def bd_table(rd: RD, q6: dict | None = None) -> str:
    """BD-rate of imfcodec against each anchor at 256x256 and at its best size."""
    rows = []
    for a, name in ANCHORS.items():
        for anchor, label in ((a, f"{name} 256x256"), (a + "@best", f"{name} best size")):
            cells = [label]
            for m in ("lpips", "dists", "psnr"):
                v, n = rd.bd_mean(anchor, m)
                cells.append(f"{pct(v)} ({n})")
            if q6 is not None:
                cells += [pct(q6[anchor][m]) for m in ("lpips", "dists", "psnr")]
            rows.append(cells)
    header = ["anchor", "LPIPS", "DISTS", "PSNR"]
    if q6 is not None:
        header = ["anchor", "LPIPS q1-q8", "DISTS q1-q8", "PSNR q1-q8", "LPIPS q1-q6", "DISTS q1-q6", "PSNR q1-q6"]
    return md_table(header, rows)


def matched_table(rd: RD) -> str:
    rows = []
    for q in rd.qualities():
        imf = rd.imf(q)
        groups = [("imfcodec", imf)] + [(n, [rd.matched(r["video"], a, float(r["kbps"])) for r in imf])
                                        for a, n in ANCHORS.items()]
        for name, rs in groups:
            rows.append([f"q{q}", name, f"{mean(r['kbps'] for r in rs):.2f}", f"{mean(r['lpips'] for r in rs):.4f}",
                         f"{mean(r['dists'] for r in rs):.4f}", f"{mean(r['psnr'] for r in rs):.2f}",
                         f"{mean(r['pulse'] for r in rs):.4f}", f"{mean(r['flicker'] for r in rs):.3f}"])
    return md_table(["imfcodec level", "codec", "kbps", "LPIPS", "DISTS", "PSNR dB", "pulse", "flicker"], rows)


def anchor_table(rd: RD, family: str) -> str:
    """One anchor at the 256x256 test size, per CRF, mean over the clips."""
    rs = [r for r in rd.rd if r["codec"] == family]
    crfs = sorted({int(r["setting"][3:]) for r in rs})
    rows = []
    for c in crfs:
        g = [r for r in rs if r["setting"] == f"crf{c}"]
        rows.append([c, f"{mean(r['kbps'] for r in g):.2f}", f"{mean(r['psnr'] for r in g):.2f}",
                     f"{mean(r['lpips'] for r in g):.4f}", f"{mean(r['dists'] for r in g):.4f}",
                     f"{mean(r['pulse'] for r in g):.4f}", len(g)])
    return md_table(["CRF", "kbps", "PSNR dB", "LPIPS", "DISTS", "pulse", "clips"], rows)


def speed_table(s: dict) -> str:
    g = s["gmacs"]
    rows = [["model", f"{s['model_id']}, {s['precision']}" + (f", base picture {s['base_picture']} px"
                                                                 if s.get("base_picture") else "")],
            ["generator parameters", f"{s['params_total_M']:.2f} M"],
            ["decode cost per frame (IMF_D + IMF_A + D_F)", f"{g['decode_frame']:.2f} GMAC"],
            ["token encoder E_T", f"{g['token_encoder']:.2f} GMAC"],
            ["reference preparation, once per keyframe", f"{g['prepare_reference']:.2f} GMAC"],
            ["decode, networks only", f"{s['decode_frame_ms_median']:.1f} ms a frame ({s['decode_fps_networks']:.1f} frames/s)"],
            ["decode through the API", f"{s['api_decode_fps']:.1f} frames/s"
             + (f" ({s['api_decode_fps_first_call']:.1f} on a process's first call)" if "api_decode_fps_first_call" in s else "")],
            ["encode through the API (closed loop)", f"{s['api_encode_fps']:.1f} frames/s"],
            [f"{s['keyframe_codec']} keyframe encode / decode", f"{s['keyframe_encode_ms']:.0f} / {s['keyframe_decode_ms']:.1f} ms"],
            ["peak memory (RSS)", f"{s['peak_rss_MB']:.0f} MB"],
            ["machine", f"{s['cpu']}, {s['cores']} cores, torch {s['torch']}, {s['torch_threads']} threads"]]
    return md_table(["what", "value"], rows)


def streams_table(runs: list[dict]) -> str:
    """bench/speed.py --streams: batched MultiDecoder against sequential Decoders."""
    rows = []
    for s in runs:
        for r in s["results"]:
            q = r["sequential"]
            rows.append([f"{s['gpu'] or s['cpu']}, {s['precision']}", r["streams"], r["total_fps"],
                         r["per_stream_fps"], q["total_fps"], f"{r['speedup_total_fps']:.2f}"])
    return md_table(["device, precision", "streams", "batched frames/s (total)", "per stream",
                     "sequential frames/s (total)", "batched / sequential"], rows)


def files_table(s: dict) -> str:
    rows = [[Path(f["file"]).stem, f["quality"], f["frames"], f"{f['kbps']:.2f}", f["decode_fps"]] for f in s["files"]]
    return md_table(["stream", "quality", "frames", "kbps", "decode frames/s"], rows)


def command_table(s: dict) -> str:
    rows = [[Path(f["file"]).stem, f["quality"], f["frames"], f"{f['kbps']:.2f}", f["decode_fps"], f["command_fps"],
             f"{f['first_frame_s']:.2f}", f["command_steady_fps"]] for f in s["files"]]
    return md_table(["stream", "quality", "frames", "kbps", "API frames/s", "command frames/s",
                     "first frame (s)", "command frames/s after it"], rows)


def aspect_speed_table(s: dict) -> str:
    rows = [[k, v["frames"], v["decode_fps"]] for k, v in s.items() if isinstance(v, dict)]
    return md_table(["frame size", "frames", "decode frames/s"], rows)


def embed(path: Path, drop_title: bool = True) -> str:
    """A summary.md a bench script wrote, its headings moved down to sit under ours."""
    lines = path.read_text().rstrip("\n").splitlines()
    if drop_title and lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("###" + l[1:] if l.startswith("## ") else l for l in lines).strip("\n")


# ---- documents ---------------------------------------------------------------------------------
def default_rd(results: Path) -> RD:
    """The default model's val results: rd_base, with the levels rd_anchor coded again."""
    base = RD(results / "rd_base")
    return base.with_imf(results / "rd_anchor") if (results / "rd_anchor" / "rd.csv").exists() else base


def anchor_ablation(results: Path) -> str:
    """The keyframe anchor on and off (rd_anchor, rd_anchor_off), per level, means over the clips."""
    on, off = RD(results / "rd_anchor"), RD(results / "rd_anchor_off")
    rows = []
    for q in off.qualities():
        for name, rd in (("off", off), ("on (default)", on)):
            rs = rd.imf(q)
            if not rs or (name != "off" and q not in on.qualities()):
                continue
            rows.append([f"q{q}", name, f"{mean(r['kbps'] for r in rs):.2f}", f"{mean(r['lpips'] for r in rs):.4f}",
                         f"{mean(r['dists'] for r in rs):.4f}", f"{mean(r['psnr'] for r in rs):.2f}",
                         f"{mean(r['pulse'] for r in rs):.4f}", f"{mean(r['tlp'] for r in rs):.4f}",
                         f"{max(float(r['pulse']) for r in rs):.4f}", len(rs)])
    return md_table(["level", "keyframe anchor", "kbps", "LPIPS", "DISTS", "PSNR dB", "pulse", "tLP",
                     "worst clip's pulse", "clips"], rows)


def overlay_note(rd: RD) -> str:
    if rd.overlay is None:
        return ""
    return (f"imfcodec's {', '.join(rd.overlay_levels)} rows are from `bench/results/{rd.overlay.name}/` (coded "
            "again with the keyframe anchor); everything else from `bench/results/rd_base/`; the q1-q8 "
            "BD-rates are computed from the merged rows.")


def tables(results: Path) -> dict[str, str]:
    """Every marked table of README.md and docs/MODEL_CARD.md, by name."""
    base = default_rd(results)
    q6 = q6_bd(base, results / "rd_base" / "summary_q1-q6.md")
    return {
        "headline": headline_table(base),
        "headline-bd": headline_bd(base, q6),
        "card-quality": quality_table(base),
        "card-bdrate": bd_table(base, q6),
        "card-speed": speed_table(json.loads((results / "speed_base.json").read_text())),
    }


def benchmarks_md(results: Path) -> str:
    base, old = default_rd(results), RD(results / "rd")
    q6 = q6_bd(base, results / "rd_base" / "summary_q1-q6.md")
    speed_base = json.loads((results / "speed_base.json").read_text())
    speed_cpu = json.loads((results / "speed.json").read_text())
    streams = [json.loads((results / n).read_text()) for n in ("speed_streams.json", "speed_streams_fp32.json")]
    files = json.loads((results / "speed_files_base.json").read_text())
    command = json.loads((results / "speed_command_base.json").read_text())
    aspect_speed = json.loads((results / "aspect" / "speed.json").read_text())
    parts = [
        "# Benchmarks",
        "<!-- Written by `python bench/model_card.py` from bench/results. Do not edit by hand. -->",
        "Test conditions: [bench/conditions.md](../bench/conditions.md). Negative BD-rates: imfcodec "
        "needs fewer bits for the same quality. Means are over the clips; every clip weighs the same. "
        "Each anchor is coded at 256x256, 128x128 and 64x64; its *best size* is the convex hull over "
        "those sizes, as an adaptive sender would choose.",
        "Reproduce (the clips come from `--videos`; the validation clips are not in the repository):",
        "```bash\npython bench/rd_curve.py --videos \"$IMFCODEC_DATA/val\" --out bench/results/rd_base\n"
        "python bench/rd_curve.py --videos \"$IMFCODEC_DATA/val\" --out bench/results/rd_anchor --codecs imf --qualities 6,7,8\n"
        "python bench/rd_curve.py --videos \"$IMFCODEC_DATA/val\" --out bench/results/rd_anchor_off --codecs imf "
        "--qualities 4,6,7,8 --imf-anchor 0\n"
        "python bench/model_card.py    # rewrites this file and the tables in README.md and docs/MODEL_CARD.md\n```",
        f"## The default model, imf-cpu-base ({len(base.clips)} validation clips, `bench/results/rd_base/`)",
        overlay_note(base),
        "### By quality level", quality_table(base),
        "### BD-rate against each anchor",
        "q1-q8 from `bdrate.csv` (clips with overlap in brackets); q1-q6 from `summary_q1-q6.md` "
        "(the same streams, the ladder cut at q6); both computed again from the merged rows where "
        "another run's imf rows are in (above).",
        bd_table(base, q6),
        "### At matched rates",
        "Per clip, each anchor's stream on its LPIPS best-size curve closest in rate to imfcodec's level.",
        matched_table(base),
        "### The keyframe anchor, on and off",
        "`bench/results/rd_anchor/` (the default) and `bench/results/rd_anchor_off/` (`--imf-anchor 0`), "
        "the same day, machine and clips (docs/notes/anchor.md). Only q6 to q8 have the anchor; q4 is the "
        "default level, for its tLP.",
        anchor_ablation(results),
        "### The anchors at 256x256",
    ]
    for a, name in ANCHORS.items():
        parts += [f"#### {name}", anchor_table(base, a)]
    parts += [
        f"## The token-only imf-cpu, VP9 keyframe chain ({len(old.clips)} clips, `bench/results/rd/`)",
        "The ladder's floor (q1 is token-only) and `--base-layer off`, measured with the VP9 keyframe chain.",
        quality_table(old), bd_table(old),
        "## Non-square video at 16:9 (`bench/results/aspect/`)",
        "Written by `bench/aspect.py --summarize` (40 frames, q2 / q4 / q6, the val clips widened to "
        "456x256 by repeating their edge columns; commands in `bench/results/aspect/README.md`). "
        "Face framing codes token-only.",
        embed(results / "aspect" / "summary.md"),
        "### Decode speed at 16:9", aspect_speed_table(aspect_speed),
        "## Speed (2-core CPU)",
        "`python bench/speed.py --model imf-cpu-base` (`speed_base.json`):", speed_table(speed_base),
        "`python bench/speed.py --model imf-cpu` (`speed.json`):", speed_table(speed_cpu),
        "Whole val streams (`speed_files_base.json`):", files_table(files),
        "The whole command, `imfcodec decode FILE OUT.mp4` in a fresh process, start-up included, beside "
        f"the API's warm decode (`speed_command_base.json`; {command['note']}):", command_table(command),
        "Many streams, one model (`python bench/speed.py --streams 1,4,16,64`; `speed_streams*.json`):",
        streams_table(streams),
    ]
    return "\n\n".join(parts) + "\n"


def fill(text: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(\n<!-- /table -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- table:{name} --> ... <!-- /table --> markers")
    return pattern.sub(lambda m: m[1] + table + m[2], text)


def render(repo: Path, results: Path | None = None) -> dict[Path, str]:
    """What each generated file should hold: {path: text}."""
    results = results or repo / "bench" / "results"
    t = tables(results)
    out = {repo / "docs" / "benchmarks.md": benchmarks_md(results)}
    for rel in ("README.md", "docs/MODEL_CARD.md"):
        text = (repo / rel).read_text()
        for name, table in t.items():
            if f"<!-- table:{name} -->" in text:
                text = fill(text, name, table)
        out[repo / rel] = text
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    ap.add_argument("--results", type=Path, default=None, help="bench results (default: REPO/bench/results)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    stale = []
    for path, text in render(args.repo, args.results).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    for p in stale:
        print(("out of date: " if args.check else "wrote ") + str(p))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
