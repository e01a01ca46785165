"""Speed, size and cost of the codec's networks at their native resolution.

    python bench/speed.py [--model NAME|PATH | --config configs/model/imf-cpu.yaml] [--frames 100]

Reports parameters and multiply-accumulates (MACs, counted by torch's FlopCounterMode) per
module, and wall-clock times measured after a warm-up on this machine: per-frame decode
with the keyframe's reference cached (IMF_D + IMF_A + D_F), the token encoder (E_T),
reference preparation (E_F, IMF_D(t_r), K/V), the default codec's intra keyframe, and whole-file encode and
decode through the public API. Random weights cost the same as trained ones, so
``--config`` measures an architecture before any training. Writes a JSON next to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from imfcodec.config import PRECISIONS


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gmacs(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 2e9


def timeit(fn, n, warmup=5):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, statistics.mean(ts) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help="shipped model name or model file")
    g.add_argument("--config", default=None, help="model YAML: random weights")
    ap.add_argument("--frames", type=int, default=100, help="timed repetitions")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="network arithmetic (default auto: bf16 on a CPU with native bf16)")
    ap.add_argument("--out", default="bench/results/speed.json")
    args = ap.parse_args(argv)

    from imfcodec import codec, keyframe, video
    from imfcodec.config import load_model_config
    from imfcodec.model import load_model, random_model
    if args.config:
        m = random_model(load_model_config(args.config), device=args.device, precision=args.precision)
        source = f"random weights, {args.config}"
    else:
        m = load_model(args.model, args.device, args.precision)
        source = f"model {m.model_id} ({m.sha256[:16]})"
    gen, S = m.generator, m.config.image_size
    torch.manual_seed(0)
    x = torch.rand(1, 3, S, S, device=m.device)
    t = gen.encode_token(x)
    ref = gen.prepare_reference(x, t)

    params = {k: sum(p.numel() for p in getattr(gen, k).parameters())
              for k in ("token_encoder", "dense_encoder", "token_decoder", "motion_alignment", "frame_decoder")}
    gen.requires_grad_(False)
    cost = {"decode_frame": gmacs(lambda: gen.decode_frame(t, ref)),
            "token_encoder": gmacs(lambda: gen.encode_token(x)),
            "prepare_reference": gmacs(lambda: gen.prepare_reference(x, t))}
    n = args.frames
    with m.compute():                  # as the codec runs them (bf16 autocast or nothing)
        ref = gen.prepare_reference(x, t)
        dec_med, dec_mean = timeit(lambda: gen.decode_frame(t, ref), n)
        ref_med, _ = timeit(lambda: gen.prepare_reference(x, t), max(5, n // 10))
    tok_med, _ = timeit(lambda: gen.encode_token(x), n)
    rgb = video.to_uint8(x)[0]
    kc = codec.DEFAULT_KEYFRAME_CODEC
    crf = m.keyframe_crf(4, kc)
    kf_bytes = keyframe.KeyframeEncoder(kc, crf).encode(rgb)
    kfe, _ = timeit(lambda: keyframe.KeyframeEncoder(kc, crf).encode(rgb), 5, 1)     # intra picture
    kfd, _ = timeit(lambda: keyframe.KeyframeDecoder(kc).decode(kf_bytes), 10, 2)

    # whole pipeline through the public API on a synthetic moving clip at S x S
    yy, xx = np.mgrid[0:S, 0:S]
    frames = [(np.stack([(xx + 3 * i) % S, yy, (xx + yy + i) % S], -1) * (255 / S)).astype(np.uint8)
              for i in range(min(n, 50))]
    codec.encode_frames(frames[:3], 25, m, 4)                                        # warm-up
    data, st = codec.encode_frames(frames, 25, m, 4, refresh_drop=0.0)
    t0 = time.perf_counter()
    nout = sum(1 for _ in codec.decode_bytes(data, m)[1])
    dec_api = (time.perf_counter() - t0)

    res = {
        "source": source, "model_id": m.model_id, "image_size": S, "device": str(m.device),
        "precision": str(m.dtype).replace("torch.", ""),
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "params_M": {k: round(v / 1e6, 3) for k, v in params.items()},
        "params_total_M": round(sum(params.values()) / 1e6, 3),
        "gmacs": {k: round(v, 3) for k, v in cost.items()},
        "decode_frame_ms_median": round(dec_med, 2), "decode_frame_ms_mean": round(dec_mean, 2),
        "decode_fps_networks": round(1000 / dec_med, 1),
        "token_encoder_ms": round(tok_med, 2), "prepare_reference_ms": round(ref_med, 2),
        "keyframe_codec": kc, "keyframe_encode_ms": round(kfe, 1), "keyframe_decode_ms": round(kfd, 2),
        "api_encode_fps": round(st.frames / st.seconds, 1),
        "api_decode_fps": round(nout / dec_api, 1),
        "api_frames": len(frames),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
