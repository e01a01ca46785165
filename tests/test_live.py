"""Live calls (imfcodec.live, docs/live.md): the transport messages, the receiving end fed
lost, malformed, shuffled and fuzzed messages, and real loopback calls over aiortc."""
from __future__ import annotations

import asyncio
import random
import socket
from fractions import Fraction

import numpy as np
import pytest

from conftest import moving_pattern

from imfcodec.format import container as C
from imfcodec.live import wire
from imfcodec.live.playout import Concealer, LiveDecoder


# ---- helpers ---------------------------------------------------------------------------
def coded_messages(model, frames, key_at=(), **opts):
    """The media messages a Sender makes of ``frames`` (its units, in order), the header
    message, and the frames a lossless decode of the same stream gives (the reference)."""
    from imfcodec.codec.decoder import Decoder
    from imfcodec.codec.encoder import Encoder
    from imfcodec.live.peer import units
    h, w = frames[0].shape[:2]
    enc = Encoder(model, w, h, Fraction(25), packet_frames=1, **opts)
    packets = []
    for i, f in enumerate(frames):
        if i in key_at:
            enc.request_keyframe()
        packets += enc.push(f)
    packets += enc.flush()
    header = enc.header(0)
    msgs = []
    for seq, u in enumerate(units(packets)):
        main = u[-1]
        frame = getattr(main, "frame_index", getattr(main, "first_frame", None))
        msgs.append(wire.Message(wire.MEDIA_MSG, seq, frame, b"".join(C.packet_to_bytes(p) for p in u)).to_bytes())
    dec = Decoder(model, header)
    ref = [f for p in packets for f in dec.push(p)]
    head = wire.Message(wire.HEADER_MSG, 0, 0, header.to_bytes()).to_bytes()
    return head, msgs, ref, packets


def feed_all(live, messages):
    out = []
    for m in messages:
        out += live.feed(m)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_call(tiny_model):
    frames = moving_pattern(24, 64, 64, seed=3)
    return coded_messages(tiny_model, frames, key_at=(16,))


# ---- wire ------------------------------------------------------------------------------
def test_message_round_trip_and_every_bad_header_refused():
    m = wire.Message(wire.MEDIA_MSG, 7, 123, b"abc")
    data = m.to_bytes()
    assert len(data) == wire.HEADER_BYTES + 3 and wire.parse(data) == m
    bad = {
        "bad magic": b"XX" + data[2:],
        "unknown type": data[:2] + b"\x00" + data[3:],
        "reserved": data[:3] + b"\x01" + data[4:],
        "length": data + b"x",
        "short": data[:wire.HEADER_BYTES - 1],
        "empty media": wire.Message(wire.MEDIA_MSG, 0, 0, b"x").to_bytes()[:-1],
        "frame over": data[:8] + (wire.MAX_FRAME + 1).to_bytes(4, "big") + data[12:],
        "too big": wire.HEADER.pack(wire.MAGIC, wire.MEDIA_MSG, 0, 0, 0, wire.MAX_MESSAGE_BYTES) + bytes(wire.MAX_MESSAGE_BYTES),
    }
    for what, b in bad.items():
        with pytest.raises(wire.MessageError):
            wire.parse(b)
    with pytest.raises(wire.MessageError):
        wire.parse("text message")
    with pytest.raises(ValueError):
        wire.Message(wire.MEDIA_MSG, 0, 0, bytes(wire.MAX_PAYLOAD_BYTES + 1)).to_bytes()


def test_sequence_window_refuses_duplicates_stale_and_bogus():
    w = wire.SequenceWindow()
    for s in (10, 12, 11):
        w.take(s)
    for s in (11, 12 - wire.REORDER_WINDOW, 12 + wire.MAX_SEQUENCE_GAP + 1):
        with pytest.raises(wire.MessageError):
            w.take(s)
    w.take(13)


# ---- the receiving end, no network -----------------------------------------------------
def test_lossless_sequence_decodes_exactly(tiny_model, tiny_call):
    head, msgs, ref, _ = tiny_call
    live = LiveDecoder(tiny_model)
    out = feed_all(live, [head] + msgs)
    assert [i for i, _ in out] == list(range(len(ref)))
    assert all(np.array_equal(f, ref[i]) for i, f in out)
    assert live.keyframe_request() is None and live.stats.refused == 0


def test_lost_unit_asks_for_keyframe_and_recovers_exactly(tiny_model, tiny_call):
    head, msgs, ref, _ = tiny_call            # intra keyframe requested at frame 16
    now = [0.0]
    live = LiveDecoder(tiny_model, pli_interval=0.2, clock=lambda: now[0])
    out = feed_all(live, [head] + msgs[:5])
    assert live.keyframe_request() is None
    out += live.feed(msgs[6])                 # frame 5 lost
    assert live.keyframe_request() == 6       # the newest frame it could not decode
    out += feed_all(live, msgs[7:10])
    assert live.keyframe_request() is None    # throttled: at most one per 0.2 s
    now[0] = 0.25
    assert live.keyframe_request() == 9
    out += feed_all(live, msgs[10:])
    idx = [i for i, _ in out]
    assert idx == list(range(5)) + list(range(16, len(ref)))   # nothing between loss and key
    assert all(np.array_equal(f, ref[i]) for i, f in out)
    assert live.stats.resyncs == 1 and live.stats.waiting == 10
    now[0] = 1.0
    assert live.keyframe_request() is None    # recovered: no more requests


def test_concealer_repeats_the_last_good_frame():
    c = Concealer()
    a, b = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    assert c.show(3, a) == [(3, a, False)]    # nothing to repeat before the first good frame
    out = c.show(6, b)
    assert [(i, x is a, k) for i, x, k in out] == [(4, True, True), (5, True, True), (6, False, False)]
    assert c.show(5, a) == [] and [i for i, *_ in c.fill(9)] == [7, 8] and c.concealed == 4


def test_malformed_messages_refused_cleanly(tiny_model, tiny_call):
    head, msgs, ref, _ = tiny_call
    live = LiveDecoder(tiny_model)
    assert live.feed(msgs[0]) == [] and live.stats.refused == 1          # media before the header
    live.feed(head)
    m = wire.parse(msgs[0])
    bad = [
        wire.Message(wire.MEDIA_MSG, 100, 1, m.payload).to_bytes(),        # frame field disagrees
        wire.Message(wire.MEDIA_MSG, 101, 0, m.payload[:-1]).to_bytes(),   # truncated packet
        wire.Message(wire.MEDIA_MSG, 102, 0, m.payload + m.payload).to_bytes(),  # two units in one
        wire.Message(wire.MEDIA_MSG, 103, 0, b"\x00" * 20).to_bytes(),     # not a packet
        wire.Message(wire.NEED_KEY_MSG, 0, 0).to_bytes(),                  # wrong direction
        wire.Message(wire.HEADER_MSG, 0, 0, b"IMF\x89junk").to_bytes(),
        b"garbage", b"",
    ]
    for b in bad:
        assert live.feed(b) == []
    assert live.stats.refused == 1 + len(bad) and live.stats.frames_decoded == 0
    assert [i for i, _ in feed_all(live, msgs)] == list(range(len(ref)))   # the good ones still decode


def test_fuzzed_shuffled_sequences_never_raise_nor_show_a_wrong_frame(tiny_model, tiny_call):
    """Shuffled, duplicated, dropped, bit-flipped, truncated and spliced messages: the
    receiver never raises, and every frame it emits is the reference frame of its index
    (a frame from an undecodable state would differ)."""
    head, msgs, ref, _ = tiny_call
    for seed in range(6):
        rng = random.Random(seed)
        seq = []
        for m in msgs:
            r = rng.random()
            if r < 0.15:
                continue                                      # lost
            b = bytearray(m)
            if r < 0.3:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)   # one bit flipped
            elif r < 0.35:
                b = b[:rng.randrange(len(b))]
            elif r < 0.4:
                b = b + bytes(rng.randrange(1, 9))
            seq.append(bytes(b))
            if rng.random() < 0.1:
                seq.append(bytes(b))                          # duplicated
        for i in range(0, len(seq) - 3, 4):                   # reordered within small windows
            window = seq[i:i + 4]
            rng.shuffle(window)
            seq[i:i + 4] = window
        live = LiveDecoder(tiny_model)
        out = feed_all(live, [head] + seq)
        idx = [i for i, _ in out]
        assert idx == sorted(set(idx))                        # each frame once, in order
        assert all(np.array_equal(f, ref[i]) for i, f in out), seed


def test_request_keyframe_makes_the_next_frame_intra(tiny_model):
    from imfcodec.codec.encoder import Encoder
    frames = moving_pattern(6, 64, 64)
    enc = Encoder(tiny_model, 64, 64, Fraction(25), packet_frames=4)
    out = [enc.push(f) for f in frames[:3]]
    enc.request_keyframe()
    got = enc.push(frames[3])
    assert [type(p).__name__ for p in got] == ["TokenPacket", "KeyframePacket"]
    assert got[0].count == 2 and not got[1].predicted and got[1].frame_index == 3
    assert enc.push(frames[4]) == [] and enc.stats.keyframes == 2 and out[0][0].frame_index == 0


def test_shipped_model_base_layer_recovers_after_loss(shipped_frames):
    """The shipped model (base layer, av1-chain keyframes): after a lost unit the receiver
    waits for the intra keyframe and decodes exactly what a lossless decoder shows."""
    from imfcodec import api
    model = api.load_model(None, "cpu")
    head, msgs, ref, packets = coded_messages(model, shipped_frames, key_at=(8,))
    assert any(isinstance(p, C.BasePacket) for p in packets)
    live = LiveDecoder(model)
    out = feed_all(live, [head] + msgs[:3] + msgs[4:])
    assert [i for i, _ in out] == [0, 1, 2] + list(range(8, len(ref)))
    assert all(np.array_equal(f, ref[i]) for i, f in out)


@pytest.fixture(scope="module")
def shipped_frames():
    from conftest import shared_data
    from imfcodec.media import video
    clip = sorted(shared_data("faces", "val").glob("*.mp4"))[0]
    return list(video.read_frames(clip, max_frames=14))


# ---- real calls over aiortc (loopback) -------------------------------------------------
def _call(model, frames, shim=None, realtime=True, seconds=150):
    pytest.importorskip("aiortc")
    from imfcodec.live.peer import Receiver, Sender
    port = free_port()
    shown = []

    async def main():
        rx = Receiver("127.0.0.1", port, model, on_frame=shown.append, idle_timeout=5)
        tx = Sender(frames, Fraction(25), frames[0].shape[1], frames[0].shape[0], "127.0.0.1", port, model,
                    realtime=realtime, shim=shim)
        return await asyncio.wait_for(asyncio.gather(rx.run(), tx.run()), seconds)
    rs, ss = asyncio.run(main())
    return rs, ss, shown


def test_loopback_call_frames_arrive(tiny_model):
    frames = moving_pattern(20, 64, 64, seed=4)
    rs, ss, shown = _call(tiny_model, frames, realtime=False)
    assert ss.frames_sent == 20 and ss.frames_dropped == 0 and ss.messages == 20
    assert [s.index for s in shown] == list(range(20)) and not any(s.concealed for s in shown)
    assert rs.frames_decoded == 20 and rs.refused == 0 and ss.wire_bytes > ss.bytes


def test_loopback_call_recovers_a_lost_packet(tiny_model):
    from imfcodec.live.peer import LossShim
    frames = moving_pattern(50, 64, 64, seed=5)       # 2 s at 25 fps, played in real time
    shim = LossShim()
    shim.drop_frames = {10}
    rs, ss, shown = _call(tiny_model, frames, shim=shim, realtime=True)
    assert ss.dropped_by_shim == 1 and ss.keyframe_requests >= 1 and ss.keyframes_forced >= 1
    assert rs.resyncs == 1 and rs.keyframe_requests >= 1
    good = [s.index for s in shown if not s.concealed]
    assert 10 not in good and good[-1] == ss.frames_sent - 1 and len(good) >= ss.frames_sent - 10
    assert [s.index for s in shown] == list(range(ss.frames_sent))      # concealed in between


def test_units_are_the_containers_frame_groups():
    """The sender groups packets as container.frame_groups does: a B packet goes with the
    packet after it, and one with nothing after it is refused rather than dropped."""
    from imfcodec.live.peer import units
    b, t = C.BasePacket(0, (b"\x00",), key=True), C.TokenPacket(0, 1, b"\x01")
    assert units([b, t, t]) == [[b, t], [t]]
    with pytest.raises(ValueError, match="base-layer packet"):
        units([t, b])
