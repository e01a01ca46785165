"""The ImageNet backbones LPIPS and the VGG loss tap: torchvision's ``alexnet().features`` /
``vgg16().features`` layouts, which of their layers are tapped, and running the taps.

Only layouts live here; the weights that fill them are fetched and checked by
:mod:`imfcodec.assets`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn


def features_template(net: str) -> torch.nn.Sequential:
    """torchvision's ``alexnet().features`` / ``vgg16().features`` built on the meta device.

    Building on ``meta`` allocates nothing, so the full classifiers cost no time or memory.
    """
    import torchvision

    with torch.device("meta"):
        if net == "alex":
            return torchvision.models.alexnet(weights=None).features
        if net == "vgg":
            return torchvision.models.vgg16(weights=None).features
    raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")


def run_taps(features, taps, x):
    """Run ``x`` through the ``features`` stack; return the activations after the layers
    whose indices are in ``taps``, shallowest first (LPIPS and the VGG loss share this)."""
    out = []
    tapset = set(taps)
    for i, layer in enumerate(features):
        x = layer(x)
        if i in tapset:
            out.append(x)
    return out


def build_features(net: str, state: Mapping[str, Tensor] | None = None) -> torch.nn.Sequential:
    """torchvision's ``alexnet().features`` / ``vgg16().features`` on CPU, optionally loaded.

    ``state`` is a dict as returned by :func:`imfcodec.assets.load_alexnet_lpips` /
    :func:`imfcodec.assets.load_vgg16_features`;
    its ``features.*`` entries are loaded strictly (the ``lin.*`` entries are ignored).
    """
    feats = features_template(net).to_empty(device="cpu")
    if state is not None:
        sub = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        feats.load_state_dict(sub, strict=True)
    return feats


def conv_indices(feats: torch.nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(feats) if isinstance(m, torch.nn.Conv2d)]


#: Indices in torchvision's ``features`` of the ReLUs whose outputs LPIPS v0.1 taps
#: (reference ``lpips`` package, ``pretrained_networks.alexnet`` / ``vgg16`` slices).
LPIPS_TAPS: dict[str, tuple[int, ...]] = {
    "alex": (1, 4, 7, 9, 11),  # relu1..relu5
    "vgg": (3, 8, 15, 22, 29),  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
}


def tap_channels(feats: torch.nn.Sequential, net: str) -> list[int]:
    chans = []
    for tap in LPIPS_TAPS[net]:
        conv = [m for m in list(feats)[:tap] if isinstance(m, torch.nn.Conv2d)][-1]
        chans.append(conv.out_channels)
    return chans


class FixedMetric(nn.Module):
    """Base of the metric networks (LPIPS, DISTS): frozen weights, always in eval mode
    (a training loop's ``model.train()`` cannot switch their layers to training)."""

    def freeze(self):
        """Call at the end of ``__init__``."""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        """A fixed metric: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)
