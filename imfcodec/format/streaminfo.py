"""Stream inspection: what an .imf file holds and where its bytes go (``imfcodec info``).

No torch here: reading a stream's layout needs only the container.
"""
from __future__ import annotations

import os

from . import container


def stream_info(path) -> dict:
    """Header, per-packet sizes and rates of an .imf file, as plain data (the CLI prints it,
    ``imfcodec info --json`` dumps it)."""
    header, packets = container.read_file(path)
    size = os.path.getsize(path)
    _, sizes = container.assemble(header, packets)
    pk = [{"type": kind, "frame": first, "frames": n, "bytes": nbytes}
          for kind, first, n, nbytes in sizes.packets]
    kf, tk = sizes.of("keyframe"), sizes.of("tokens")
    frames = container.frames_in(packets)      # = frame_count, unless that is 0 (a live recording)

    def rate(nbytes):
        return round(container.kbps(nbytes, frames, header.fps), 3)
    fl, fr = sizes.of("crop") + sizes.of("layer"), header.framing
    bl, base = sizes.of("base"), header.base_layer
    return {
        "file": str(path), "bytes": size,
        "format_version": header.version,
        "path": header.path, "layers": list(header.layers),
        "model_id": header.model_id, "model_hash": header.model_hash.hex(),
        "width": header.width, "height": header.height, "coded_size": header.coded_size,
        "fps": f"{header.fps.numerator}/{header.fps.denominator}", "frames": frames,
        "header_frame_count": header.frame_count, "duration_s": round(frames / float(header.fps), 3),
        "quality": header.quality,
        "keyframe_codec": header.keyframe_codec,
        "token_dim": header.token_dim, "packet_frames": header.packet_frames,
        "keyframes": sum(p["type"] == "keyframe" for p in pk),
        "header_bytes": size - kf - tk - fl - bl, "keyframe_bytes": kf, "token_bytes": tk,
        "kbps": rate(size), "keyframe_kbps": rate(kf), "token_kbps": rate(tk),
        "framing": "stretch" if fr is None else fr.mode,
        **({} if fr is None else {
            "layer_size": f"{fr.layer_width}x{fr.layer_height}", "layer_interval": fr.layer_interval,
            "feather": fr.feather, "layer_bytes": fl, "layer_kbps": rate(fl)}),
        "base_layer": "off" if base is None else f"{base.size}x{base.size} {base.codec}",
        "base_bytes": bl, "base_kbps": rate(bl), "anchor": 0 if base is None else base.anchor,
        "packets": pk,
    }
