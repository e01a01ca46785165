"""The ``.imf`` container: bytes <-> header and packets. Spec: docs/bitstream.md.

No torch here: the container knows nothing of networks or entropy tables.
"""
from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Union

from ..errors import IMFCodecError
from ..options import ANCHOR_MAX, ANCHOR_SCALE, KEYFRAME_CODECS as _KEYFRAME_CODEC_NAMES, QUALITIES

MAGIC = b"IMF\x89"
VERSION = 2                 # 2 added the vp9 keyframe codec and predicted keyframes
FRAMED_VERSION = 3          # 3 = 2 plus framing (a face crop coded by IMF + a frame layer)
BASE_VERSION = 5           # 5 = 2 plus a base layer (small VP9 pictures, one deflated group per packet)
FRAMED_BASE_VERSION = 6    # 6 = 3's framing plus 5's base layer (the face crop's stream has B packets)
ANCHOR_VERSION = 7         # 7 = 5 plus the keyframe anchor (imfcodec/codec/anchor.py)
FRAMED_ANCHOR_VERSION = 8  # 8 = 6 plus the keyframe anchor
READS_VERSIONS = (1, 2, 3, 5, 6, 7, 8)  # a version-1 file is a version-2 file without codec 3 and 'P' packets
FRAMED_VERSIONS = (FRAMED_VERSION, FRAMED_BASE_VERSION, FRAMED_ANCHOR_VERSION)   # headers with framing fields
BASE_VERSIONS = (BASE_VERSION, FRAMED_BASE_VERSION, ANCHOR_VERSION, FRAMED_ANCHOR_VERSION)  # base-layer fields
ANCHOR_VERSIONS = (ANCHOR_VERSION, FRAMED_ANCHOR_VERSION)   # base-layer fields with an anchor threshold
# versions no reader of this imfcodec takes, each with the one line that says why
RETIRED_VERSIONS = {4: "the per-frame base-layer layout of imfcodec development builds, replaced by "
                       "version 5; re-encode the source"}
PKT_KEYFRAME = 0x4B   # 'K'
PKT_PREDICTED_KEYFRAME = 0x50   # 'P': keyframe picture predicted from the previous keyframe
PKT_TOKENS = 0x54     # 'T'
PKT_CROP = 0x43       # 'C': where the IMF crop lies in the frame from the next keyframe on (v3, v6)
PKT_LAYER = 0x46      # 'F': one frame-layer picture (v3, v6)
PKT_BASE = 0x42       # 'B': the base-layer pictures of the next K, P or T packet's frames (v5, v6)
FRAMINGS = {1: "face"}
FRAMING_IDS = {v: k for k, v in FRAMINGS.items()}
MAX_LAYER_SIDE = 4096       # frame-layer picture width/height
MAX_LAYER_INTERVAL = 250    # frames between frame-layer pictures
MIN_CROP_SIDE = 16
KEYFRAME_CODECS = {0: "av1", 1: "hevc", 2: "h264", 3: "vp9", 4: "av1-chain"}
CHAINED_CODECS = frozenset({"vp9", "av1-chain"})    # codecs whose keyframes may be predicted
LAYER_CODECS = frozenset({"vp9"})       # the base layer's and the frame layer's (chained)
KEYFRAME_CODEC_IDS = {v: k for k, v in KEYFRAME_CODECS.items()}
assert set(KEYFRAME_CODEC_IDS) == set(_KEYFRAME_CODEC_NAMES), "a keyframe codec without a stream id, or the reverse"

# Limits (docs/bitstream.md, "Limits"): every field a reader takes from a stream is bounded
# here, so what a decoder allocates depends on these numbers and the model, never on what a
# header claims beyond them.
MAX_HEADER_BYTES = 4096
MAX_MODEL_ID_BYTES = 255
MAX_SIDE = 8192                     # width, height
MAX_PIXELS = 4096 * 2304            # width * height (3840x2160 fits): one output frame
MIN_CODED_SIZE, MAX_CODED_SIZE = 16, 1024
MAX_FPS_TERM = 1_000_000            # fps_num, fps_den
MIN_FPS, MAX_FPS = Fraction(1, 1000), Fraction(1000)
MAX_FRAME_COUNT = (1 << 32) - 1     # 0 = not known when the header was written (live)
MAX_TOKEN_DIM = 1024
MAX_PACKET_FRAMES = 256
MAX_SYMBOL = 1 << 24                # |q_i|; differences within 2^25 keep CompressAI's escapes defined
MAX_KEYFRAME_PAYLOAD = 1 << 22      # 4 MiB: one coded_size^2 picture
BASE_SIZES = (32, 48, 64, 96)       # a base picture's side (imfcodec.media.baselayer.SIZES)
MAX_ANCHOR = ANCHOR_MAX             # keyframe anchor threshold, in 1/1000 (versions 7, 8; 0: none)
MAX_BASE_PAYLOAD = 1 << 16          # 64 KiB: one base picture (96x96 raw 4:2:0 is 13.5 KiB)
BASE_DEFLATE_LEVEL = 9              # zlib level of a B packet's raw deflate stream (any level decodes)
TOKEN_PAYLOAD_FIXED, TOKEN_PAYLOAD_PER_SYMBOL = 64, 8


class StreamError(IMFCodecError, ValueError):
    """A byte stream that is not a valid .imf file (one-line message)."""


# ---- varints ------------------------------------------------------------------------
def put_uvarint(n: int) -> bytes:
    if n < 0:
        raise ValueError("uvarint must be >= 0")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def put_svarint(n: int) -> bytes:
    return put_uvarint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise StreamError(f"truncated {self.what}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uvarint(self) -> int:
        n, shift = 0, 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            if n >> 64:
                raise StreamError(f"malformed number in {self.what} (over 64 bits)")
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise StreamError(f"malformed number in {self.what}")

    def svarint(self) -> int:
        z = self.uvarint()
        return (z >> 1) ^ -(z & 1)

    def string(self) -> str:
        n = self.uvarint()
        if n > 255:
            raise StreamError(f"malformed string in {self.what}")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise StreamError(f"malformed string in {self.what}") from None

    def done(self) -> bool:
        return self.pos == len(self.data)


# ---- header and packets -------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    model_id: str                 # stable model name, e.g. "imf-cpu"
    model_hash: bytes             # first 8 bytes of the sha256 of the model file
    width: int                    # source frame size
    height: int
    coded_size: int               # frames are coded at coded_size x coded_size
    fps: Fraction                 # source frame rate
    frame_count: int
    quality: int                  # 1..8
    keyframe_codec: str           # "av1" | "hevc" | "h264"
    token_dim: int
    packet_frames: int            # token frames per token packet (last may be shorter)
    framing: "Framing | None" = None   # None: the whole frame is coded (versions 1, 2, 5)
    base_layer: "BaseLayer | None" = None   # None: tokens only (versions 1-3)

    def __post_init__(self):
        check_header(self)

    def to_bytes(self) -> bytes:
        if len(self.model_hash) != 8:
            raise ValueError("model_hash must be 8 bytes")
        mid = self.model_id.encode("utf-8")
        body = (put_uvarint(len(mid)) + mid + self.model_hash
                + b"".join(put_uvarint(v) for v in (
                    self.width, self.height, self.coded_size, self.fps.numerator, self.fps.denominator,
                    self.frame_count, self.quality, KEYFRAME_CODEC_IDS[self.keyframe_codec],
                    self.token_dim, self.packet_frames)))
        if self.framing is not None:
            body += self.framing.to_bytes(self)
        if self.base_layer is not None:
            body += self.base_layer.to_bytes()
        return MAGIC + bytes([self.version]) + put_uvarint(len(body)) + body + struct.pack(">I", zlib.crc32(body))

    @property
    def version(self) -> int:
        """The format version this header is written as: the lowest that holds it."""
        if self.base_layer is not None and self.base_layer.anchor:
            return FRAMED_ANCHOR_VERSION if self.framing is not None else ANCHOR_VERSION
        if self.base_layer is not None:
            return FRAMED_BASE_VERSION if self.framing is not None else BASE_VERSION
        return FRAMED_VERSION if self.framing is not None else VERSION

    @property
    def path(self) -> str:
        """How the source frame was coded: "square" (scaled to the model's square), "face
        framing" (a square crop plus a frame layer) or "stretch" (a non-square frame scaled
        to the square)."""
        if self.framing is not None:
            return "face framing"
        return "square" if self.width == self.height else "stretch"

    @property
    def layers(self) -> tuple:
        """The layers the stream holds, as ``imfcodec encode`` and ``info`` name them:
        "tokens", "base layer WxH", "frame layer WxH"."""
        b, f = self.base_layer, self.framing
        return (("tokens",) + (() if b is None else (f"base layer {b.size}x{b.size}"
                                                     + (f" (anchor {b.anchor})" if b.anchor else ""),))
                + (() if f is None else (f"frame layer {f.layer_width}x{f.layer_height}",)))

    def describe(self) -> str:
        """The path and the layers in one phrase, e.g. "face framing: tokens, base layer
        48x48, frame layer 114x64"."""
        return f"{self.path}: {', '.join(self.layers)}"

    def kbps(self, nbytes: int) -> float:
        """The rate of ``nbytes`` spread over this stream's duration (:func:`kbps`)."""
        return kbps(nbytes, self.frame_count, self.fps)

    @property
    def max_token_payload(self) -> int:
        """Bytes a token packet's rANS string may take (at most packet_frames x token_dim
        symbols; an escape-coded symbol within MAX_SYMBOL takes under 8 bytes)."""
        return TOKEN_PAYLOAD_FIXED + TOKEN_PAYLOAD_PER_SYMBOL * self.packet_frames * self.token_dim


def kbps(nbytes: int, frames: int, fps) -> float:
    """kbit/s of ``nbytes`` coding ``frames`` frames at ``fps``: the one rate formula that
    the codec's stats, ``imfcodec info`` and the benches report."""
    return nbytes * 8 * float(fps) / max(frames, 1) / 1000


def _bound(ok: bool, what: str):
    if not ok:
        raise StreamError(f"malformed header ({what})")


def check_header(h: Header):
    """Every header field within the limits of docs/bitstream.md, or one StreamError."""
    _bound(len(h.model_id.encode("utf-8")) <= MAX_MODEL_ID_BYTES, "model id too long")
    _bound(1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE,
           f"frame size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    _bound(h.width * h.height <= MAX_PIXELS,
           f"frame size {h.width}x{h.height} over {MAX_PIXELS} pixels")
    _bound(MIN_CODED_SIZE <= h.coded_size <= MAX_CODED_SIZE,
           f"coded size {h.coded_size} outside {MIN_CODED_SIZE}..{MAX_CODED_SIZE}")
    fps = Fraction(h.fps)
    _bound(fps.numerator <= MAX_FPS_TERM and fps.denominator <= MAX_FPS_TERM and MIN_FPS <= fps <= MAX_FPS,
           f"frame rate {fps} outside {MIN_FPS}..{MAX_FPS} fps")
    _bound(0 <= h.frame_count <= MAX_FRAME_COUNT, f"frame count {h.frame_count} over {MAX_FRAME_COUNT}")
    _bound(h.quality in QUALITIES, f"quality {h.quality} outside {QUALITIES.start}..{QUALITIES.stop - 1}")
    _bound(h.keyframe_codec in KEYFRAME_CODEC_IDS, f"unknown keyframe codec {h.keyframe_codec!r}")
    _bound(1 <= h.token_dim <= MAX_TOKEN_DIM, f"token size {h.token_dim} outside 1..{MAX_TOKEN_DIM}")
    _bound(1 <= h.packet_frames <= MAX_PACKET_FRAMES,
           f"packet frames {h.packet_frames} outside 1..{MAX_PACKET_FRAMES}")
    if h.base_layer is not None:
        h.base_layer.check()


@dataclass(frozen=True)
class BaseLayer:
    """Version 5: every frame also has a small picture (``size`` x ``size``) in one
    low-delay stream of ``codec`` beside the tokens, which D_F reads (imfcodec/media/baselayer.py).
    Field bounds: docs/bitstream.md."""
    size: int                     # base picture side, one of BASE_SIZES
    codec: str = "vp9"            # chained (key picture, then inter pictures)
    # versions 7 and 8: the keyframe anchor's threshold in 1/1000 (imfcodec/codec/anchor.py);
    # 0 = no anchor (versions 5 and 6, which do not store it)
    anchor: int = 0

    def check(self):
        _bound(self.codec in LAYER_CODECS, f"base-layer codec {self.codec!r} is not VP9")
        _bound(self.size in BASE_SIZES, f"base picture size {self.size} not one of "
                                        f"{', '.join(map(str, BASE_SIZES))}")
        _bound(isinstance(self.anchor, int) and 0 <= self.anchor <= MAX_ANCHOR,
               f"keyframe anchor {self.anchor!r} outside 0..{MAX_ANCHOR}")

    @property
    def tau(self) -> float:
        """The anchor's threshold on the [0, 1] scale (0: no anchor)."""
        return self.anchor / ANCHOR_SCALE

    def to_bytes(self) -> bytes:
        self.check()
        out = put_uvarint(KEYFRAME_CODEC_IDS[self.codec]) + put_uvarint(self.size)
        return out + put_uvarint(self.anchor) if self.anchor else out


@dataclass(frozen=True)
class Framing:
    """Version 3: IMF codes a square crop of the frame (placed by crop packets), a
    conventional low-resolution layer carries the whole frame (frame-layer packets); the
    decoder blends the two (imfcodec/codec/framing.py). Field bounds: docs/bitstream.md."""
    layer_width: int              # frame-layer picture size
    layer_height: int
    layer_interval: int           # a frame-layer picture every this many frames (and at keyframes)
    feather: int                  # source pixels over which the crop's edge fades into the layer
    mode: str = "face"
    layer_codec: str = "vp9"      # chained, like the keyframe codec of the same name

    def to_bytes(self, header: "Header") -> bytes:
        self.check(header.width, header.height)
        return b"".join(put_uvarint(v) for v in (
            FRAMING_IDS[self.mode], KEYFRAME_CODEC_IDS[self.layer_codec], self.layer_width,
            self.layer_height, self.layer_interval, self.feather))

    def check(self, width: int, height: int):
        if self.mode not in FRAMING_IDS or self.layer_codec not in LAYER_CODECS:
            raise StreamError("malformed header (framing mode or frame-layer codec)")
        if not (2 <= self.layer_width <= min(width, MAX_LAYER_SIDE)
                and 2 <= self.layer_height <= min(height, MAX_LAYER_SIDE)):
            raise StreamError("malformed header (frame-layer size out of range)")
        if not 1 <= self.layer_interval <= MAX_LAYER_INTERVAL:
            raise StreamError("malformed header (frame-layer interval out of range)")
        if self.feather > min(width, height) // 2:
            raise StreamError("malformed header (feather out of range)")


@dataclass(frozen=True)
class CropPacket:
    frame_index: int              # the keyframe from which this crop applies
    x: int                        # top-left corner and side of the square crop, source pixels
    y: int
    side: int


@dataclass(frozen=True)
class LayerPacket:
    frame_index: int              # first frame this frame-layer picture is shown for
    payload: bytes                # one picture of the frame layer's chained stream
    predicted: bool = False       # an inter picture (needs the previous frame-layer picture)


@dataclass(frozen=True)
class BasePacket:
    """The base-layer pictures of frames first_frame.. (one each), sent just before the K, P
    or T packet that carries exactly those frames. On the wire the pictures are one raw
    deflate stream: a VP9 picture of 48 px is mostly its frame headers, which repeat."""
    first_frame: int
    pictures: tuple               # one picture of the base layer's chained stream per frame
    key: bool = False             # the first picture is a VP9 key picture (the rest are inter)

    @property
    def count(self) -> int:
        return len(self.pictures)


def _base_body(p: BasePacket) -> bytes:
    if not p.pictures or not all(0 < len(x) <= MAX_BASE_PAYLOAD for x in p.pictures):
        raise ValueError(f"a base-layer packet holds 1 or more pictures of 1..{MAX_BASE_PAYLOAD} bytes")
    raw = b"".join(put_uvarint(len(x)) for x in p.pictures[:-1]) + b"".join(p.pictures)
    z = zlib.compressobj(BASE_DEFLATE_LEVEL, zlib.DEFLATED, -15, 9)
    return (put_uvarint(p.first_frame) + put_uvarint(len(p.pictures)) + bytes([int(p.key)])
            + z.compress(raw) + z.flush())


@dataclass(frozen=True)
class KeyframePacket:
    frame_index: int
    ref_symbols: tuple            # the keyframe's quantized token, integers (token_dim)
    payload: bytes                # coded picture (raw codec bitstream)
    predicted: bool = False       # payload is predicted from the previous keyframe's picture


@dataclass(frozen=True)
class TokenPacket:
    first_frame: int
    count: int
    payload: bytes                # rANS string of symbol differences (imfcodec.entropy)


Packet = Union[KeyframePacket, TokenPacket, CropPacket, LayerPacket, BasePacket]


def packet_to_bytes(p: Packet) -> bytes:
    if isinstance(p, CropPacket):
        typ, body = PKT_CROP, b"".join(put_uvarint(v) for v in (p.frame_index, p.x, p.y, p.side))
    elif isinstance(p, LayerPacket):
        typ, body = PKT_LAYER, put_uvarint(p.frame_index) + bytes([int(p.predicted)]) + p.payload
    elif isinstance(p, BasePacket):
        typ, body = PKT_BASE, _base_body(p)
    elif isinstance(p, KeyframePacket):
        typ = PKT_PREDICTED_KEYFRAME if p.predicted else PKT_KEYFRAME
        body = (put_uvarint(p.frame_index) + put_uvarint(len(p.ref_symbols))
                + b"".join(put_svarint(int(s)) for s in p.ref_symbols) + p.payload)
    else:
        typ = PKT_TOKENS
        body = put_uvarint(p.first_frame) + put_uvarint(p.count) + p.payload
    return bytes([typ]) + put_uvarint(len(body)) + body + struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))


@dataclass(frozen=True)
class StreamSizes:
    """Where a stream's bytes go: the header, and each packet in order."""
    header: int
    packets: tuple                # (kind, first frame, frames, bytes) per packet
    total: int

    def of(self, kind: str) -> int:
        """Bytes of all packets of one kind: ``"keyframe"``, ``"tokens"``, ``"base"``
        (base-layer pictures), ``"crop"`` or ``"layer"`` (face framing)."""
        return sum(n for k, _, _, n in self.packets if k == kind)


def assemble(header: Header, packets: list[Packet]) -> tuple[bytes, StreamSizes]:
    """The file bytes of a header and its packets, and where those bytes went. The only
    place a whole .imf stream is put together (the codec and the benches use it)."""
    head = header.to_bytes()
    body = [packet_to_bytes(p) for p in packets]
    data = head + b"".join(body)
    return data, StreamSizes(len(head), tuple(_describe(p) + (len(b),) for p, b in zip(packets, body)),
                             len(data))


def _describe(p: Packet) -> tuple:
    if isinstance(p, KeyframePacket):
        return "keyframe", p.frame_index, 1
    if isinstance(p, BasePacket):
        return "base", p.first_frame, 0
    if isinstance(p, (CropPacket, LayerPacket)):
        return ("crop" if isinstance(p, CropPacket) else "layer"), p.frame_index, 0
    return "tokens", p.first_frame, p.count


def _parse_header(r: _Reader) -> Header:
    magic = r.take(4)
    if magic != MAGIC:
        raise StreamError("not an .imf file (bad magic bytes)")
    version = r.take(1)[0]
    if version in RETIRED_VERSIONS:
        raise StreamError(f"unsupported .imf format version {version} ({RETIRED_VERSIONS[version]})")
    if version not in READS_VERSIONS:
        raise StreamError(f"unsupported .imf format version {version} (this imfcodec reads versions "
                          f"{', '.join(map(str, READS_VERSIONS))})")
    n = r.uvarint()
    if n > MAX_HEADER_BYTES:
        raise StreamError("malformed header (length)")
    body = r.take(n)
    (crc,) = struct.unpack(">I", r.take(4))
    if zlib.crc32(body) != crc:
        raise StreamError("corrupt header (checksum mismatch)")
    h = _Reader(body, "header")
    mid = h.string()
    mhash = h.take(8)
    vals = [h.uvarint() for _ in range(10)]
    w, hh, cs, fn, fd, fc, q, kc, td, pf = vals
    if kc not in KEYFRAME_CODECS:
        raise StreamError(f"unknown keyframe codec id {kc}")
    if not (1 <= fn <= MAX_FPS_TERM and 1 <= fd <= MAX_FPS_TERM):
        raise StreamError(f"malformed header (frame rate {fn}/{fd})")
    framing = _parse_framing(h, w, hh) if version in FRAMED_VERSIONS else None
    base = _parse_base_layer(h, version in ANCHOR_VERSIONS) if version in BASE_VERSIONS else None
    if not h.done():
        raise StreamError("malformed header (trailing bytes)")
    return Header(mid, mhash, w, hh, cs, Fraction(fn, fd), fc, q, KEYFRAME_CODECS[kc], td, pf, framing, base)


def _parse_base_layer(h: _Reader, anchored: bool = False) -> BaseLayer:
    codec, size = h.uvarint(), h.uvarint()
    if codec not in KEYFRAME_CODECS:
        raise StreamError(f"malformed header (unknown base-layer codec id {codec})")
    anchor = h.uvarint() if anchored else 0
    if anchored and not 1 <= anchor <= MAX_ANCHOR:
        raise StreamError(f"malformed header (keyframe anchor {anchor} outside 1..{MAX_ANCHOR})")
    b = BaseLayer(size, KEYFRAME_CODECS[codec], anchor)
    b.check()
    return b


def _parse_framing(h: _Reader, width: int, height: int) -> Framing:
    mode, codec, lw, lh, interval, feather = (h.uvarint() for _ in range(6))
    if mode not in FRAMINGS or codec not in KEYFRAME_CODECS:
        raise StreamError("malformed header (framing mode or frame-layer codec)")
    f = Framing(lw, lh, interval, feather, FRAMINGS[mode], KEYFRAME_CODECS[codec])
    f.check(width, height)
    return f


def _max_body(typ: int, header: Header) -> int:
    """Largest body a packet of this type may have under the header's limits: the payload
    bound plus its varints (10 bytes each at most; a symbol within MAX_SYMBOL takes 5)."""
    if typ == PKT_TOKENS:
        return 20 + header.max_token_payload
    if typ == PKT_BASE:
        return max_base_body(header.packet_frames)
    return 20 + 5 * header.token_dim + MAX_KEYFRAME_PAYLOAD


def _parse_packet(r: _Reader, header: Header) -> Packet:
    typ = r.take(1)[0]
    framed = (PKT_CROP, PKT_LAYER) if header.framing is not None else ()
    based = (PKT_BASE,) if header.base_layer is not None else ()
    if typ not in (PKT_KEYFRAME, PKT_PREDICTED_KEYFRAME, PKT_TOKENS) + framed + based:
        raise StreamError(f"malformed packet at byte {r.pos - 1} (unknown type 0x{typ:02x})")
    n = r.uvarint()
    if n > _max_body(typ, header):
        raise StreamError(f"malformed packet at byte {r.pos} (length {n} over the limit "
                          f"{_max_body(typ, header)})")
    body = r.take(n)
    (crc,) = struct.unpack(">H", r.take(2))
    if binascii.crc_hqx(body, 0xFFFF) != crc:
        raise StreamError(f"corrupt packet ending at byte {r.pos} (checksum mismatch)")
    b = _Reader(body, "packet")
    if typ == PKT_BASE:
        return _parse_base_packet(b, body, header)
    if typ in (PKT_CROP, PKT_LAYER):
        return _parse_framing_packet(typ, b, body, header)
    if typ in (PKT_KEYFRAME, PKT_PREDICTED_KEYFRAME):
        idx = b.uvarint()
        k = b.uvarint()
        if k != header.token_dim:
            raise StreamError("malformed keyframe packet (token length)")
        syms = tuple(b.svarint() for _ in range(k))
        if any(abs(s) > MAX_SYMBOL for s in syms):
            raise StreamError(f"malformed keyframe packet (token symbol beyond +-{MAX_SYMBOL})")
        predicted = typ == PKT_PREDICTED_KEYFRAME
        if predicted and header.keyframe_codec not in CHAINED_CODECS:
            raise StreamError(f"malformed stream (predicted keyframe with the intra-only "
                              f"{header.keyframe_codec} keyframe codec)")
        if n - b.pos > MAX_KEYFRAME_PAYLOAD:
            raise StreamError(f"malformed keyframe packet (picture over {MAX_KEYFRAME_PAYLOAD} bytes)")
        return KeyframePacket(idx, syms, body[b.pos:], predicted)
    first, count = b.uvarint(), b.uvarint()
    if count == 0 or count > header.packet_frames:
        raise StreamError("malformed token packet (frame count)")
    if n - b.pos > header.max_token_payload:
        raise StreamError(f"malformed token packet (payload over {header.max_token_payload} bytes)")
    return TokenPacket(first, count, body[b.pos:])


def max_base_inflated(count: int) -> int:
    """Bytes a B packet of ``count`` pictures may inflate to: the pictures and their lengths."""
    return count * (MAX_BASE_PAYLOAD + 3)


def max_base_body(packet_frames: int) -> int:
    """Largest B packet body: its fields, and a deflate stream of max_base_inflated bytes
    (stored blocks add 5 bytes per 64 KiB)."""
    n = max_base_inflated(packet_frames)
    return 32 + n + 5 * (n // 65535 + 1)


def _parse_base_packet(b: _Reader, body: bytes, header: Header) -> BasePacket:
    first, count = b.uvarint(), b.uvarint()
    if not 1 <= count <= header.packet_frames:
        raise StreamError("malformed base-layer packet (picture count)")
    kind = b.take(1)[0]
    if kind > 1:
        raise StreamError("malformed base-layer packet (picture kind)")
    limit = max_base_inflated(count)
    z = zlib.decompressobj(-15)
    try:        # inflate at most limit + 1 bytes: a deflate bomb costs no more than that
        raw = z.decompress(body[b.pos:], limit + 1)
    except zlib.error:
        raise StreamError("malformed base-layer packet (not a deflate stream)") from None
    if len(raw) > limit:
        raise StreamError(f"malformed base-layer packet (inflates past {limit} bytes)")
    if not z.eof or z.unused_data:
        raise StreamError("malformed base-layer packet (deflate stream "
                          f"{'cut short' if not z.eof else 'followed by other bytes'})")
    r = _Reader(raw, "base-layer packet")
    sizes = [r.uvarint() for _ in range(count - 1)]
    sizes.append(len(raw) - r.pos - sum(sizes))
    if not all(1 <= n <= MAX_BASE_PAYLOAD for n in sizes):
        raise StreamError(f"malformed base-layer packet (a picture outside 1..{MAX_BASE_PAYLOAD} bytes)")
    return BasePacket(first, tuple(r.take(n) for n in sizes), bool(kind))


def _parse_framing_packet(typ: int, b: _Reader, body: bytes, header: Header) -> Packet:
    idx = b.uvarint()
    if typ == PKT_CROP:
        x, y, side = b.uvarint(), b.uvarint(), b.uvarint()
        if not b.done():
            raise StreamError("malformed crop packet (trailing bytes)")
        if not (MIN_CROP_SIDE <= side <= min(header.width, header.height)
                and x + side <= header.width and y + side <= header.height):
            raise StreamError("malformed crop packet (crop outside the frame)")
        return CropPacket(idx, x, y, side)
    kind = b.take(1)[0]
    if kind > 1:
        raise StreamError("malformed frame-layer packet (picture kind)")
    return LayerPacket(idx, body[b.pos:], bool(kind))


def parse(data: bytes) -> tuple[Header, list[Packet]]:
    """Whole-file parse with structural checks: every frame of the header's frame count is
    covered exactly once, in order, and the first frame is a keyframe."""
    r = _Reader(data, "file")
    if len(data) == 0:
        raise StreamError("empty file")
    header = _parse_header(r)
    packets = []
    while not r.done():
        packets.append(_parse_packet(r, header))
    check_coverage(header, packets)
    return header, packets


def parse_header(data: bytes) -> Header:
    """Exactly one stream header (no packets after it), or one StreamError: the header a
    live sender sends on its own (imfcodec.live, docs/live.md)."""
    r = _Reader(data, "header")
    h = _parse_header(r)
    if not r.done():
        raise StreamError("malformed header (bytes after it)")
    return h


def parse_packets(data: bytes, header: Header) -> list[Packet]:
    """The packets that make up ``data`` exactly, each checked as in a file under
    ``header``'s limits, or one StreamError (a truncated or trailing packet included).
    Checks no order between them: that is the caller's (check_coverage, codec.Decoder)."""
    r = _Reader(data, "packet")
    out = []
    while not r.done():
        out.append(_parse_packet(r, header))
    return out


def frame_groups(packets) -> list[list]:
    """The packets of a one-frame-per-packet stream (``packet_frames`` 1), grouped by the
    frame they carry: a base-layer packet goes with the keyframe or token packet after it."""
    groups, group = [], []
    for p in packets:
        group.append(p)
        if not isinstance(p, BasePacket):
            groups.append(group)
            group = []
    if group:
        raise ValueError("a base-layer packet with no frame packet after it")
    return groups


def check_coverage(header: Header, packets: list[Packet]) -> int:
    """Packets cover frames 0, 1, ... in order, each once, from a keyframe on, and reach the
    header's frame count (any count when it is 0, a live recording). Returns the count."""
    nxt = 0
    seen_key = False
    framing = _FramingOrder() if header.framing is not None else None
    base = BaseOrder(header) if header.base_layer is not None else None
    for p in packets:
        if isinstance(p, BasePacket):
            base.check(p, nxt)
        elif isinstance(p, (CropPacket, LayerPacket)):
            if base is not None:
                base.not_between(p)
            framing.check(p, nxt, header.frame_count or MAX_FRAME_COUNT)
        elif isinstance(p, KeyframePacket):
            if p.frame_index != nxt:
                raise StreamError(f"malformed stream (keyframe for frame {p.frame_index}, expected {nxt})")
            if p.predicted and not seen_key:
                raise StreamError("malformed stream (the first keyframe is a predicted one)")
            if framing is not None:
                framing.keyframe(p)
            if base is not None:
                base.covers(nxt, 1, p)
            seen_key = True
            nxt += 1
        else:
            if framing is not None and framing.crop_pending:
                raise StreamError("malformed stream (a crop packet not followed by its keyframe)")
            if not seen_key:
                raise StreamError("malformed stream (token packet before the first keyframe)")
            if p.first_frame != nxt:
                raise StreamError(f"malformed stream (tokens for frame {p.first_frame}, expected {nxt})")
            if base is not None:
                base.covers(nxt, p.count)
            nxt += p.count
        if nxt > (header.frame_count or MAX_FRAME_COUNT):
            raise StreamError("malformed stream (more frames than the header's "
                              f"{header.frame_count or MAX_FRAME_COUNT})")
    if header.frame_count == 0 and nxt == 0:
        raise StreamError("empty stream (a header and no frames)")
    if header.frame_count and nxt != header.frame_count:
        raise StreamError(f"truncated stream: {nxt} of {header.frame_count} frames present")
    if base is not None and base.held is not None:
        raise StreamError(f"malformed stream (base-layer pictures for frame {nxt} without their frames)")
    return nxt


def frames_in(packets: list[Packet]) -> int:
    """Frames the packets cover (the stream's length when the header's frame count is 0)."""
    return sum(1 if isinstance(p, KeyframePacket) else p.count if isinstance(p, TokenPacket) else 0
               for p in packets)


class _FramingOrder:
    """Version 3 packet order: every keyframe packet has a crop packet for its frame before
    it, with only frame-layer packets between them; frame-layer pictures come in
    frame order, the first is a key picture for frame 0, every keyframe has one for its
    own frame, a key picture at an intra keyframe; each comes before the packet that
    carries its frame."""

    def __init__(self):
        self.crop_pending = False
        self.layer_index = -1
        self.layer_key = False

    def check(self, p, nxt: int, frame_count: int):
        if p.frame_index >= frame_count:
            raise StreamError("malformed framing packet (frame index beyond the frame count)")
        if isinstance(p, CropPacket):
            if p.frame_index != nxt or self.crop_pending:
                raise StreamError(f"malformed stream (crop for frame {p.frame_index}, expected {nxt})")
            self.crop_pending = True
            return
        if p.frame_index < nxt or p.frame_index <= self.layer_index:
            raise StreamError(f"malformed stream (frame-layer picture for frame {p.frame_index} out of order)")
        if p.predicted and self.layer_index < 0:
            raise StreamError("malformed stream (the first frame-layer picture is a predicted one)")
        if self.layer_index < 0 and p.frame_index != 0:
            raise StreamError("malformed stream (no frame-layer picture for frame 0)")
        self.layer_index, self.layer_key = p.frame_index, not p.predicted

    def keyframe(self, p: KeyframePacket):
        if not self.crop_pending:
            raise StreamError(f"malformed stream (keyframe {p.frame_index} without a crop packet)")
        if self.layer_index != p.frame_index or (not p.predicted and not self.layer_key):
            raise StreamError(f"malformed stream (keyframe {p.frame_index} without its frame-layer "
                              "key picture)" if not p.predicted else
                              f"malformed stream (keyframe {p.frame_index} without its frame-layer picture)")
        self.crop_pending = False


class BaseOrder:
    """Version 5 and 6 packet order (docs/bitstream.md): every K, P and T packet comes right after
    the B packet of exactly its frames (in version 6 the crop and frame-layer packets come
    before that B packet); the first B picture is a key picture, and so is
    every intra (K) keyframe's (so decoding can start there). check_coverage applies it to a
    whole file, codec.Decoder to a live stream as it decodes."""

    def __init__(self, header: Header):
        self.header = header
        self.held: BasePacket | None = None     # the B packet whose frames come next

    def check(self, p: BasePacket, nxt: int):
        """A B packet in order, or one StreamError; ``nxt``: the first frame no keyframe or
        token packet has carried yet."""
        held = self.held
        if held is not None:
            raise StreamError(f"malformed stream (base-layer pictures for frames {held.first_frame}.."
                              f"{held.first_frame + held.count - 1} not followed by the packet that carries them)")
        if p.first_frame != nxt:
            raise StreamError(f"malformed stream (base-layer pictures from frame {p.first_frame}, expected {nxt})")
        if p.first_frame + p.count > (self.header.frame_count or MAX_FRAME_COUNT):
            raise StreamError("malformed base-layer packet (frames beyond the frame count)")
        if p.first_frame == 0 and not p.key:
            raise StreamError("malformed stream (the first base-layer picture is a predicted one)")
        self.held = p

    def not_between(self, p: Packet):
        """A crop or frame-layer packet (version 6) comes before a B packet, never between
        it and the packet that carries its frames."""
        held = self.held
        if held is not None:
            kind = "crop" if isinstance(p, CropPacket) else "frame-layer"
            raise StreamError(f"malformed stream ({kind} packet for frame {p.frame_index} between the "
                              f"base-layer pictures of frame {held.first_frame} and their packet)")

    def covers(self, first: int, count: int, keyframe: KeyframePacket | None = None):
        """The packet about to carry frames first..first+count-1 comes right after their B
        packet; an intra keyframe's picture is a key picture."""
        held = self.held
        if held is None:
            raise StreamError(f"malformed stream (no base-layer pictures before the packet that "
                              f"carries frame {first})")
        if (held.first_frame, held.count) != (first, count):
            raise StreamError(f"malformed stream (base-layer pictures for frames {held.first_frame}.."
                              f"{held.first_frame + held.count - 1} before a packet of frames "
                              f"{first}..{first + count - 1})")
        if keyframe is not None and not keyframe.predicted and not held.key:
            raise StreamError(f"malformed stream (keyframe {first} without a base-layer key picture)")
        self.held = None


class StreamReader:
    """Incremental parser for live use: ``feed(bytes)`` then iterate ``packets()``."""

    def __init__(self):
        self.buf = b""
        self.header: Header | None = None

    def feed(self, data: bytes):
        self.buf += data

    def packets(self) -> Iterator[Packet]:
        while True:
            r = _Reader(self.buf, "stream")
            try:
                if self.header is None:
                    self.header = _parse_header(r)
                    self.buf = self.buf[r.pos:]
                    continue
                if not self.buf:
                    return
                p = _parse_packet(r, self.header)
            except StreamError as e:
                if str(e) == "truncated stream":
                    return          # the next packet is not complete yet: wait for more bytes
                raise
            self.buf = self.buf[r.pos:]
            yield p


def read_file(path) -> tuple[Header, list[Packet]]:
    """Parse an .imf file; ``-`` reads the stream from stdin."""
    import os
    import sys
    path = str(path)
    if path == "-":
        try:
            return parse(sys.stdin.buffer.read())
        except StreamError as e:
            raise StreamError(f"standard input: {e}") from None
    if not os.path.exists(path):
        raise StreamError(f"{path}: no such file")
    if os.path.isdir(path):
        raise StreamError(f"{path}: is a directory")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse(data)
    except StreamError as e:
        raise StreamError(f"{path}: {e}") from None
