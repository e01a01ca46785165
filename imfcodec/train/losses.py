"""Training losses (PAPER.md, "Training"):

    Loss_G = w_L1 * L1 + w_P * VGG perceptual + w_G * hinge GAN (generator side)
             + lambda * estimated token bits per frame
    Loss_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(x̂))]   (two-scale patch discriminator)

The perceptual term is the L1 distance between VGG16 activations (relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3) of the frame and 3 successive /2 downsamplings. The paper's
pretrained VGG is usually VGG19; VGG16 stands in here because genuine ImageNet VGG16
weights are what this machine can obtain (see imfcodec.assets).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PerceptualLoss(nn.Module):
    """Multi-scale VGG16 feature L1 (frozen, genuine ImageNet weights)."""

    def __init__(self, size: int = 256, scales: int = 4):
        super().__init__()
        from ..metrics.vgg import VGGFeatures
        self.vgg = VGGFeatures()
        self.size, self.scales = size, scales

    def forward(self, x_hat, x):
        if x.shape[-1] != self.size:
            x_hat = F.interpolate(x_hat, size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        loss = x.new_zeros(())
        for s in range(self.scales):
            if s:
                x_hat, x = F.avg_pool2d(x_hat, 2), F.avg_pool2d(x, 2)
            with torch.no_grad():
                target = self.vgg(x)
            for a, b in zip(self.vgg(x_hat), target):
                loss = loss + (a - b).abs().mean()
        return loss


class LPIPSLoss(nn.Module):
    """Mean LPIPS v0.1 (AlexNet, genuine weights) between the frames, differentiable in x_hat."""

    def __init__(self):
        super().__init__()
        from ..metrics.lpips import LPIPS
        self.lpips = LPIPS("alex")

    def forward(self, x_hat, x):
        return self.lpips(x_hat, x).mean()


def hinge_d_loss(real_logits, fake_logits):
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))


def hinge_g_loss(fake_logits):
    return sum(-f.mean() for f in fake_logits)
