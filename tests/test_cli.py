"""The codec end to end through the CLI's main(argv), and every kind of bad input."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from imfcodec import cli
from imfcodec.format import container
from imfcodec.media import video


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0] and "Traceback" not in err


def test_encode_decode_round_trip(tmp_path, capsys, clip, tiny_model_file):
    imf, rec = tmp_path / "a.imf", tmp_path / "rec.mp4"
    code, out, err = run(capsys, "encode", clip, imf, "--model", tiny_model_file, "-q", "--quality", "3")
    assert code == 0, err
    assert "12 frames" in out
    # the reported rate is the file's real size
    kbps = float(out.split(" kbps")[0].split()[-1])
    size = imf.stat().st_size
    assert kbps == pytest.approx(size * 8 * 25 / 12 / 1000, abs=0.006)
    code, out, err = run(capsys, "decode", imf, rec, "--model", tiny_model_file, "-q")
    assert code == 0, err
    info = video.probe(rec)
    assert (info.width, info.height, info.fps) == (64, 48, Fraction(25))
    assert len(list(video.read_frames(rec))) == 12
    code, out, _ = run(capsys, "info", imf, "--json")
    d = json.loads(out)
    assert d["bytes"] == size and d["frames"] == 12 and d["quality"] == 3
    assert d["header_bytes"] + d["keyframe_bytes"] + d["token_bytes"] == size
    assert d["kbps"] == pytest.approx(kbps, abs=0.01)
    code, out, _ = run(capsys, "info", imf, "--packets")
    assert code == 0 and "keyframe" in out


def test_odd_size_and_ntsc_rate_survive(tmp_path, capsys, odd_clip, tiny_model_file):
    imf, rec = tmp_path / "o.imf", tmp_path / "o.mkv"
    assert run(capsys, "encode", odd_clip, imf, "--model", tiny_model_file, "-q")[0] == 0
    assert run(capsys, "decode", imf, rec, "--model", tiny_model_file, "-q")[0] == 0
    info = video.probe(rec)
    assert (info.width, info.height, info.fps) == (63, 47, Fraction(30000, 1001))
    assert len(list(video.read_frames(rec))) == 9


def test_raw_yuv_input_and_output(tmp_path, capsys, clip, tiny_model_file):
    yuv = tmp_path / "in.yuv"
    with video.VideoWriter(yuv, 64, 48, Fraction(25)) as w:
        for f in video.read_frames(clip):
            w.write(f)
    assert yuv.stat().st_size == 12 * 64 * 48 * 3 // 2
    imf = tmp_path / "y.imf"
    code, out, err = run(capsys, "encode", yuv, imf, "--size", "64x48", "--fps", "25",
                         "--model", tiny_model_file, "-q")
    assert code == 0, err
    assert run(capsys, "decode", imf, tmp_path / "out.y4m", "--model", tiny_model_file, "-q")[0] == 0
    assert len(list(video.read_frames(tmp_path / "out.y4m"))) == 12


def test_decode_is_deterministic(tmp_path, capsys, clip, tiny_model_file):
    imf = tmp_path / "d.imf"
    run(capsys, "encode", clip, imf, "--model", tiny_model_file, "-q")
    from imfcodec import api
    a = list(api.decode_bytes(imf.read_bytes(), tiny_model_file, "cpu")[1])
    b = list(api.decode_bytes(imf.read_bytes(), tiny_model_file, "cpu")[1])
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 12


@pytest.fixture(scope="module")
def good_imf(tmp_path_factory, clip, tiny_model_file):
    p = tmp_path_factory.mktemp("imf") / "good.imf"
    assert cli.main(["encode", str(clip), str(p), "--model", str(tiny_model_file), "-q"]) == 0
    return p


def test_decode_reads_the_file_once(tmp_path, capsys, good_imf, tiny_model_file, monkeypatch):
    from imfcodec.format import container
    calls, read = [], container.read_file
    monkeypatch.setattr(container, "read_file", lambda path: calls.append(path) or read(path))
    code, _, err = run(capsys, "decode", good_imf, tmp_path / "o.y4m", "--model", tiny_model_file, "-q")
    assert code == 0, err
    assert calls == [str(good_imf)]


def _bad_streams(good: bytes):
    yield "empty", b""
    yield "text", b"just some text\n"
    yield "truncated", good[: len(good) // 2]
    yield "one byte short", good[:-1]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    yield "bit flip", bytes(flipped)
    v = bytearray(good)
    v[4] = 99
    yield "future version", bytes(v)


def test_bad_imf_files(tmp_path, capsys, good_imf, tiny_model_file):
    for name, data in _bad_streams(good_imf.read_bytes()):
        bad = tmp_path / "bad.imf"
        bad.write_bytes(data)
        out = tmp_path / "out.mp4"
        code, _, err = run(capsys, "decode", bad, out, "--model", tiny_model_file, "-q")
        assert_one_line_error(code, err)
        assert not out.exists(), name
        assert [p.name for p in tmp_path.iterdir()] == ["bad.imf"], name
        code, _, err = run(capsys, "info", bad)
        assert_one_line_error(code, err)


def test_bad_encode_inputs(tmp_path, capsys, tiny_model_file):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    import av
    with av.open(str(empty), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height = 64, 48
    for src in (text, empty, tmp_path / "missing.mp4", tmp_path):
        out = tmp_path / "o.imf"
        code, _, err = run(capsys, "encode", src, out, "--model", tiny_model_file, "-q")
        assert_one_line_error(code, err)
        assert not out.exists()
    code, _, err = run(capsys, "encode", tmp_path / "x.yuv", tmp_path / "o.imf", "--model", tiny_model_file)
    assert_one_line_error(code, err)


def test_bad_models(tmp_path, capsys, clip, good_imf, other_tiny_model_file):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not a model at all")
    for model in (junk, tmp_path / "nope.pt", "no-such-model"):
        out = tmp_path / "o.imf"
        code, _, err = run(capsys, "encode", clip, out, "--model", model, "-q")
        assert_one_line_error(code, err)
        assert not out.exists()
    # a model of the same name whose weights differ: refused by hash
    code, _, err = run(capsys, "decode", good_imf, tmp_path / "r.mp4", "--model", other_tiny_model_file, "-q")
    assert_one_line_error(code, err)
    assert "hash" in err
    assert not (tmp_path / "r.mp4").exists()


def test_pickle_payload_is_not_executed(tmp_path, capsys, clip):
    import torch

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))
    p = tmp_path / "evil.pt"
    torch.save({"format": "imfcodec-model", "x": Evil()}, p)
    code, _, err = run(capsys, "encode", clip, tmp_path / "o.imf", "--model", p, "-q")
    assert_one_line_error(code, err)
    assert not (tmp_path / "pwned").exists()


def test_no_default_model_message(tmp_path, capsys, clip, monkeypatch):
    from imfcodec import model
    monkeypatch.setattr(model, "shipped_models", lambda: {})
    code, _, err = run(capsys, "encode", clip, tmp_path / "o.imf", "-q")
    assert_one_line_error(code, err)
    assert "no default model is installed" in err


def test_streaming_api_matches_file_decode(clip, tiny_model, good_imf):
    """Frames in -> packets -> bytes on a wire -> StreamReader -> Decoder -> frames."""
    import imfcodec
    frames = list(video.read_frames(clip))
    enc = imfcodec.Encoder(tiny_model, 64, 48, Fraction(25), quality=4, packet_frames=3)
    wire = []
    for f in frames:
        wire += [container.packet_to_bytes(p) for p in enc.push(f)]
    wire += [container.packet_to_bytes(p) for p in enc.flush()]
    reader = container.StreamReader()
    reader.feed(enc.header(0).to_bytes())   # live: frame count unknown up front
    out, dec = [], None
    for chunk in wire:
        reader.feed(chunk)
        for p in reader.packets():
            dec = dec or imfcodec.Decoder(tiny_model, reader.header)
            out += dec.push(p)
    assert len(out) == len(frames) and out[0].shape == (48, 64, 3)


@pytest.mark.parametrize("chain", ["vp9", "av1-chain"])
def test_keyframe_chain(tmp_path, capsys, clip, tiny_model, tiny_model_file, chain):
    """Chained keyframes (VP9, the SVT-AV1 low-delay chain): refreshes are predicted from
    the previous keyframe (and much smaller), the max-interval keyframes stay intra, and the
    decoder follows the chain."""
    from imfcodec import api
    frames = list(video.read_frames(clip))
    data, st = api.encode_frames(frames, Fraction(25), tiny_model, 4, keyframe_codec=chain,
                                   refresh_drop=1e-6, min_keyframe_interval=0.0)
    _, packets = container.parse(data)
    keys = [p for p in packets if isinstance(p, container.KeyframePacket)]
    assert len(keys) == st.keyframes >= 2
    assert not keys[0].predicted and all(k.predicted for k in keys[1:])
    assert max(len(k.payload) for k in keys[1:]) < len(keys[0].payload) / 2
    out = list(api.decode_bytes(data, tiny_model, "cpu")[1])
    assert len(out) == len(frames)
    # a forced random-access keyframe is intra even in a chain
    data2, _ = api.encode_frames(frames, Fraction(25), tiny_model, 4, keyframe_codec=chain,
                                   refresh_drop=0, max_keyframe_interval=0.2)
    keys2 = [p for p in container.parse(data2)[1] if isinstance(p, container.KeyframePacket)]
    assert [k.frame_index for k in keys2] == [0, 5, 10] and not any(k.predicted for k in keys2)
    # CLI end to end
    imf = tmp_path / "v.imf"
    code, _, err = run(capsys, "encode", clip, imf, "--model", tiny_model_file, "-q", "--keyframe-codec", chain)
    assert code == 0, err
    assert run(capsys, "decode", imf, tmp_path / "v.mp4", "--model", tiny_model_file, "-q")[0] == 0


def test_keyframe_preset_reaches_the_svt_av1_encoder(tmp_path, capsys, clip, tiny_model_file, monkeypatch):
    """--keyframe-preset sets the AV1 keyframe encoder's preset (and nothing else), the stream
    still decodes; out of range or with a keyframe codec that is not SVT-AV1 it is one error
    line and no output file."""
    from imfcodec.media import keyframe
    seen = []
    context = keyframe._context
    monkeypatch.setattr(keyframe, "_context", lambda codec, crf, w, h, extra=None:
                        seen.append((codec, dict(extra or {}))) or context(codec, crf, w, h, extra))
    imf = tmp_path / "p.imf"
    code, _, err = run(capsys, "encode", clip, imf, "--model", tiny_model_file, "-q", "--keyframe-preset", "3")
    assert code == 0, err
    assert ("av1-chain", {"preset": "3"}) in seen and all(e.get("preset") in (None, "3") for _, e in seen)
    assert run(capsys, "decode", imf, tmp_path / "p.mp4", "--model", tiny_model_file, "-q")[0] == 0
    out = tmp_path / "bad.imf"
    code, _, err = run(capsys, "encode", clip, out, "--model", tiny_model_file, "-q", "--keyframe-preset", "2",
                       "--keyframe-codec", "vp9")
    assert_one_line_error(code, err)
    assert "--keyframe-preset" in err and not out.exists()
    with pytest.raises(SystemExit) as e:             # argparse: usage line + one error line
        run(capsys, "encode", clip, out, "--model", tiny_model_file, "--keyframe-preset", "14")
    assert e.value.code != 0 and "--keyframe-preset" in capsys.readouterr().err
    assert not out.exists()


def test_precision_choices(tmp_path, capsys, clip, tiny_model_file, monkeypatch):
    import torch
    from imfcodec import api
    from imfcodec import model
    cpu = torch.device("cpu")
    assert model.resolve_precision("fp32", cpu) == torch.float32
    assert model.resolve_precision("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(model, "_cpu_has_native_bf16", lambda: False)
    assert model.resolve_precision("auto", cpu) == torch.float32     # never emulated bf16
    monkeypatch.setattr(model, "_cpu_has_native_bf16", lambda: True)
    assert model.resolve_precision("auto", cpu) == torch.bfloat16
    assert model.resolve_precision("auto", torch.device("cuda")) == torch.float32
    with pytest.raises(model.ModelError, match="precision"):
        model.resolve_precision("fp8", cpu)
    # one stream, both precisions: the same pictures but for bf16 rounding
    imf = tmp_path / "p.imf"
    code, _, err = run(capsys, "encode", clip, imf, "--model", tiny_model_file, "-q", "--precision", "fp32")
    assert code == 0, err
    a = np.stack(list(api.decode_bytes(imf.read_bytes(), tiny_model_file, "cpu", precision="fp32")[1]))
    b = np.stack(list(api.decode_bytes(imf.read_bytes(), tiny_model_file, "cpu", precision="bf16")[1]))
    assert a.shape == b.shape == (12, 48, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0
    assert not np.array_equal(a, b)                  # bf16 did run
    assert model.load_model(tiny_model_file, "cpu", "bf16").dtype == torch.bfloat16
    code, _, err = run(capsys, "decode", imf, tmp_path / "p.mp4", "--model", tiny_model_file, "-q",
                       "--precision", "bf16")
    assert code == 0, err
    with pytest.raises(SystemExit) as e:             # argparse: usage line + one error line
        run(capsys, "decode", imf, tmp_path / "q.mp4", "--precision", "half")
    assert e.value.code != 0 and "--precision" in capsys.readouterr().err
    assert not (tmp_path / "q.mp4").exists()


def test_decode_writer_thread_error_is_one_line_and_leaves_no_file(tmp_path, capsys, good_imf, tiny_model_file,
                                                                     monkeypatch):
    """The output is encoded on a thread of its own (video.BackgroundWriter): a failure
    there (here a full disk at the third frame) is the command's one error line, and
    neither the output nor a temporary file is left behind."""
    calls, write = [], video.VideoWriter.write

    def failing(self, rgb):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        write(self, rgb)
    monkeypatch.setattr(video.VideoWriter, "write", failing)
    out = tmp_path / "o.mp4"
    code, _, err = run(capsys, "decode", good_imf, out, "--model", tiny_model_file, "-q")
    assert_one_line_error(code, err)
    assert "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_decode_file_frames_are_the_api_frames(tmp_path, good_imf, tiny_model_file):
    """What the writer thread writes is what decode_bytes gives, frame for frame (raw .yuv
    output, the frames' exact bytes in 4:2:0)."""
    from imfcodec import api
    frames = list(api.decode_bytes(good_imf.read_bytes(), tiny_model_file, "cpu")[1])
    out = tmp_path / "o.yuv"
    st = api.decode_file(good_imf, out, tiny_model_file, "cpu")
    assert st.frames == len(frames) == 12
    ref = tmp_path / "ref.yuv"
    with video.VideoWriter(ref, 64, 48, Fraction(25)) as w:
        for f in frames:
            w.write(f)
    assert out.read_bytes() == ref.read_bytes()


def test_background_writer_abort_leaves_no_file(tmp_path):
    out = tmp_path / "o.mp4"
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(KeyboardInterrupt):
        with video.BackgroundWriter(out, 64, 48, Fraction(25)) as w:
            for _ in range(5):
                w.write(frame)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
