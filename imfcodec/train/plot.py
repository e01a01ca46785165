"""Plot a run's ``log.jsonl`` (training losses and validation metrics) to a PNG."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import IMFCodecError


def read_log(run) -> list[dict]:
    path = Path(run) / "log.jsonl" if Path(run).is_dir() else Path(run)
    if not path.exists():
        raise IMFCodecError(f"{path}: no training log")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue          # a line cut short by a killed run
    return rows


def plot_log(run, output=None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = read_log(run)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_psnr" in r]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("loss", "l1", "perceptual", "g_adv", "d_loss"):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            ax[0].plot(*zip(*pts), label=key, lw=0.8)
    ax[0].set_yscale("log"), ax[0].set_xlabel("step"), ax[0].legend(), ax[0].set_title("training losses")
    pts = [(r["step"], r["bits"]) for r in train if "bits" in r]
    if pts:
        ax[1].plot(*zip(*pts), lw=0.8)
    ax[1].set_xlabel("step"), ax[1].set_title("estimated token bits / frame (vs reference)")
    if val:
        # the raw weights' curve runs through the whole run (rows before ema_decay was on are
        # raw); the moving average, where kept, is drawn over it
        avg = [r for r in val if "raw_val_psnr" in r]
        ax[2].plot([r["step"] for r in val], [r.get("raw_val_psnr", r["val_psnr"]) for r in val],
                   "o-", label="PSNR dB")
        if avg:
            ax[2].plot([r["step"] for r in avg], [r["val_psnr"] for r in avg], "o--", label="PSNR, average")
        ax[2].set_ylabel("PSNR dB")
        if val[0].get("val_lpips") is not None:
            a2 = ax[2].twinx()
            a2.plot([r["step"] for r in val], [r.get("raw_val_lpips", r["val_lpips"]) for r in val],
                    "s-r", label="LPIPS")
            if avg:
                a2.plot([r["step"] for r in avg], [r["val_lpips"] for r in avg], "s--m", label="LPIPS, average")
            a2.set_ylabel("LPIPS-alex")
            a2.legend(loc="upper right")
        ax[2].legend(loc="upper left")
    ax[2].set_xlabel("step"), ax[2].set_title("validation (quality 4)")
    fig.tight_layout()
    out = Path(output) if output else (Path(run) if Path(run).is_dir() else Path(run).parent) / "log.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
