"""The Implicit Motion Function networks (Gao et al., CVPR 2024; PAPER.md).

    t   = E_T(x)                      token_encoder
    f_r = E_F(x_r)                    dense_encoder          (once per keyframe)
    m   = IMF_D(t)                    token_decoder
    f_c = IMF_A(m_c, m_r, f_r)        motion_alignment       (K/V of the reference cached)
    x̂_c = D_F(f_c)                   frame_decoder

Torch only: no file or byte handling here. Shapes in comments are (B, C, H, W) or
(B, N, D) for flattened tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..entropy import symbol_likelihood
from .layers import (ConvAct, DownConvResBlock, EqualLinear, FeatResBlock,
                     ResBlockDown, StyledConv, TransformerBlock, UpConvBlock, make_norm, sincos_2d)


class TokenEncoder(nn.Module):
    """E_T: frame -> latent token t of d_m floats (supp. Fig. 1, LIA-style)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.token_channels
        if cfg.token_stem == "conv":
            self.stem = ConvAct(3, ch[0], 3)
        else:  # cheap CPU stem: space-to-depth, then a conv at 1/4 resolution
            self.stem = nn.Sequential(nn.PixelUnshuffle(4), ConvAct(48, ch[0], 3))
        self.blocks = nn.Sequential(*[ResBlockDown(cin, cout) for cin, cout in zip((ch[0],) + ch[:-1], ch)])
        self.conv_out = ConvAct(ch[-1], ch[-1], 3)
        mlp = [EqualLinear(ch[-1] * 16, cfg.token_mlp_dim, activation=True)]
        mlp += [EqualLinear(cfg.token_mlp_dim, cfg.token_mlp_dim, activation=True)
                for _ in range(cfg.token_mlp_layers - 1)]
        mlp.append(EqualLinear(cfg.token_mlp_dim, cfg.token_dim))
        self.mlp = nn.Sequential(*mlp)

    def forward(self, x):                                 # (B, 3, S, S) in [0, 1]
        h = self.conv_out(self.blocks(self.stem(x * 2 - 1)))   # (B, C, 4, 4)
        return self.mlp(h.flatten(1))                     # (B, d_m)


class DenseFeatureEncoder(nn.Module):
    """E_F: reference frame -> features f^1..f^L, finest first."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c0 = cfg.dense_stem_channels
        if cfg.dense_stem == "conv7":
            self.stem = nn.Sequential(nn.Conv2d(3, c0, 7, padding=3), make_norm(cfg.norm, c0), nn.ReLU())
            size = cfg.image_size
        else:
            self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, c0, 3, padding=1),
                                      make_norm(cfg.norm, c0), nn.ReLU())
            size = cfg.image_size // 2
        self.blocks = nn.ModuleList()
        self.taps = []
        self.out_channels = []
        cin = c0
        for i, cout in enumerate(cfg.dense_channels):
            self.blocks.append(DownConvResBlock(cin, cout, cfg.dense_res_blocks, cfg.norm))
            size //= 2
            if size in cfg.feature_sizes:
                self.taps.append(i)
                self.out_channels.append(cout)
            cin = cout
        if len(self.taps) != len(cfg.feature_sizes):
            from ..config import ConfigError
            raise ConfigError(f"dense_channels do not reach every feature size {cfg.feature_sizes}")

    def forward(self, x):
        h = self.stem(x * 2 - 1)
        feats = []
        for i, blk in enumerate(self.blocks):
            h = blk(h)
            if i in self.taps:
                feats.append(h)
        return feats                                      # [(B, C_l, S_l, S_l)], finest first


class TokenDecoder(nn.Module):
    """IMF_D: token -> motion features m^1..m^L via style-modulated convolutions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        mapping = [EqualLinear(cfg.token_dim, cfg.style_dim, activation=True)]
        mapping += [EqualLinear(cfg.style_dim, cfg.style_dim, activation=True)
                    for _ in range(cfg.style_mlp_layers - 1)]
        self.mapping = nn.Sequential(*mapping)
        width = dict(zip(cfg.feature_sizes, cfg.motion_trunk_channels))
        out_ch = dict(zip(cfg.feature_sizes, cfg.motion_channels))
        c = cfg.motion_trunk_channels[-1]
        self.const = nn.Parameter(torch.randn(1, c, 4, 4))
        self.conv0 = StyledConv(c, c, 3, cfg.style_dim)
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.sides = nn.ModuleDict()
        # only scales that attend need motion features; 'borrow' and 'skip' scales get none
        self.sizes = [s for s, m in zip(cfg.feature_sizes, cfg.align_mode) if m == "attn"]
        out_ch = {s: out_ch[s] for s in self.sizes}
        size = 4
        while size < max(self.sizes, default=4):
            size *= 2
            cout = width.get(size, c)
            self.ups.append(StyledConv(c, cout, 3, cfg.style_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, 3, cfg.style_dim))
            if size in out_ch:
                self.sides[str(size)] = StyledConv(cout, out_ch[size], 1, cfg.style_dim)
            c = cout
        self.feature_sizes = cfg.feature_sizes

    def forward(self, t):                                 # (B, d_m)
        w = self.mapping(t)                               # (B, style_dim)
        h = self.conv0(self.const.expand(t.shape[0], -1, -1, -1), w)
        out = {}
        size = 4
        for up, conv in zip(self.ups, self.convs):
            size *= 2
            h = conv(up(h, w), w)
            if str(size) in self.sides:
                out[size] = self.sides[str(size)](h, w)
        return [out.get(s) for s in self.feature_sizes]   # [(B, Cm_l, S_l, S_l) or None], finest first


@dataclass
class ScaleCache:
    """Reference-side attention inputs for one scale, computed once per keyframe."""
    k: torch.Tensor | None     # (B, heads, N, D/heads)
    v: torch.Tensor | None
    f_r: torch.Tensor          # (B, C, S, S), used directly by 'skip' scales
    px: torch.Tensor | None = None   # 'borrow' scale with a pixel skip: the keyframe's pixel blocks (B, 1, N, P)

    def map(self, fn) -> "ScaleCache":
        """The same cache with ``fn`` applied to each tensor it holds (batch expand, slice):
        the one place that lists the fields."""
        return ScaleCache(*(None if t is None else fn(t) for t in (getattr(self, f.name) for f in fields(self))))

    @staticmethod
    def cat(caches: list["ScaleCache"]) -> "ScaleCache":
        """One cache of batch B from B caches of one scale, field by field."""
        return ScaleCache(*(None if getattr(caches[0], f.name) is None
                            else torch.cat([getattr(c, f.name) for c in caches]) for f in fields(ScaleCache)))


def _head_mean(t: torch.Tensor) -> torch.Tensor:
    """``t.mean(1)`` over attention heads, the same numbers faster for two heads (the shipped
    CPU models' lending scale): one add and an exact halving, where torch's reduction of a
    bf16 (B, 2, 1024, 1024) map went through float copies and took 19 ms for 8 frames, a
    sixth of their decode (issue 36). Frames and streams are bit-identical (tested)."""
    if t.shape[1] == 2:
        return (t[:, 0] + t[:, 1]) * 0.5
    return t.mean(1)


class AlignmentScale(nn.Module):
    """IMF_A at one scale: cross-attention Q = m_c, K = m_r, V = f_r, then transformer blocks.

    Q and K are LayerNorm-ed and linearly projected, and a learned positional embedding
    (initialised as 2-D sine-cosine) is added to both after projection, so that at
    initialisation each query prefers the same position in the reference (copy-the-
    reference prior). Output is projected back to f_r's channel count.
    """

    def __init__(self, size, motion_ch, feat_ch, dim, heads, blocks, ffn_mult):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(motion_ch)
        self.norm_k = nn.LayerNorm(motion_ch)
        self.q = nn.Linear(motion_ch, dim)
        self.k = nn.Linear(motion_ch, dim)
        self.v = nn.Linear(feat_ch, dim)
        self.pos = nn.Parameter(sincos_2d(size, size, dim) * 2.0)
        self.proj = nn.Linear(dim, dim)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, ffn_mult) for _ in range(blocks)])
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, feat_ch)

    def _heads(self, x):                                  # (B, N, D) -> (B, heads, N, D/heads)
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def prepare(self, m_r, f_r) -> ScaleCache:
        mr = m_r.flatten(2).transpose(1, 2)               # (B, N, Cm)
        fr = f_r.flatten(2).transpose(1, 2)               # (B, N, Cf)
        k = self.k(self.norm_k(mr)) + self.pos
        return ScaleCache(self._heads(k), self._heads(self.v(fr)), f_r)

    def forward(self, m_c, cache: ScaleCache, extra_v=None, px=None):
        """Aligned features (B, Cf, S, S). extra_v (B, 1, N, E): more values moved by the same
        attention (averaged over heads), for a finer 'borrow' scale; then also returns
        those, (B, N, E), and px (B, 1, N, P) moved the same way, (B, N, P) (or None)."""
        b, _, h, w = m_c.shape
        q = self._heads(self.q(self.norm_q(m_c.flatten(2).transpose(1, 2))) + self.pos)
        if extra_v is None:
            a = F.scaled_dot_product_attention(q, cache.k, cache.v)   # (B, heads, N, D/h)
        else:     # explicit softmax: torch's fused CPU kernels need equal q/v widths
            v = torch.cat([cache.v, extra_v.expand(-1, self.heads, -1, -1)], dim=-1)
            att = ((q * q.shape[-1] ** -0.5) @ cache.k.transpose(-1, -2)).softmax(-1)
            a = att @ v
            moved_px = None if px is None else _head_mean(att) @ px[:, 0]
            d = cache.v.shape[-1]
            a, extra = a[..., :d], _head_mean(a[..., d:])       # (B, heads, N, D/h), (B, N, E)
        x = self.proj(a.transpose(1, 2).reshape(b, h * w, -1))
        x = self.blocks(x)
        x = self.out(self.norm_out(x)).transpose(1, 2).reshape(b, -1, h, w)   # (B, Cf, S, S)
        return x if extra_v is None else (x, extra, moved_px)


class MotionAlignment(nn.Module):
    """IMF_A over all scales (finest first).

    'borrow' scales (the CPU design's 64x64 scale, where full attention would cost O(N^2)
    with N = 4096) are aligned with the attention map of the next coarser scale: each 2x2
    block of f_r is one value vector (space-to-depth), moved as that scale's attention
    moves its token, then put back (depth-to-space). No parameters of its own, and the
    reference reaches the decoder only through the motion-driven attention.
    'skip' scales pass f_r through unaligned (kept for models trained that way).
    With a pixel skip (``px_block``) the borrow scale also moves the keyframe's pixels, one block per
    token of the lending scale, and returns the reference so warped at full size (the
    frame decoder's :class:`RefBlend` input)."""

    def __init__(self, cfg: ModelConfig, feat_channels):
        super().__init__()
        self.modes = tuple(cfg.align_mode)
        # the pixel skip moves r x r blocks, one per token of the scale the borrow scale
        # (always the finest, ModelConfig) takes its attention from: r = image / that grid
        self.px_block = 2 * cfg.image_size // cfg.feature_sizes[0] if cfg.ref_pixel_channels else 0
        self.scales = nn.ModuleList()
        for i, size in enumerate(cfg.feature_sizes):
            if cfg.align_mode[i] == "attn":
                self.scales.append(AlignmentScale(size, cfg.motion_channels[i], feat_channels[i],
                                                  cfg.attn_dim[i], cfg.attn_heads[i],
                                                  cfg.transformer_blocks[i], cfg.ffn_mult))
            else:
                self.scales.append(nn.Identity())

    def prepare(self, m_r, f_r, x_r=None):
        """Per-scale reference caches; x_r (B, 3, S, S), the keyframe, for the pixel skip."""
        caches = []
        for s, mode, m, f in zip(self.scales, self.modes, m_r, f_r):
            if mode == "attn":
                caches.append(s.prepare(m, f))
            elif mode == "borrow":            # (B, 1, N/4, 4C): one "head" of block values
                v = F.pixel_unshuffle(f, 2).flatten(2).transpose(1, 2).unsqueeze(1)
                px = None
                if self.px_block and x_r is not None:   # (B, 1, N/4, 3 r^2): r x r pixel blocks
                    px = F.pixel_unshuffle(x_r.to(f.dtype), self.px_block)
                    px = px.flatten(2).transpose(1, 2).unsqueeze(1)
                caches.append(ScaleCache(None, v, f, px))
            else:
                caches.append(ScaleCache(None, None, f))
        return caches

    def forward(self, m_c, caches, pixels: bool = False):
        """(aligned features per scale, finest first; the warped keyframe (B, 3, S, S) when
        ``pixels`` and the reference has pixel blocks, else None)."""
        out, warped = [None] * len(caches), None
        for i in range(len(caches) - 1, -1, -1):          # coarse -> fine: lenders first
            mode, c = self.modes[i], caches[i]
            if mode == "attn":
                if i > 0 and self.modes[i - 1] == "borrow":
                    px = caches[i - 1].px if pixels else None
                    out[i], moved, moved_px = self.scales[i](m_c[i], c, extra_v=caches[i - 1].v, px=px)
                    if moved_px is not None:
                        b, _, s, _ = c.f_r.shape          # the lending scale's grid
                        warped = F.pixel_shuffle(moved_px.transpose(1, 2).reshape(b, -1, s, s), self.px_block)
                else:
                    out[i] = self.scales[i](m_c[i], c)
            elif mode == "borrow":
                b, _, s, _ = c.f_r.shape                  # moved: (B, N/4, 4C)
                out[i] = F.pixel_shuffle(moved.transpose(1, 2).reshape(b, -1, s // 2, s // 2), 2)
            else:
                out[i] = c.f_r
        return out, warped


class BaseStem(nn.Module):
    """Fuses the decoded base-layer picture into D_F's features at one scale: the picture,
    resized to the features' size, is concatenated with them, and a residual goes back
    through a 1x1 projection that starts at zero, so a model initialised from token-only
    weights decodes exactly their frames until training moves it."""

    def __init__(self, feat_ch: int, hidden: int):
        super().__init__()
        self.inp = nn.Conv2d(feat_ch + 3, hidden, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Conv2d(hidden, feat_ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, base):                           # base (B, 3, b, b) in [0, 1]
        b = F.interpolate(base.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if x.is_contiguous(memory_format=torch.channels_last):
            b = b.contiguous(memory_format=torch.channels_last)
        return x + self.out(self.act(self.inp(torch.cat([x, b * 2 - 1], dim=1))))


class RefBlend(nn.Module):
    """The pixel skip's output head: blends the keyframe as IMF_A moved it (the warped
    keyframe, :class:`MotionAlignment`) into D_F's frame, per pixel,
    ``x = y + g (warped - y)``, with the gate ``g = tanh(a)`` read from D_F's last features,
    both pictures and the base picture (which tells where the warp went wrong). ``a``'s last
    convolution starts at zero, so the model starts as the one without it. D_F's frame is
    smooth even one frame after a keyframe (LPIPS 0.03-0.08 on training clips where the
    warped keyframe alone gives 0.006-0.019); the keyframe's own detail comes back this way."""

    def __init__(self, feat_ch: int, factor: int, hidden: int):
        super().__init__()
        self.factor = factor
        self.net = nn.Sequential(nn.Conv2d(feat_ch + 6 * factor * factor + 3, hidden, 3, padding=1),
                                 nn.LeakyReLU(0.2), nn.Conv2d(hidden, hidden, 3, padding=1),
                                 nn.LeakyReLU(0.2), nn.Conv2d(hidden, factor * factor, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, y, warped, base):
        """x: D_F's last features (B, C, S/f, S/f); y: its frame (B, 3, S, S); warped
        (B, 3, S, S); base (B, 3, b, b); all pictures in [0, 1]."""
        f, dt = self.factor, x.dtype
        b = F.interpolate(base.to(dt), size=x.shape[-2:], mode="bilinear", align_corners=False)
        inp = torch.cat([x, F.pixel_unshuffle(warped.to(dt) * 2 - 1, f), F.pixel_unshuffle(y.to(dt) * 2 - 1, f),
                         b * 2 - 1], dim=1)
        if x.is_contiguous(memory_format=torch.channels_last):
            inp = inp.contiguous(memory_format=torch.channels_last)
        g = torch.tanh(F.pixel_shuffle(self.net(inp), f))          # (B, 1, S, S)
        return (y + g * (warped.to(y.dtype) - y)).clamp(0, 1)


class FrameDecoder(nn.Module):
    """D_F: aligned features f_c^1..f_c^L -> frame, coarse to fine, sigmoid output. With
    ``base_channels`` it also reads the base-layer picture (:class:`BaseStem`) at the f^1
    size and after every extra up stage; ``base=None`` skips those stems (token-only)."""

    def __init__(self, cfg: ModelConfig, feat_channels):
        super().__init__()
        dec = cfg.decoder_channels
        L = len(dec)
        self.inp = nn.Sequential(nn.Conv2d(feat_channels[-1], dec[-1], 3, padding=1),
                                 FeatResBlock(dec[-1], cfg.norm))
        self.ups = nn.ModuleList()
        self.skips = nn.ModuleList()
        c = dec[-1]
        for l in range(L - 2, -1, -1):                    # coarse -> fine
            self.ups.append(UpConvBlock(c, dec[l], 0, cfg.norm))
            self.skips.append(nn.Sequential(nn.Conv2d(feat_channels[l], dec[l], 1),
                                            *[FeatResBlock(dec[l], cfg.norm)
                                              for _ in range(cfg.decoder_skip_blocks)]))
            c = 2 * dec[l]
        self.base_stems = nn.ModuleList()
        if cfg.base_channels:
            self.base_stems.append(BaseStem(c, cfg.base_channels))
        self.extra = nn.ModuleList()
        for cout in cfg.decoder_up_channels:
            self.extra.append(UpConvBlock(c, cout, 0, cfg.norm))
            c = cout
            if cfg.base_channels:
                self.base_stems.append(BaseStem(c, cfg.base_channels))
        s = cfg.decoder_out_shuffle
        self.out = nn.Sequential(nn.Conv2d(c, 3 * s * s, 3, padding=1),
                                 nn.PixelShuffle(s) if s > 1 else nn.Identity())
        # the pixel skip (cfg.ref_pixel_channels): the warped keyframe blended in at the end
        self.ref_blend = RefBlend(c, s, cfg.ref_pixel_channels) if cfg.ref_pixel_channels else None
        self.channels_last = False

    def use_channels_last(self, on: bool = True):
        self.channels_last = on
        return self.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def forward(self, f_c, base=None, warped=None):
        """f_c: aligned features, finest first; base: the base pictures (B, 3, b, b) or None
        (token-only: no stem runs); warped: the keyframe as IMF_A moved it (B, 3, S, S),
        blended in by :class:`RefBlend` (with a base picture only)."""
        if self.channels_last:     # faster CPU convolutions (oneDNN), same arithmetic
            f_c = [f.contiguous(memory_format=torch.channels_last) for f in f_c]
        use_base = base is not None and len(self.base_stems) > 0
        use_ref = use_base and warped is not None and self.ref_blend is not None
        x = self.inp(f_c[-1])
        for i, (up, skip) in enumerate(zip(self.ups, self.skips)):
            l = len(f_c) - 2 - i
            x = torch.cat([up(x), skip(f_c[l])], dim=1)
        if use_base:
            x = self.base_stems[0](x, base)
        for j, up in enumerate(self.extra):
            x = up(x)
            if use_base:
                x = self.base_stems[j + 1](x, base)
        y = torch.sigmoid(self.out(x))                    # (B, 3, S, S)
        return self.ref_blend(x, y, warped, base) if use_ref else y


def ste_round(x):
    """Round with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


@dataclass
class ReferenceState:
    """Everything the decoder keeps per keyframe (f_r, m_r and K/V per scale)."""
    caches: list


class IMFGenerator(nn.Module):
    """The whole generator, plus the token quantizer's learned per-channel step.

    Token quantization: symbols q = round(t / Δ), Δ_c = exp(log_step_c) * mult, where
    ``mult`` comes from the codec's quality level. Rate model: the symbol difference to the
    reference token, y = (t_c - t̂_r) / Δ, is Gaussian with per-channel std
    exp(log_sigma_c) / Δ_c in symbol units, priced by the coder's own Gaussian conditional
    (:func:`imfcodec.entropy.symbol_likelihood`). The codec codes frame-to-frame
    differences instead; ``imfcodec export --calib`` builds its tables from those measured
    on training clips.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.token_encoder = TokenEncoder(cfg)
        self.dense_encoder = DenseFeatureEncoder(cfg)
        feat_ch = self.dense_encoder.out_channels
        self.token_decoder = TokenDecoder(cfg)
        self.motion_alignment = MotionAlignment(cfg, feat_ch)
        self.frame_decoder = FrameDecoder(cfg, feat_ch)
        # IMF_A's queries read the base picture (cfg.base_query_channels): one stem per
        # attention scale, keyed by the scale's index in feature_sizes
        self.base_query_stems = nn.ModuleDict({
            str(i): BaseStem(cfg.motion_channels[i], cfg.base_query_channels)
            for i, mode in enumerate(cfg.align_mode) if mode == "attn" and cfg.base_query_channels})
        self.log_step = nn.Parameter(torch.full((cfg.token_dim,), -2.0))
        self.log_sigma = nn.Parameter(torch.zeros(cfg.token_dim))

    # ---- quantizer -------------------------------------------------------------------
    def step(self, mult):
        """Δ per channel: (C,) for a float mult, (B, C) for a (B, 1) tensor."""
        return self.log_step.exp() * mult

    def quantize(self, t, mult):
        """Integer symbols (as a float tensor) for token(s) t at step multiplier mult."""
        return torch.round(t / self.step(mult))

    def dequantize(self, q, mult):
        return q * self.step(mult)

    def _steer(self, m_c, base):
        """The current frames' motion features m_c with the base picture added by the query
        stems (unchanged without a base picture or stems)."""
        if base is None or not len(self.base_query_stems):
            return m_c
        return [self.base_query_stems[str(i)](m, base) if str(i) in self.base_query_stems else m
                for i, m in enumerate(m_c)]

    # ---- training --------------------------------------------------------------------
    def forward(self, x_r, x_c, mult, base=None):
        """x_r, x_c: (B, 3, S, S) in [0, 1]; mult: (B, 1); base: the decoded base-layer
        pictures of x_c (B, 3, b, b) or None. Returns (x̂_c, bits per frame (B,))."""
        b = x_r.shape[0]
        t = self.token_encoder(torch.cat([x_r, x_c]))        # (2B, d_m)
        step = self.step(mult).repeat(2, 1)
        t_hat = ste_round(t / step) * step
        t_hat_r = t_hat[:b]
        y = (t[b:] - t_hat_r.detach()) / step[:b]             # symbol units
        lik = symbol_likelihood(y, self.log_sigma.exp() / step[:b], noisy=True)  # what entropy.py codes
        bits = -torch.log2(lik).sum(1)                        # (B,)
        f_r = self.dense_encoder(x_r)
        m = self.token_decoder(t_hat)
        m_r = [None if x is None else x[:b] for x in m]
        m_c = self._steer([None if x is None else x[b:] for x in m], base)
        caches = self.motion_alignment.prepare(m_r, f_r, x_r)
        f_c, warped = self.motion_alignment(m_c, caches, pixels=base is not None)
        x_hat = self.frame_decoder(f_c, base, warped)
        return x_hat, bits

    # ---- coding-time pieces ------------------------------------------------------------
    @torch.no_grad()
    def encode_token(self, x):
        """t = E_T(x) for frames (B, 3, S, S) -> (B, d_m)."""
        return self.token_encoder(x)

    @torch.no_grad()
    def prepare_reference(self, x_r, t_hat_r) -> ReferenceState:
        """E_F(x_r), m_r = IMF_D(t̂_r) and the K/V projections, once per keyframe."""
        f_r = self.dense_encoder(x_r)
        m_r = self.token_decoder(t_hat_r)
        return ReferenceState(self.motion_alignment.prepare(m_r, f_r, x_r))

    @torch.no_grad()
    def decode_frame(self, t_hat_c, ref: ReferenceState, base=None):
        """x̂_c = D_F(IMF_A(IMF_D(t̂_c), cached reference), base) for (B, d_m) tokens and,
        with a base layer, their decoded base pictures (B, 3, b, b) in [0, 1]."""
        caches = ref.caches
        if t_hat_c.shape[0] != caches[0].f_r.shape[0]:
            n = t_hat_c.shape[0]
            caches = [c.map(lambda t: t.expand(n, -1, -1, -1)) for c in caches]
        m_c = self._steer(self.token_decoder(t_hat_c), base)
        f_c, warped = self.motion_alignment(m_c, caches, pixels=base is not None)
        return self.frame_decoder(f_c, base, warped)


class PatchDiscriminator(nn.Module):
    """One scale: 4x4 stride-2 spectral-norm convs, InstanceNorm + LeakyReLU after all but
    the first (which has LeakyReLU only), then a 1x1 spectral-norm conv to one map."""

    def __init__(self, channels):
        super().__init__()
        sn = nn.utils.spectral_norm
        layers, cin = [], 3
        for i, c in enumerate(channels):
            layers.append(sn(nn.Conv2d(cin, c, 4, stride=2, padding=1)))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            cin = c
        layers.append(sn(nn.Conv2d(cin, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x * 2 - 1)


class MultiScaleDiscriminator(nn.Module):
    """Two-scale patch discriminator (full resolution and /2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.discs = nn.ModuleList([PatchDiscriminator(cfg.disc_channels) for _ in range(cfg.disc_scales)])

    def forward(self, x):
        outs = []
        for i, d in enumerate(self.discs):
            if i:
                x = F.avg_pool2d(x, 2)
            outs.append(d(x))
        return outs
