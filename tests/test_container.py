"""The .imf container: round trips, and every kind of damage is a StreamError."""
from fractions import Fraction

import pytest

from imfcodec.format import container as C


def header(frames=5, pf=2):
    return C.Header("imf-cpu", bytes(range(8)), 176, 144, 256, Fraction(30000, 1001), frames, 3, "av1", 4, pf)


def packets():
    return [C.KeyframePacket(0, (1, -2, 300, -70000), b"\x00\x01picture"),
            C.TokenPacket(1, 2, b"tok1"),
            C.KeyframePacket(3, (0, 0, 0, 0), b"pic2"),
            C.TokenPacket(4, 1, b"t")]


def stream():
    return header().to_bytes() + b"".join(C.packet_to_bytes(p) for p in packets())


def test_round_trip():
    h, ps = C.parse(stream())
    assert h == header()
    assert ps == packets()


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2 ** 40])
def test_varints(n):
    r = C._Reader(C.put_uvarint(n) + C.put_svarint(-n) + C.put_svarint(n), "x")
    assert (r.uvarint(), r.svarint(), r.svarint()) == (n, -n, n)


def test_every_truncation_is_an_error():
    data = stream()
    for cut in range(len(data)):
        with pytest.raises(C.StreamError):
            C.parse(data[:cut])


def test_every_bit_flip_is_caught():
    data = stream()
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(C.StreamError):
                C.parse(bytes(bad))


def test_foreign_and_version():
    with pytest.raises(C.StreamError, match="not an .imf file"):
        C.parse(b"hello, this is text\n")
    with pytest.raises(C.StreamError, match="empty"):
        C.parse(b"")
    data = bytearray(stream())
    data[4] = 9
    with pytest.raises(C.StreamError, match="unsupported .imf format version 9"):
        C.parse(bytes(data))


def test_trailing_garbage_and_missing_frames():
    with pytest.raises(C.StreamError):
        C.parse(stream() + b"\x00")
    short = header(frames=6).to_bytes() + b"".join(C.packet_to_bytes(p) for p in packets())
    with pytest.raises(C.StreamError, match="truncated stream: 5 of 6"):
        C.parse(short)


def test_incremental_reader_byte_by_byte():
    r = C.StreamReader()
    got = []
    for b in stream():
        r.feed(bytes([b]))
        got += list(r.packets())
    assert r.header == header()
    assert got == packets()


def test_kbps():
    h = header(frames=30)
    assert h.kbps(1000) == pytest.approx(1000 * 8 * 30000 / 1001 / 30 / 1000)
    assert C.kbps(1000, 30, h.fps) == h.kbps(1000)


def test_assemble_counts_every_byte():
    h = header()
    data, sizes = C.assemble(h, packets())
    assert data == stream()
    assert sizes.total == len(data) == sizes.header + sum(n for *_, n in sizes.packets)
    assert sizes.header == len(h.to_bytes())
    assert [k for k, *_ in sizes.packets] == ["keyframe" if isinstance(p, C.KeyframePacket)
                                               else "tokens" for p in packets()]
    assert sizes.of("keyframe") + sizes.of("tokens") + sizes.header == len(data)


def vp9_stream(first_predicted=False, codec="vp9"):
    h = C.Header("imf-cpu", bytes(range(8)), 64, 48, 256, Fraction(25), 4, 4, codec, 4, 8)
    ps = [C.KeyframePacket(0, (1, 2, 3, 4), b"I-picture", predicted=first_predicted),
          C.TokenPacket(1, 1, b"t"),
          C.KeyframePacket(2, (0, 0, 0, 0), b"P", predicted=True),
          C.TokenPacket(3, 1, b"u")]
    return h, ps, h.to_bytes() + b"".join(C.packet_to_bytes(p) for p in ps)


def test_predicted_keyframes_round_trip_and_are_checked():
    h, ps, data = vp9_stream()
    assert C.parse(data) == (h, ps)
    assert data.count(bytes([C.PKT_PREDICTED_KEYFRAME])) >= 1
    with pytest.raises(C.StreamError, match="first keyframe is a predicted one"):
        C.parse(vp9_stream(first_predicted=True)[2])
    with pytest.raises(C.StreamError, match="intra-only av1"):
        C.parse(vp9_stream(codec="av1")[2])
    h, ps, data = vp9_stream(codec="av1-chain")       # keyframe codec 4 chains too
    assert C.parse(data) == (h, ps) and C.parse(data)[0].keyframe_codec == "av1-chain"


def test_version_1_files_are_still_read():
    data = bytearray(stream())
    assert data[4] == C.VERSION == 2
    data[4] = 1          # the version byte sits outside the header checksum
    assert C.parse(bytes(data)) == (header(), packets())
