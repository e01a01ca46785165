"""The encoder: frames in, packets out, in a closed loop with the decoder.

Streaming use (a live call)::

    enc = Encoder(model, width, height, fps, quality=4)
    for frame in camera:                      # (H, W, 3) uint8 RGB
        for packet in enc.push(frame): send(packet_to_bytes(packet))
    for packet in enc.flush(): send(...)

Closed-loop refresh: the model's reconstruction of a keyframe's own frame (its own token, no
motion) is as well as it can do on this content; a later frame whose reconstruction PSNR
falls the level's refresh drop below that (for ``refresh_persist`` frames: a blink is not a
reference) is coded as a new keyframe, at most once per the level's min keyframe interval.
Relative, so it adapts to the content and the model without calibration. What a level means
is :mod:`imfcodec.codec.ladder`'s; the options are :class:`imfcodec.options.EncoderOptions`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from ..entropy import EntropyError
from ..format import container
from ..format.container import BasePacket, Header, KeyframePacket, TokenPacket
from ..media import baselayer, keyframe, video
from ..metrics import psnr       # psnr only: LPIPS and its weight fetcher load on first use
from ..model import CodecModel
from ..options import EncoderOptions
from . import anchor as anchor_
from .ladder import LevelSettings, level_settings


@dataclass
class EncodeStats:
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    kbps: float = 0.0
    seconds: float = 0.0
    psnr_model_res: float = float("nan")   # closed-loop reconstruction PSNR at coded size
    keyframe_bytes: int = 0
    token_bytes: int = 0
    header_bytes: int = 0
    layer_bytes: int = 0          # crop and frame-layer packets (face framing)
    base_bytes: int = 0           # base-layer packets (format versions 5 and 6)
    coding: str = ""              # the path and the layers (container.Header.describe)
    keyframe_indices: list = field(default_factory=list)


def _check_symbols(q: torch.Tensor) -> torch.Tensor:
    """Token symbols within the format's bound (container.MAX_SYMBOL), or an EntropyError."""
    if q.numel() and q.abs().max() > container.MAX_SYMBOL:
        raise EntropyError(f"token symbol beyond +-{container.MAX_SYMBOL}: the model's tokens are "
                           "out of range for this input")
    return q


def _capped_psnr(a, b) -> float:
    return min(psnr(a, b).item(), 100.0)      # identical pictures: 100, not inf


class Encoder:
    """Frames in, packets out. Closed loop: every frame is reconstructed exactly as the
    decoder will. A frame becomes a keyframe when the refresh rule says so, or
    ``max_keyframe_interval`` seconds after the last keyframe.

    The options (``quality`` and the keywords, or ``options=``) are
    :class:`~imfcodec.options.EncoderOptions`; their level of the model's ladder is
    :attr:`level` (a :class:`~imfcodec.codec.ladder.LevelSettings`). ``base_layer`` (auto,
    on, off) codes a base-layer picture of every frame beside the tokens (format version 5)
    with a model whose D_F reads one."""

    def __init__(self, model: CodecModel, width: int, height: int, fps: Fraction,
                 quality: int | None = None, *, options: EncoderOptions | None = None, **opts):
        self.options = o = EncoderOptions.build(options, quality=quality, **opts)
        self.level: LevelSettings = level_settings(model, o)
        lv = self.level
        self.m = model
        self.gen = model.generator
        self.size = model.config.image_size
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.quality, self.codec, self.packet_frames = lv.quality, lv.keyframe_codec, o.packet_frames
        self.mult = lv.step_mult
        self.base_layer = container.BaseLayer(lv.base_size, anchor=lv.anchor) if lv.base_layer else None
        self.anchor: anchor_.Anchor | None = None      # the last keyframe's (versions 7, 8)
        self.base_enc = baselayer.BaseEncoder(lv.base_crf) if lv.base_layer else None
        self.base_held: list[tuple[bytes, bool]] = []   # coded base pictures not yet sent
        self.crf = lv.keyframe_crf
        self.kf_enc = keyframe.KeyframeEncoder(lv.keyframe_codec, self.crf, o.keyframe_options)
        self.kf_dec = keyframe.KeyframeDecoder(lv.keyframe_codec)
        self.refresh_drop = lv.refresh_drop
        self.max_interval = max(1, int(round(o.max_keyframe_interval * float(self.fps))))
        self.min_interval = max(1, int(round(lv.min_keyframe_interval * float(self.fps))))
        self.refresh_persist = o.refresh_persist
        self.low_run = 0
        self.base_psnr = None
        self.index = 0
        self.ref = None
        self.prev_q = None
        self.since_key = 0
        self.intra_requested = False       # request_keyframe(): the next frame is intra
        self.pending: list[torch.Tensor] = []
        self.pending_first = 0
        self.stats = EncodeStats()
        self._psnr_sum = 0.0
        # the model-size reconstruction (1, 3, S, S) of the last pushed frame, exactly what the
        # decoder will rebuild before scaling to the output size: lets a caller score a
        # setting without decoding the stream again (bench/tune_ladder.py)
        self.recon: torch.Tensor | None = None

    def header(self, frame_count: int) -> Header:
        return Header(self.m.model_id, self.m.hash8, self.width, self.height, self.size, self.fps,
                      frame_count, self.quality, self.codec, self.m.config.token_dim, self.packet_frames,
                      base_layer=self.base_layer)

    def _base_picture(self, x, key: bool):
        """Code frame x's base picture and hold it for the packet that will carry its frame;
        returns the picture the decoder will get (1, 3, b, b) in [0, 1], which D_F reads in
        the closed loop."""
        key = key or self.base_enc.n == 0
        data, pic = self.base_enc.encode(baselayer.thumbnail(x, self.base_layer.size)[0], key=key)
        self.base_held.append((data, key))
        return baselayer.to_tensor(pic).to(self.m.device)

    def _base_packet(self, first: int, count: int) -> list:
        """The B packet of frames first..first+count-1, which goes right before the packet
        that carries them (none without a base layer)."""
        if self.base_layer is None:
            return []
        group, self.base_held = self.base_held[:count], self.base_held[count:]
        assert not any(key for _, key in group[1:]), "key pictures start a packet (only K frames have one)"
        return [BasePacket(first, tuple(d for d, _ in group), key=group[0][1])]

    def _token_packet(self) -> list:
        if not self.pending:
            return []
        sym = torch.stack(self.pending)
        out = self._base_packet(self.pending_first, len(self.pending))
        out.append(TokenPacket(self.pending_first, len(self.pending), self.m.entropy.encode(sym, self.quality)))
        self.pending = []
        return out

    def _keyframe(self, x, intra: bool, base=None) -> list:
        """Code x as a keyframe: an intra picture, or (``intra=False`` with a chained keyframe
        codec) a picture predicted from the previous keyframe. ``base``: x's decoded base
        picture (the refresh rule's level is measured with it)."""
        out = self._token_packet()
        rgb = video.to_uint8(x)[0]
        predicted = not intra and self.kf_enc.chained
        data = self.kf_enc.encode(rgb, intra=not predicted)
        x_r = video.to_model(self.kf_dec.decode(data, predicted), self.size).to(self.m.device)
        q_r = _check_symbols(self.gen.quantize(self.gen.encode_token(x_r), self.mult))   # (1, C)
        self.ref = self.m.reference(x_r, q_r, self.mult)
        if self.base_layer is not None and self.base_layer.anchor:
            self.anchor = anchor_.Anchor(x_r, base)
        self.prev_q = q_r[0]
        self.since_key = 0
        self.base_psnr = self._base_psnr(x, q_r, base)
        self.low_run = 0
        self.stats.keyframes += 1
        self.stats.keyframe_indices.append(self.index)
        self._psnr_sum += psnr(x_r, x).item()
        self.recon = x_r
        out += self._base_packet(self.index, 1)
        out.append(KeyframePacket(self.index, tuple(int(v) for v in q_r[0].tolist()), data, predicted))
        return out

    def _base_psnr(self, x, q_r, base=None) -> float:
        """PSNR of the model's reconstruction of the keyframe's own frame from its own token:
        what it does on this content with no motion, the level later drops are measured from.
        (Measured from the first predicted frame instead, a keyframe whose predictions start
        poor, taken mid-motion, was never replaced.)"""
        return _capped_psnr(self.m.decode(q_r, self.mult, self.ref, base), x)

    def request_keyframe(self):
        """Make the next pushed frame an intra keyframe: a random-access point that decodes
        with no earlier packet (an intra keyframe picture, its base-layer key picture, its own
        token), as the first frame and every ``max_keyframe_interval`` one are. What a live
        sender does when a receiver lost packets (imfcodec.live, docs/live.md). Pending token
        frames go out first, in their own packet; a stream never asked for is unchanged."""
        self.intra_requested = True

    @torch.no_grad()
    def push(self, frame: np.ndarray, force_keyframe: bool = False) -> list:
        """Code one RGB frame (height, width, 3) uint8; returns the packets completed.
        ``force_keyframe`` makes it a keyframe (a predicted one after the first, with a
        chained keyframe codec): a caller that moves what is coded (framing.py) asks so."""
        if frame.shape != (self.height, self.width, 3):
            raise video.VideoError(f"frame {self.index} has shape {frame.shape}, expected "
                                   f"({self.height}, {self.width}, 3)")
        x = video.to_model(frame, self.size).to(self.m.device)
        intra = self.ref is None or self.since_key + 1 >= self.max_interval or self.intra_requested
        self.intra_requested = False
        out, base = [], None
        if self.base_layer is not None:     # every frame's base picture, sent with its frame's packet
            base = self._base_picture(x, key=intra)
        if intra:
            out += self._keyframe(x, intra=True, base=base)        # a random-access point
        elif force_keyframe:
            out += self._keyframe(x, intra=False, base=base)
        else:
            q = _check_symbols(self.gen.quantize(self.gen.encode_token(x), self.mult)[0])
            x_hat = self.decode(q[None], base)
            p = _capped_psnr(x_hat, x)
            if self._refresh(x, x_hat, p):
                out += self._keyframe(x, intra=False, base=base)
            else:
                out += self._predicted(q, x_hat, p)
        self.index += 1
        self.stats.frames = self.index
        return out

    def decode(self, q, base=None) -> torch.Tensor:
        """The decoder's frame from quantized tokens q (1, C) and the frame's decoded base
        picture: the networks, then the keyframe anchor where the stream has one."""
        x = self.m.decode(q, self.mult, self.ref, base)
        return anchor_.compose(x, base, self.anchor, self.base_layer.tau) if self.anchor is not None else x

    def _refresh(self, x, x_hat, p: float) -> bool:
        """The refresh rule: whether frame x, predicted as x_hat at PSNR p, is coded as a new
        keyframe instead (bench/refresh_rule_probe.py replaces it to try other rules)."""
        low = self.refresh_drop > 0 and p < self.base_psnr - self.refresh_drop
        self.low_run = self.low_run + 1 if low else 0
        return low and self.low_run >= self.refresh_persist and self.since_key + 1 >= self.min_interval

    def _predicted(self, q, x_hat, p: float) -> list:
        """Code the current frame as its token q (C,) with reconstruction x_hat (PSNR p);
        returns the token packet when this frame completes one."""
        if not self.pending:
            self.pending_first = self.index
        self.pending.append((q - self.prev_q).to(torch.int64).cpu())
        self.prev_q = q
        self.since_key += 1
        self._psnr_sum += p
        self.recon = x_hat
        return self._token_packet() if len(self.pending) == self.packet_frames else []

    def flush(self) -> list:
        self.kf_enc.close()
        return self._token_packet()

    @property
    def mean_psnr(self) -> float:
        return self._psnr_sum / max(self.index, 1)
