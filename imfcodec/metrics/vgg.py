"""Frozen ImageNet VGG16 feature extractor for perceptual losses.

Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"
(ECCV 2016) style features: torchvision's ``vgg16().features`` with the genuine ImageNet
weights (:func:`imfcodec.assets.load_vgg16_features`), inputs in [0, 1] normalized with the
ImageNet mean/std that torchvision's VGG16 was trained with, activations returned after
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from imfcodec import assets
from imfcodec.metrics import backbones

__all__ = ["VGGFeatures", "VGG_LAYERS"]

#: tap name -> index of that ReLU in torchvision's ``vgg16().features``
VGG_LAYERS: dict[str, int] = {
    "relu1_2": 3,
    "relu2_2": 8,
    "relu3_3": 15,
    "relu4_3": 22,
    "relu5_3": 29,
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG16 activations at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (frozen, eval).

    ``max_layer`` stops early: an int ``1..5`` (number of taps) or a tap name such as
    ``'relu3_3'``; layers past it are not built. ``forward(x)`` takes ``(B, 3, H, W)`` RGB in
    [0, 1] and returns the list of tapped activations, shallowest first. Gradients flow to the
    input; the parameters are frozen. Raises :class:`imfcodec.assets.MissingWeightsError` when
    the weights are not fetched.
    """

    def __init__(self, max_layer: int | str | None = None,
                 state: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        names = list(VGG_LAYERS)
        if max_layer is None:
            count = len(names)
        elif isinstance(max_layer, str):
            if max_layer not in VGG_LAYERS:
                raise ValueError(f"max_layer must be one of {names}, got {max_layer!r}")
            count = names.index(max_layer) + 1
        elif isinstance(max_layer, int) and 1 <= max_layer <= len(names):
            count = max_layer
        else:
            raise ValueError(f"max_layer must be 1..{len(names)} or a name in {names}, "
                             f"got {max_layer!r}")
        self.layer_names = names[:count]
        self.taps = tuple(VGG_LAYERS[n] for n in self.layer_names)
        if state is None:
            state = assets.load_vgg16_features()
        self.features = backbones.build_features("vgg", state)[: self.taps[-1] + 1]
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "VGGFeatures":
        """A fixed feature extractor: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Activations at ``self.layer_names`` for ``x`` ``(B, 3, H, W)`` in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got {tuple(x.shape)}")
        return backbones.run_taps(self.features, self.taps, (x - self.mean) / self.std)
