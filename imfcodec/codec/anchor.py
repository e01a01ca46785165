"""The keyframe anchor (format versions 7 and 8, issue 32): between keyframes, the decoded
keyframe picture K is kept wherever the base layer says the picture has not changed since
the keyframe.

A generated frame G_t is softer than the keyframe it was made from: at the top of the
ladder the keyframe picture is coded at a low CRF, and every frame after it loses detail
that the keyframe had, then snaps back at the next refresh (the pulse). The base layer
already tells the decoder, for every frame, what the source looks like at low resolution.
Where frame t's base picture b_t equals the keyframe frame's base picture b_k, the source
has not moved there, so K is the better picture::

    d_t = mean over RGB of |b_t - b_k|            (base_size x base_size)
    w_t = clamp(1 - up(d_t) / tau, 0, 1)          (bilinear up to the coded size)
    x_t = G_t + w_t (K - G_t)

``tau`` (the stream's anchor threshold, in 1/1000 of full scale) is how large a change of
the base picture turns the keyframe fully off. Nothing is recursive: each frame is built
from the keyframe and its own base picture, so an error cannot pile up from frame to frame,
and no bit is added. Encoder (closed loop) and decoder compute the same thing from the same
decoded pictures. How it was chosen and what it is worth: docs/notes/anchor.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

@dataclass(frozen=True)
class Anchor:
    """A keyframe's picture (1, 3, S, S) and its frame's decoded base picture (1, 3, b, b)."""
    picture: torch.Tensor
    base: torch.Tensor


def weight(base: torch.Tensor, anchor_base: torch.Tensor, tau: float, size: int) -> torch.Tensor:
    """w (B, 1, size, size) in [0, 1]: 1 where base pictures (B, 3, b, b) equal the
    keyframe's, 0 where they differ by tau or more (mean over RGB, [0, 1] scale)."""
    d = (base.float() - anchor_base.float()).abs().mean(1, keepdim=True)
    d = F.interpolate(d, size=(size, size), mode="bilinear", align_corners=False)
    return (1.0 - d / tau).clamp_(0.0, 1.0)


def compose(x: torch.Tensor, base: torch.Tensor | None, anchor: Anchor | None, tau: float) -> torch.Tensor:
    """Generated frames x (B, 3, S, S) with the keyframe ``anchor`` kept where their base
    pictures ``base`` (B, 3, b, b) have not changed since it; x unchanged when ``tau`` is 0,
    or without a base picture or an anchor."""
    if tau <= 0 or base is None or anchor is None:
        return x
    w = weight(base, anchor.base, tau, x.shape[-1]).to(x.dtype)
    return x + w * (anchor.picture.to(x.dtype) - x)
