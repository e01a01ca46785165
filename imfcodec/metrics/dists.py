"""DISTS: Deep Image Structure and Texture Similarity (Ding, Ma, Wang & Simoncelli, TPAMI 2020).

A re-implementation of the authors' PyTorch reference (``DISTS_pytorch/DISTS_pt.py`` of
github.com/dingkeyan93/DISTS, MIT): torchvision's VGG16 ``features`` with the genuine
ImageNet weights (the ones :mod:`imfcodec.metrics.vgg` uses, from
:func:`imfcodec.assets.load_vgg16_features`), each max-pool replaced by an "L2 pooling"
(a 3x3 Hann-window blur of the squared activations, stride 2, then a square root), inputs in
[0, 1] normalized with the ImageNet mean/std. For the input and the five stages (relu1_2 ..
relu5_3), per channel: a structure term from the global means and a texture term from the
global variances and covariance, weighted by the learned ``alpha`` / ``beta``:

    DISTS(x, y) = 1 - sum_k sum_c [a_kc (2 mx my + c1) / (mx^2 + my^2 + c1)
                                   + b_kc (2 sxy + c2) / (sx^2 + sy^2 + c2)]

with ``a``, ``b`` normalized to sum to 1 together and c1 = c2 = 1e-6. Lower is better; 0 for
identical images.

``alpha`` / ``beta`` (1475 values each) are vendored in ``data/dists_alpha_beta.pt``: the
``weights.pt`` of the ``dists-pytorch`` 0.1 wheel on PyPI (identical to the file in the
authors' repository), MIT licence in ``data/DISTS_LICENSE``, sha256 checked on load. The
reference package itself is not used: it downloads torchvision weights at run time.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imfcodec import assets
from imfcodec.metrics.backbones import FixedMetric, build_features, run_taps

__all__ = ["DISTS", "ALPHA_BETA_SHA256"]

ALPHA_BETA_FILE = Path(__file__).resolve().parent / "data" / "dists_alpha_beta.pt"
ALPHA_BETA_SHA256 = "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
_CHANNELS = (3, 64, 128, 256, 512, 512)
#: indices in torchvision's ``vgg16().features``: the ReLU closing each stage, and its max-pools
_STAGE_ENDS = (3, 8, 15, 22, 29)
_POOL_CHANNELS = {4: 64, 9: 128, 16: 256, 23: 512}
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class L2Pool(nn.Module):
    """sqrt(blur(x^2)) with a 3x3 Hann window (``np.hanning(5)[1:-1]``, outer product,
    normalized), stride 2, padding 1, per channel (the reference's ``L2pooling``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        g = g / g.sum()
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def load_alpha_beta(path: Path = ALPHA_BETA_FILE) -> tuple[Tensor, Tensor]:
    """The learned (alpha, beta), each ``(1, 1475, 1, 1)``, after checking the file's sha256."""
    data = Path(path).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != ALPHA_BETA_SHA256:
        raise ValueError(f"{path}: sha256 {got} is not the DISTS alpha/beta file "
                         f"({ALPHA_BETA_SHA256})")
    import io
    w = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return w["alpha"].float(), w["beta"].float()


class DISTS(FixedMetric):
    """DISTS between two batches of RGB images ``(B, 3, H, W)`` in [0, 1]; returns ``(B,)``.

    Frozen and in eval mode. Raises :class:`imfcodec.assets.MissingWeightsError` when the
    VGG16 weights are not fetched (``imfcodec fetch-weights``).
    """

    def __init__(self, state=None) -> None:
        super().__init__()
        if state is None:
            state = assets.load_vgg16_features()
        feats = build_features("vgg", state)
        layers = [L2Pool(_POOL_CHANNELS[i]) if i in _POOL_CHANNELS else feats[i]
                  for i in range(_STAGE_ENDS[-1] + 1)]
        self.features = nn.Sequential(*layers)
        alpha, beta = load_alpha_beta()
        self.register_buffer("alpha", alpha, persistent=False)
        self.register_buffer("beta", beta, persistent=False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def stats(self, x: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per stage (input + 5), the features and their per-channel means and variances."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got {tuple(x.shape)}")
        feats = [x] + run_taps(self.features, _STAGE_ENDS, (x - self.mean) / self.std)
        out = []
        for f in feats:
            m = f.mean([2, 3], keepdim=True)
            out.append((f, m, ((f - m) ** 2).mean([2, 3], keepdim=True)))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"expected two tensors of the same shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        return self.compare(self.stats(x), self.stats(y))

    def compare(self, sx, sy) -> Tensor:
        """DISTS from two outputs of :meth:`stats` (lets a caller reuse a reference's)."""
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, _CHANNELS, dim=1)
        beta = torch.split(self.beta / w_sum, _CHANNELS, dim=1)
        d1 = d2 = 0.0
        for k, ((fx, mx, vx), (fy, my, vy)) in enumerate(zip(sx, sy)):
            s1 = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            d1 = d1 + (alpha[k] * s1).sum(1, keepdim=True)
            cov = (fx * fy).mean([2, 3], keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            d2 = d2 + (beta[k] * s2).sum(1, keepdim=True)
        return (1 - (d1 + d2)).flatten()
