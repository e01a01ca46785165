"""imfcodec: a neural talking-head video codec built on the Implicit Motion Function.

    import imfcodec
    stats = imfcodec.encode_file("in.mp4", "out.imf", quality=4)
    imfcodec.decode_file("out.imf", "rec.mp4")

Streaming: :class:`Encoder` (frames in, packets out) and :class:`Decoder` (packets in,
frames out); :class:`MultiDecoder` decodes many streams with the frame networks batched
over them; :func:`load_model` loads a shipped model by name or a model file.

The public API is :mod:`imfcodec.api`'s, loaded on first use: ``import imfcodec`` stays
cheap and imports no torch. Where the rest lives: docs/design.md, or the package's folders
(``codec/``, ``format/``, ``media/``, ``models/``, ``train/``; every option and default in
``options.py``).
"""
__version__ = "0.1.0"

from .errors import IMFCodecError, OptionError  # noqa: E402

# the names imfcodec.api exports (kept here so that listing them imports no torch;
# tests/test_layout.py checks the two lists agree)
_API = ("encode_file", "decode_file", "encode_frames", "decode_bytes", "EncodeStats", "DecodeStats",
        "Encoder", "Decoder", "MultiDecoder", "make_encoder", "make_decoder", "EncoderOptions",
        "load_model", "shipped_models", "CodecModel", "DEFAULT_MODEL", "DEFAULT_QUALITY",
        "Header", "KeyframePacket", "TokenPacket", "BasePacket", "StreamReader", "parse", "packet_to_bytes",
        "IMFCodecError", "OptionError", "ModelError", "StreamError")

__all__ = [*_API, "__version__"]


def __getattr__(name):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'imfcodec' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
