"""Training validation of a model with the pristine and with the coded first frame as reference.

    python bench/coded_reference.py                     # the shipped default
    python bench/coded_reference.py runs/v2/best.pt --crf 38,45

The codec's decoder only ever warps from a lossy keyframe; training validation
(imfcodec.train.trainer.validate: first 24 frames of each val clip, reference = frame 0)
uses the pristine frame unless ``val_ref_crf`` is set. This prints both side by side, the
coded reference being a VP9 key picture at each CRF given (the codec's keyframe encoder).
"""
import argparse
import sys

import torch

from imfcodec.metrics import get_lpips
from imfcodec.model import DEFAULT_MODEL, load_model
from imfcodec.train.data import build_cache, val_frames
from imfcodec.train.trainer import frame_cache_root, validate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=[DEFAULT_MODEL],
                   help="shipped model names, model files or training checkpoints")
    p.add_argument("--val", default="../shared/data/faces/val")
    p.add_argument("--frames", type=int, default=24, help="frames per val clip (training's val_frames)")
    p.add_argument("--crf", default="38", help="VP9 CRFs of the coded reference, e.g. 38,45")
    a = p.parse_args(argv)
    crfs = [0] + [int(c) for c in a.crf.split(",")]
    lpips = get_lpips("alex", "cpu")
    clips = None
    for name in a.models:
        m = load_model(name, "cpu")
        gen = m.generator.float()
        if clips is None:
            size = m.config.image_size
            clips = val_frames(build_cache([a.val], size, frame_cache_root(size), log=lambda *x: None),
                               a.frames)
        for crf in crfs:
            with torch.no_grad():
                v = validate(gen, clips, lpips=lpips, ref_crf=crf)
            ref = "pristine" if crf == 0 else f"VP9 CRF {crf}"
            print(f"{name}: reference {ref}: LPIPS {v['val_lpips']:.4f} PSNR {v['val_psnr']:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
