"""The base layer (issue 15, format version 5): a small VP9 picture of every frame beside the
tokens, read by D_F. Codec round trips, the zero-stem identity, the ladder and options,
the container's rules for base packets, and the CLI's one-line errors."""
import dataclasses
import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import REPO, assert_stream_checked, moving_pattern
from imfcodec import cli
from imfcodec import api
from imfcodec.codec import encoder
from imfcodec.format import container as C
from imfcodec.media import video
from imfcodec.errors import OptionError
from imfcodec.codec.multi import MultiDecoder


def _base_model(tmp_path_factory, stems: str, name: str):
    from imfcodec.config import load_model_config
    from imfcodec.export import save_model
    from imfcodec.model import load_model, random_model
    # every way a frame may read its base picture: D_F's stems, IMF_A's queries, the pixel skip
    cfg = dataclasses.replace(load_model_config(REPO / "configs/model/tiny.yaml"), base_channels=8,
                              base_query_channels=8, ref_pixel_channels=8, align_mode=("borrow", "attn"))
    m = random_model(cfg, seed=3)
    if stems == "perturbed":            # trained-like: the base picture changes the frames
        g = torch.Generator().manual_seed(0)
        for w in _zero_start(m.generator):
            w.copy_(torch.randn(w.shape, generator=g) * 0.3)
    path = tmp_path_factory.mktemp("base") / f"{name}.pt"
    save_model(path, m.generator, m.entropy, name, quality_table=m.quality_table)
    return path, load_model(path, "cpu", "fp32")


def _zero_start(gen):
    """The weights that start at zero in a model initialised from a token-only one."""
    return [*(st.out.weight for st in [*gen.frame_decoder.base_stems, *gen.base_query_stems.values()]),
            gen.frame_decoder.ref_blend.net[-1].weight]


@pytest.fixture(scope="module")
def base_model_file(tmp_path_factory):
    return _base_model(tmp_path_factory, "perturbed", "tinybase")


@pytest.fixture(scope="module")
def base_model(base_model_file):
    return base_model_file[1]


@pytest.fixture(scope="module")
def zero_stem_model(tmp_path_factory):
    return _base_model(tmp_path_factory, "zero", "tinybase0")[1]


def _frames(model, n=14):
    size = model.config.image_size
    return [video.to_uint8(video.to_model(f, size))[0] for f in moving_pattern(n=n)]


def _encode(model, frames, **opts):
    size = model.config.image_size
    enc = api.Encoder(model, size, size, Fraction(25), opts.pop("quality", 4), **opts)
    packets, recon = [], []
    for f in frames:
        packets += enc.push(f)
        recon.append(video.to_uint8(enc.recon)[0])
    packets += enc.flush()
    return enc, packets, recon


def test_round_trip_decodes_what_the_closed_loop_saw(base_model, monkeypatch):
    """Refreshes (predicted keyframes) and a forced intra keyframe mid-stream included; every
    K, P and T packet comes right after the B packet of its frames."""
    script = itertools.cycle([29.0] * 9 + [20.0])
    monkeypatch.setattr(encoder, "psnr", lambda a, b: torch.tensor(next(script)))
    monkeypatch.setattr(api.Encoder, "_base_psnr", lambda self, x, q_r, base_pic=None: 30.0)
    frames = _frames(base_model, 16)
    enc, packets, recon = _encode(base_model, frames, refresh_drop=3.0, min_keyframe_interval=0.0,
                                  max_keyframe_interval=0.24)
    keys = [p for p in packets if isinstance(p, C.KeyframePacket)]
    assert any(p.predicted for p in keys) and sum(not p.predicted for p in keys) >= 2
    bases = [p for p in packets if isinstance(p, C.BasePacket)]
    assert [i for p in bases for i in range(p.first_frame, p.first_frame + p.count)] == list(range(len(frames)))
    for b, carrier in zip(packets[::2], packets[1::2]):
        assert isinstance(b, C.BasePacket) and not isinstance(carrier, C.BasePacket)
        first, count = ((carrier.frame_index, 1) if isinstance(carrier, C.KeyframePacket)
                        else (carrier.first_frame, carrier.count))
        assert (b.first_frame, b.count) == (first, count)
        assert b.key == (isinstance(carrier, C.KeyframePacket) and not carrier.predicted)
    assert max(p.count for p in bases) > 1
    header = enc.header(len(frames))
    assert header.base_layer == C.BaseLayer(base_model.base_size(4)) and header.version == 5
    data, sizes = C.assemble(header, packets)
    assert data[4] == C.BASE_VERSION and sizes.of("base") == sum(len(C.packet_to_bytes(p)) for p in bases)
    assert C.parse(data) == (header, packets)
    _, out = api.decode_bytes(data, base_model)
    out = list(out)
    assert len(out) == len(frames)
    for a, b in zip(recon, out):
        assert abs(a.astype(int) - b.astype(int)).max() <= 1


def test_the_base_picture_changes_the_frames(base_model):
    """With trained (here perturbed) stems D_F reads the picture: decoding the same tokens
    without it gives other frames (so the round trip above tests the base path)."""
    frames = _frames(base_model, 6)
    enc, packets, _ = _encode(base_model, frames)
    header = enc.header(len(frames))
    dec = api.Decoder(base_model, header)
    with_base = [f for p in packets for f in dec.push(p)]
    plain = dataclasses.replace(header, base_layer=None)
    dec = api.Decoder(base_model, plain)
    without = [f for p in packets if not isinstance(p, C.BasePacket) for f in dec.push(p)]
    assert max(abs(a.astype(int) - b.astype(int)).max() for a, b in zip(with_base[1:], without[1:])) > 8


def test_zero_stems_decode_the_token_only_frames(zero_stem_model):
    """A model whose base stems are zero (as initialised from token-only weights) codes the
    same keyframes and tokens and decodes the same frames with and without a base layer."""
    frames = _frames(zero_stem_model, 12)
    rule = {"min_keyframe_interval": 0.08, "max_keyframe_interval": 0.16}    # the same rule for both
    on, st_on = api.encode_frames(frames, 25, zero_stem_model, 4, base_layer="on", **rule)
    off, st_off = api.encode_frames(frames, 25, zero_stem_model, 4, base_layer="off", **rule)
    assert 1 < st_on.keyframes < 12
    assert on[4] == 5 and off[4] == C.VERSION == 2 and st_on.base_bytes > 0 == st_off.base_bytes
    h_on, p_on = C.parse(on)
    h_off, p_off = C.parse(off)
    assert [p for p in p_on if not isinstance(p, C.BasePacket)] == p_off
    a = list(api.decode_bytes(on, zero_stem_model)[1])
    b = list(api.decode_bytes(off, zero_stem_model)[1])
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 12


def test_the_base_picture_steers_the_queries_and_gates_the_pixel_skip(base_model):
    """IMF_A's query stems and the pixel skip's gate are on the decode path: with D_F's stems
    zeroed the frames still depend on the base picture; with every zero-start weight zeroed
    they no longer do; and a gate forced open shows the keyframe as IMF_A moved it."""
    gen = base_model.generator
    assert len(gen.base_query_stems) == gen.cfg.align_mode.count("attn") > 0
    weights = _zero_start(gen)
    saved = [w.clone() for w in weights]
    x = torch.rand(2, 3, gen.cfg.image_size, gen.cfg.image_size, generator=torch.Generator().manual_seed(1))
    ref = base_model.reference(x[:1], gen.quantize(gen.encode_token(x[:1]), 1.0), 1.0)
    q = gen.quantize(gen.encode_token(x), 1.0)
    black, white = torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)

    def differ():
        return not torch.equal(base_model.decode(q, 1.0, ref, black), base_model.decode(q, 1.0, ref, white))

    blend = gen.frame_decoder.ref_blend.net[-1]
    try:
        for st in gen.frame_decoder.base_stems:
            st.out.weight.zero_()
        assert differ()
        for w in weights:
            w.zero_()
        assert not differ()
        blend.bias.fill_(30.0)              # tanh(30) == 1: the warped keyframe itself
        with torch.no_grad():
            m_c = gen.token_decoder(gen.dequantize(q, 1.0))
            caches = base_model.reference(x[:1].expand(2, -1, -1, -1), q[:1].expand(2, -1), 1.0).caches
            warped = gen.motion_alignment(m_c, caches, pixels=True)[1]
        torch.testing.assert_close(base_model.decode(q, 1.0, ref, black), warped.clamp(0, 1), atol=1e-6, rtol=0)
    finally:
        blend.bias.zero_()
        for w, s in zip(weights, saved):
            w.copy_(s)


def test_token_only_models_and_levels_write_version_2(tiny_model, base_model):
    frames = _frames(tiny_model, 3)
    assert api.encode_frames(frames, 25, tiny_model, 4)[0][4] == 2          # auto, token-only model
    assert base_model.base_size(1) == 0
    assert api.encode_frames(frames, 25, base_model, 1)[0][4] == 2          # token-only level
    with pytest.raises(OptionError, match="token-only level"):
        api.encode_frames(frames, 25, base_model, 1, base_layer="on")
    with pytest.raises(OptionError, match="token-only"):
        api.encode_frames(frames, 25, tiny_model, 4, base_layer="on")
    with pytest.raises(OptionError, match="auto, on or off"):
        api.encode_frames(frames, 25, base_model, 4, base_layer="yes")
    with pytest.raises(OptionError, match="base picture size"):
        api.encode_frames(frames, 25, base_model, 4, base_size=40)
    with pytest.raises(OptionError, match="CRF"):
        api.encode_frames(frames, 25, base_model, 4, base_crf=64)


def test_ladder_and_overrides(base_model, tiny_model):
    from imfcodec.codec.ladder import BASE_LADDER_SIZE, DEFAULT_BASE_LADDER
    assert [base_model.base_size(q) for q in range(1, 9)] == list(BASE_LADDER_SIZE)
    assert [tiny_model.base_size(q) for q in range(1, 9)] == [0] * 8        # a file without the keys
    assert "base_size" not in tiny_model.quality_table[0]
    size = base_model.config.image_size
    enc = api.Encoder(base_model, size, size, Fraction(25), 8, base_size=32, base_crf=50)
    assert enc.base_layer.size == 32 and enc.base_enc.crf == 50
    # q8 refreshes sooner with its base layer than token-only: each mode takes its own key
    assert enc.min_interval == round(DEFAULT_BASE_LADDER[7]["base_min_keyframe_interval"] * 25) == 2
    off = api.Encoder(base_model, size, size, Fraction(25), 8, base_layer=False)
    assert off.base_layer is None and off.min_interval == round(base_model.min_keyframe_interval(8) * 25) == 12


def test_av1_chain_has_its_own_base_layer_ladder(base_model):
    """With the base layer on, the AV1 keyframe chain takes its own keyframe CRF and min
    keyframe interval (quality-table key `base_av1_chain`; BASE_AV1_CHAIN_* for a file
    without it); the VP9 chain and token-only coding keep theirs."""
    import dataclasses
    from imfcodec.codec.ladder import BASE_AV1_CHAIN_CRF, BASE_AV1_CHAIN_MIN_KEYFRAME_INTERVAL_S, DEFAULT_BASE_LADDER
    assert base_model.quality_table[3]["base_av1_chain"] == {"crf": 46, "min_keyframe_interval": 0.33}
    old = dataclasses.replace(base_model, quality_table=[
        {k: v for k, v in r.items() if k != "base_av1_chain"} for r in base_model.quality_table])
    size, fps = base_model.config.image_size, Fraction(25)
    for m in (base_model, old):
        for q in (2, 4, 5, 6):
            on = api.Encoder(m, size, size, fps, q, keyframe_codec="av1-chain")
            assert on.base_layer is not None and on.crf == BASE_AV1_CHAIN_CRF[q - 1]
            assert on.min_interval == round(BASE_AV1_CHAIN_MIN_KEYFRAME_INTERVAL_S[q - 1] * 25)
            vp9 = api.Encoder(m, size, size, fps, q, keyframe_codec="vp9")
            assert vp9.crf == m.keyframe_crf(q, "vp9")
            assert vp9.min_interval == round(DEFAULT_BASE_LADDER[q - 1]["base_min_keyframe_interval"] * 25)
            assert vp9.min_interval > on.min_interval                  # e.g. q4: 0.5 s against 0.33
            off = api.Encoder(m, size, size, fps, q, keyframe_codec="av1-chain", base_layer="off")
            assert off.crf == m.keyframe_crf(q, "av1-chain")
            assert off.min_interval == round(m.min_keyframe_interval(q) * 25)
    own = dataclasses.replace(base_model, quality_table=[dict(r) for r in base_model.quality_table])
    own.quality_table[3]["base_av1_chain"] = {"crf": 33, "min_keyframe_interval": 1.0}
    enc = api.Encoder(own, size, size, fps, 4)
    assert (enc.crf, enc.min_interval) == (33, 25)                      # the file's own pair


# ---- face framing with the base layer (format version 6, issue 35) ---------------------------
def _wide(n=10):
    return moving_pattern(n, 96, 170, seed=3)          # 16:9, no face: the centred crop


def test_face_framing_codes_the_base_layer_as_version_6(base_model):
    """A face-framed source with a base-layer model: version 6, the crop's stream a version-5
    stream (a B packet right before each K and T packet, after the keyframe's C and F),
    decoded at the source's size; --base-layer on gives the same bytes, off gives version 3."""
    frames = _wide(10)
    data, st = api.encode_frames(frames, 25, base_model, 4, framing="face", packet_frames=4)
    h, ps = C.parse(data)
    assert data[4] == C.FRAMED_BASE_VERSION == 6 and h.version == 6
    assert h.base_layer == C.BaseLayer(base_model.base_size(4)) and h.framing.mode == "face"
    assert (h.path, st.coding) == ("face framing", f"face framing: tokens, base layer {h.base_layer.size}x"
                                   f"{h.base_layer.size}, frame layer {h.framing.layer_width}x{h.framing.layer_height}")
    kinds = "".join({C.CropPacket: "C", C.LayerPacket: "F", C.BasePacket: "B", C.KeyframePacket: "K",
                     C.TokenPacket: "T"}[type(p)] for p in ps)
    assert kinds.startswith("CFBK") and "BT" in kinds and kinds.count("B") == kinds.count("K") + kinds.count("T")
    assert st.base_bytes > 0 and st.layer_bytes > 0
    assert st.header_bytes + st.keyframe_bytes + st.token_bytes + st.layer_bytes + st.base_bytes == len(data)
    _, it = api.decode_bytes(data, base_model)
    dec = np.stack(list(it))
    assert dec.shape == (10, 96, 170, 3)
    on, _ = api.encode_frames(frames, 25, base_model, 4, framing="face", packet_frames=4, base_layer="on")
    assert on == data
    off, st_off = api.encode_frames(frames, 25, base_model, 4, framing="face", packet_frames=4, base_layer="off")
    assert off[4] == C.FRAMED_VERSION and C.parse(off)[0].base_layer is None and st_off.base_bytes == 0
    assert st_off.coding.startswith("face framing: tokens, frame layer")


def test_version_6_decodes_as_its_crop_would_with_the_base_layer(base_model):
    """The crop's frames in a version-6 stream are those of the same crop coded square as a
    version-5 stream (the base layer changes them: they differ from the token-only crop)."""
    frames = _wide(6)
    data, _ = api.encode_frames(frames, 25, base_model, 4, framing="face")
    h, ps = C.parse(data)
    c = ps[0]
    crops = [np.ascontiguousarray(f[c.y:c.y + c.side, c.x:c.x + c.side]) for f in frames]
    square, _ = api.encode_frames(crops, 25, base_model, 4)
    assert square[4] == C.BASE_VERSION
    inner = [p for p in ps if not isinstance(p, (C.CropPacket, C.LayerPacket))]
    assert inner == C.parse(square)[1]                  # the same B, K and T packets, byte for byte


def test_version_6_container_rules():
    framing = C.Framing(114, 64, 2, 16)
    h = C.Header("m", bytes(8), 456, 256, 256, Fraction(25), 3, 4, "vp9", 4, 8, framing, C.BaseLayer(48))
    ps = [C.CropPacket(0, 100, 0, 256), C.LayerPacket(0, b"L"), C.BasePacket(0, (b"b0",), key=True),
          C.KeyframePacket(0, (1, 2, 3, 4), b"I"), C.LayerPacket(2, b"M", True),
          C.BasePacket(1, (b"b1", b"b2")), C.TokenPacket(1, 2, b"tt")]
    data = h.to_bytes() + b"".join(C.packet_to_bytes(p) for p in ps)
    assert data[4] == 6 and C.parse(data) == (h, ps)
    assert h.describe() == "face framing: tokens, base layer 48x48, frame layer 114x64"
    assert_stream_checked(data)

    def refused(packets, match):
        with pytest.raises(C.StreamError, match=match):
            C.parse(h.to_bytes() + b"".join(C.packet_to_bytes(p) for p in packets))
    refused([ps[0], ps[2], ps[1], ps[3]] + ps[4:], "frame-layer packet for frame 0 between the base-layer")
    refused([ps[1], ps[2], ps[0], ps[3]] + ps[4:], "crop packet for frame 0 between the base-layer")
    refused(ps[:5] + [ps[5], C.LayerPacket(3, b"N", True), ps[6]], "between the base-layer")
    refused(ps[:2] + ps[3:], "no base-layer pictures")                  # version 5's rules hold
    refused(ps[1:], "without a crop packet")                            # and version 3's
    refused(ps[:2] + [C.BasePacket(0, (b"b0",), key=False)] + ps[3:], "first base-layer picture")
    # the header: version 3's framing bounds and version 5's base-layer bounds, both
    with pytest.raises(C.StreamError, match="base picture size"):
        C.Header("m", bytes(8), 456, 256, 256, Fraction(25), 3, 4, "vp9", 4, 8, framing, C.BaseLayer(40))
    body = C.put_uvarint(3) + C.put_uvarint(48)
    head = h.to_bytes()
    assert head.endswith(body + head[-4:])
    import struct
    import zlib

    def recrc(head):
        r = C._Reader(head, "x")
        r.take(5)
        r.uvarint()
        b = head[r.pos:-4]
        return head[:5] + C.put_uvarint(len(b)) + b + struct.pack(">I", zlib.crc32(b))
    rest = b"".join(C.packet_to_bytes(p) for p in ps)
    with pytest.raises(C.StreamError, match="base picture size 40"):
        C.parse(recrc(head[:-4 - len(body)] + C.put_uvarint(3) + C.put_uvarint(40) + head[-4:]) + rest)
    with pytest.raises(C.StreamError, match="frame-layer size"):
        C.parse(recrc(head.replace(C.put_uvarint(114) + C.put_uvarint(64), C.put_uvarint(500) + C.put_uvarint(64)))
                + rest)
    with pytest.raises(C.StreamError, match="trailing bytes"):          # a version-3 reading of it
        C.parse(recrc(bytes([*head[:4], 3]) + head[5:]) + rest)
    with pytest.raises(C.StreamError, match="truncated header"):          # a version-8 reading of it
        C.parse(bytes([*head[:4], 8]) + head[5:] + rest)
    with pytest.raises(C.StreamError, match="unsupported .imf format version 9"):
        C.parse(bytes([*head[:4], 9]) + head[5:] + rest)


def test_version_6_live_decoder_refuses_a_crop_between_base_and_keyframe(base_model):
    frames = _wide(4)
    data, _ = api.encode_frames(frames, 25, base_model, 4, framing="face")
    h, ps = C.parse(data)
    assert [type(p) for p in ps[:4]] == [C.CropPacket, C.LayerPacket, C.BasePacket, C.KeyframePacket]
    dec = api.make_decoder(base_model, h)
    dec.push(ps[0])
    dec.push(ps[2])
    with pytest.raises(C.StreamError, match="between the base-layer"):
        dec.push(ps[1])


def test_version_6_needs_a_model_with_a_base_layer(tiny_model):
    from imfcodec.codec.decoder import check_model
    from imfcodec.model import ModelError
    h = C.Header(tiny_model.model_id, tiny_model.hash8, 456, 256, tiny_model.config.image_size, Fraction(25), 3,
                 4, "vp9", tiny_model.config.token_dim, 8, C.Framing(114, 64, 2, 16), C.BaseLayer(48))
    with pytest.raises(ModelError, match="token-only"):
        check_model(tiny_model, h)


def test_multidecoder_batches_base_layer_streams_like_lone_decoders(base_model):
    """Streams with base pictures of two sizes and a token-only stream of the same model, in
    one MultiDecoder: each stream's frames are its lone Decoder's."""
    frames = _frames(base_model, 12)
    datas = [api.encode_frames(frames[k:], 25, base_model, 4, **opts)[0]
             for k, opts in enumerate([{}, {"base_size": 32}, {"base_layer": "off"}])]
    assert [d[4] for d in datas] == [5, 5, 2]
    md = MultiDecoder(base_model)
    want, sids = {}, []
    for data in datas:
        h, packets = C.parse(data)
        sid = md.add(h)
        sids.append(sid)
        for p in packets:
            md.push(sid, p)
        want[sid] = list(api.decode_bytes(data, base_model)[1])
    got = {sid: [] for sid in sids}
    for out in md.drain():
        for sid, fs in out.items():
            got[sid] += fs
    for sid in sids:
        assert len(got[sid]) == len(want[sid])
        assert max(abs(a.astype(int) - b.astype(int)).max() for a, b in zip(got[sid], want[sid])) <= 1


def test_token_only_model_refuses_a_base_layer_stream(base_model, tiny_model):
    from imfcodec.model import ModelError
    data, _ = api.encode_frames(_frames(base_model, 2), 25, base_model, 4)
    h = dataclasses.replace(C.parse(data)[0], model_id=tiny_model.model_id, model_hash=tiny_model.hash8,
                            token_dim=tiny_model.config.token_dim)
    with pytest.raises(ModelError, match="token-only"):
        api.Decoder(tiny_model, h)


def test_live_decoder_checks_base_packets_itself(base_model):
    """A live stream is not checked as a whole file: the Decoder refuses a token packet
    whose frames have no base pictures, and base pictures out of order."""
    frames = _frames(base_model, 6)
    enc, packets, _ = _encode(base_model, frames)
    h = enc.header(0)
    dec = api.Decoder(base_model, h)
    with pytest.raises(C.StreamError, match="base-layer pictures from frame 1, expected 0"):
        dec.push(dataclasses.replace(packets[0], first_frame=1))
    dec = api.Decoder(base_model, h)
    missing = packets[:2] + packets[3:]
    assert isinstance(packets[2], C.BasePacket) and isinstance(packets[3], C.TokenPacket)
    with pytest.raises(C.StreamError, match="no base-layer pictures before the packet that carries frame 1"):
        for p in missing:
            dec.push(p)


def test_wrong_size_base_picture_is_refused(base_model):
    frames = _frames(base_model, 3)
    data, _ = api.encode_frames(frames, 25, base_model, 4, base_size=48)
    h, ps = C.parse(data)
    lied, _ = C.assemble(dataclasses.replace(h, base_layer=C.BaseLayer(32)), ps)
    with pytest.raises(C.StreamError, match="base-layer picture of frame 0.*48x48, the header says 32x32"):
        list(api.decode_bytes(lied, base_model)[1])


def test_damaged_base_picture_is_one_stream_error(base_model):
    frames = _frames(base_model, 4)
    data, _ = api.encode_frames(frames, 25, base_model, 4)
    h, ps = C.parse(data)
    for cut in (1, 5):
        bad = [dataclasses.replace(p, pictures=(p.pictures[0][:cut],)) if isinstance(p, C.BasePacket)
               and p.first_frame == 0 else p for p in ps]
        with pytest.raises(C.StreamError, match="base-layer picture of frame 0"):
            list(api.decode_bytes(C.assemble(h, bad)[0], base_model)[1])


# ---- container ------------------------------------------------------------------------
def _header(frames=4, pf=2, base=C.BaseLayer(48)):
    return C.Header("imf-cpu", bytes(range(8)), 64, 64, 64, Fraction(25), frames, 4, "vp9", 4, pf,
                    base_layer=base)


def _packets():
    return [C.BasePacket(0, (b"key0",), key=True), C.KeyframePacket(0, (1, 2, 3, 4), b"pic"),
            C.BasePacket(1, (b"b1", b"b2")), C.TokenPacket(1, 2, b"tok1"),
            C.BasePacket(3, (b"b3",)), C.KeyframePacket(3, (0, 0, 0, 0), b"p2", predicted=True)]


def _bytes(packets, header=None):
    return (header or _header()).to_bytes() + b"".join(C.packet_to_bytes(p) for p in packets)


def test_container_round_trip_truncation_and_bit_flips():
    data = _bytes(_packets())
    assert C.parse(data) == (_header(), _packets()) and data[4] == 5
    assert_stream_checked(data, flip=0x04)


def test_base_pictures_are_deflated_on_the_wire():
    """Pictures that repeat (as VP9 frame headers do) cost less than their bytes."""
    pics = tuple(bytes.fromhex("860040921c005c000003200000") + bytes([i, 7 * i]) for i in range(8))
    wire = C.packet_to_bytes(C.BasePacket(5, pics))
    assert len(wire) < 0.5 * sum(map(len, pics))
    h = _header(frames=13, pf=8)
    assert C._parse_packet(C._Reader(wire, "stream"), h) == C.BasePacket(5, pics)
    with pytest.raises(ValueError):
        C.packet_to_bytes(C.BasePacket(0, (b"a", b"")))


def test_version_4_is_refused_with_one_line():
    data = bytearray(_bytes(_packets()))
    data[4] = 4
    with pytest.raises(C.StreamError, match="unsupported .imf format version 4 .*re-encode"):
        C.parse(bytes(data))


def _swap(ps, i, j):
    ps = list(ps)
    ps[i], ps[j] = ps[j], ps[i]
    return ps


@pytest.mark.parametrize("packets,message", [
    (_packets()[:2] + [C.BasePacket(2, (b"b2",))] + _packets()[3:], "pictures from frame 2, expected 1"),
    (_swap(_packets(), 0, 1), "no base-layer pictures before the packet that carries frame 0"),
    ([C.BasePacket(0, (b"key0",))] + _packets()[1:], "first base-layer picture is a predicted one"),
    (_packets()[:2] + [C.BasePacket(1, (b"b1",))] + _packets()[3:], "frames 1..1 before a packet of frames 1..2"),
    (_packets()[:3] + _packets()[2:], "frames 1..2 not followed by the packet that carries them"),
    (_packets()[:4] + [C.BasePacket(3, (b"b3",)), C.KeyframePacket(3, (0, 0, 0, 0), b"p2")],
     "keyframe 3 without a base-layer key picture"),
    (_packets() + [C.BasePacket(4, (b"b4",))], "beyond the frame count"),
    (_packets()[:4] + [C.BasePacket(3, (b"b3", b"b4"))], "beyond the frame count"),
])
def test_base_packet_order_is_checked(packets, message):
    with pytest.raises(C.StreamError, match=message):
        C.parse(_bytes(packets))


def test_dangling_base_picture_in_a_live_recording_is_refused():
    with pytest.raises(C.StreamError, match="without their frames"):
        C.parse(_bytes(_packets() + [C.BasePacket(4, (b"b4",))], _header(frames=0)))


def _packet(typ, body):
    import binascii
    import struct
    return bytes([typ]) + C.put_uvarint(len(body)) + body + struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))


def test_crafted_base_packets_and_header_fields():
    import zlib
    head = _header().to_bytes()

    def deflated(raw: bytes, tail=b"") -> bytes:
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        return z.compress(raw) + z.flush() + tail

    for body, msg in [(b"\x00\x01\x02" + deflated(b"pic"), "picture kind"),
                      (b"\x00\x00\x01" + deflated(b"pic"), "picture count"),
                      (b"\x00\x03\x01" + deflated(b"pic"), "picture count"),       # packet_frames 2
                      (b"\x00\x01\x01" + deflated(b""), "a picture outside 1..65536 bytes"),
                      (b"\x00\x02\x01" + deflated(b"\x03pic"), "a picture outside"),    # nothing left
                      (b"\x00\x02\x01" + deflated(b"\x00pic"), "a picture outside"),
                      (b"\x00\x01\x01" + deflated(b"pic")[:-1], "cut short"),
                      (b"\x00\x01\x01" + deflated(b"pic", b"x"), "followed by other bytes"),
                      (b"\x00\x01\x01\xff\xff", "not a deflate stream"),
                      # a bomb: 2 x 64 KiB + 7 of zeros inflate past the bound and stop there
                      (b"\x00\x02\x01" + deflated(bytes(2 * C.MAX_BASE_PAYLOAD + 7)), "inflates past 131078")]:
        with pytest.raises(C.StreamError, match=msg):
            C.parse(head + _packet(C.PKT_BASE, body))
    big = C.put_uvarint(C.max_base_body(2) + 1)
    with pytest.raises(C.StreamError, match="over the limit"):
        C.parse(head + bytes([C.PKT_BASE]) + big + b"\x00" * 64)
    # a base packet in a token-only stream is an unknown packet type
    with pytest.raises(C.StreamError, match="unknown type 0x42"):
        C.parse(_bytes(_packets(), _header(base=None)))
    for size, codec_id, msg in [(40, 3, "base picture size 40"), (0, 3, "base picture size 0"),
                                (48, 0, "is not VP9"), (48, 4, "is not VP9"),
                                (48, 9, "unknown base-layer codec id 9")]:
        good = _header()
        body = good.to_bytes()[6:-4]
        crafted = body[:-2] + C.put_uvarint(codec_id) + C.put_uvarint(size)
        import struct
        data = C.MAGIC + bytes([5]) + C.put_uvarint(len(crafted)) + crafted + struct.pack(">I", zlib.crc32(crafted))
        with pytest.raises(C.StreamError, match=msg):
            C.parse(data)
    # a base layer with face framing is version 6 (test_version_6_container_rules), never 5
    assert dataclasses.replace(_header(), framing=C.Framing(32, 32, 10, 4)).version == C.FRAMED_BASE_VERSION


# ---- CLI ------------------------------------------------------------------------------
def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_base_layer(tmp_path, capsys, base_model_file, tiny_model_file):
    from conftest import write_clip
    path, _ = base_model_file
    clip = write_clip(tmp_path / "sq.mp4", moving_pattern(n=6, h=64, w=64))
    imf = tmp_path / "a.imf"
    code, out, err = run(capsys, "encode", clip, imf, "--model", path, "--base-layer", "on", "-q")
    assert code == 0, err
    code, out, _ = run(capsys, "info", imf)
    assert code == 0 and "v5" in out and "base layer 48x48 vp9" in out
    code, out, _ = run(capsys, "info", imf, "--json")
    import json
    d = json.loads(out)
    assert d["base_layer"] == "48x48 vp9" and d["base_bytes"] > 0 and d["format_version"] == 5
    assert d["header_bytes"] + d["keyframe_bytes"] + d["token_bytes"] + d["base_bytes"] == d["bytes"]
    code, out, err = run(capsys, "decode", imf, tmp_path / "a.y4m", "-q", "--model", path)
    assert code == 0, err
    # one line each: on with a token-only model; a damaged base picture (CRC recomputed)
    code, _, err = run(capsys, "encode", clip, tmp_path / "b.imf", "--model", tiny_model_file,
                       "--base-layer", "on", "-q")
    assert code == 1 and err.count("\n") == 1 and "token-only" in err
    h, ps = C.parse(imf.read_bytes())
    ps = [dataclasses.replace(p, pictures=tuple(bytes(len(x)) for x in p.pictures))
          if isinstance(p, C.BasePacket) and p.first_frame == 1 else p for p in ps]
    bad = tmp_path / "bad.imf"
    bad.write_bytes(C.assemble(h, ps)[0])
    code, _, err = run(capsys, "decode", bad, tmp_path / "bad.y4m", "-q", "--model", path)
    assert code == 1 and err.count("\n") == 1 and "base-layer picture of frame 1" in err, err
    assert not (tmp_path / "bad.y4m").exists()


# ---- fuzzing ------------------------------------------------------------------------------
def test_fuzzing_reaches_the_base_layer_decoder(base_model):
    """The fuzz harness (tests/fuzz/fuzz_imf.py) with a base-layer model: its generated
    version-5 streams carry a real base stream and get past the parser to the decoder's
    base-layer checks, and byte mutations of a real version-5 stream (CRCs fixed) decode
    or are refused by the decoder; only IMFCodecError ever comes out."""
    import sys
    sys.path.insert(0, str(REPO / "tests/fuzz"))
    import fuzz_imf
    fuzz_imf._imports()
    fuzz_imf.time_bound(20)
    streams = fuzz_imf.streams
    t = fuzz_imf.target_for(base_model)
    assert len(t.base_pictures) == 4 and t.base_size == 48
    seen = {}
    for i in range(400):
        d = streams.RandomDraw(f"base-{i}")
        data = streams.stream(d, t)
        if data[4] in (C.BASE_VERSION, C.ANCHOR_VERSION):                     # 7: 5 with the anchor
            out = fuzz_imf.run_case(data if i % 2 else streams.fix_crcs(streams._mutate(d, data)), base_model, 20)
            seen[out] = seen.get(out, 0) + 1
    assert any(k.startswith("refused by decode: base-layer picture") for k in seen), seen
    real, _ = api.encode_frames(_frames(base_model, 6), 25, base_model, 4, packet_frames=2)
    assert real[4] == C.BASE_VERSION and fuzz_imf.run_case(real, base_model, 20) == "decoded"
    mutated = fuzz_imf.mutation_outcomes(real, base_model, 120, "mut")
    assert mutated.get("decoded", 0) > 0 and any(k.startswith("refused by decode") for k in mutated), mutated


def test_cli_says_which_path_and_layers(tmp_path, capsys, base_model_file):
    """encode's summary line and info name the path (square, face framing, stretch) and the
    layers; a face-framed clip with the base-layer model is version 6, or 3 with it off."""
    import json
    from conftest import write_clip
    path, _ = base_model_file
    wide = write_clip(tmp_path / "wide.mp4", _wide(6))
    square = write_clip(tmp_path / "sq.mp4", moving_pattern(n=6, h=64, w=64))
    for src, opts, version, coding in (
            (wide, ["--framing", "face"], 6, "face framing: tokens, base layer 48x48, frame layer 114x64"),
            (wide, ["--framing", "face", "--base-layer", "on"], 6,
             "face framing: tokens, base layer 48x48, frame layer 114x64"),
            (wide, ["--framing", "face", "--base-layer", "off"], 3, "face framing: tokens, frame layer 114x64"),
            (wide, [], 5, "stretch: tokens, base layer 48x48"),     # a short side under 128 px
            (square, [], 5, "square: tokens, base layer 48x48")):
        imf = tmp_path / "o.imf"
        code, out, err = run(capsys, "encode", src, imf, "--model", path, "-q", *opts)
        assert code == 0, err
        assert out.strip().endswith(f"frames/s; {coding}"), out
        code, out, _ = run(capsys, "info", imf)
        assert code == 0 and f".imf v{version}," in out and f"\n  {coding}\n" in out, out
        d = json.loads(run(capsys, "info", imf, "--json")[1])
        assert d["format_version"] == version and f"{d['path']}: {', '.join(d['layers'])}" == coding
    code, out, err = run(capsys, "decode", tmp_path / "o.imf", tmp_path / "o.y4m", "-q", "--model", path)
    assert code == 0, err


def test_fuzzing_reaches_the_version_6_decoder(base_model):
    """Generated version-6 and -8 streams (framing fields, C/F packets, B packets of a real base
    stream) get past the parser to the decoder, and byte mutations of a real version-6
    stream (CRCs fixed) decode or are refused; only IMFCodecError ever comes out."""
    import sys
    sys.path.insert(0, str(REPO / "tests/fuzz"))
    import fuzz_imf
    fuzz_imf._imports()
    fuzz_imf.time_bound(20)
    streams = fuzz_imf.streams
    t = fuzz_imf.target_for(base_model)
    seen = {}
    for i in range(600):
        d = streams.RandomDraw(f"v6-{i}")
        data = streams.stream(d, t)
        if data[4] in (C.FRAMED_BASE_VERSION, C.FRAMED_ANCHOR_VERSION):       # 8: 6 with the anchor
            out = fuzz_imf.run_case(data, base_model, 20)
            seen[out] = seen.get(out, 0) + 1
    assert sum(seen.values()) > 5 and any(k == "decoded" or k.startswith("refused by decode") for k in seen), seen
    real, _ = api.encode_frames(_wide(6), 25, base_model, 4, framing="face", packet_frames=2)
    assert real[4] == 6 and fuzz_imf.run_case(real, base_model, 20) == "decoded"
    mutated = fuzz_imf.mutation_outcomes(real, base_model, 80, "mut6")
    assert mutated.get("decoded", 0) > 0 and any(k.startswith("refused by decode") for k in mutated), mutated
