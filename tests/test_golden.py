"""Golden streams (tests/golden, made by tests/golden/make_golden.py with the shipped
model): they must keep decoding to the same integer symbols, the same keyframe pictures
and, within a PSNR bound, the same frames. A change of CompressAI's rANS format, of
PyAV/FFmpeg's decoders, of our tables or of the networks fails here loudly."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
THUMB_PSNR_DB = 40.0        # thumbnails of bf16 and fp32 decodes agree far beyond this


@pytest.fixture(scope="module")
def shipped():
    from imfcodec.model import load_model
    return load_model("imf-cpu", "cpu")


def test_every_codec_and_source_is_covered():
    assert {k.split("_")[1] for k in EXPECTED} == set(make_golden.CODECS)
    assert {k.split("_")[0] for k in EXPECTED} == {"carphone", "synthetic"}
    assert any(p[0] == "P" for p in EXPECTED["carphone_vp9"]["packets"])    # a predicted keyframe
    for e in EXPECTED.values():
        assert sum(p[0] != "T" for p in e["packets"]) >= 2                   # two keyframes or more


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_golden_stream_decodes_as_recorded(stem, shipped):
    e = EXPECTED[stem]
    data = (GOLDEN / f"{stem}.imf").read_bytes()
    assert hashlib.sha256(data).hexdigest() == e["sha256"], "the golden file itself changed"
    header, symbols, pictures, packets, frames = make_golden.decode_record(data, shipped)
    assert (header.frame_count, header.width, header.height, header.keyframe_codec) == (
        e["frames"], e["width"], e["height"], e["keyframe_codec"])
    assert packets == e["packets"]
    assert symbols == e["symbols"], "token symbols changed: rANS format, tables or the decoder's sums"
    assert pictures == e["keyframe_pictures_sha256"], "keyframe pictures changed: PyAV/FFmpeg decoder"
    thumbs = np.load(GOLDEN / "golden.npz")[stem]
    assert len(frames) == len(thumbs) == e["frames"]
    for i, (f, t) in enumerate(zip(frames, thumbs)):
        mse = np.mean((make_golden.thumbnail(f).astype(float) - t) ** 2)
        db = 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))
        assert db >= THUMB_PSNR_DB, f"{stem} frame {i}: {db:.1f} dB from the recorded decode"
