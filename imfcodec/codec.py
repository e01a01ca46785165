"""The codec: wires the networks, the token entropy coder, keyframes and the container.

Streaming use (a live call)::

    enc = Encoder(model, width, height, fps, quality=4)
    for frame in camera:                      # (H, W, 3) uint8 RGB
        for packet in enc.push(frame): send(packet_to_bytes(packet))
    for packet in enc.flush(): send(...)

    dec = Decoder(model, header)
    for packet in received: for frame in dec.push(packet): show(frame)

Whole files: :func:`encode_file` / :func:`decode_file`; in memory: :func:`encode_frames` /
:func:`decode_bytes`.
"""
from __future__ import annotations

import operator
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
import torch

from . import baselayer, config, container, keyframe, video
from .container import BasePacket, Header, KeyframePacket, StreamError, TokenPacket
from .entropy import EntropyError
from .errors import OptionError
from .fileio import atomic_write, check_output_folder
from .model import CodecModel, ModelError, load_model
from .metrics import psnr       # psnr only: LPIPS and its weight fetcher load on first use

DEFAULT_QUALITY = 4
DEFAULT_KEYFRAME_CODEC = config.DEFAULT_KEYFRAME_CODEC     # one home: imfcodec/config.py
DEFAULT_PACKET_FRAMES = 8
DEFAULT_MAX_KEYFRAME_INTERVAL_S = 10.0
# closed-loop refresh: the model's reconstruction of a keyframe's own frame (its own token,
# no motion) is as well as it can do on this content; a later frame whose reconstruction
# PSNR falls the quality level's refresh drop below that is coded as a new keyframe
# instead, at most once per the level's min keyframe interval. Both come from the model's
# quality table (imfcodec.model.DEFAULT_QUALITY_TABLE). Relative, so it adapts to the
# content and to the model's own quality without calibration.
# the drop must last this many consecutive frames before a refresh: a blink or a fast turn
# lowers a few frames' PSNR, and a keyframe taken in the middle of it is a poorer reference
# for the frames after it than one taken when it is over.
DEFAULT_REFRESH_PERSIST = 1
# the base layer (issue 15; format version 5): auto = wherever the model's D_F reads a base
# picture and the quality level has a base picture size; on = the same, or one error line
# where it cannot; off = the paper's token-only codec with the same model
BASE_LAYER_MODES = ("auto", "on", "off")


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
    base_bytes: int = 0           # base-layer packets (format version 5)
    keyframe_indices: list = field(default_factory=list)


def _check_symbols(q: torch.Tensor) -> torch.Tensor:
    """Token symbols within the format's bound (container.MAX_SYMBOL), or an EntropyError."""
    if q.numel() and q.abs().max() > container.MAX_SYMBOL:
        raise EntropyError(f"token symbol beyond +-{container.MAX_SYMBOL}: the model's tokens are "
                           "out of range for this input")
    return q


def base_layer_mode(value) -> str:
    """``base_layer`` as given to the API (auto/on/off, True/False, None = auto) -> a mode."""
    if value is None or isinstance(value, bool):
        return {None: "auto", True: "on", False: "off"}[value]
    if value not in BASE_LAYER_MODES:
        raise OptionError(f"base_layer must be auto, on or off, got {value!r}")
    return value


def _capped_psnr(a, b) -> float:
    return min(psnr(a, b).item(), 100.0)      # identical pictures: 100, not inf


def _check_quality(quality) -> int:
    try:
        q = operator.index(quality)
    except TypeError:
        q = None
    if q is None or not 1 <= q <= 8:
        raise OptionError(f"quality must be an integer 1..8, got {quality!r}")
    return q


class Encoder:
    """Frames in, packets out. Closed loop: every frame is reconstructed exactly as the
    decoder will. A frame becomes a keyframe when its reconstruction PSNR falls more than
    ``refresh_drop`` dB below the model's reconstruction of the keyframe itself (at most once
    per ``min_keyframe_interval`` seconds; 0 disables), or ``max_keyframe_interval``
    seconds after the last keyframe. None takes the quality level's value from the model.

    ``keyframe_crf`` replaces the quality level's keyframe CRF and ``keyframe_options`` adds
    encoder options (e.g. ``{"sharpness": "4"}``) to the keyframe codec's own: what a ladder
    sweep (bench/tune_ladder.py) varies without touching the model's quality table.

    ``base_layer`` (auto, on, off; :data:`BASE_LAYER_MODES`) codes a base-layer picture of
    every frame beside the tokens (format version 5) with a model whose D_F reads one;
    ``base_size`` and ``base_crf`` replace the level's picture side and VP9 CRF. With the
    base layer on, the min keyframe interval defaults to the level's base-layer one
    (``model.min_keyframe_interval(quality, base=True)``)."""

    def __init__(self, model: CodecModel, width: int, height: int, fps: Fraction,
                 quality: int = DEFAULT_QUALITY, keyframe_codec: str = DEFAULT_KEYFRAME_CODEC,
                 packet_frames: int = DEFAULT_PACKET_FRAMES, refresh_drop: float | None = None,
                 max_keyframe_interval: float = DEFAULT_MAX_KEYFRAME_INTERVAL_S,
                 min_keyframe_interval: float | None = None,
                 refresh_persist: int | None = None, keyframe_crf: int | None = None,
                 keyframe_options: dict | None = None, base_layer="auto", base_size: int | None = None,
                 base_crf: int | None = None):
        quality = _check_quality(quality)
        if keyframe_codec not in keyframe.ENCODERS:
            raise OptionError(f"unknown keyframe codec {keyframe_codec!r}; choose from "
                              f"{', '.join(keyframe.ENCODERS)}")
        if packet_frames < 1:
            raise OptionError("packet_frames must be >= 1")
        refresh_persist = DEFAULT_REFRESH_PERSIST if refresh_persist is None else refresh_persist
        if refresh_persist < 1:
            raise OptionError("refresh_persist must be >= 1")
        self.m = model
        self.gen = model.generator
        self.size = model.config.image_size
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.quality, self.codec, self.packet_frames = quality, keyframe_codec, packet_frames
        self.mult = model.step_mult(quality)
        self.base_layer, self.base_enc = self._base_layer(base_layer, base_size, base_crf)
        self.base_held: list[tuple[bytes, bool]] = []   # coded base pictures not yet sent
        on = self.base_layer is not None
        self.crf = model.keyframe_crf(quality, keyframe_codec, on) if keyframe_crf is None else keyframe_crf
        self.kf_enc = keyframe.KeyframeEncoder(keyframe_codec, self.crf, keyframe_options)
        self.kf_dec = keyframe.KeyframeDecoder(keyframe_codec)
        self.refresh_drop = model.refresh_drop(quality) if refresh_drop is None else refresh_drop
        if min_keyframe_interval is None:
            min_keyframe_interval = model.min_keyframe_interval(quality, base=on, codec=keyframe_codec)
        self.max_interval = max(1, int(round(max_keyframe_interval * float(self.fps))))
        self.min_interval = max(1, int(round(min_keyframe_interval * float(self.fps))))
        self.refresh_persist = refresh_persist
        self.low_run = 0
        self.base_psnr = None
        self.index = 0
        self.ref = None
        self.prev_q = None
        self.since_key = 0
        self.pending: list[torch.Tensor] = []
        self.pending_first = 0
        self.stats = EncodeStats()
        self._psnr_sum = 0.0
        # the model-size reconstruction (1, 3, S, S) of the last pushed frame, exactly what the
        # decoder will rebuild before scaling to the output size: lets a caller score a
        # setting without decoding the stream again (bench/tune_ladder.py)
        self.recon: torch.Tensor | None = None

    def _base_layer(self, mode, size, crf):
        """The stream's base layer (or None) and its encoder, from the options and the ladder."""
        mode, m, q = base_layer_mode(mode), self.m, self.quality
        if mode == "off":
            return None, None
        if not m.has_base_layer:
            if mode == "on":
                raise OptionError(f"--base-layer on needs a model whose decoder reads a base layer; "
                                  f"model {m.model_id!r} is token-only")
            return None, None
        size = m.base_size(q) if size is None else size
        if size == 0:
            if mode == "on":
                raise OptionError(f"quality {q} is a token-only level of model {m.model_id!r} (no base "
                                  "picture size in its ladder); use --base-layer auto or another quality")
            return None, None
        if size not in container.BASE_SIZES:
            raise OptionError(f"base picture size must be one of {', '.join(map(str, container.BASE_SIZES))}, "
                              f"got {size!r}")
        crf = m.base_crf(q) if crf is None else crf
        if not (isinstance(crf, int) and 0 <= crf <= 63):
            raise OptionError(f"base-layer CRF must be an integer 0..63, got {crf!r}")
        return container.BaseLayer(size), baselayer.BaseEncoder(crf)

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

    @torch.no_grad()
    def push(self, frame: np.ndarray, force_keyframe: bool = False) -> list:
        """Code one RGB frame (height, width, 3) uint8; returns the packets completed.
        ``force_keyframe`` makes it a keyframe (a predicted one after the first, with a
        chained keyframe codec): a caller that moves what is coded (framing.py) asks so."""
        if frame.shape != (self.height, self.width, 3):
            raise video.VideoError(f"frame {self.index} has shape {frame.shape}, expected "
                                   f"({self.height}, {self.width}, 3)")
        x = video.to_model(frame, self.size).to(self.m.device)
        intra = self.ref is None or self.since_key + 1 >= self.max_interval
        out, base = [], None
        if self.base_layer is not None:     # every frame's base picture, sent with its frame's packet
            base = self._base_picture(x, key=intra)
        if intra:
            out += self._keyframe(x, intra=True, base=base)        # a random-access point
        elif force_keyframe:
            out += self._keyframe(x, intra=False, base=base)
        else:
            q = _check_symbols(self.gen.quantize(self.gen.encode_token(x), self.mult)[0])
            x_hat = self.m.decode(q[None], self.mult, self.ref, base)
            p = _capped_psnr(x_hat, x)
            if self._refresh(x, x_hat, p):
                out += self._keyframe(x, intra=False, base=base)
            else:
                out += self._predicted(q, x_hat, p)
        self.index += 1
        self.stats.frames = self.index
        return out

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


class Decoder:
    """Packets in, frames out (source size, uint8 RGB)."""

    def __init__(self, model: CodecModel, header: Header):
        check_model(model, header)
        self.m, self.h = model, header
        self.mult = model.step_mult(header.quality)
        self.ref = None
        self.prev_q = None
        self.next_index = 0
        self.kf_dec = keyframe.KeyframeDecoder(header.keyframe_codec, header.coded_size ** 2)
        # base layer (version 5): a B packet's pictures, decoded in stream order, held (at
        # most packet_frames of them) until the next packet, which carries their frames
        bl = header.base_layer
        self.base_dec = None if bl is None else baselayer.BaseDecoder(bl.size)
        self.base_order = None if bl is None else container.BaseOrder(header)
        self.base_pics: torch.Tensor | None = None

    def _out(self, x):
        # one frame at a time: the output size is bounded per frame (container.MAX_PIXELS)
        return [video.from_model(x[i:i + 1], self.h.width, self.h.height)[0] for i in range(len(x))]

    @torch.no_grad()
    def push(self, packet) -> list[np.ndarray]:
        if isinstance(packet, BasePacket):
            self._base(packet)
            return []
        if isinstance(packet, KeyframePacket):
            return self._out(self._keyframe(packet))
        base = self._take_base(packet.first_frame, packet.count)
        q = self._symbols(packet)
        frames = []
        for i in range(0, packet.count, 8):
            b = None if base is None else base[i:i + 8]
            frames += self._out(self.m.decode(q[i:i + 8], self.mult, self.ref, b))
        return frames

    def _base(self, packet: BasePacket):
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

    def _take_base(self, first: int, count: int, keyframe_packet: KeyframePacket | None = None):
        """The held base pictures (count, 3, b, b) of frames first.. about to decode, or None
        without a base layer (or when the packet is out of order, which the caller refuses)."""
        if self.base_dec is None or first != self.next_index:
            return None
        self.base_order.covers(first, count, keyframe_packet)
        pics, self.base_pics = self.base_pics, None
        return pics

    # the two halves of push, shared with imfcodec.multi.MultiDecoder (which batches the
    # frame networks over streams instead of running them here)
    @torch.no_grad()
    def _keyframe(self, packet: KeyframePacket) -> torch.Tensor:
        """Decode a keyframe picture and build its reference (self.ref); returns the
        picture (1, 3, S, S)."""
        if packet.frame_index != self.next_index:
            raise StreamError(f"keyframe for frame {packet.frame_index}, expected {self.next_index}")
        self._take_base(packet.frame_index, 1, packet)   # a keyframe's frame is its own picture
        rgb = self.kf_dec.decode(packet.payload, packet.predicted)
        if rgb.shape[:2] != (self.h.coded_size, self.h.coded_size):
            raise StreamError("keyframe picture has the wrong size for this stream")
        x_r = video.to_model(rgb, self.h.coded_size).to(self.m.device)
        q_r = torch.tensor(packet.ref_symbols, dtype=torch.int64, device=self.m.device)
        self.ref = self.m.reference(x_r, q_r[None], self.mult)
        self.prev_q = q_r
        self.next_index += 1
        return x_r

    def _symbols(self, packet: TokenPacket) -> torch.Tensor:
        """Entropy-decode a token packet: integer symbols (count, C) for self.ref."""
        if self.ref is None:
            raise StreamError("token packet before the first keyframe")
        if packet.first_frame != self.next_index:
            raise StreamError(f"tokens for frame {packet.first_frame}, expected {self.next_index}")
        d = self.m.entropy.decode(packet.payload, packet.count, self.h.quality).to(self.m.device)
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


# ---- whole streams ----------------------------------------------------------------------
def make_encoder(model: CodecModel, width: int, height: int, fps, quality=DEFAULT_QUALITY,
                 framing: str = "auto", **opts):
    """An :class:`Encoder`, or for a non-square source with ``framing`` auto or face, the face
    crop plus frame layer encoder (imfcodec/framing.py; format version 3)."""
    from . import framing as fr
    if fr.use_face(width, height, framing):
        if base_layer_mode(opts.get("base_layer")) == "on":
            raise OptionError("the base layer does not combine with face framing (format version 3); "
                              "use --framing stretch with --base-layer on")
        return fr.FaceEncoder(model, width, height, fps, quality, **{**opts, "base_layer": "off"})
    return Encoder(model, width, height, fps, quality, **opts)


def make_decoder(model: CodecModel, header: Header):
    if header.framing is not None:
        from .framing import face_decoder
        return face_decoder(model, header)
    return Decoder(model, header)


def encode_frames(frames: Iterable[np.ndarray], fps, model: CodecModel, quality=DEFAULT_QUALITY,
                  progress: Callable | None = None, framing: str = "auto", **opts) -> tuple[bytes, EncodeStats]:
    """Code RGB frames (an iterable of (H, W, 3) uint8) into .imf bytes. ``framing``: auto
    (face crop plus frame layer at an aspect of 4:3 or wider, else as below), face, or
    stretch (the whole frame scaled to the model's square). ``base_layer`` (auto, on,
    off) and the other options: :class:`Encoder`'s."""
    t0 = time.time()
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise video.VideoError("the input has no frames") from None
    h, w = first.shape[:2]
    enc = make_encoder(model, w, h, fps, quality, framing, **opts)
    packets = enc.push(first)
    if progress:
        progress(1)
    for f in it:
        packets += enc.push(f)
        if progress:
            progress(1)
    packets += enc.flush()
    header = enc.header(enc.index)
    data, sizes = container.assemble(header, packets)
    st = enc.stats
    st.bytes, st.header_bytes = sizes.total, sizes.header
    st.keyframe_bytes, st.token_bytes = sizes.of("keyframe"), sizes.of("tokens")
    st.kbps = header.kbps(st.bytes)
    st.layer_bytes = sizes.of("crop") + sizes.of("layer")
    st.base_bytes = sizes.of("base")
    st.seconds = time.time() - t0
    st.psnr_model_res = enc.mean_psnr
    return data, st


def decode_bytes(data: bytes, model: CodecModel | str | None = None, device="auto",
                 progress: Callable | None = None, precision="auto"):
    """.imf bytes -> (header, iterator of RGB frames at source size)."""
    header, packets = container.parse(data)
    model = model_for(header, model, device, precision)
    dec = make_decoder(model, header)

    def frames():
        for p in packets:
            out = dec.push(p)
            if progress:
                progress(len(out))
            yield from out
    return header, frames()


def model_for(header: Header, model, device="auto", precision="auto") -> CodecModel:
    if model is None:
        model = header.model_id        # shipped model of that name
    if not isinstance(model, CodecModel):
        model = load_model(model, device, precision)
    check_model(model, header)
    return model


def _atomic_bytes(path, data: bytes):
    if str(path) == video.PIPE:         # the stream to stdout, for the next program in a pipe
        if sys.stdout.isatty():
            raise video.VideoError("output '-' writes the .imf stream to standard output, but it "
                                   "is a terminal; pipe it or name an output file")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    atomic_write(check_output_folder(path), lambda f: f.write(data))


def encode_file(src, dst, model: CodecModel | str | None = None, quality=DEFAULT_QUALITY, device="auto",
                raw_size=None, raw_fps=None, progress=None, precision="auto", reader=None,
                **opts) -> EncodeStats:
    """Encode a video file (or ``-``: a video piped to stdin, read as it arrives) into an
    .imf file (written atomically when the last frame is coded; ``-``: to stdout).
    ``reader(src, raw_size, raw_fps)`` yields the RGB frames (default:
    :func:`imfcodec.video.read_video`'s)."""
    if not isinstance(model, CodecModel):
        model = load_model(model, device, precision)
    if reader is None:
        info, frames = video.read_video(src, raw_size, raw_fps)
    else:
        info, frames = video.probe(src, raw_size, raw_fps), reader(src, raw_size, raw_fps)
    data, st = encode_frames(frames, info.fps, model, quality, progress=progress, **opts)
    _atomic_bytes(dst, data)
    return st


@dataclass
class DecodeStats:
    frames: int
    seconds: float
    header: Header = field(repr=False)


def decode_file(src, dst, model: CodecModel | str | None = None, device="auto", progress=None,
                precision="auto", parsed: tuple | None = None) -> DecodeStats:
    """Decode an .imf file into a video file (written atomically), or with ``dst`` ``-``
    into Y4M on stdout, frame by frame. ``parsed``: ``container.read_file(src)``'s result,
    when the caller has already read the file (it is then not read again)."""
    t0 = time.time()
    header, packets = parsed if parsed is not None else container.read_file(src)
    model = model_for(header, model, device, precision)
    dec = make_decoder(model, header)
    n = 0
    with video.VideoWriter(dst, header.width, header.height, header.fps) as w:
        for p in packets:
            out = dec.push(p)
            for f in out:
                w.write(f)
            n += len(out)
            if progress:
                progress(len(out))
    return DecodeStats(n, time.time() - t0, header)
