"""The keyframe anchor (issue 32, format versions 7 and 8): between keyframes the decoded
keyframe picture is kept where the base picture has not changed since the keyframe. The
blend's arithmetic, the closed loop against the decoder and MultiDecoder, the header field
and its limits, the ladder and the option."""
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from conftest import REPO
from imfcodec import api
from imfcodec.codec import anchor as A
from imfcodec.codec.multi import MultiDecoder
from imfcodec.errors import OptionError
from imfcodec.format import container as C
from imfcodec.codec.ladder import BASE_LADDER_ANCHOR as A_LADDER
from test_base_layer import _base_model, _encode, _frames, _wide


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return _base_model(tmp_path_factory, "perturbed", "tinybase")[1]


def test_compose_keeps_the_keyframe_only_where_the_base_picture_stands_still():
    g = torch.Generator().manual_seed(0)
    x, key = torch.rand(2, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    b_k = torch.rand(1, 3, 8, 8, generator=g)
    still = b_k.expand(2, -1, -1, -1)
    anchor = A.Anchor(key, b_k)
    assert torch.equal(A.compose(x, still, anchor, 0.03), key.expand(2, -1, -1, -1))   # w = 1
    moved = (b_k + 0.5).expand(2, -1, -1, -1)
    assert torch.equal(A.compose(x, moved, anchor, 0.03), x)                           # w = 0
    half = (b_k + 0.015).expand(2, -1, -1, -1)                                         # w = 1/2
    assert torch.allclose(A.compose(x, half, anchor, 0.03), (x + key) / 2, atol=1e-5)
    for tau, base, anc in ((0.0, still, anchor), (0.03, None, anchor), (0.03, still, None)):
        assert A.compose(x, base, anc, tau) is x
    # a change in one corner of the base picture leaves the keyframe everywhere else
    b = b_k.clone()
    b[..., :2, :2] += 0.5
    out = A.compose(x[:1], b, anchor, 0.03)
    assert torch.equal(out[..., 16:, 16:], key[..., 16:, 16:])
    assert torch.equal(out[..., :4, :4], x[:1, :, :4, :4])


def test_anchored_stream_decodes_to_the_closed_loop_and_in_a_batch(base_model):
    """Version 7: the decoder and MultiDecoder give exactly the encoder's reconstructions
    (refreshes included); the anchor changes the pictures; anchor 0 is version 5."""
    frames = _frames(base_model, 14)
    enc, packets, recon = _encode(base_model, frames, anchor=40, packet_frames=4, max_keyframe_interval=0.3)
    header = enc.header(len(frames))
    assert header.version == C.ANCHOR_VERSION == 7 and header.base_layer.anchor == 40
    assert header.layers[-1].endswith("(anchor 40)")
    data, _ = C.assemble(header, packets)
    assert C.parse(data) == (header, packets) and enc.stats.keyframes >= 2
    h, out = api.decode_bytes(data, base_model)
    out = np.stack(list(out))
    assert np.array_equal(out, np.stack(recon))
    md = MultiDecoder(base_model)
    sid, other = md.add(h), md.add(h)
    for p in packets:
        md.push(sid, p)
        md.push(other, p)
    batched = [f for r in md.drain() for f in r.get(sid, [])]
    assert np.abs(np.stack(batched).astype(int) - out).max() <= 1
    plain, _, plain_recon = _encode(base_model, frames, anchor=0, packet_frames=4, max_keyframe_interval=0.3)
    assert plain.header(len(frames)).version == C.BASE_VERSION
    assert not np.array_equal(np.stack(plain_recon), out)


def test_face_framed_anchor_is_version_8(base_model):
    data, st = api.encode_frames(_wide(6), 25, base_model, 4, framing="face", packet_frames=4, anchor=30)
    h, _ = C.parse(data)
    assert data[4] == C.FRAMED_ANCHOR_VERSION == 8 and h.framing is not None and h.base_layer.anchor == 30
    assert len(list(api.decode_bytes(data, base_model)[1])) == 6


def test_header_field_and_its_limits(base_model):
    frames = _frames(base_model, 3)
    enc, packets, _ = _encode(base_model, frames, anchor=30)
    data, _ = C.assemble(enc.header(3), packets)
    h = C.parse(data)[0]
    assert h.base_layer == C.BaseLayer(h.base_layer.size, anchor=30) and h.base_layer.tau == 0.03
    raw = h.to_bytes()
    k = next(k for k in (1, 2, 3) if len(C.put_uvarint(len(raw) - 5 - k - 4)) == k)
    body = raw[5 + k:-4]
    assert body.endswith(C.put_uvarint(30))
    for bad in (0, 256, 1 << 40):          # a version-7 header stores 1..255
        b = body[:-1] + C.put_uvarint(bad)
        crafted = raw[:5] + C.put_uvarint(len(b)) + b + struct.pack(">I", zlib.crc32(b))
        with pytest.raises(C.StreamError, match="keyframe anchor"):
            C.parse_header(crafted)
    with pytest.raises(C.StreamError, match="keyframe anchor"):
        C.BaseLayer(48, anchor=256).check()


def test_ladder_and_option(base_model):
    size = base_model.config.image_size
    assert [base_model.base_anchor(q) for q in range(1, 9)] == list(A_LADDER)
    assert api.Encoder(base_model, size, size, 25, 8).level.anchor == A_LADDER[7]
    assert api.Encoder(base_model, size, size, 25, 8, anchor=0).header(1).version == C.BASE_VERSION
    assert api.Encoder(base_model, size, size, 25, 8, base_layer="off").header(1).version == C.VERSION
    for bad in (-1, 256, 2.5, True):
        with pytest.raises(OptionError, match="keyframe anchor"):
            api.Encoder(base_model, size, size, 25, 8, anchor=bad)


def test_cli_refuses_a_bad_anchor_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "imfcodec", "encode", str(REPO / "README.md"), str(tmp_path / "o.imf"),
                        "--anchor", "300"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--anchor" in r.stderr and len(r.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "o.imf").exists()
