"""Untrusted streams (issue 17): every header and packet field has a limit, the crafted
files of the issue give one line quickly and without big allocations, frame count 0 (a
live recording) works, token symbols stay exact integers, and the fuzz harness runs."""
from __future__ import annotations

import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec import cli, entropy
from imfcodec import api
from imfcodec.format import container as C
from imfcodec.media import keyframe

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import streams  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "tests/fuzz/fuzz_imf.py"


@pytest.fixture(scope="module")
def tiny_stream(tiny_model, clip):
    from imfcodec.media import video
    frames = list(video.read_frames(clip))[:5]
    data, _ = api.encode_frames(frames, 25, tiny_model, 4, keyframe_codec="av1", packet_frames=2)
    return data


# ---- limits ------------------------------------------------------------------------------
LIMITS = [
    (dict(width=C.MAX_SIDE + 1, height=1), "frame size 8193x1 outside 1..8192"),
    (dict(width=0), "frame size 0x"),
    (dict(width=4096, height=4096), "over 9437184 pixels"),
    (dict(coded_size=C.MAX_CODED_SIZE + 1), "coded size 1025 outside"),
    (dict(coded_size=8), "coded size 8 outside"),
    (dict(fps_num=0), "frame rate 0/1"),
    (dict(fps_den=C.MAX_FPS_TERM + 1), "frame rate"),
    (dict(fps_num=1001, fps_den=1), "frame rate 1001 outside"),
    (dict(fps_num=1, fps_den=1001), "frame rate 1/1001 outside"),
    (dict(frame_count=C.MAX_FRAME_COUNT + 1), "frame count 4294967296 over"),
    (dict(quality=9), "quality 9 outside 1..8"),
    (dict(quality=0), "quality 0 outside"),
    (dict(keyframe_codec=5), "unknown keyframe codec id 5"),
    (dict(token_dim=C.MAX_TOKEN_DIM + 1), "token size 1025 outside"),
    (dict(packet_frames=C.MAX_PACKET_FRAMES + 1), "packet frames 257 outside 1..256"),
    (dict(packet_frames=0), "packet frames 0 outside"),
]


@pytest.mark.parametrize("fields,message", LIMITS)
def test_every_header_field_has_a_limit(tiny_stream, fields, message):
    bad = streams.with_header(tiny_stream, **fields)
    with pytest.raises(C.StreamError, match=message.replace("(", r"\(")) as e:
        C.parse(bad)
    assert "\n" not in str(e.value)
    limits_ok = streams.with_header(tiny_stream)       # the rewrite itself changes nothing
    assert C.parse(limits_ok) == C.parse(tiny_stream)


def test_writer_refuses_what_the_reader_would():
    with pytest.raises(C.StreamError, match="frame size 9000x100"):
        C.Header("m", bytes(8), 9000, 100, 256, Fraction(25), 1, 4, "av1", 32, 8)


def test_packet_limits():
    h = C.Header("m", bytes(8), 64, 48, 64, Fraction(25), 0, 4, "vp9", 4, 2)
    key = streams.raw_packet(C.PKT_KEYFRAME, b"\x00\x04" + C.put_svarint(0) * 4 + b"pic")
    assert C.parse(h.to_bytes() + key)[1][0].payload == b"pic"

    def refused(pkt, match):
        with pytest.raises(C.StreamError, match=match):
            C.parse(h.to_bytes() + key + pkt)
    # a token packet over packet_frames, and one whose length is over what its frames can need
    refused(streams.raw_packet(C.PKT_TOKENS, b"\x01\x03" + bytes(8)), "frame count")
    refused(streams.raw_packet(C.PKT_TOKENS, b"\x01\x02" + bytes(h.max_token_payload + 1)), "payload over 128 bytes")
    refused(streams.raw_packet(C.PKT_TOKENS, b"\x01\x02" + bytes(h.max_token_payload + 30)), "over the limit")
    # a keyframe picture over 4 MiB: refused from its length field, before the body is read
    big = bytes([C.PKT_KEYFRAME]) + C.put_uvarint(C.MAX_KEYFRAME_PAYLOAD + 100) + b"\x01"
    refused(big, f"length {C.MAX_KEYFRAME_PAYLOAD + 100} over the limit")
    # symbols beyond the bound, and varints beyond 64 bits
    refused(streams.raw_packet(C.PKT_KEYFRAME, b"\x01\x04" + C.put_svarint(C.MAX_SYMBOL + 1) + C.put_svarint(0) * 3),
            "token symbol beyond")
    refused(streams.raw_packet(C.PKT_KEYFRAME, b"\x01\x04" + b"\xff" * 9 + b"\x02" + C.put_svarint(0) * 3),
            "over 64 bits")


@pytest.mark.parametrize("n", [2 ** 64 - 1, 2 ** 63, 12345678901234567])
def test_varints_cover_64_bits(n):
    r = C._Reader(C.put_uvarint(n) + C.put_svarint(n // 2) + C.put_svarint(-(n // 2) - 1), "x")
    assert (r.uvarint(), r.svarint(), r.svarint()) == (n, n // 2, -(n // 2) - 1)


# ---- the crafted files of the issue: one line, quickly, no big allocation ---------------------
def _capped_cli(args, gb=6.0, timeout=120):
    """Run the CLI in a child whose address space is capped: a 10 GB allocation would fail
    there as a traceback ("internal error"), not pass."""
    cap = int(gb * (1 << 30))
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "imfcodec", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    return p, time.time() - t0


def test_crafted_huge_frame_size(tiny_stream, tiny_model_file, tmp_path):
    bad = tmp_path / "huge.imf"
    bad.write_bytes(streams.with_header(tiny_stream, width=30000, height=30000))
    for args in (["info", str(bad)], ["decode", str(bad), str(tmp_path / "o.y4m"), "--model",
                                      str(tiny_model_file), "-q"]):
        p, secs = _capped_cli(args)
        assert p.returncode == 1 and p.stdout == ""
        assert p.stderr.count("\n") == 1 and "frame size 30000x30000 outside 1..8192" in p.stderr
    assert not (tmp_path / "o.y4m").exists()


def test_crafted_huge_packet(tiny_stream, tiny_model, tiny_model_file, tmp_path):
    head, _ = streams._split(tiny_stream)
    key = C.packet_to_bytes(C.parse(tiny_stream)[1][0])
    tok = streams.raw_packet(C.PKT_TOKENS, C.put_uvarint(1) + C.put_uvarint(10 ** 8) + bytes(16))
    base = C.MAGIC + bytes([C.VERSION]) + C.put_uvarint(len(head)) + head + bytes(4) + key
    bad = streams.with_header(base + tok, frame_count=10 ** 8 + 1, packet_frames=10 ** 8)
    (tmp_path / "b.imf").write_bytes(bad)
    p, _ = _capped_cli(["decode", str(tmp_path / "b.imf"), str(tmp_path / "o.y4m"), "--model",
                        str(tiny_model_file), "-q"])
    assert p.returncode == 1 and "packet frames 100000000 outside 1..256" in p.stderr
    assert p.stderr.count("\n") == 1
    # the largest token packet the limits allow: 256 frames, a garbage payload
    tok = streams.raw_packet(C.PKT_TOKENS, C.put_uvarint(1) + C.put_uvarint(256) + bytes(64))
    ok = streams.with_header(base + tok, frame_count=257, packet_frames=256)
    assert C.parse(ok)[1][1].count == 256
    with pytest.raises(entropy.EntropyError, match="token payload does not decode"):
        list(api.decode_bytes(ok, tiny_model)[1])


def test_keyframe_picture_larger_than_coded_size_is_refused_before_allocation(tiny_model):
    """A 56-byte AV1 picture can claim 1024x1024 (or 8192x8192); FFmpeg refuses it under
    max_pixels before it allocates the picture."""
    s = tiny_model.config.image_size
    for name in ("av1", "hevc", "h264", "vp9", "av1-chain"):
        big = keyframe.KeyframeEncoder(name, 50).encode(np.full((4 * s, 4 * s, 3), 128, np.uint8))
        assert keyframe.KeyframeDecoder(name).decode(big).shape == (4 * s, 4 * s, 3)
        with pytest.raises(keyframe.KeyframeError, match="does not decode"):
            keyframe.KeyframeDecoder(name, max_pixels=s * s).decode(big)
    h = C.Header(tiny_model.model_id, tiny_model.hash8, 64, 48, s, Fraction(25), 1, 4, "av1",
                 tiny_model.config.token_dim, 2)
    big = keyframe.encode(np.full((4 * s, 4 * s, 3), 128, np.uint8), "av1", 60)
    data = h.to_bytes() + C.packet_to_bytes(C.KeyframePacket(0, (0,) * h.token_dim, big))
    with pytest.raises(keyframe.KeyframeError):
        list(api.decode_bytes(data, tiny_model)[1])


# ---- frame count 0: a live recording ------------------------------------------------------
def test_frame_count_zero_is_a_live_recording(tiny_stream, tiny_model, tiny_model_file, tmp_path, capsys):
    live = streams.with_header(tiny_stream, frame_count=0)
    h, packets = C.parse(live)
    assert h.frame_count == 0 and C.frames_in(packets) == 5
    f = tmp_path / "live.imf"
    f.write_bytes(live)
    assert cli.main(["info", str(f), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"frames": 5' in out and '"header_frame_count": 0' in out
    assert cli.main(["decode", str(f), str(tmp_path / "live.y4m"), "--model", str(tiny_model_file), "-q"]) == 0
    assert len(list(api.decode_bytes(live, tiny_model)[1])) == 5
    header_only = live[:len(live) - len(streams._split(live)[1])]
    with pytest.raises(C.StreamError, match="empty stream"):
        C.parse(header_only)
    with pytest.raises(C.StreamError, match="more frames than the header's 4"):
        C.parse(streams.with_header(tiny_stream, frame_count=4))


# ---- exact integer symbols ----------------------------------------------------------------
def test_token_symbols_stay_exact_integers(tiny_model):
    """Symbols near the bound (2^24: the first integer float32 cannot hold is 2^24 + 1) go
    through the keyframe packet, the rANS string and the decoder's running sum as int64."""
    m, td = tiny_model, tiny_model.config.token_dim
    s = m.config.image_size
    big = C.MAX_SYMBOL - 1
    ref = tuple([big, -big] + [3] * (td - 2))
    pic = keyframe.encode(np.full((s, s, 3), 100, np.uint8), "av1", 50)
    d = torch.zeros(3, td, dtype=torch.int64)
    d[0, 0], d[1, 1], d[2, 2] = 1, 2 * big - 1, -(2 ** 24)
    h = C.Header(m.model_id, m.hash8, s, s, s, Fraction(25), 4, 4, "av1", td, 4)
    data = h.to_bytes() + C.packet_to_bytes(C.KeyframePacket(0, ref, pic)) + C.packet_to_bytes(
        C.TokenPacket(1, 3, m.entropy.encode(d, 4)))
    dec = api.Decoder(m, h)
    _, packets = C.parse(data)
    dec.push(packets[0])
    assert dec.prev_q.dtype == torch.int64 and tuple(dec.prev_q.tolist()) == ref
    dec.push(packets[1])
    want = torch.tensor(ref, dtype=torch.int64) + d.sum(0)
    assert dec.prev_q.dtype == torch.int64 and torch.equal(dec.prev_q, want)
    assert int(torch.tensor(2 * big - 1, dtype=torch.float32)) != 2 * big - 1   # float32 would round it


def test_symbols_beyond_the_bound_are_refused(tiny_model):
    e = tiny_model.entropy
    with pytest.raises(entropy.EntropyError, match="beyond"):
        e.encode(torch.full((1, e.token_dim), entropy.MAX_DIFFERENCE + 1), 4)
    with pytest.raises(entropy.EntropyError, match="too large to code"):
        e.encode(torch.full((1, e.token_dim), entropy.MAX_DIFFERENCE), 4)


def test_python_rans_decoder_matches_compressai(tiny_model):
    e = tiny_model.entropy
    cdf, lengths, offsets = e._tables()
    g = torch.Generator().manual_seed(3)
    for n, scale in [(1, 0), (4, 2), (8, 20), (16, 200), (32, 1)]:
        for q in (1, 4, 8):
            x = (torch.randn(n, e.token_dim, generator=g) * scale).round().to(torch.int64)
            s = e.encode(x, q)
            idx = e._indexes(n, q).reshape(-1).tolist()
            theirs = e.gaussian.entropy_coder.decode_with_indexes(s, idx, cdf, lengths, offsets)
            assert entropy.rans_decode(s, idx, cdf, lengths, offsets) == theirs == x.t().reshape(-1).tolist()
            assert torch.equal(e.decode(s, n, q), x)
            for bad in (s[:-4], s + bytes(4), s[:-1], b""):       # short, long, ragged, empty
                with pytest.raises(entropy.EntropyError):
                    e.decode(bad, n, q)


def test_training_checkpoint_is_not_a_model(tmp_path):
    from imfcodec.model import ModelError, load_model
    from imfcodec.checkpoint import CKPT_FORMAT
    torch.save({"format": CKPT_FORMAT, "step": 1}, tmp_path / "last.pt")
    with pytest.raises(ModelError, match=r"a training checkpoint, not a model file; make one with `imfcodec export"):
        load_model(tmp_path / "last.pt", "cpu")


# ---- the fuzz harness, briefly ---------------------------------------------------------------
def test_structure_aware_fuzzing_briefly(tiny_model):
    """200 generated streams (half byte-mutated with CRCs fixed) through parse, StreamReader
    in random chunks and decode_bytes: only IMFCodecError, and some reach the decoder."""
    sys.path.insert(0, str(FUZZ.parent))
    import fuzz_imf
    fuzz_imf._imports()
    fuzz_imf.time_bound(20)
    stats = fuzz_imf.random_run(tiny_model, 200, seed=17, seconds=20)
    assert sum(stats.values()) == 200
    assert any(k.startswith("refused by decode") for k in stats) and stats.get("decoded", 0) > 0


def test_fix_crcs_makes_a_mutated_stream_pass_its_checksums(tiny_stream):
    bad = bytearray(tiny_stream)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(C.StreamError, match="corrupt packet"):
        C.parse(bytes(bad))
    try:
        C.parse(streams.fix_crcs(bytes(bad)))
    except C.StreamError as e:
        assert "corrupt" not in str(e)


def test_atheris_run_briefly(tiny_model_file, tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in (REPO / "tests/fuzz/corpus").iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    p = subprocess.run([sys.executable, str(FUZZ), str(corpus), "--model", str(tiny_model_file),
                        "-runs=300", "-max_len=4096"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Done 300 runs" in p.stderr


def test_fuzzing_generates_framed_streams(tiny_model):
    """One generated stream in 8 has framing fields and C/F packets (version 3, or 6 when it
    is a base-layer stream too) and some get past the parser to the decoder; byte mutations
    of a real version-3 stream (CRCs fixed) decode or are refused by the decoder."""
    sys.path.insert(0, str(FUZZ.parent))
    import fuzz_imf
    from imfcodec import api
    from conftest import moving_pattern
    fuzz_imf._imports()
    fuzz_imf.time_bound(20)
    t = fuzz_imf.target_for(tiny_model)
    assert len(t.layer_pictures) == 4
    versions, seen = {}, {}
    for i in range(300):
        d = streams.RandomDraw(f"framed-{i}")
        data = streams.stream(d, t)
        versions[data[4]] = versions.get(data[4], 0) + 1
        if data[4] in (C.FRAMED_VERSION, C.FRAMED_BASE_VERSION):
            out = fuzz_imf.run_case(data, tiny_model, 20)
            seen[out] = seen.get(out, 0) + 1
    assert versions.get(C.FRAMED_VERSION, 0) > 10 and versions.get(C.FRAMED_BASE_VERSION, 0) > 0, versions
    assert any(k.startswith("refused by decode") for k in seen), seen
    real, _ = api.encode_frames(moving_pattern(6, 96, 170, seed=3), 25, tiny_model, 4, framing="face",
                                packet_frames=2)
    assert real[4] == C.FRAMED_VERSION and fuzz_imf.run_case(real, tiny_model, 20) == "decoded"
    mutated = fuzz_imf.mutation_outcomes(real, tiny_model, 80, "mut3")
    assert mutated.get("decoded", 0) > 0 and any(k.startswith("refused by decode") for k in mutated), mutated
