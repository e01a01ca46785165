"""The receiving end of a live call without the network: transport messages in, decoded
frames out, and when to ask for a keyframe. Spec: docs/live.md ("What a receiver does").

:class:`LiveDecoder` validates every message (:mod:`.wire`, then each .imf packet as in a
file, then the frame unit's structure) and decodes a unit only when it continues exactly
what the decoder holds: the next frame after the last decoded one, or an intra keyframe
(a random-access point), which starts a fresh :class:`~imfcodec.codec.decoder.Decoder`.
Anything else is dropped and counted, never decoded: a frame is emitted only from a state
every earlier packet since the last intra keyframe built. :class:`Concealer` fills the
frames it could not show by repeating the last good one.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import IMFCodecError, describe
from ..format import container
from ..format.container import BasePacket, Header, KeyframePacket, StreamError, TokenPacket
from . import wire

PLI_INTERVAL_S = 0.2        # at most one "need keyframe" message per this many seconds


@dataclass
class ReceiveStats:
    messages: int = 0             # media messages that arrived (valid or not)
    bytes: int = 0                # their bytes, transport headers included
    refused: int = 0              # failed validation (wire, packet or unit structure)
    late: int = 0                 # valid units for frames already decoded or skipped
    waiting: int = 0              # valid units dropped while waiting for an intra keyframe
    undecodable: int = 0          # valid units the decoder refused (its state is dropped)
    frames_decoded: int = 0
    resyncs: int = 0              # intra keyframes that restarted decoding after a loss
    keyframe_requests: int = 0
    reasons: Counter = field(default_factory=Counter)    # why messages were refused (first words)

    def refuse(self, why: str):
        self.refused += 1
        self.reasons[why.split(" (")[0][:60]] += 1


class LiveDecoder:
    """Messages in (:meth:`feed`), frames out. ``model``: a CodecModel, or a callable that
    takes the stream header and returns one (loaded when the header arrives); a header it
    cannot decode sets :attr:`error` and every later message is refused."""

    def __init__(self, model, pli_interval: float = PLI_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.model_source = model
        self.model = None
        self.header: Header | None = None
        self.error: str | None = None
        self.dec = None                   # a Decoder, only while synced
        self.next_frame = 0               # the frame the decoder takes next
        self.want_key: int | None = None  # the newest frame dropped for want of an intra keyframe
        self.last_pli: float | None = None
        self.pli_interval, self.clock = pli_interval, clock
        self.seqs = wire.SequenceWindow()
        self.ended: int | None = None     # BYE: the frames the sender coded
        self.stats = ReceiveStats()

    # ---- messages ----------------------------------------------------------------------
    def feed(self, data) -> list[tuple[int, np.ndarray]]:
        """One transport message; returns the frames it decoded as (frame index, RGB uint8)."""
        try:
            msg = wire.parse(data)
        except wire.MessageError as e:
            self.stats.refuse(str(e))
            return []
        if msg.type == wire.HEADER_MSG:
            self._header(msg)
            return []
        if msg.type == wire.BYE_MSG:
            self.ended = msg.frame
            return []
        if msg.type != wire.MEDIA_MSG:
            self.stats.refuse(f"{wire.TYPES[msg.type]} message sent to a receiver")
            return []
        self.stats.messages += 1
        self.stats.bytes += len(data)
        try:
            packets = self._unit(msg)
            self.seqs.take(msg.seq)         # only a valid message takes its number
        except (wire.MessageError, StreamError) as e:
            self.stats.refuse(str(e))
            return []
        return self._decode(msg.frame, packets)

    def _header(self, msg: wire.Message):
        try:
            h = container.parse_header(msg.payload)
        except StreamError as e:
            self.stats.refuse(f"stream header: {e}")
            return
        if self.header is not None:
            if h != self.header:
                self.stats.refuse("a second, different stream header")
            return
        if h.framing is not None:
            self.error = "face-framed streams (format version 3) are not carried live"
            return
        try:
            model = self.model_source(h) if callable(self.model_source) else self.model_source
            from ..codec.decoder import check_model
            check_model(model, h)
        except IMFCodecError as e:
            self.error = str(e)
            return
        self.header, self.model = h, model

    def _unit(self, msg: wire.Message) -> list:
        """The packets of one frame unit, checked: [B] then one K, P or T packet of frame
        ``msg.frame`` (B exactly when the stream has a base layer, for the same frames)."""
        if self.error is not None:
            raise wire.MessageError(f"receiver stopped: {self.error}")
        if self.header is None:
            raise wire.MessageError("media before the stream header")
        packets = container.parse_packets(msg.payload, self.header)
        main = packets[-1] if packets else None
        want = 2 if self.header.base_layer is not None else 1
        if len(packets) != want or not isinstance(main, (KeyframePacket, TokenPacket)):
            raise wire.MessageError("malformed unit (not [B] then one K, P or T packet)")
        first = main.frame_index if isinstance(main, KeyframePacket) else main.first_frame
        count = 1 if isinstance(main, KeyframePacket) else main.count
        if first != msg.frame:
            raise wire.MessageError(f"malformed unit (message for frame {msg.frame}, packet for {first})")
        if first + count - 1 > wire.MAX_FRAME:
            raise wire.MessageError("malformed unit (frames past the largest frame index)")
        if want == 2:
            b = packets[0]
            if not isinstance(b, BasePacket) or (b.first_frame, b.count) != (first, count):
                raise wire.MessageError("malformed unit (base-layer pictures not of the unit's frames)")
        return packets

    @staticmethod
    def _intra(packets) -> bool:
        main = packets[-1]
        return (isinstance(main, KeyframePacket) and not main.predicted
                and (len(packets) == 1 or packets[0].key))

    # ---- decoding ----------------------------------------------------------------------
    def _decode(self, frame: int, packets: list) -> list[tuple[int, np.ndarray]]:
        if frame < self.next_frame:
            self.stats.late += 1
            return []
        if self.dec is None or frame != self.next_frame:
            if not self._intra(packets):
                self._lost(frame)
                self.stats.waiting += 1
                return []
            if self.dec is not None or self.stats.frames_decoded:
                self.stats.resyncs += 1
            self._restart(frame)
        try:
            frames = []
            for p in packets:
                frames += self.dec.push(p)
        except Exception as e:      # noqa: BLE001 - any failure drops the decoder state, never the call
            self.stats.undecodable += 1
            self.stats.reasons[f"undecodable: {describe(e, 60)}"] += 1
            self.dec = None
            self._lost(frame)
            return []
        main = packets[-1]
        count = 1 if isinstance(main, KeyframePacket) else main.count
        if len(frames) != count:        # the codec's contract; refuse rather than misnumber
            self.stats.undecodable += 1
            self.dec = None
            self._lost(frame)
            return []
        self.next_frame = frame + count
        self.want_key = None
        self.stats.frames_decoded += count
        return [(frame + i, f) for i, f in enumerate(frames)]

    def _restart(self, frame: int):
        from ..codec.decoder import Decoder
        self.dec = Decoder(self.model, self.header)
        self.dec.next_index = frame         # decoding starts at this intra keyframe

    def _lost(self, frame: int):
        """Frame ``frame``'s unit could not be decoded: drop the decoder state and ask for an
        intra keyframe after it (the request names the newest such frame: a sender that has
        sent an intra keyframe since then waits for it to arrive)."""
        self.dec = None
        self.want_key = frame if self.want_key is None else max(self.want_key, frame)
        self.next_frame = max(self.next_frame, frame)

    def keyframe_request(self) -> int | None:
        """The frame from which this receiver needs an intra keyframe, when it should ask
        now (at most once per ``pli_interval``), else None."""
        if self.want_key is None or self.header is None:
            return None
        now = self.clock()
        if self.last_pli is not None and now - self.last_pli < self.pli_interval:
            return None
        self.last_pli = now
        self.stats.keyframe_requests += 1
        return self.want_key

    def need_keyframe_message(self) -> bytes | None:
        """:meth:`keyframe_request` as the message to send, or None."""
        f = self.keyframe_request()
        return None if f is None else wire.Message(wire.NEED_KEY_MSG, 0, min(f, wire.MAX_FRAME)).to_bytes()


class Concealer:
    """Decoded frames (in frame order) -> the frames to show, one per frame index: a frame
    that never decoded is the last good frame again (concealed). Frames before the first
    good one are not shown (there is nothing to repeat)."""

    def __init__(self):
        self.last: np.ndarray | None = None
        self.next = 0                     # the next frame index to show
        self.concealed = 0

    def show(self, index: int, frame: np.ndarray) -> list[tuple[int, np.ndarray, bool]]:
        if index < self.next:
            return []
        out = self.fill(index)
        out.append((index, frame, False))
        self.last, self.next = frame, index + 1
        return out

    def fill(self, end: int) -> list[tuple[int, np.ndarray, bool]]:
        """The last good frame for every index from the next one up to ``end`` (exclusive)."""
        if self.last is None:
            self.next = max(self.next, end)
            return []
        out = [(i, self.last, True) for i in range(self.next, end)]
        self.concealed += len(out)
        self.next = max(self.next, end)
        return out
