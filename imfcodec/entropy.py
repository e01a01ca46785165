"""Token entropy coding: integer symbols <-> bytes with fixed integer CDF tables.

Each frame's token is quantized to integer symbols q = round(t / Δ) (see
:class:`imfcodec.models.imf.IMFGenerator`). The codec transmits the difference to the
previous frame's symbols (integers, so encoder and decoder never drift), coded with
CompressAI's rANS coder under a zero-mean discretized Gaussian per (quality, channel).

The Gaussian CDFs are turned into integer tables once, by :meth:`TokenEntropyModel.update`
(CompressAI's ``GaussianConditional.update_scale_table``), and saved with the weights
together with the integer ``index_table`` that names the table of each (quality, channel).
Parsing a stream therefore uses only integers stored in the model file: the same bytes
give the same symbols on any machine. Values outside a table are escape-coded by the rANS
coder (CompressAI's bypass mode), so any integer round-trips.

Training estimates the same rate with :func:`symbol_likelihood`: the forward pass of the
same CompressAI ``GaussianConditional`` (scale bound :data:`SCALE_MIN`, likelihood bound
1e-9, both ``LowerBound``s), whose discretized CDFs are the tables above. One rate model,
trained and coded.
"""
from __future__ import annotations

import math

import warnings

import torch
from torch import nn

with warnings.catch_warnings():
    # compressai's import chain triggers torch's "torch.jit.script is deprecated" warning
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models import GaussianConditional

from .errors import IMFCodecError

QUALITY_LEVELS = 8
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


_RATE_MODELS: dict = {}      # device -> GaussianConditional (its bounds are per-device buffers)


def symbol_likelihood(y: torch.Tensor, scale: torch.Tensor, noisy: bool = False) -> torch.Tensor:
    """P(round(y)) under the zero-mean Gaussian of std ``scale`` (symbol units) that the
    tables code, integrated over [y - 0.5, y + 0.5]: ``GaussianConditional.forward``. With
    ``noisy``, y first gets uniform noise in [-0.5, 0.5) (training's stand-in for rounding).
    Differentiable; the scale and likelihood bounds pass gradients that raise them
    (CompressAI's LowerBound)."""
    gc = _RATE_MODELS.get(y.device)
    if gc is None:
        gc = _RATE_MODELS[y.device] = GaussianConditional(None, scale_bound=SCALE_MIN).to(y.device)
    return gc(y, scale, training=noisy)[1]


class EntropyError(IMFCodecError, ValueError):
    """A token payload that does not decode (corrupt bytes or tables)."""


class TokenEntropyModel(nn.Module):
    """Integer CDF tables for token symbol differences, indexed by (quality, channel)."""

    def __init__(self, token_dim: int, levels: int = QUALITY_LEVELS):
        super().__init__()
        self.gaussian = GaussianConditional(None)
        self.register_buffer("index_table", torch.zeros(levels, token_dim, dtype=torch.int32))
        self.token_dim, self.levels = token_dim, levels

    @property
    def ready(self) -> bool:
        return self.gaussian._quantized_cdf.numel() > 0

    def update(self, symbol_std: torch.Tensor):
        """Build the integer tables. ``symbol_std``: (levels, C) std of the symbol differences
        in symbol units; each (quality, channel) gets the table of the nearest scale."""
        table = scale_table()
        self.gaussian.update_scale_table(table, force=True)
        s = symbol_std.detach().float().clamp(SCALE_MIN, SCALE_MAX).log()
        idx = (s[..., None] - table.log()).abs().argmin(-1)
        self.index_table.copy_(idx.to(torch.int32))

    def _indexes(self, n: int, quality: int) -> torch.Tensor:
        if not 1 <= quality <= self.levels:
            raise EntropyError(f"quality {quality} outside 1..{self.levels}")
        return self.index_table[quality - 1].view(1, -1, 1).expand(1, self.token_dim, n).contiguous()

    def encode(self, symbols: torch.Tensor, quality: int) -> bytes:
        """symbols: integer tensor (N, C) -> one rANS string for the N frames."""
        if not self.ready:
            raise EntropyError("entropy tables are not built (call update())")
        n = symbols.shape[0]
        x = symbols.detach().to(torch.float32).t().reshape(1, self.token_dim, n)
        return self.gaussian.compress(x, self._indexes(n, quality))[0]

    def decode(self, data: bytes, n: int, quality: int) -> torch.Tensor:
        """Inverse of :meth:`encode` -> int64 tensor (N, C)."""
        if not self.ready:
            raise EntropyError("entropy tables are not built (call update())")
        indexes = self._indexes(n, quality)
        # CompressAI's rANS decoder reads any bytes (garbage decodes to wrong symbols, which
        # the stream's structure and CRCs are there to catch); the one data-driven failure
        # left is a frame count too large to hold. Anything else raised here is a bug.
        try:
            y = self.gaussian.decompress([data], indexes, dtype=torch.float32)
        except MemoryError:
            raise EntropyError(f"token payload of {n} frames does not fit in memory") from None
        return y.reshape(self.token_dim, n).t().round().to(torch.int64)


def resize_buffers_for(module: nn.Module, state_dict: dict, prefix: str = ""):
    """GaussianConditional's table buffers start empty; give them the saved shapes so that
    ``load_state_dict`` can fill them (CompressAI's update_registered_buffers does the same)."""
    for name, buf in list(module.named_buffers()):
        key = prefix + name
        if key in state_dict and state_dict[key].shape != buf.shape:
            owner = module
            *path, leaf = name.split(".")
            for p in path:
                owner = getattr(owner, p)
            owner.register_buffer(leaf, torch.zeros_like(state_dict[key]))
