"""Image quality metrics: PSNR, MS-SSIM, LPIPS v0.1, and VGG16 features for perceptual losses.

All functions take RGB tensors ``(B, 3, H, W)`` with values in [0, 1] and return one value
per image, shape ``(B,)``.

* :func:`psnr`: ``10 log10(max_val^2 / MSE)``, MSE over all channels and pixels of an image.
* :func:`ms_ssim`: multi-scale SSIM (Wang, Simoncelli & Bovik, Asilomar 2003) via the
  ``pytorch_msssim`` package with its defaults (11x11 Gaussian window, sigma 1.5, 5 scales,
  weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, K = (0.01, 0.03)), ``data_range=1``.
* :class:`LPIPS` / :func:`get_lpips`: LPIPS v0.1 (see :mod:`imfcodec.metrics.lpips`).
* :class:`VGGFeatures`: frozen ImageNet VGG16 taps (see :mod:`imfcodec.metrics.vgg`).
* :class:`DISTS` / :func:`get_dists`: DISTS (see :mod:`imfcodec.metrics.dists`).
* :mod:`imfcodec.metrics.backbones`: the AlexNet / VGG16 feature layouts both tap.

LPIPS, DISTS and VGGFeatures load on first use, so ``psnr`` alone never imports the weight fetcher.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["DISTS", "get_dists", "LPIPS", "VGGFeatures", "VGG_LAYERS", "get_lpips", "ms_ssim", "psnr",
           "MS_SSIM_MIN_SIDE"]

#: MS-SSIM with 5 scales and an 11-pixel window needs the smaller image side to exceed
#: (11 - 1) * 2**4 = 160 pixels (the coarsest scale must still hold one full window).
MS_SSIM_MIN_SIDE = 161


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: Tensor, b: Tensor, max_val: float = 1.0) -> Tensor:
    """Per-image PSNR in dB, ``10 log10(max_val^2 / MSE)`` with the MSE over (C, H, W).

    Computed in float64 on detached inputs (an evaluation metric, not a loss). Identical
    images give ``inf``.
    """
    _check_pair(a, b)
    diff = a.detach().to(torch.float64) - b.detach().to(torch.float64)
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(torch.as_tensor(max_val, dtype=torch.float64) ** 2 / mse)


def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image MS-SSIM ``(B,)`` for [0, 1] images, via ``pytorch_msssim.ms_ssim``.

    Uses the standard 5-scale configuration (see the module docstring); it is defined only
    when both height and width are at least :data:`MS_SSIM_MIN_SIDE` (161) pixels. For
    smaller images this raises :class:`ValueError` rather than silently using fewer scales
    (whose values would not be comparable with published MS-SSIM numbers).
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check_pair(a, b)
    if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM (5 scales, 11x11 window) needs images of at least "
                         f"{MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels, got "
                         f"{a.shape[-2]}x{a.shape[-1]}")
    return _ms_ssim(a.float(), b.float(), data_range=1.0, size_average=False)


def __getattr__(name):
    # lazy: psnr and ms_ssim (what the codec and the benches' scoring need) do not load the
    # backbones or their weight fetcher (imfcodec.assets)
    if name == "LPIPS":
        from imfcodec.metrics.lpips import LPIPS
        return LPIPS
    if name == "DISTS":
        from imfcodec.metrics.dists import DISTS
        return DISTS
    if name in ("VGGFeatures", "VGG_LAYERS"):
        from imfcodec.metrics import vgg
        return getattr(vgg, name)
    raise AttributeError(f"module 'imfcodec.metrics' has no attribute {name!r}")


@functools.lru_cache(maxsize=None)
def _cached_lpips(net: str, device: str):
    from imfcodec.metrics.lpips import LPIPS
    return LPIPS(net).to(device)


def get_lpips(net: str = "alex", device: str | torch.device = "cpu"):
    """A shared, frozen :class:`LPIPS` instance per ``(net, device)`` (built once per process).

    The instance is shared: do not move it to another device or change its dtype in place.
    """
    return _cached_lpips(net, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _cached_dists(device: str):
    from imfcodec.metrics.dists import DISTS
    return DISTS().to(device)


def get_dists(device: str | torch.device = "cpu"):
    """A shared, frozen :class:`DISTS` instance per device (built once per process)."""
    return _cached_dists(str(torch.device(device)))
