"""LPIPS v0.1 with the genuine ImageNet backbones and linear heads.

Implements the metric of Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric" (CVPR 2018), as computed by the authors' reference package ``lpips``
(``lpips.LPIPS(net=..., version='0.1')``, ``normalize=True`` input convention):

1. inputs in [0, 1] are mapped to [-1, 1] (``2x - 1``);
2. ``ScalingLayer``: ``(x - shift) / scale`` with shift ``(-.030, -.088, -.188)`` and
   scale ``(.458, .448, .450)``;
3. backbone features at five ReLU taps (AlexNet relu1..relu5; VGG16 relu1_2, relu2_2,
   relu3_3, relu4_3, relu5_3; see :data:`imfcodec.metrics.backbones.LPIPS_TAPS`);
4. each feature map unit-normalized along channels (``x / (||x||_2 + 1e-10)``);
5. squared difference, bias-free 1x1 "lin" conv to one channel, spatial mean;
6. sum over the five taps.

Weights come from :mod:`imfcodec.assets` (run ``imfcodec fetch-weights`` once).

The reference values were reproduced in float32 on CPU. On CUDA, PyTorch's default TF32
convolutions (``torch.backends.cudnn.allow_tf32``) may perturb the last digits; turn it off
when reference-exact numbers matter.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from imfcodec import assets
from imfcodec.metrics import backbones

__all__ = ["LPIPS"]

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def _unit_normalize(x: Tensor) -> Tensor:
    """``lpips.normalize_tensor``: divide by the channel L2 norm (+1e-10)."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + _EPS)


class LPIPS(backbones.FixedMetric):
    """LPIPS v0.1 distance, ``net`` in ``{'alex', 'vgg'}``; parameters frozen, always eval.

    ``forward(a, b)`` takes RGB tensors ``(B, 3, H, W)`` in [0, 1] and returns the ``(B,)``
    distances. It is differentiable w.r.t. the inputs, so it can also serve as a loss.
    Raises :class:`imfcodec.assets.MissingWeightsError` when the weights are not fetched.
    """

    def __init__(self, net: str = "alex", state: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        if net not in backbones.LPIPS_TAPS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        if state is None:
            state = assets.load_alexnet_lpips() if net == "alex" else assets.load_vgg16_features()
        self.net = net
        taps = backbones.LPIPS_TAPS[net]
        self.taps = taps
        # the backbone up to and including the last tapped ReLU (drops the final max-pool)
        self.features = backbones.build_features(net, state)[: taps[-1] + 1]
        chans = [state[f"lin.{k}.weight"].shape[1] for k in range(len(taps))]
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in chans)
        for k, conv in enumerate(self.lin):
            conv.weight.data.copy_(state[f"lin.{k}.weight"])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def _taps(self, x: Tensor) -> list[Tensor]:
        return backbones.run_taps(self.features, self.taps, x)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """LPIPS v0.1 distance between ``a`` and ``b`` (both ``(B, 3, H, W)`` in [0, 1])."""
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        n = a.shape[0]
        x = torch.cat([a, b], dim=0).to(self.shift.dtype)
        x = ((2.0 * x - 1.0) - self.shift) / self.scale
        total = x.new_zeros(n)
        for feat, lin in zip(self._taps(x), self.lin):
            fa, fb = _unit_normalize(feat[:n]), _unit_normalize(feat[n:])
            total = total + lin((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total

    def extra_repr(self) -> str:
        return f"net={self.net!r}, version='0.1'"
