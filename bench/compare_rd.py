"""Per-clip BD-rate of one rd_curve.py run against another: did a new model or encoder help?

    git show HEAD:bench/results/rd/rd.csv > /tmp/old_rd.csv
    python bench/compare_rd.py /tmp/old_rd.csv bench/results/rd/rd.csv            # imf, LPIPS
    python bench/compare_rd.py OLD.csv NEW.csv --codec imf --metric psnr

Reads two rd.csv files (bench/rd_curve.py's output), takes one codec's curve per clip from
each and prints the Bjontegaard delta rate of NEW against OLD (rd_curve.py's bd_rate: PCHIP,
over the quality range both cover), the mean over clips and how many clips got better.
Negative is better: -10 means the new curve needs 10 % less rate for the same quality.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from imfbench.bdrate import bd_rate
from imfbench.metrics import HIGHER_IS_BETTER, METRICS


def compare(old: pd.DataFrame, new: pd.DataFrame, codec: str = "imf", metric: str = "lpips") -> pd.DataFrame:
    """One row per clip present in both: bd_rate_pct of new against old, points on each."""
    rows = []
    o, n = old[old.codec == codec], new[new.codec == codec]
    for video in sorted(set(o.video) & set(n.video)):
        a, b = o[o.video == video], n[n.video == video]
        d = bd_rate(a.kbps, a[metric], b.kbps, b[metric], HIGHER_IS_BETTER[metric])
        rows.append({"video": video, "bd_rate_pct": d["bd_rate"], "old_points": len(a),
                     "new_points": len(b), "note": d["note"]})
    return pd.DataFrame(rows, columns=["video", "bd_rate_pct", "old_points", "new_points", "note"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, help="the reference run's rd.csv")
    p.add_argument("new", type=Path, help="the run to judge, rd.csv")
    p.add_argument("--codec", default="imf")
    p.add_argument("--metric", default="lpips", choices=METRICS)
    args = p.parse_args(argv)
    try:
        old, new = pd.read_csv(args.old), pd.read_csv(args.new)
        need = {"video", "codec", "kbps", args.metric}
        if not (need <= set(old.columns) and need <= set(new.columns)):
            raise ValueError("not an rd_curve.py rd.csv (columns video, codec, kbps, "
                             f"{args.metric} needed)")
    except (OSError, ValueError, pd.errors.ParserError) as e:
        print(f"compare_rd.py: error: {e}", file=sys.stderr)
        return 2
    table = compare(old, new, args.codec, args.metric)
    if table.empty:
        print(f"compare_rd.py: error: no clip has {args.codec} rows in both files", file=sys.stderr)
        return 2
    print(f"{args.codec} {args.metric} BD-rate, {args.new} against {args.old}:")
    for r in table.itertuples():
        print(f"  {r.video:40s} {r.bd_rate_pct:+8.1f} %  ({r.old_points} / {r.new_points} points)"
              + (f"  {r.note}" if r.note else ""))
    ok = [x for x in table.bd_rate_pct if math.isfinite(x)]
    if ok:
        print(f"  mean {np.mean(ok):+.1f} % over {len(ok)} clips; better on {sum(x < 0 for x in ok)} of {len(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
