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

import bisect
import math

import warnings

import torch
from torch import nn

from .format.container import MAX_SYMBOL
from .errors import IMFCodecError
from .options import QUALITIES

QUALITY_LEVELS = len(QUALITIES)          # one table per quality level
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# the largest symbol difference coded: two symbols within +-MAX_SYMBOL; the rANS coder's
# escape loop shifts an int32 by 4 bits per nibble and hangs from 2^28 on (undefined shift)
MAX_DIFFERENCE = 2 * MAX_SYMBOL


def scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


_RATE_MODELS: dict = {}      # device -> GaussianConditional (its bounds are per-device buffers)


def _compressai():
    """CompressAI's entropy_models module, imported on first use: importing CompressAI costs
    seconds (it imports torch_geometric, scipy.stats and its datasets), and decoding needs
    none of it (the tables are buffers here, the rANS decoder is :func:`rans_decode`)."""
    with warnings.catch_warnings():
        # compressai's import chain triggers torch's "torch.jit.script is deprecated" warning
        warnings.simplefilter("ignore", FutureWarning)
        from compressai.entropy_models import entropy_models
    return entropy_models


class _Bound(nn.Module):
    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))


class GaussianTables(nn.Module):
    """The buffers of CompressAI's ``GaussianConditional(None)`` under its names (a model
    file's ``entropy.gaussian.*`` keys), without importing CompressAI: what decoding reads.
    :meth:`TokenEntropyModel.update` builds them with a real GaussianConditional; encoding
    takes CompressAI's rANS coder (:attr:`entropy_coder`) on first use."""

    def __init__(self):
        super().__init__()
        for name in ("_offset", "_quantized_cdf", "_cdf_length"):
            self.register_buffer(name, torch.IntTensor())
        self.register_buffer("scale_table", torch.Tensor())
        self.register_buffer("scale_bound", torch.tensor([SCALE_MIN]))
        self.likelihood_lower_bound = _Bound(1e-9)
        self.lower_bound_scale = _Bound(SCALE_MIN)
        self._coder = None

    @property
    def entropy_coder(self):
        if self._coder is None:
            em = _compressai()
            self._coder = em._EntropyCoder(em.default_entropy_coder())
        return self._coder

    def copy_from(self, gc: nn.Module):
        """Take a GaussianConditional's tables (after its update_scale_table)."""
        state = gc.state_dict()
        resize_buffers_for(self, state)
        self.load_state_dict(state)


def symbol_likelihood(y: torch.Tensor, scale: torch.Tensor, noisy: bool = False) -> torch.Tensor:
    """P(round(y)) under the zero-mean Gaussian of std ``scale`` (symbol units) that the
    tables code, integrated over [y - 0.5, y + 0.5]: ``GaussianConditional.forward``. With
    ``noisy``, y first gets uniform noise in [-0.5, 0.5) (training's stand-in for rounding).
    Differentiable; the scale and likelihood bounds pass gradients that raise them
    (CompressAI's LowerBound)."""
    gc = _RATE_MODELS.get(y.device)
    if gc is None:
        gc = _RATE_MODELS[y.device] = _compressai().GaussianConditional(None, scale_bound=SCALE_MIN).to(y.device)
    return gc(y, scale, training=noisy)[1]


class EntropyError(IMFCodecError, ValueError):
    """A token payload that does not decode (corrupt bytes or tables)."""


class TokenEntropyModel(nn.Module):
    """Integer CDF tables for token symbol differences, indexed by (quality, channel)."""

    def __init__(self, token_dim: int, levels: int = QUALITY_LEVELS):
        super().__init__()
        self.gaussian = GaussianTables()
        self.register_buffer("index_table", torch.zeros(levels, token_dim, dtype=torch.int32))
        self.token_dim, self.levels = token_dim, levels

    @property
    def ready(self) -> bool:
        return self.gaussian._quantized_cdf.numel() > 0

    def update(self, symbol_std: torch.Tensor):
        """Build the integer tables. ``symbol_std``: (levels, C) std of the symbol differences
        in symbol units; each (quality, channel) gets the table of the nearest scale."""
        table = scale_table()
        gc = _compressai().GaussianConditional(None)
        gc.update_scale_table(table, force=True)
        self.gaussian.copy_from(gc)
        s = symbol_std.detach().float().clamp(SCALE_MIN, SCALE_MAX).log()
        idx = (s[..., None] - table.log()).abs().argmin(-1)
        self.index_table.copy_(idx.to(torch.int32))

    def fit(self, deltas: list):
        """Re-choose each (quality, channel)'s table among the built ones: the table that
        codes ``deltas[quality - 1][:, channel]`` (integer symbol differences, what the codec's
        T packets carry) in the fewest bits, escapes included (CompressAI's exact cost,
        :func:`_symbol_bits`). A quality without differences keeps its tables. The Gaussian
        of :meth:`update` fits the token's differences before rounding; after rounding at a
        coarse step they are mostly 0 with a heavier tail, which a wider table codes in fewer
        bits (docs/notes/token-tables.md)."""
        cdf, lengths, offsets = self._tables()
        if len(deltas) != self.levels:
            raise EntropyError(f"fit needs the differences of all {self.levels} quality levels, got {len(deltas)}")
        for q, d in enumerate(deltas):
            d = torch.as_tensor(d).to(torch.int64).reshape(-1, self.token_dim)
            if len(d) == 0:
                continue
            for c in range(self.token_dim):
                values, counts = torch.unique(d[:, c], return_counts=True)
                pairs = list(zip(values.tolist(), counts.tolist()))
                cost = [sum(k * _symbol_bits(v - offsets[i], cdf[i], lengths[i] - 2) for v, k in pairs)
                        for i in range(len(lengths))]
                self.index_table[q, c] = min(range(len(cost)), key=cost.__getitem__)

    def bits(self, symbols: torch.Tensor, quality: int) -> float:
        """The bits the rANS coder spends on ``symbols`` (N, C) at ``quality``, without the
        string's flushed state and word padding (:func:`_symbol_bits`)."""
        cdf, lengths, offsets = self._tables()
        idx = self.index_table[quality - 1].tolist()
        s = torch.as_tensor(symbols).to(torch.int64).reshape(-1, self.token_dim)
        return sum(_symbol_bits(int(v) - offsets[idx[c]], cdf[idx[c]], lengths[idx[c]] - 2)
                   for c in range(self.token_dim) for v in s[:, c].tolist())

    def _indexes(self, n: int, quality: int) -> torch.Tensor:
        if not 1 <= quality <= self.levels:
            raise EntropyError(f"quality {quality} outside 1..{self.levels}")
        return self.index_table[quality - 1].view(1, -1, 1).expand(1, self.token_dim, n).contiguous()

    def _tables(self) -> tuple[list, list, list]:
        """(quantized CDFs, CDF lengths, offsets) as Python ints, what CompressAI's rANS coder
        takes (GaussianConditional.compress/decompress pass the same lists)."""
        if not self.ready:
            raise EntropyError("entropy tables are not built (call update())")
        g = self.gaussian
        return (g._quantized_cdf.tolist(), g._cdf_length.reshape(-1).int().tolist(),
                g._offset.reshape(-1).int().tolist())

    def encode(self, symbols: torch.Tensor, quality: int) -> bytes:
        """symbols: integer tensor (N, C) -> one rANS string for the N frames, channel-major
        (docs/bitstream.md, "Token payload"). Integers all the way: no float round trip."""
        cdf, lengths, offsets = self._tables()
        n = symbols.shape[0]
        s = symbols.detach().cpu().to(torch.int64)
        if n and int(s.abs().max()) > MAX_DIFFERENCE:
            raise EntropyError(f"token symbol difference beyond +-{MAX_DIFFERENCE}")
        values = s.t().reshape(-1).tolist()
        idx = self._indexes(n, quality).reshape(-1).tolist()
        # CompressAI's encoder writes into a buffer of one 32-bit word per symbol and does not
        # check it: refuse symbols whose worst-case cost would not fit
        bits = sum(_symbol_bits(v - offsets[i], cdf[i], lengths[i] - 2) for v, i in zip(values, idx))
        if bits > 32 * (len(values) - 4):
            raise EntropyError("token symbol differences too large to code in one packet")
        return self.gaussian.entropy_coder.encode_with_indexes(values, idx, cdf, lengths, offsets)

    def decode(self, data: bytes, n: int, quality: int) -> torch.Tensor:
        """Inverse of :meth:`encode` -> int64 tensor (N, C). A checked reimplementation of
        CompressAI's decoder (:func:`rans_decode`): its C++ one reads past the end of a
        damaged string."""
        cdf, lengths, offsets = self._tables()
        idx = self._indexes(n, quality).reshape(-1).tolist()
        values = rans_decode(bytes(data), idx, cdf, lengths, offsets)
        return torch.tensor(values, dtype=torch.int64).reshape(self.token_dim, n).t()


# ---- CompressAI's rANS string format (docs/bitstream.md, "Token payload") ---------------
RANS_PRECISION = 16                 # CDF tables sum to 2^16
RANS_L = 1 << 31                    # Rans64: state lower bound, and the encoder's initial state
BYPASS_BITS = 4                     # escape nibbles
MAX_BYPASS_NIBBLES = 8              # raw escape values are int32 in CompressAI
_MASK64 = (1 << 64) - 1


def _symbol_bits(value: int, cdf: list, max_value: int) -> float:
    """The bits CompressAI's encoder spends on one symbol (value already offset):
    log2(2^16 / frequency) for the table symbol, plus the escape nibbles. Its output is
    within 3 words of their sum (2 of them the flushed state)."""
    s = value if 0 <= value < max_value else max_value
    bits = RANS_PRECISION - math.log2(cdf[s + 1] - cdf[s])
    if s < max_value:
        return bits
    raw = -2 * value - 1 if value < 0 else 2 * (value - max_value)
    nb = (raw.bit_length() + BYPASS_BITS - 1) // BYPASS_BITS
    return bits + BYPASS_BITS * (nb + 1 + nb // 15)


def rans_decode(data: bytes, indexes: list, cdfs: list, lengths: list, offsets: list) -> list:
    """CompressAI's ``RansDecoder.decode_with_indexes``, in Python, with every read checked.
    Raises EntropyError where the C++ decoder would read outside the string, where an escape
    exceeds 32 bits (undefined in C++), and unless the string is used up exactly with the
    rANS state back at its initial value (what any string the encoder wrote does)."""
    if len(data) % 4 or len(data) < 8:
        raise EntropyError(f"token payload does not decode (length {len(data)} is not 8 + 4k bytes)")
    words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    x, pos = words[0] | (words[1] << 32), 2
    prec_mask = (1 << RANS_PRECISION) - 1

    def renorm(x):
        nonlocal pos
        if x < RANS_L:
            if pos >= len(words):
                raise EntropyError("token payload does not decode (ends early)")
            x = ((x << 32) | words[pos]) & _MASK64
            pos += 1
        return x

    def nibble():
        nonlocal x
        v = x & ((1 << BYPASS_BITS) - 1)
        x = renorm(x >> BYPASS_BITS)
        return v

    out = []
    for i in indexes:
        cdf, max_value = cdfs[i], lengths[i] - 2
        cum = x & prec_mask
        s = bisect.bisect_right(cdf, cum, 0, lengths[i]) - 1
        x = renorm((((cdf[s + 1] - cdf[s]) * (x >> RANS_PRECISION)) + (x & prec_mask) - cdf[s]) & _MASK64)
        value = s
        if value == max_value:
            v = nibble()
            nb = v
            while v == (1 << BYPASS_BITS) - 1:
                v = nibble()
                nb += v
                if nb > MAX_BYPASS_NIBBLES:
                    break
            if nb > MAX_BYPASS_NIBBLES:
                raise EntropyError("token payload does not decode (escape longer than 32 bits)")
            raw = 0
            for j in range(nb):
                raw |= nibble() << (j * BYPASS_BITS)
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + max_value
        out.append(value + offsets[i])
    if pos != len(words) or x != RANS_L:
        raise EntropyError("token payload does not decode (bytes left over or bad final state)")
    if out and max(abs(v) for v in out) > MAX_DIFFERENCE:
        raise EntropyError(f"token payload does not decode (symbol difference beyond +-{MAX_DIFFERENCE})")
    return out


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
