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
        ax[2].plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", label="PSNR dB")
        ax[2].set_ylabel("PSNR dB")
        if val[0].get("val_lpips") is not None:
            a2 = ax[2].twinx()
            a2.plot([r["step"] for r in val], [r["val_lpips"] for r in val], "s-r", label="LPIPS")
            a2.set_ylabel("LPIPS-alex")
    ax[2].set_xlabel("step"), ax[2].set_title("validation (quality 4)")
    fig.tight_layout()
    out = Path(output) if output else (Path(run) if Path(run).is_dir() else Path(run).parent) / "log.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
