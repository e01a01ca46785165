"""The decoder: packets in, frames out (source size, uint8 RGB), exactly the pictures the
encoder's closed loop saw.

:meth:`Decoder.push` is a packet's whole decode. Its steps are public too
(:meth:`~Decoder.take_base_packet`, :meth:`~Decoder.decode_keyframe`,
:meth:`~Decoder.take_base`, :meth:`~Decoder.symbols`, :meth:`~Decoder.apply_anchor`,
:meth:`~Decoder.frames`), for a caller that runs the frame networks itself:
:class:`imfcodec.codec.multi.MultiDecoder` batches them over streams.
"""
from __future__ import annotations

import numpy as np
import torch

from ..format import container
from ..format.container import BasePacket, Header, KeyframePacket, StreamError, TokenPacket
from ..media import baselayer, keyframe, video
from ..model import CodecModel, ModelError
from . import anchor as anchor_


class Decoder:
    """Packets in, frames out (source size, uint8 RGB)."""

    def __init__(self, model: CodecModel, header: Header):
        check_model(model, header)
        self.m, self.header = model, header
        self.mult = model.step_mult(header.quality)
        self._ref = None
        self._pending_ref = None     # (picture, symbols) of a keyframe whose reference is not built yet
        self.prev_q = None
        self.next_index = 0
        self.kf_dec = keyframe.KeyframeDecoder(header.keyframe_codec, header.coded_size ** 2)
        # base layer (version 5): a B packet's pictures, decoded in stream order, held (at
        # most packet_frames of them) until the next packet, which carries their frames
        bl = header.base_layer
        self.base_dec = None if bl is None else baselayer.BaseDecoder(bl.size)
        self.base_order = None if bl is None else container.BaseOrder(header)
        self.base_pics: torch.Tensor | None = None
        # versions 7 and 8: the current keyframe's picture and base picture (codec/anchor.py)
        self.tau = 0.0 if bl is None else bl.tau
        self.anchor: anchor_.Anchor | None = None

    @property
    def ref(self):
        """The current keyframe's reference (:meth:`CodecModel.reference`), or None before the
        first keyframe. Built when first needed, so a keyframe's own frame is out before the
        reference networks run: the first frame of a decode comes that much sooner (issue 36)."""
        if self._pending_ref is not None:
            x_r, q_r = self._pending_ref
            self._pending_ref = None
            self._ref = self.m.reference(x_r, q_r[None], self.mult)
        return self._ref

    def frames(self, x) -> list[np.ndarray]:
        """Decoded pictures at coded size (N, 3, S, S) -> output frames at source size.
        One frame at a time: the output size is bounded per frame (container.MAX_PIXELS)."""
        return [video.from_model(x[i:i + 1], self.header.width, self.header.height)[0] for i in range(len(x))]

    @torch.no_grad()
    def push(self, packet) -> list[np.ndarray]:
        """Decode one packet (in stream order); returns the frames it completes."""
        if isinstance(packet, BasePacket):
            self.base_packet(packet)
            return []
        if isinstance(packet, KeyframePacket):
            return self.frames(self.decode_keyframe(packet))
        base = self.take_base(packet.first_frame, packet.count)
        q = self.symbols(packet)
        out = []
        for i in range(0, packet.count, 8):
            b = None if base is None else base[i:i + 8]
            out += self.frames(self.decode(q[i:i + 8], b))
        return out

    def decode(self, q: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (B, 3, S, S) from symbols q (B, C) and their base pictures, against the
        current keyframe: the frame networks, then the keyframe anchor where the stream has one."""
        return self.apply_anchor(self.m.decode(q, self.mult, self.ref, base), base)

    def apply_anchor(self, x: torch.Tensor, base: torch.Tensor | None, anchor: "anchor_.Anchor | None" = None):
        """The keyframe anchor (``anchor``, default the current keyframe's) applied to generated
        frames x and their base pictures; x unchanged in a stream without one."""
        return anchor_.compose(x, base, anchor or self.anchor, self.tau)

    def base_packet(self, packet: BasePacket):
        """Decode a B packet's pictures and hold them for the next packet's frames."""
        if self.base_dec is None:
            raise StreamError("base-layer packet in a stream without a base layer")
        self.base_order.check(packet, self.next_index)
        pics = []
        for i, data in enumerate(packet.pictures):
            try:
                pics.append(self.base_dec.decode(data, predicted=i > 0 or not packet.key))
            except keyframe.KeyframeError as e:
                raise StreamError(f"base-layer picture of frame {packet.first_frame + i}: {e}") from None
        self.base_pics = baselayer.to_tensor(np.stack(pics)).to(self.m.device)

    def take_base(self, first: int, count: int, keyframe_packet: KeyframePacket | None = None):
        """The held base pictures (count, 3, b, b) of frames first.. about to decode, or None
        without a base layer (or when the packet is out of order, which the caller refuses)."""
        if self.base_dec is None or first != self.next_index:
            return None
        self.base_order.covers(first, count, keyframe_packet)
        pics, self.base_pics = self.base_pics, None
        return pics

    @torch.no_grad()
    def decode_keyframe(self, packet: KeyframePacket) -> torch.Tensor:
        """Decode a keyframe picture and make it the reference (:attr:`ref`, built when first
        used); returns the picture (1, 3, S, S)."""
        if packet.frame_index != self.next_index:
            raise StreamError(f"keyframe for frame {packet.frame_index}, expected {self.next_index}")
        base = self.take_base(packet.frame_index, 1, packet)   # a keyframe's frame is its own picture
        rgb = self.kf_dec.decode(packet.payload, packet.predicted)
        if rgb.shape[:2] != (self.header.coded_size, self.header.coded_size):
            raise StreamError("keyframe picture has the wrong size for this stream")
        x_r = video.to_model(rgb, self.header.coded_size).to(self.m.device)
        q_r = torch.tensor(packet.ref_symbols, dtype=torch.int64, device=self.m.device)
        self._pending_ref = (x_r, q_r)
        if self.tau > 0 and base is not None:
            self.anchor = anchor_.Anchor(x_r, base)
        self.prev_q = q_r
        self.next_index += 1
        return x_r

    def symbols(self, packet: TokenPacket) -> torch.Tensor:
        """Entropy-decode a token packet: integer symbols (count, C) for self.ref."""
        if self._ref is None and self._pending_ref is None:
            raise StreamError("token packet before the first keyframe")
        if packet.first_frame != self.next_index:
            raise StreamError(f"tokens for frame {packet.first_frame}, expected {self.next_index}")
        d = self.m.entropy.decode(packet.payload, packet.count, self.header.quality).to(self.m.device)
        q = self.prev_q + torch.cumsum(d, 0)                 # (count, C) int64 symbols, exact
        if q.abs().max() > container.MAX_SYMBOL:
            raise StreamError(f"token symbol beyond +-{container.MAX_SYMBOL} in frames "
                              f"{packet.first_frame}..{packet.first_frame + packet.count - 1}")
        self.prev_q = q[-1]
        self.next_index += packet.count
        return q


def check_model(model: CodecModel, header: Header):
    if header.model_id != model.model_id or header.model_hash != model.hash8:
        raise ModelError(f"this stream was made by model {header.model_id!r} "
                         f"(hash {header.model_hash.hex()}), but the loaded model is "
                         f"{model.model_id!r} (hash {model.hash8.hex()})")
    if header.token_dim != model.config.token_dim or header.coded_size != model.config.image_size:
        raise ModelError("stream and model disagree on token size or coded size")
    if header.base_layer is not None and not model.has_base_layer:
        raise ModelError(f"this stream has a base layer, but model {model.model_id!r} is token-only")
