"""MultiDecoder: many streams, one batched forward pass per step, each stream's frames equal
to what a lone Decoder gives it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import imfcodec
from imfcodec import api
from imfcodec.format import container
from imfcodec.format.container import KeyframePacket, StreamError
from imfcodec.metrics import psnr
from imfcodec.model import ModelError, load_model

from conftest import moving_pattern

# (frames, height, width, quality, packet_frames): sizes, qualities (token steps) and packet
# sizes differ per stream; a keyframe every 5 frames (0.2 s at 25 fps) in every stream
STREAMS = [(12, 48, 64, 4, 8), (9, 40, 40, 2, 1), (14, 64, 80, 7, 3)]


def _coded(model, specs=STREAMS, keyframe_s=0.2):
    """[(header, packets, frames a lone Decoder gives, keyframe indices)] per stream."""
    out = []
    for i, (n, h, w, q, pf) in enumerate(specs):
        data, st = api.encode_frames(moving_pattern(n, h, w, seed=i), 25, model, q,
                                       packet_frames=pf, max_keyframe_interval=keyframe_s)
        header, packets = container.parse(data)
        out.append((header, packets, list(api.decode_bytes(data, model)[1]), st.keyframe_indices))
    return out


def _assert_same(got, want, exact_within=1):
    """fp32: uint8 pixels within 1 (a batch size may pick other kernels), nearly all equal."""
    a, b = np.stack(got).astype(int), np.stack(want).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= exact_within
    assert (a != b).mean() < 1e-3


def _psnr(got, want):
    """The worst frame's PSNR (dB)."""
    return psnr(torch.from_numpy(np.stack(got)).float() / 255,
                torch.from_numpy(np.stack(want)).float() / 255).min().item()   # worst frame


class _CountDecode:
    """Counts the frame-network passes and their batch sizes."""

    def __init__(self, model, monkeypatch):
        self.batches = []
        real = model.decode

        def decode(q, mult, ref, base=None):
            self.batches.append(q.shape[0])
            return real(q, mult, ref, base)
        monkeypatch.setattr(model, "decode", decode)


@pytest.fixture(scope="module")
def coded(tiny_model):
    return _coded(tiny_model)


def test_matches_lone_decoders_all_pushed_up_front(tiny_model, coded, monkeypatch):
    """Every packet pushed before the first step: token frames queued before a keyframe keep
    the old reference; each step is one pass over every stream with a token frame left."""
    md = imfcodec.MultiDecoder(tiny_model)
    ids = [md.add(h) for h, *_ in coded]
    for sid, (_, packets, _, _) in zip(ids, coded):
        for p in packets:
            md.push(sid, p)
    calls = _CountDecode(tiny_model, monkeypatch)
    got = {sid: [] for sid in ids}
    steps = 0
    for out in md.drain():
        steps += 1
        for sid, frames in out.items():
            got[sid] += frames
    for sid, (_, _, want, keys) in zip(ids, coded):
        assert len(keys) >= 2                        # refresh keyframes mid-stream
        _assert_same(got[sid], want)
        assert md.pending(sid) == 0
    token_frames = [len(w) - len(k) for _, _, w, k in coded]
    assert len(calls.batches) == steps == max(token_frames)
    # B at step s: the streams that still had a token frame
    assert calls.batches == [sum(n > s for n in token_frames) for s in range(steps)]
    assert calls.batches[0] == 3


def test_live_join_leave_and_keyframe_while_others_continue(tiny_model, coded, monkeypatch):
    """Packets arrive one per stream per tick and a step follows each tick. Stream 1 joins at
    tick 3, stream 2 leaves at tick 8; a keyframe in one stream never stops the others'
    step, and every stream's frames are its lone Decoder's."""
    md = imfcodec.MultiDecoder(tiny_model)
    calls = _CountDecode(tiny_model, monkeypatch)
    joins, leave = {0: 0, 1: 3, 2: 0}, (2, 8)
    ids, cursor, got = {}, {}, {}
    keyframe_ticks = 0
    for tick in range(40):
        for k, at in joins.items():
            if tick == at:
                ids[k] = md.add(coded[k][0])
                cursor[k], got[k] = 0, []
        if tick == leave[1]:
            md.remove(ids.pop(leave[0]))
        for k, sid in ids.items():
            packets = coded[k][1]
            if cursor[k] < len(packets):
                p = packets[cursor[k]]
                cursor[k] += 1
                md.push(sid, p)
                keyframe_ticks += isinstance(p, KeyframePacket)
        before = {k: md.pending(sid) for k, sid in ids.items()}
        n_calls = len(calls.batches)
        out = md.step()
        for k, sid in ids.items():
            got[k] += out.get(sid, [])
            if before[k]:
                assert sid in out                    # nobody waits for another's keyframe
        assert len(calls.batches) - n_calls <= 1     # at most one forward pass per step
        if not ids or all(cursor[k] == len(coded[k][1]) and md.pending(ids[k]) == 0 for k in ids):
            if tick > leave[1]:
                break
    assert keyframe_ticks >= 4
    assert max(calls.batches) == 3 and min(calls.batches) >= 1
    for k in (0, 1):
        _assert_same(got[k], coded[k][2])
    # the stream that left gave out a prefix of its frames, all correct
    n = len(got[2])
    assert 0 < n < len(coded[2][2])
    _assert_same(got[2], coded[2][2][:n])


def test_max_batch_splits_the_pass(tiny_model, coded, monkeypatch):
    md = imfcodec.MultiDecoder(tiny_model, max_batch=2)
    ids = [md.add(h) for h, *_ in coded]
    for sid, (_, packets, _, _) in zip(ids, coded):
        for p in packets:
            md.push(sid, p)
    calls = _CountDecode(tiny_model, monkeypatch)
    first = md.step()
    assert calls.batches == [2, 1]
    got = {sid: list(first.get(sid, [])) for sid in ids}
    for out in md.drain():
        for sid, frames in out.items():
            got[sid] += frames
    for sid, (_, _, want, _) in zip(ids, coded):
        _assert_same(got[sid], want)
    with pytest.raises(ModelError, match="max_batch"):
        imfcodec.MultiDecoder(tiny_model, max_batch=0)


def test_refuses_another_model_and_unknown_streams(tiny_model, other_tiny_model_file, coded):
    other = load_model(other_tiny_model_file, "cpu")
    data, _ = api.encode_frames(moving_pattern(3), 25, other, 4)
    foreign = container.parse(data)[0]
    md = imfcodec.MultiDecoder(tiny_model)
    sid = md.add(coded[0][0])
    with pytest.raises(ModelError, match="made by model 'tiny' .*but the loaded model is"):
        md.add(foreign)
    assert md.streams == [sid]
    with pytest.raises(StreamError, match="no stream 7"):
        md.push(7, coded[0][1][0])
    with pytest.raises(StreamError, match="token packet before the first keyframe"):
        md.push(sid, coded[0][1][1])
    md.remove(sid)
    assert len(md) == 0 and md.step() == {}
    with pytest.raises(StreamError, match="no stream"):
        md.remove(sid)


def test_bf16_streams_within_psnr_of_lone_decoders(tiny_model_file):
    m = load_model(tiny_model_file, "cpu", "bf16")
    streams = _coded(m)
    md = imfcodec.MultiDecoder(m)
    ids = [md.add(h) for h, *_ in streams]
    for sid, (_, packets, _, _) in zip(ids, streams):
        for p in packets:
            md.push(sid, p)
    got = {sid: [] for sid in ids}
    for out in md.drain():
        for sid, frames in out.items():
            got[sid] += frames
    for sid, (_, _, want, _) in zip(ids, streams):
        assert len(got[sid]) == len(want)
        assert _psnr(got[sid], want) >= 45


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_shipped_model_streams_match(precision):
    """The shipped model at 256x256, 3 short streams (one with a refresh keyframe): fp32
    within 1 level per pixel; auto (bf16 on a CPU with native bf16) within 45 dB PSNR."""
    m = load_model(imfcodec.model.DEFAULT_MODEL, "cpu", precision)
    streams = _coded(m, [(6, 96, 128, 4, 1), (5, 128, 128, 1, 8), (6, 80, 96, 8, 2)], keyframe_s=0.12)
    md = imfcodec.MultiDecoder(m)
    ids = [md.add(h) for h, *_ in streams]
    got = {sid: [] for sid in ids}
    for tick in range(max(len(p) for _, p, _, _ in streams)):    # base-layer streams: B packets too
        for sid, (_, packets, _, _) in zip(ids, streams):
            if tick < len(packets):
                md.push(sid, packets[tick])
        for sid, frames in md.step().items():
            got[sid] += frames
    for out in md.drain():
        for sid, frames in out.items():
            got[sid] += frames
    assert any(len(k) > 1 for *_, k in streams)
    for sid, (_, _, want, _) in zip(ids, streams):
        if m.dtype == torch.float32:
            _assert_same(got[sid], want)
        else:
            assert len(got[sid]) == len(want) and _psnr(got[sid], want) >= 45


def _speed_bench():
    from conftest import REPO, load_script
    return load_script("bench/speed.py"), REPO


def test_speed_bench_streams(tmp_path, capsys):
    """bench/speed.py --streams: one JSON line per count, the same rows in the results file,
    and frames/s that add up (total = per stream x streams)."""
    bench, repo = _speed_bench()
    out = tmp_path / "streams.json"
    assert bench.main(["--config", str(repo / "configs/model/tiny.yaml"), "--streams", "1,3",
                       "--steps", "2", "--warmup", "1", "--precision", "fp32", "--out", str(out)]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    res = json.loads(out.read_text())
    assert [r["streams"] for r in lines] == [1, 3] and res["results"] == lines
    assert res["precision"] == "float32" and res["device"] == "cpu" and res["timed_steps"] == 2
    for r in lines:
        assert {"streams", "total_fps", "per_stream_fps", "step_ms", "peak_rss_MB"} <= set(r)
        for run in (r, r["sequential"]):
            assert run["total_fps"] == pytest.approx(run["per_stream_fps"] * r["streams"], rel=0.02, abs=0.01 * r["streams"])
            assert run["step_ms"] > 0 and run["peak_rss_MB"] >= run["rss_start_MB"] > 0
    with pytest.raises(SystemExit):
        bench.main(["--config", str(repo / "configs/model/tiny.yaml"), "--streams", "4,x"])


def test_speed_bench_streams_with_the_default_models_base_layer(tmp_path, capsys):
    """bench/speed.py --streams with the shipped default model, whose streams carry a
    base-layer packet before each frame's packet: each step pushes a frame's packets, and
    every stream gets its frame (it stopped on an assertion written for token-only streams)."""
    from imfcodec.options import DEFAULT_MODEL, shipped_models
    if DEFAULT_MODEL not in shipped_models():
        pytest.skip("no shipped default model")
    bench, _ = _speed_bench()
    out = tmp_path / "streams.json"
    assert bench.main(["--model", DEFAULT_MODEL, "--streams", "1,2", "--steps", "2", "--warmup", "1",
                       "--repeats", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["model_id"] == DEFAULT_MODEL and "base layer" in res["stream"]
    assert [r["streams"] for r in res["results"]] == [1, 2]
    for r in res["results"]:
        assert r["total_fps"] == pytest.approx(r["per_stream_fps"] * r["streams"], rel=0.02, abs=0.01 * r["streams"])


def test_speed_bench_frame_groups_pair_base_packets_with_their_frame():
    from imfcodec.format import container
    bench, _ = _speed_bench()
    k = container.KeyframePacket(0, (0,), b"k")
    b0, b1 = container.BasePacket(0, (b"x",), key=True), container.BasePacket(1, (b"y",))
    t = container.TokenPacket(1, 1, b"t")
    assert bench.frame_groups([b0, k, b1, t]) == [[b0, k], [b1, t]]
    assert bench.frame_groups([k, t]) == [[k], [t]]
    with pytest.raises(ValueError):
        bench.frame_groups([k, b1])


def test_speed_bench_files(tmp_path, capsys, tiny_model_file):
    """bench/speed.py --files: one JSON row per real stream (its frames, level and rate, the
    timed runs asked for, the whole command's time split at its first frame), and the same
    rows in --out."""
    import imfcodec
    from conftest import moving_pattern
    bench, _ = _speed_bench()
    m = load_model(tiny_model_file, "cpu")
    paths, sizes = [], []
    for q in (2, 6):
        data, _ = imfcodec.encode_frames(moving_pattern(n=9), 25, m, q)
        (tmp_path / f"q{q}.imf").write_bytes(data)
        paths.append(str(tmp_path / f"q{q}.imf"))
        sizes.append(len(data))
    out = tmp_path / "files.json"
    assert bench.main(["--model", str(tiny_model_file), "--files", *paths, "--repeats", "2",
                       "--out", str(out)]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert [(r["file"], r["frames"], r["quality"], len(r["runs"])) for r in lines] == \
        [(paths[0], 9, 2, 2), (paths[1], 9, 6, 2)]
    assert [r["kbps"] for r in lines] == [round(n * 8 * 25 / 9 / 1000, 3) for n in sizes]
    assert all(r["decode_fps"] > 0 for r in lines) and json.loads(out.read_text())["files"] == lines
    for r in lines:
        assert len(r["command_runs"]) == 2
        # medians over the runs (of 2 runs: their mean), each run's rate its frames over its time
        fps = [9 / c["command_s"] for c in r["command_runs"]]
        assert 0 < r["first_frame_s"] < r["command_s"]
        assert r["command_fps"] == pytest.approx(sum(fps) / 2, rel=0.02)
        assert r["command_steady_fps"] > 0
