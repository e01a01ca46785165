"""Several streams coded at once in one process, in threads, with one shared model: each
gives exactly what it gives alone (the model, its entropy tables and the precision context
hold no per-stream state; every Encoder/Decoder owns its keyframe coder)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest

from conftest import moving_pattern

# (content seed, quality, keyframe codec, packet frames): streams that differ in every way
STREAMS = [(0, 2, "vp9", 4), (1, 4, "h264", 8), (2, 6, "hevc", 3), (3, 8, "vp9", 1)]


def _encode(model, spec, n=8):
    from imfcodec import api
    seed, q, kc, pf = spec
    data, _ = api.encode_frames(moving_pattern(n, 48, 64, seed=seed), Fraction(25), model, q,
                                  keyframe_codec=kc, packet_frames=pf, max_keyframe_interval=0.2)
    return data


def _decode(model, data):
    from imfcodec import api
    return np.stack(list(api.decode_bytes(data, model)[1]))


def _at_once(fn, args, rounds=2):
    """fn over args in as many threads as args, ``rounds`` times (different interleavings)."""
    out = []
    for _ in range(rounds):
        with ThreadPoolExecutor(len(args)) as pool:
            out.append(list(pool.map(fn, args)))
    return out


def test_streams_decoded_at_once_equal_each_alone(tiny_model, tiny_model_file):
    """Half the streams decode under bf16 autocast while the others run fp32: the precision
    context of one thread must not reach another."""
    from imfcodec.model import load_model
    fp32, bf16 = (load_model(tiny_model_file, "cpu", precision=p) for p in ("fp32", "bf16"))
    streams = [_encode(tiny_model, s) for s in STREAMS]
    jobs = [(bf16 if i % 2 else fp32, d) for i, d in enumerate(streams)]
    alone = [_decode(m, d) for m, d in jobs]
    assert len({a.tobytes() for a in alone}) == len(STREAMS)      # the streams really differ
    for together in _at_once(lambda job: _decode(*job), jobs):
        for a, t in zip(alone, together):
            assert a.shape == t.shape and np.array_equal(a, t)


def test_streams_encoded_at_once_equal_each_alone(tiny_model):
    alone = [_encode(tiny_model, s) for s in STREAMS]
    for together in _at_once(lambda s: _encode(tiny_model, s), STREAMS, rounds=1):
        assert together == alone


@pytest.mark.slow
def test_shipped_model_decodes_streams_at_once_like_alone():
    from imfcodec.model import load_model
    model = load_model(None, "cpu")
    streams = [_encode(model, s, n=4) for s in STREAMS[:3]]
    alone = [_decode(model, d) for d in streams]
    together = _at_once(lambda d: _decode(model, d), streams, rounds=1)[0]
    assert all(np.array_equal(a, t) for a, t in zip(alone, together))
