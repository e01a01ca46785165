"""imfcodec: a neural talking-head video codec built on the Implicit Motion Function.

    import imfcodec
    stats = imfcodec.encode_file("in.mp4", "out.imf", quality=4)
    imfcodec.decode_file("out.imf", "rec.mp4")

Streaming: :class:`Encoder` (frames in, packets out) and :class:`Decoder` (packets in,
frames out); :class:`MultiDecoder` decodes many streams with the frame networks batched
over them; :func:`load_model` loads a shipped model by name or a model file.
"""
__version__ = "0.1.0"

from .errors import IMFCodecError, OptionError  # noqa: E402


def __getattr__(name):
    # lazy: `import imfcodec` stays cheap and never imports torch or compiled extensions
    codec_names = {"Encoder", "Decoder", "make_encoder", "make_decoder", "encode_file", "decode_file",
                   "encode_frames", "decode_bytes",
                   "EncodeStats", "DecodeStats"}
    if name in codec_names:
        from . import codec
        return getattr(codec, name)
    if name == "MultiDecoder":
        from . import multi
        return multi.MultiDecoder
    if name in {"load_model", "CodecModel", "ModelError", "DEFAULT_MODEL", "shipped_models"}:
        from . import model
        return getattr(model, name)
    if name in {"Header", "KeyframePacket", "TokenPacket", "BasePacket", "StreamError", "StreamReader", "parse",
                "packet_to_bytes"}:
        from . import container
        return getattr(container, name)
    raise AttributeError(f"module 'imfcodec' has no attribute {name!r}")


__all__ = ["Encoder", "Decoder", "MultiDecoder", "make_encoder", "make_decoder", "encode_file", "decode_file", "encode_frames", "decode_bytes",
           "EncodeStats", "DecodeStats", "load_model", "CodecModel", "ModelError", "Header",
           "KeyframePacket", "TokenPacket", "BasePacket", "StreamError", "StreamReader", "parse", "packet_to_bytes",
           "IMFCodecError", "OptionError", "__version__"]
