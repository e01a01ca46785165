"""Other refresh rules than the codec's, through the same sweep as tools/ladder_sweep.py:
the encoder (imfcodec.codec.encoder.Encoder) is replaced by one that refreshes by
  * ``area``: sum over the frames since the keyframe of (e_T - e_t) >= area, e in dB below
    the keyframe's own reconstruction (a refresh when the drop has lasted, not just happened);
    ``area_per_kb``: the same with the threshold scaled by the last keyframe's kilobytes
    (cheap keyframes sooner);
  * ``lp_tau``: LPIPS-alex of the prediction above the keyframe's own reconstruction's by
    tau (needs `imfcodec fetch-weights`; the codec itself must not depend on those weights);
  * ``g_drop``: the PSNR of the image gradients dB below the keyframe reconstruction's;
with the codec's min keyframe interval still applied. Without one of those keys a config
codes as the codec does. Measured, not adopted: experiments/refresh_rule_probe/results/refresh_rules.txt.

    python experiments/refresh_rule_probe/refresh_rule_probe.py imf-cpu-base eamm_fear.mp4,hmeme_nice.mp4 \\
        '[{"quality": 4, "area": 40, "min_keyframe_interval": 0.08}]' 150
"""
import sys

import torch
import torch.nn.functional as F

import imfbench.sweep
import imfcodec.codec.encoder as codec

RULES = ("area", "area_per_kb", "lp_tau", "g_drop")


def grad_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    def g(x):
        x = x.float()
        return torch.cat([(x[..., 1:, :] - x[..., :-1, :]).flatten(1), (x[..., :, 1:] - x[..., :, :-1]).flatten(1)], 1)
    return (10 * torch.log10(1 / F.mse_loss(g(a), g(b)).clamp_min(1e-10))).item()


class ProbeEncoder(codec.Encoder):
    def __init__(self, *a, **kw):
        self.rule = {k: kw.pop(k) for k in RULES if k in kw}
        super().__init__(*a, **kw)
        if len(self.rule) > 1:
            raise SystemExit(f"one rule per config, got {sorted(self.rule)}")
        self.drops, self.kf_bytes, self.kscore = [], 0, 0.0
        if "lp_tau" in self.rule:
            from imfcodec.metrics import get_lpips
            self.lpips = get_lpips("alex", self.m.device)

    def _score(self, y, x) -> float:
        """Higher is better: -LPIPS, or the gradient PSNR."""
        if "lp_tau" in self.rule:
            return -self.lpips(y.float(), x.float()).item()
        return grad_psnr(y, x)

    def _keyframe(self, x, intra, base=None):
        out = super()._keyframe(x, intra, base)
        self.drops, self.kf_bytes = [], len(out[-1].payload)
        if "lp_tau" in self.rule or "g_drop" in self.rule:
            q = torch.as_tensor(out[-1].ref_symbols, device=self.m.device)[None]
            self.kscore = self._score(self.m.decode(q, self.mult, self.ref, base), x)
        return out

    def _low(self, x, x_hat, p: float) -> bool:
        r = self.rule
        if "area" in r or "area_per_kb" in r:
            self.drops.append(max(0.0, self.base_psnr - p))
            area = sum(self.drops[-1] - d for d in self.drops)
            return area >= (r["area"] if "area" in r else r["area_per_kb"] * self.kf_bytes / 1000)
        return self.kscore - self._score(x_hat, x) > r.get("lp_tau", r.get("g_drop"))

    def _refresh(self, x, x_hat, p: float) -> bool:
        if not self.rule:
            return super()._refresh(x, x_hat, p)
        return self._low(x, x_hat, p) and self.since_key + 1 >= self.min_interval


if __name__ == "__main__":
    codec.Encoder = ProbeEncoder            # make_encoder looks the class up at call time
    sys.exit(imfbench.sweep.main(doc=__doc__))
