"""A sweep of encoder settings of one model on training clips: each config is a dict of
``imfcodec.api.encode_frames`` options; per config the mean kbps (every byte of the file),
LPIPS-alex, PSNR, pulse (mean |dLPIPS| between consecutive frames), keyframes and, with
``--dists``, DISTS over the clips, then the per-clip LPIPS.

tools/ladder_sweep.py runs it as it is; experiments/refresh_rule_probe runs it with another
encoder class in place of the codec's.
"""
from __future__ import annotations

import json

import numpy as np

from .source import sweep_clips, sweep_parser


def code_closed_loop(model, src: np.ndarray, fps, quality: int, **options) -> tuple[int, np.ndarray, int]:
    """Code ``src`` (N, S, S, 3) uint8 as ``imfcodec encode`` would, with the Encoder's
    keyword ``options`` (keyframe_codec, refresh_drop, keyframe_crf, ...): (file bytes, the
    closed-loop reconstructions uint8 (N, S, S, 3), which are what the decoder rebuilds,
    keyframes)."""
    import torch

    from imfcodec.codec.encoder import Encoder
    from imfcodec.format import container
    from imfcodec.media import video

    s = src.shape[1]
    enc = Encoder(model, s, s, fps, quality, **options)
    packets, recon = [], []
    with torch.no_grad():
        for f in src:
            packets += enc.push(f)
            recon.append(video.to_uint8(enc.recon)[0])
        packets += enc.flush()
    _, sizes = container.assemble(enc.header(enc.index), packets)
    return sizes.total, np.stack(recon), enc.stats.keyframes


def main(argv=None, doc: str = __doc__) -> int:
    import torch

    from imfcodec.api import decode_bytes, encode_frames
    from imfcodec.format.container import kbps
    from imfcodec.metrics import get_dists, get_lpips, psnr
    from imfcodec.model import load_model

    p = sweep_parser(doc, "JSON list of encode_frames option dicts")
    p.add_argument("--dists", action="store_true", help="also DISTS (VGG16: slower)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    m = load_model(args.model, "cpu")
    lp = get_lpips("alex")
    ds = get_dists() if args.dists else None
    srcs = sweep_clips(args, m.config.image_size)
    xs = [torch.from_numpy(s).permute(0, 3, 1, 2).float() / 255 for s, _ in srcs]
    for cfg in json.loads(args.configs):
        res = []
        for (src, fps), x in zip(srcs, xs):
            data, st = encode_frames(iter(src), fps, m, **cfg)
            y = torch.from_numpy(np.stack(list(decode_bytes(data, m)[1]))).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                lpips = torch.cat([lp(y[i:i + 16], x[i:i + 16]) for i in range(0, len(x), 16)]).flatten()
                dists = (torch.cat([ds(y[i:i + 16], x[i:i + 16]) for i in range(0, len(x), 16)]).mean().item()
                         if ds is not None else float("nan"))
            res.append((kbps(len(data), len(x), fps), lpips.mean().item(), psnr(y, x).mean().item(),
                        lpips.diff().abs().mean().item(), st.keyframes, dists))
        r = np.array(res)
        print(json.dumps(cfg), "kbps=%.2f lpips=%.4f psnr=%.2f pulse=%.4f kf=%.1f" % tuple(r.mean(0)[:5]),
              *(["dists=%.4f" % r[:, 5].mean()] if ds is not None else []),
              "| per clip lpips", " ".join(f"{v:.3f}" for v in r[:, 1]), flush=True)
    return 0
