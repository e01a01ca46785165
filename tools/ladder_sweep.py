"""Sweep encoder settings of one model on training clips: each config is a dict of
``imfcodec.api.encode_frames`` options (quality, base_layer, base_size, base_crf,
min_keyframe_interval, ...); prints the mean kbps (every byte of the file), LPIPS-alex,
PSNR, pulse (mean |dLPIPS| between consecutive frames), keyframes and with ``--dists`` DISTS
over the clips, then the per-clip LPIPS. What chose imf-cpu-base's ladder (tools/results/ladder_base/).

    python tools/ladder_sweep.py imf-cpu-base eamm_fear.mp4,hmeme_nice.mp4 \\
        '[{"quality": 4, "base_layer": "off"}, {"quality": 4, "base_size": 48, "base_crf": 56}]' 150

Clips are names under --data (default $IMFCODEC_DATA/train; tune on training clips, judge on
val). One core (torch threads 1), so two sweeps can run side by side. The loop is
imfbench.sweep's.
"""
import sys

from imfbench.sweep import main

if __name__ == "__main__":
    sys.exit(main(doc=__doc__))
