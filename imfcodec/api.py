"""The public API: whole files, in-memory streams, and the streaming classes.

    import imfcodec
    stats = imfcodec.encode_file("in.mp4", "out.imf", quality=4)
    imfcodec.decode_file("out.imf", "rec.mp4")

Above the codec (:mod:`imfcodec.codec`), which it wires to video files
(:mod:`imfcodec.media.video`) and the container (:mod:`imfcodec.format.container`). Every
name here is re-exported by :mod:`imfcodec`.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .codec import framing as framing_mod
from .codec.decoder import Decoder, check_model
from .codec.encoder import EncodeStats, Encoder
from .codec.multi import MultiDecoder
from .errors import IMFCodecError, OptionError
from .fileio import atomic_write, check_output_folder
from .format import container
from .format.container import (BasePacket, Header, KeyframePacket, StreamError, StreamReader, TokenPacket,
                               packet_to_bytes, parse)
from .media import video
from .model import CodecModel, ModelError, load_model, shipped_models
from .options import DEFAULT_MODEL, DEFAULT_QUALITY, EncoderOptions


# keywords of the face framing encoder (imfcodec.codec.framing.FaceEncoder), beside EncoderOptions
FACE_FRAMING_OPTIONS = ("layer_short", "layer_interval", "layer_crf_offset", "min_move_interval",
                        "feather_fraction", "locator")


def make_encoder(model: CodecModel, width: int, height: int, fps, quality: int | None = None,
                 framing: str = "auto", *, options: EncoderOptions | None = None, **opts):
    """An :class:`Encoder`, or for a non-square source with ``framing`` auto or face, the face
    crop plus frame layer encoder (:mod:`imfcodec.codec.framing`; format version 3, or 6 with
    the base layer, which its crop gets as a square source would).
    ``quality``, ``options`` and the keywords: :class:`~imfcodec.options.EncoderOptions`,
    and with face framing :data:`FACE_FRAMING_OPTIONS`."""
    face_opts = {k: opts.pop(k) for k in FACE_FRAMING_OPTIONS if k in opts}
    options = EncoderOptions.build(options, quality=quality, **opts)
    if framing_mod.use_face(width, height, framing):
        return framing_mod.FaceEncoder(model, width, height, fps, options=options, **face_opts)
    if face_opts:
        raise OptionError(f"{', '.join(face_opts)}: face framing options, but this source is coded "
                          f"with framing stretch")
    return Encoder(model, width, height, fps, options=options)


def make_decoder(model: CodecModel, header: Header) -> Decoder:
    """The decoder of a stream: a :class:`Decoder`, or for a face-framed one (format
    version 3 or 6) its subclass :class:`~imfcodec.codec.framing.FaceDecoder`."""
    if header.framing is not None:
        return framing_mod.FaceDecoder(model, header)
    return Decoder(model, header)


def encode_frames(frames: Iterable[np.ndarray], fps, model: CodecModel, quality: int | None = None,
                  progress: Callable | None = None, framing: str = "auto", **opts) -> tuple[bytes, EncodeStats]:
    """Code RGB frames (an iterable of (H, W, 3) uint8) into .imf bytes. ``framing``: auto
    (face crop plus frame layer at an aspect of 4:3 or wider, else as below), face, or
    stretch (the whole frame scaled to the model's square). ``quality`` (default
    :data:`~imfcodec.options.DEFAULT_QUALITY`), ``options=`` and the other keywords:
    :func:`make_encoder`'s."""
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
    st.coding = header.describe()
    st.seconds = time.time() - t0
    st.psnr_model_res = enc.mean_psnr
    return data, st


def decode_bytes(data: bytes, model: CodecModel | str | None = None, device="auto",
                 progress: Callable | None = None, precision="auto"):
    """.imf bytes -> ``(header, frames)``: ``frames`` is an iterator (not a list) of RGB
    frames (height, width, 3) uint8 at source size, each decoded when it is drawn, so memory
    holds one packet's frames however long the stream; an error in the stream is raised
    where the iteration reaches it. ``list(frames)`` holds them all."""
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


def encode_file(src, dst, model: CodecModel | str | None = None, quality: int | None = None, device="auto",
                raw_size=None, raw_fps=None, progress=None, precision="auto", reader=None,
                **opts) -> EncodeStats:
    """Encode a video file (or ``-``: a video piped to stdin, read as it arrives) into an
    .imf file (written atomically when the last frame is coded; ``-``: to stdout).
    ``reader(src, raw_size, raw_fps)`` yields the RGB frames (default:
    :func:`imfcodec.media.video.read_video`'s). The output folder is checked before any
    frame is coded. ``quality`` and the other keywords: :func:`make_encoder`'s."""
    if str(dst) != video.PIPE:
        check_output_folder(dst)
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
    # the output's encoder runs on its own thread, beside the networks
    with video.BackgroundWriter(dst, header.width, header.height, header.fps) as w:
        for p in packets:
            out = dec.push(p)
            for f in out:
                w.write(f)
            n += len(out)
            if progress:
                progress(len(out))
    return DecodeStats(n, time.time() - t0, header)


__all__ = [
    # whole files and in-memory streams
    "encode_file", "decode_file", "encode_frames", "decode_bytes", "EncodeStats", "DecodeStats",
    # streaming
    "Encoder", "Decoder", "MultiDecoder", "make_encoder", "make_decoder", "EncoderOptions",
    # models
    "load_model", "shipped_models", "CodecModel", "DEFAULT_MODEL", "DEFAULT_QUALITY",
    # the container
    "Header", "KeyframePacket", "TokenPacket", "BasePacket", "StreamReader", "parse", "packet_to_bytes",
    # errors
    "IMFCodecError", "OptionError", "ModelError", "StreamError",
]
