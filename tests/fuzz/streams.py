"""Structure-aware .imf stream generation and CRC fix-up, for the fuzzer and the tests.

A byte-level mutator stops at the first CRC: every mutated file is "corrupt header" or
"corrupt packet". These helpers build streams field by field (values in range, at their
limits and beyond them), and recompute the checksums of a mutated stream, so that the
parser and the decoder see what an attacker would send: wrong values with valid CRCs.

``draw`` is anything with ``ConsumeIntInRange(lo, hi)``, ``ConsumeBytes(n)`` and
``ConsumeBool()``: an ``atheris.FuzzedDataProvider`` (coverage-guided), or
:class:`RandomDraw` (seeded ``random.Random``, for the test suite without atheris).
"""
from __future__ import annotations

import binascii
import random
import struct
import zlib
from dataclasses import dataclass, field

from imfcodec.format import container as C

U64 = (1 << 64) - 1


class RandomDraw:
    """FuzzedDataProvider's interface over a seeded random.Random."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def ConsumeIntInRange(self, lo, hi):
        return self.r.randint(lo, hi)

    def ConsumeBytes(self, n):
        return self.r.randbytes(n)

    def ConsumeBool(self):
        return self.r.random() < 0.5


@dataclass
class Target:
    """What a stream should name to reach the decoder: the model's id, hash and sizes, and
    real keyframe pictures (codec name -> list of payloads) at its coded size."""
    model_id: str
    hash8: bytes
    coded_size: int
    token_dim: int
    pictures: dict = field(default_factory=dict)
    token_payloads: list = field(default_factory=list)    # (count, rANS string) pairs
    base_pictures: list = field(default_factory=list)     # a real base stream: a key picture, then inter
    base_size: int = 48                                   # ... of this side
    layer_pictures: list = field(default_factory=list)    # a real frame-layer stream: key, then inter
    layer_size: tuple = (32, 16)                          # ... of this width x height


def _pick(d, values):
    return values[d.ConsumeIntInRange(0, len(values) - 1)]


def _number(d, typical: int, limit: int, lo: int = 0) -> int:
    """Mostly a valid value; else a limit, one past it, zero, or any 64-bit number."""
    if d.ConsumeIntInRange(0, 63) < 60:
        return typical
    return _pick(d, [lo, max(lo - 1, 0), limit, limit + 1, d.ConsumeIntInRange(0, U64),
                     d.ConsumeIntInRange(lo, limit)])


def header_body(d, t: Target, packet_frames: int, frame_count: int, codec_id: int) -> bytes:
    mid = t.model_id.encode() if d.ConsumeIntInRange(0, 31) else d.ConsumeBytes(d.ConsumeIntInRange(0, 300))
    mhash = t.hash8 if d.ConsumeIntInRange(0, 31) else d.ConsumeBytes(8).ljust(8, b"\0")
    fps = _pick(d, [(25, 1), (30000, 1001), (1, 1), (1000, 1), (1, 1000)])
    f = {"width": _number(d, d.ConsumeIntInRange(1, 320), C.MAX_SIDE, 1),
         "height": _number(d, d.ConsumeIntInRange(1, 240), C.MAX_SIDE, 1),
         "coded_size": _number(d, t.coded_size, C.MAX_CODED_SIZE, C.MIN_CODED_SIZE),
         "fps_num": _number(d, fps[0], C.MAX_FPS_TERM, 1),
         "fps_den": _number(d, fps[1], C.MAX_FPS_TERM, 1),
         "frame_count": _number(d, frame_count, C.MAX_FRAME_COUNT),
         "quality": _number(d, d.ConsumeIntInRange(1, 8), 8, 1),
         "keyframe_codec": _number(d, codec_id, 3),
         "token_dim": _number(d, t.token_dim, C.MAX_TOKEN_DIM, 1),
         "packet_frames": _number(d, packet_frames, C.MAX_PACKET_FRAMES, 1)}
    return (C.put_uvarint(len(mid)) + mid + mhash
            + b"".join(C.put_uvarint(v) for v in f.values()))


def _svarints(d, n: int) -> bytes:
    out = []
    for _ in range(n):
        k = d.ConsumeIntInRange(0, 255)
        v = (d.ConsumeIntInRange(-300, 300) if k < 254 else
             _pick(d, [C.MAX_SYMBOL, -C.MAX_SYMBOL, C.MAX_SYMBOL + 1, -(1 << 63), (1 << 63) - 1]))
        out.append(C.put_svarint(v))
    return b"".join(out)


def _mutate(d, b: bytes) -> bytes:
    b = bytearray(b)
    for _ in range(d.ConsumeIntInRange(0, 4)):
        if not b:
            break
        i = d.ConsumeIntInRange(0, len(b) - 1)
        op = d.ConsumeIntInRange(0, 2)
        if op == 0:
            b[i] = d.ConsumeIntInRange(0, 255)
        elif op == 1:
            del b[i:i + d.ConsumeIntInRange(1, 16)]
        else:
            b[i:i] = d.ConsumeBytes(d.ConsumeIntInRange(1, 16))
    return bytes(b)


def packet(d, t: Target, codec: str, frame: int, packet_frames: int, token_dim: int) -> tuple[bytes, int]:
    """One packet (type, length, body, CRC) for the frame ``frame``; returns it and the
    number of frames it covers."""
    kind = 0 if frame == 0 and d.ConsumeIntInRange(0, 15) else d.ConsumeIntInRange(0, 63)
    if kind < 16:                                  # keyframe, intra or predicted
        p_odds = 3 if codec in C.CHAINED_CODECS else 31
        typ = C.PKT_PREDICTED_KEYFRAME if frame and d.ConsumeIntInRange(0, p_odds) == 0 else C.PKT_KEYFRAME
        pics = t.pictures.get(codec) or [b""]
        pic = _pick(d, pics)
        k = d.ConsumeIntInRange(0, 5)
        if k == 0:
            pic = d.ConsumeBytes(d.ConsumeIntInRange(0, 64))
        elif k == 1:
            pic = _mutate(d, pic)
        elif k == 2:                               # a picture from another codec
            pic = _pick(d, [p for ps in t.pictures.values() for p in ps] or [b""])
        n = _number(d, token_dim, C.MAX_TOKEN_DIM)
        body = (C.put_uvarint(_number(d, frame, C.MAX_FRAME_COUNT)) + C.put_uvarint(n)
                + _svarints(d, min(n, 2048)) + pic)
        covers = 1
    elif kind < 63:                                # tokens
        typ = C.PKT_TOKENS
        if t.token_payloads and d.ConsumeIntInRange(0, 3):
            count, payload = _pick(d, t.token_payloads)
            count = min(count, packet_frames) if d.ConsumeIntInRange(0, 3) else count
        else:
            count = d.ConsumeIntInRange(1, max(1, packet_frames))
            payload = d.ConsumeBytes(d.ConsumeIntInRange(0, 48))
        if d.ConsumeIntInRange(0, 3) == 0:
            payload = _mutate(d, payload)
        count = _number(d, count, C.MAX_PACKET_FRAMES, 1)
        body = C.put_uvarint(_number(d, frame, C.MAX_FRAME_COUNT)) + C.put_uvarint(count) + payload
        covers = count
    else:                                          # an unknown type
        typ = d.ConsumeIntInRange(0, 255)
        body = d.ConsumeBytes(d.ConsumeIntInRange(0, 32))
        covers = 1
    n = len(body) if d.ConsumeIntInRange(0, 63) else _number(d, len(body), C.MAX_KEYFRAME_PAYLOAD)
    crc = binascii.crc_hqx(body, 0xFFFF) if d.ConsumeIntInRange(0, 63) else d.ConsumeIntInRange(0, 0xFFFF)
    return bytes([typ]) + C.put_uvarint(n) + body + struct.pack(">H", crc), covers


def base_packet(d, t: Target, frame: int, count: int, key: bool) -> bytes:
    """A base-layer packet (version 5) for frames frame.. frame+count-1: mostly in order, of
    the right kind and count, its pictures real VP9 pictures (of the coded size: the wrong
    size), mutated ones or bytes, deflated as the writer does (or the deflate stream mutated).
    ``key``: the packet it goes before is an intra keyframe (its picture should be a key one).
    Each field goes wrong about once in 32 packets, so that most streams get to the decoder."""
    kind = int(key) if d.ConsumeIntInRange(0, 31) else d.ConsumeIntInRange(0, 255)
    n = count if d.ConsumeIntInRange(0, 31) else d.ConsumeIntInRange(0, count + 2)
    pics = []
    for i in range(n):
        if t.base_pictures and d.ConsumeIntInRange(0, 3):      # the base stream's own pictures
            real = t.base_pictures[:1] if kind == 1 and i == 0 else t.base_pictures[1:] or t.base_pictures
            pic = _pick(d, real)
        else:
            pic = _pick(d, t.pictures.get("vp9") or [b"\0"])
        if not d.ConsumeIntInRange(0, 31):
            pic = _mutate(d, pic) if d.ConsumeBool() else d.ConsumeBytes(d.ConsumeIntInRange(0, 32))
        pics.append(pic)
    raw = b"".join(C.put_uvarint(len(p)) for p in pics[:-1]) + b"".join(pics)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = z.compress(raw) + z.flush()
    if not d.ConsumeIntInRange(0, 31):
        deflated = _mutate(d, deflated)
    return raw_packet(C.PKT_BASE, C.put_uvarint(_number(d, frame, C.MAX_FRAME_COUNT)) + C.put_uvarint(n)
                      + bytes([kind]) + deflated)


def stream(d, t: Target) -> bytes:
    """A whole stream drawn field by field; mostly well formed, so that the draws reach the
    decoder, with each field now and then at or beyond its limit."""
    packet_frames = d.ConsumeIntInRange(1, 4)
    codec_id = d.ConsumeIntInRange(0, 3)
    packets, frame = [], 0
    for _ in range(d.ConsumeIntInRange(0, 6)):
        p, covers = packet(d, t, C.KEYFRAME_CODECS[codec_id], frame, packet_frames, t.token_dim)
        packets.append((p, frame, covers))
        frame += covers
    frame_count = frame if d.ConsumeIntInRange(0, 3) else _pick(d, [0, frame + 1, max(frame - 1, 0)])
    body = header_body(d, t, packet_frames, frame_count, codec_id)
    version = C.VERSION if d.ConsumeIntInRange(0, 63) else d.ConsumeIntInRange(0, 255)
    hlen = len(body) if d.ConsumeIntInRange(0, 63) else _number(d, len(body), C.MAX_HEADER_BYTES)
    crc = zlib.crc32(body) if d.ConsumeIntInRange(0, 63) else d.ConsumeIntInRange(0, 0xFFFFFFFF)
    # one stream in 8 becomes a version-5 stream (a B packet before each frame-carrying packet);
    # drawn last, so the draws of the others are what they were before the base layer
    plain = len(body)                              # the version-2 fields end here
    if d.ConsumeIntInRange(0, 7) == 0:
        sizes = [t.base_size] * 4 + list(C.BASE_SIZES) if t.base_pictures else list(C.BASE_SIZES)
        based = body + C.put_uvarint(_number(d, 3, 3)) + C.put_uvarint(
            _pick(d, sizes if d.ConsumeIntInRange(0, 7) else [0, 40, 97, 1 << 40]))
        version = C.BASE_VERSION if version == C.VERSION else version
        hlen = len(based) if hlen == len(body) else hlen
        crc = zlib.crc32(based) if crc == zlib.crc32(body) else crc
        body = based
        # a B packet of at most one picture past the limit (a crafted count may be any 64-bit
        # number: the generator must not build that many pictures)
        packets = [(base_packet(d, t, f, min(n, C.MAX_PACKET_FRAMES + 1), p[0] == C.PKT_KEYFRAME) + p, f, n)
                   for p, f, n in packets]
    # one stream in 8 gets framing fields (version 3, or 6 with the base layer): crop and
    # frame-layer packets before each keyframe (before its B packet), frame-layer pictures
    # now and then before token packets; drawn last, as the base layer is
    if d.ConsumeIntInRange(0, 7) == 0:
        framed = body[:plain] + framing_fields(d, t, body) + body[plain:]    # framing, then base layer
        version = {C.VERSION: C.FRAMED_VERSION, C.BASE_VERSION: C.FRAMED_BASE_VERSION}.get(version, version)
        hlen = len(framed) if hlen == len(body) else hlen
        crc = zlib.crc32(framed) if crc == zlib.crc32(body) else crc
        body = framed
        width, height = _size(body)
        packets = [(framing_packets(d, t, f, first_packet_type(p), width, height) + p, f, n)
                   for p, f, n in packets]
    # one base-layer stream in 4 gets the keyframe anchor's field (version 7, or 8 framed): the
    # base-layer fields end the body in versions 5 and 6, so it goes last; drawn last again
    if version in (C.BASE_VERSION, C.FRAMED_BASE_VERSION) and d.ConsumeIntInRange(0, 3) == 0:
        anchored = body + C.put_uvarint(_number(d, d.ConsumeIntInRange(1, C.MAX_ANCHOR), C.MAX_ANCHOR, 1))
        version = {C.BASE_VERSION: C.ANCHOR_VERSION, C.FRAMED_BASE_VERSION: C.FRAMED_ANCHOR_VERSION}[version]
        hlen = len(anchored) if hlen == len(body) else hlen
        crc = zlib.crc32(anchored) if crc == zlib.crc32(body) else crc
        body = anchored
    return b"".join([C.MAGIC, bytes([version]), C.put_uvarint(hlen), body, struct.pack(">I", crc)]
                    + [p for p, _, _ in packets])


def first_packet_type(p: bytes) -> int:
    """The type of the packet that carries the frames (the one after a B packet, if any)."""
    if p[0] != C.PKT_BASE:
        return p[0]
    r = C._Reader(p, "packet")
    r.take(1)
    n = r.uvarint()
    return p[r.pos + n + 2] if r.pos + n + 2 < len(p) else p[0]


def _size(body: bytes) -> tuple[int, int]:
    """A header body's width and height (0, 0 where they do not parse)."""
    try:
        r = C._Reader(body, "header")
        r.string()
        r.take(8)
        return r.uvarint(), r.uvarint()
    except C.StreamError:
        return 0, 0


def framing_fields(d, t: Target, body: bytes) -> bytes:
    """Version 3/6 framing fields: mostly the Target's frame-layer size, each field now and
    then at or beyond its limit."""
    width, height = _size(body)
    lw, lh = (max(2, min(a, b)) for a, b in zip(t.layer_size, (width, height)))   # within the frame
    vals = [1, 3, lw, lh, d.ConsumeIntInRange(1, 4), d.ConsumeIntInRange(0, 4)]
    if d.ConsumeIntInRange(0, 3) == 0:          # one field in range or at or beyond its limit
        i = d.ConsumeIntInRange(0, 5)
        vals[i] = _number(d, vals[i], (2, 4, C.MAX_LAYER_SIDE, C.MAX_LAYER_SIDE, C.MAX_LAYER_INTERVAL,
                                       max(min(width, height) // 2, 0))[i], (1, 3, 2, 2, 1, 0)[i])
    return b"".join(C.put_uvarint(v) for v in vals)


def framing_packets(d, t: Target, frame: int, typ: int, width: int, height: int) -> bytes:
    """The crop (C) and frame-layer (F) packets before the packet of frame ``frame`` of type
    ``typ``: a C and an F before a keyframe, now and then an F before a token packet. The
    crop is mostly inside the frame; F pictures are the Target's real layer stream (key for
    an intra keyframe), mutated ones or bytes. Each field goes wrong about once in 32."""
    out = b""
    keyframe = typ in (C.PKT_KEYFRAME, C.PKT_PREDICTED_KEYFRAME)
    if keyframe or not d.ConsumeIntInRange(0, 31):
        side = max(C.MIN_CROP_SIDE, min(width, height, 4 * C.MIN_CROP_SIDE))
        x = d.ConsumeIntInRange(0, max(width - side, 0))
        y = d.ConsumeIntInRange(0, max(height - side, 0))
        vals = [_number(d, v, C.MAX_SIDE) for v in (frame, x, y, side)]
        out += raw_packet(C.PKT_CROP, b"".join(C.put_uvarint(v) for v in vals)
                          + (d.ConsumeBytes(2) if not d.ConsumeIntInRange(0, 31) else b""))
    if keyframe or not d.ConsumeIntInRange(0, 3):
        key = typ == C.PKT_KEYFRAME if d.ConsumeIntInRange(0, 31) else d.ConsumeBool()
        kind = int(not key) if d.ConsumeIntInRange(0, 31) else d.ConsumeIntInRange(0, 255)
        pics = t.layer_pictures or [b"\0"]
        pic = pics[0] if key else _pick(d, pics[1:] or pics)
        if not d.ConsumeIntInRange(0, 31):
            pic = _mutate(d, pic) if d.ConsumeBool() else _pick(d, t.pictures.get("vp9") or [b"\0"])
        out += raw_packet(C.PKT_LAYER, C.put_uvarint(_number(d, frame, C.MAX_FRAME_COUNT)) + bytes([kind]) + pic)
    return out


def fix_crcs(data: bytes) -> bytes:
    """Recompute every checksum of a (mutated) stream, walking it as a reader would; bytes
    past the first record whose lengths do not fit are kept as they are."""
    out = bytearray(data)
    r = C._Reader(bytes(data), "fix")
    try:
        r.take(5)
        n = r.uvarint()
        start = r.pos
        r.take(n)
        out[r.pos:r.pos + 4] = struct.pack(">I", zlib.crc32(bytes(out[start:start + n])))
        r.take(4)
        while not r.done():
            r.take(1)
            n = r.uvarint()
            start = r.pos
            r.take(n + 2)
            out[start + n:start + n + 2] = struct.pack(">H", binascii.crc_hqx(bytes(out[start:start + n]), 0xFFFF))
    except C.StreamError:
        pass
    return bytes(out)


def with_header(data: bytes, **fields) -> bytes:
    """A stream with some header fields replaced (raw numbers, no range checks) and its
    header CRC recomputed: the crafted files of issue 17."""
    h, packets = _split(data)
    r = C._Reader(h, "header")
    mid = r.string()
    mhash = r.take(8)
    names = ["width", "height", "coded_size", "fps_num", "fps_den", "frame_count", "quality",
             "keyframe_codec", "token_dim", "packet_frames"]
    vals = dict(zip(names, (r.uvarint() for _ in names)))
    vals.update(fields)
    body = C.put_uvarint(len(mid.encode())) + mid.encode() + mhash + b"".join(C.put_uvarint(vals[k]) for k in names)
    return (C.MAGIC + bytes([C.VERSION]) + C.put_uvarint(len(body)) + body
            + struct.pack(">I", zlib.crc32(body)) + packets)


def _split(data: bytes) -> tuple[bytes, bytes]:
    r = C._Reader(data, "split")
    r.take(5)
    n = r.uvarint()
    body = r.take(n)
    r.take(4)
    return body, data[r.pos:]


def raw_packet(typ: int, body: bytes) -> bytes:
    """A packet with any body, CRC included."""
    return bytes([typ]) + C.put_uvarint(len(body)) + body + struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))
