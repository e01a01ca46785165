"""Small named building blocks (StyleGAN2 / LIA / IMF supplementary Figure 1)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (StyleGAN2)."""

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1.0 / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x):
        b = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x, self.weight * self.scale, b)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activation else out


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class ConvAct(nn.Sequential):
    """EqualConv2d + leaky ReLU (StyleGAN2 ConvLayer); ``down`` halves the size."""

    def __init__(self, in_ch, out_ch, kernel=3, down=False):
        layers = [EqualConv2d(in_ch, out_ch, kernel, stride=2 if down else 1, padding=kernel // 2)]
        layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class ResBlockDown(nn.Module):
    """E_T ResBlock: two convs, /2, with a strided 1x1 skip; output scaled by 1/sqrt(2)."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv1 = ConvAct(in_ch, in_ch, 3)
        self.conv2 = ConvAct(in_ch, out_ch, 3, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, stride=2, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def make_norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    return nn.Identity()


class FeatResBlock(nn.Module):
    """(norm-ReLU-conv3x3) twice with a residual connection, then ReLU (IMF supp.)."""

    def __init__(self, ch, norm="batch"):
        super().__init__()
        self.body = nn.Sequential(
            make_norm(norm, ch), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1),
            make_norm(norm, ch), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x):
        return F.relu(x + self.body(x))


class DownConvResBlock(nn.Module):
    """conv3x3+norm+ReLU+AvgPool(/2), conv3x3, then ``n_res`` FeatResBlocks."""

    def __init__(self, in_ch, out_ch, n_res=2, norm="batch"):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), make_norm(norm, out_ch),
                                  nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.res = nn.Sequential(*[FeatResBlock(out_ch, norm) for _ in range(n_res)])

    def forward(self, x):
        return self.res(self.down(x))


class UpConvBlock(nn.Module):
    """Upsample x2 (nearest) + conv3x3 + norm + ReLU (+ ``n_res`` FeatResBlocks)."""

    def __init__(self, in_ch, out_ch, n_res=0, norm="batch"):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), make_norm(norm, out_ch), nn.ReLU())
        self.res = nn.Sequential(*[FeatResBlock(out_ch, norm) for _ in range(n_res)])

    def forward(self, x):
        return self.res(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 weight modulation / demodulation; the style comes from the token."""

    def __init__(self, in_ch, out_ch, kernel, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x, style):
        b, c, h, w = x.shape                                       # (B, Cin, H, W)
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s                      # (B, Cout, Cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            h, w = 2 * h, 2 * w
        weight = weight.view(b * self.out_ch, c, self.kernel, self.kernel)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.kernel // 2, groups=b)
        return out.view(b, self.out_ch, h, w)


class StyledConv(nn.Module):
    """ModulatedConv2d + bias + leaky ReLU (no noise injection: decoding is deterministic)."""

    def __init__(self, in_ch, out_ch, kernel, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x, style):
        return F.leaky_relu(self.conv(x, style) + self.bias, 0.2) * math.sqrt(2)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embedding, (h*w, dim)."""
    assert dim % 4 == 0, "positional embedding width must be a multiple of 4"
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float32) / q))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    oy = ys.reshape(-1, 1) * omega * (64.0 / max(h, w))
    ox = xs.reshape(-1, 1) * omega * (64.0 / max(h, w))
    return torch.cat([oy.sin(), oy.cos(), ox.sin(), ox.cos()], dim=1)


class TransformerBlock(nn.Module):
    """Pre-LN multi-head self-attention + GELU FFN."""

    def __init__(self, dim, heads, ffn_mult=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.heads = heads

    def forward(self, x):                                           # (B, N, D)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)                 # (B, heads, N, D/heads)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.ffn(self.norm2(x))
