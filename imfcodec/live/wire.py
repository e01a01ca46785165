"""The live transport's messages: bytes <-> :class:`Message`. Spec: docs/live.md.

No torch, no aiortc here: what goes on a data channel and what a receiver refuses before
any packet reaches a decoder. Every message is one data-channel message::

    magic "IL" | type u8 | reserved u8 (0) | sequence u32 | frame u32 | length u32 | payload

big endian, 16 bytes of header, then ``length`` bytes of payload (exactly the rest).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import IMFCodecError
from ..format import container

MAGIC = b"IL"
HEADER = struct.Struct(">2sBBIII")
HEADER_BYTES = HEADER.size              # 16

HEADER_MSG = 0x48       # 'H': the stream header (.imf Header bytes); control channel, sender -> receiver
MEDIA_MSG = 0x4D        # 'M': the packets of one frame unit; media channel, sender -> receiver
NEED_KEY_MSG = 0x4E     # 'N': "need keyframe" (PLI-like); control channel, receiver -> sender
BYE_MSG = 0x59          # 'Y': the sender's last message; frame = frames it coded
TYPES = {HEADER_MSG: "header", MEDIA_MSG: "media", NEED_KEY_MSG: "need-keyframe", BYE_MSG: "bye"}

# Limits (docs/live.md, "Limits")
MAX_MESSAGE_BYTES = 65536               # aiortc's SCTP maxMessageSize: what one message may take
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - HEADER_BYTES
MAX_FRAME = container.MAX_FRAME_COUNT - 1
MAX_SEQUENCE = (1 << 32) - 1
REORDER_WINDOW = 64                     # a sequence number this far behind the newest is stale
MAX_SEQUENCE_GAP = 1 << 20              # ... and one this far ahead of it is refused as bogus

MEDIA_CHANNEL = "imf-media"             # unordered, maxRetransmits=0
CONTROL_CHANNEL = "imf-control"         # ordered, reliable


class MessageError(IMFCodecError, ValueError):
    """A transport message a receiver refuses (one line; the message is dropped and counted)."""


@dataclass(frozen=True)
class Message:
    type: int
    seq: int
    frame: int
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        if self.type not in TYPES:
            raise ValueError(f"unknown message type 0x{self.type:02x}")
        if not (0 <= self.seq <= MAX_SEQUENCE and 0 <= self.frame <= MAX_FRAME):
            raise ValueError("sequence number or frame index out of range")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(self.payload)} bytes over {MAX_PAYLOAD_BYTES}")
        return HEADER.pack(MAGIC, self.type, 0, self.seq, self.frame, len(self.payload)) + bytes(self.payload)


def parse(data) -> Message:
    """One message from one data-channel message, or one MessageError."""
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError("not a binary message")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes over {MAX_MESSAGE_BYTES}")
    if len(data) < HEADER_BYTES:
        raise MessageError(f"message of {len(data)} bytes, shorter than its {HEADER_BYTES}-byte header")
    magic, typ, reserved, seq, frame, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MessageError("bad magic bytes")
    if typ not in TYPES:
        raise MessageError(f"unknown message type 0x{typ:02x}")
    if reserved != 0:
        raise MessageError("reserved byte not zero")
    if length != len(data) - HEADER_BYTES:
        raise MessageError(f"length field {length}, but {len(data) - HEADER_BYTES} payload bytes")
    if frame > MAX_FRAME:
        raise MessageError(f"frame index {frame} over {MAX_FRAME}")
    if typ in (NEED_KEY_MSG, BYE_MSG) and length:
        raise MessageError(f"{TYPES[typ]} message with a payload")
    if typ in (HEADER_MSG, MEDIA_MSG) and not length:
        raise MessageError(f"{TYPES[typ]} message without a payload")
    return Message(typ, seq, frame, data[HEADER_BYTES:])


class SequenceWindow:
    """Which media sequence numbers a receiver takes: each once, at most REORDER_WINDOW
    behind the newest, at most MAX_SEQUENCE_GAP ahead of it. Counts the numbers never seen."""

    def __init__(self):
        self.newest: int | None = None
        self.seen: set[int] = set()

    def take(self, seq: int):
        """Accept ``seq`` or raise MessageError (duplicate, stale or bogus)."""
        if self.newest is not None:
            if seq in self.seen:
                raise MessageError(f"duplicate sequence number {seq}")
            if seq <= self.newest - REORDER_WINDOW:
                raise MessageError(f"stale sequence number {seq} (newest {self.newest})")
            if seq > self.newest + MAX_SEQUENCE_GAP:
                raise MessageError(f"sequence number {seq} jumps over {MAX_SEQUENCE_GAP} past {self.newest}")
        self.seen.add(seq)
        if self.newest is None or seq > self.newest:
            self.newest = seq
            self.seen = {s for s in self.seen if s > seq - REORDER_WINDOW}
