"""Would a buffer of past keyframes save refreshes? A probe of the multi-reference idea
(ANCHORS.md): where the refresh rule asks for a keyframe, the encoder first tries the last
``nref`` keyframes' references and switches to the best one whose reconstruction is within
``margin`` x the level's drop of that keyframe's own level (as the rule measures a keyframe).
Encoder-side only (no format carries a switch yet): the closed-loop reconstructions are
scored and the rate is the stream's bytes plus 3 per switch. Training clips only.

    python experiments/multi_ref_probe/multi_ref_probe.py imf-cpu-base eamm_fear.mp4,liveportrait_d10.mp4 \\
        '[{"quality": 4, "nref": 1}, {"quality": 4, "nref": 8}]' 150

Result (experiments/multi_ref_probe/results/multi_ref.txt): at q4 and q6 an older keyframe almost never
passes (0.2 switches a clip against 9-16 keyframes), so the buffer saves under 1 % of the rate.
"""
import json
import sys

import numpy as np
import torch

from imfbench.source import sweep_clips, sweep_parser

from imfcodec.format import container
from imfcodec.codec.encoder import Encoder, _capped_psnr, _check_symbols
from imfcodec.metrics import get_lpips, psnr
from imfcodec.model import load_model

SWITCH_BYTES = 3      # what a switch would cost in a packet of its own (type, slot, length)


class MultiRefEncoder(Encoder):
    def __init__(self, *a, nref=1, margin=0.5, **k):
        super().__init__(*a, **k)
        self.nref, self.margin = nref, margin
        self.refs: list[list] = []          # [reference, its keyframe's level], most recently used last
        self.switches = 0
        self.recons: list[torch.Tensor] = []

    def push(self, frame, force_keyframe=False):
        out = super().push(frame, force_keyframe)
        self.recons.append(self.recon.clone())
        return out

    def _keyframe(self, x, intra, base=None):
        if not intra:                        # the refresh rule asks: try the buffer first
            q = _check_symbols(self.gen.quantize(self.gen.encode_token(x), self.mult)[0])
            best = None
            for j, (ref, level) in enumerate(self.refs):
                if ref is self.ref:
                    continue
                y = self.m.decode(q[None], self.mult, ref, base)
                p = _capped_psnr(y, x)
                if p >= level - self.margin * self.refresh_drop and (best is None or p - level > best[0]):
                    best = (p - level, j, y, p)
            if best is not None:
                _, j, y, p = best
                self.ref, self.base_psnr = self.refs[j]
                self.refs.append(self.refs.pop(j))
                self.low_run, self.since_key = 0, 0
                self.switches += 1
                return self._predicted(q, y, p)
        out = super()._keyframe(x, intra, base)
        self.refs = (self.refs + [[self.ref, self.base_psnr]])[-self.nref:]
        return out


@torch.no_grad()
def run(m, src, fps, cfg, lp):
    cfg = dict(cfg)
    nref, margin, q = cfg.pop("nref", 1), cfg.pop("margin", 0.5), cfg.pop("quality", 4)
    enc = MultiRefEncoder(m, src.shape[2], src.shape[1], fps, q, nref=nref, margin=margin, **cfg)
    packets = [p for f in src for p in enc.push(f)] + enc.flush()
    data, _ = container.assemble(enc.header(enc.index), packets)
    x = torch.from_numpy(src).permute(0, 3, 1, 2).float() / 255
    y = (torch.cat(enc.recons).clamp(0, 1) * 255).round() / 255     # as the decoder's uint8
    lpips = torch.cat([lp(y[i:i + 16], x[i:i + 16]) for i in range(0, len(x), 16)]).flatten()
    return (container.kbps(len(data) + SWITCH_BYTES * enc.switches, len(x), fps), lpips.mean().item(),
            psnr(y, x).mean().item(), lpips.diff().abs().mean().item(), enc.stats.keyframes, enc.switches)


def main(argv=None) -> int:
    p = sweep_parser(__doc__, 'JSON list of Encoder options plus "nref" and "margin"')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    m = load_model(args.model, "cpu")
    lp = get_lpips("alex")
    srcs = sweep_clips(args, m.config.image_size)
    for cfg in json.loads(args.configs):
        r = np.array([run(m, s, fps, cfg, lp) for s, fps in srcs])
        print(json.dumps(cfg), "kbps=%.2f lpips=%.4f psnr=%.2f pulse=%.4f kf=%.1f switches=%.1f" % tuple(r.mean(0)),
              "| per clip kbps/lpips", " ".join(f"{a:.1f}/{b:.3f}" for a, b in r[:, :2]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
