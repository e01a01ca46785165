"""Training validation of a model with the pristine and with the coded first frame as reference.

    python experiments/coded_reference/coded_reference.py                     # the shipped default
    python experiments/coded_reference/coded_reference.py runs/v2/best.pt --crf 38,45
    python experiments/coded_reference/coded_reference.py --unsharp 0.5:1 0.3:1     # + a sharpened coded reference

The codec's decoder only ever warps from a lossy keyframe; training validation
(imfcodec.train.trainer.validate: first 24 frames of each val clip, reference = frame 0)
uses the pristine frame unless ``val_ref_crf`` is set. This prints both side by side, the
coded reference being a VP9 key picture at each CRF given (the codec's keyframe encoder).
``--unsharp AMOUNT:SIGMA`` also scores the coded reference after an unsharp mask
(ref + AMOUNT * (ref - gaussian_blur(ref, SIGMA))), a decoder-side filter the codec could
apply to every keyframe before the model sees it.
"""
import argparse
import sys

import torch
import torch.nn.functional as F

from imfbench.source import data_dir
from imfcodec.metrics import get_lpips
from imfcodec.model import DEFAULT_MODEL, load_model
from imfcodec.train.data import build_cache, code_reference, frame_cache_root, val_frames
from imfcodec.train.trainer import validate


def gaussian_blur(x, sigma):
    """(3, H, W) -> the same, blurred with a separable Gaussian (reflect padding)."""
    r = int(round(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).repeat(3, 1, 1, 1)
    y = F.pad(x[None], (r, r, r, r), mode="reflect")
    return F.conv2d(F.conv2d(y, g.view(3, 1, 1, -1), groups=3), g.view(3, 1, -1, 1), groups=3)[0]


def unsharp_coder(amount, sigma):
    def coded(x, crf):
        y = code_reference(x, crf)
        return (y + amount * (y - gaussian_blur(y, sigma))).clamp(0, 1)
    return coded


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=[DEFAULT_MODEL],
                   help="shipped model names, model files or training checkpoints")
    p.add_argument("--val", default=None, help="folder of the clips (default: $IMFCODEC_DATA/val)")
    p.add_argument("--frames", type=int, default=24, help="frames per val clip (training's val_frames)")
    p.add_argument("--crf", default="38", help="VP9 CRFs of the coded reference, e.g. 38,45")
    p.add_argument("--unsharp", nargs="*", default=[], metavar="AMOUNT:SIGMA",
                   help="also score the coded reference sharpened by these unsharp masks")
    a = p.parse_args(argv)
    crfs = [0] + [int(c) for c in a.crf.split(",")]
    try:
        masks = [tuple(float(v) for v in u.split(":")) for u in a.unsharp]
        if not all(len(m) == 2 and m[0] >= 0 and m[1] > 0 for m in masks):
            raise ValueError
    except ValueError:
        p.error("--unsharp takes AMOUNT:SIGMA pairs, AMOUNT >= 0, SIGMA > 0, e.g. 0.5:1")
    lpips = get_lpips("alex", "cpu")
    clips = None
    for name in a.models:
        m = load_model(name, "cpu")
        gen = m.generator.float()
        if clips is None:
            size = m.config.image_size
            clips = val_frames(build_cache([data_dir("val", a.val, "--val")], size, frame_cache_root(size), log=lambda *x: None),
                               a.frames)
        for crf in crfs:
            with torch.no_grad():
                v = validate(gen, clips, lpips=lpips, ref_crf=crf)
            ref = "pristine" if crf == 0 else f"VP9 CRF {crf}"
            print(f"{name}: reference {ref}: LPIPS {v['val_lpips']:.4f} PSNR {v['val_psnr']:.2f} dB", flush=True)
            for amount, sigma in masks if crf else []:
                with torch.no_grad():
                    v = validate(gen, clips, lpips=lpips, ref_crf=crf, ref_coder=unsharp_coder(amount, sigma))
                print(f"{name}: reference {ref}, unsharp {amount:g}:{sigma:g}: LPIPS {v['val_lpips']:.4f} "
                      f"PSNR {v['val_psnr']:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
