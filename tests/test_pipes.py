"""Pipes: ``imfcodec encode - OUT.imf`` reads Y4M from stdin, ``imfcodec decode IN.imf -``
writes Y4M to stdout (PyAV stands in for ffmpeg and ffplay). Nothing but video on stdout."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest

from conftest import REPO, moving_pattern


def y4m_bytes(frames, fps=Fraction(25), pix_fmt="yuv420p") -> bytes:
    """What ``ffmpeg -i IN -f yuv4mpegpipe -`` sends: a Y4M stream, written by PyAV."""
    import av
    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, mode="w", format="yuv4mpegpipe") as c:
        s = c.add_stream("rawvideo", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


def y4m_frames(data: bytes):
    """What ``ffplay -`` would show: the frames PyAV reads from Y4M bytes."""
    import av
    with av.open(io.BytesIO(data), format="yuv4mpegpipe") as c:
        s = c.streams.video[0]
        rate = s.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, rate


def imfcodec(*args, stdin=b""):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "imfcodec", *map(str, args)], input=stdin,
                          capture_output=True, cwd=REPO, env=env, timeout=300)


@pytest.fixture(scope="module")
def piped(tmp_path_factory, tiny_model_file):
    """A clip sent through `encode -`, and the same clip encoded from a .y4m file and
    decoded to one (in this process)."""
    from imfcodec import api
    d = tmp_path_factory.mktemp("pipes")
    data = y4m_bytes(moving_pattern(10, 48, 64, seed=3), Fraction(30000, 1001))
    (d / "in.y4m").write_bytes(data)
    r = imfcodec("encode", "-", d / "pipe.imf", "--model", tiny_model_file, "--keyframe-codec", "h264",
                 stdin=data)
    assert r.returncode == 0, r.stderr.decode()
    api.encode_file(d / "in.y4m", d / "file.imf", tiny_model_file, keyframe_codec="h264", device="cpu")
    api.decode_file(d / "file.imf", d / "out.y4m", tiny_model_file, device="cpu")
    return d, r


def test_encode_from_stdin_equals_encode_from_file(piped):
    d, r = piped
    assert (d / "pipe.imf").read_bytes() == (d / "file.imf").read_bytes()
    assert b"10 frames" in r.stdout      # the summary: stdout is not the video here


def test_decode_to_stdout_is_y4m_and_nothing_else(piped, tiny_model_file):
    d, _ = piped
    r = imfcodec("decode", d / "pipe.imf", "-", "--model", tiny_model_file)    # progress bars on
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"YUV4MPEG2 W64 H48 F30000:1001")
    frames, rate = y4m_frames(r.stdout)
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3) and rate == Fraction(30000, 1001)
    assert b"-: 10 frames, 64x48" in r.stderr          # the summary went to stderr
    assert (d / "out.y4m").read_bytes() == r.stdout      # the same video as a .y4m file


def test_pipe_errors_are_one_line(tmp_path, tiny_model_file):
    r = imfcodec("encode", "-", tmp_path / "x.imf", "--model", tiny_model_file, "-q", stdin=b"not a video" * 50)
    assert r.returncode == 1 and r.stdout == b""
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "standard input: not a readable video" in err[0], err
    assert not list(tmp_path.iterdir())


def test_stdin_is_read_as_it_arrives(monkeypatch):
    """The first frame comes out while the writer still holds the rest back (no waiting for a
    full 32 KiB read, or for the end of the input)."""
    from imfcodec.media import video
    data = y4m_bytes(moving_pattern(6, 48, 64))
    head = data.index(b"\n") + 1
    frame = (len(data) - head) // 6
    r, w = os.pipe()
    first = threading.Event()
    held = {}

    def writer():
        os.write(w, data[:head + frame])
        held["first frame out before the rest was sent"] = first.wait(20)
        os.write(w, data[head + frame:])
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    with os.fdopen(r, "rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        info, frames = video.read_video(video.PIPE)
        n = 0
        for f in frames:
            first.set()
            n += 1
    t.join()
    assert held == {"first frame out before the rest was sent": True}
    assert n == 6 and (info.width, info.height, info.fps) == (64, 48, 25)


def test_decode_to_closed_pipe_is_one_line(tmp_path, tiny_model, tiny_model_file):
    """`imfcodec decode x.imf - | head -c 100`: the reader goes away mid-video. The video
    (40 frames of 160x160, 1.5 MB of Y4M) is far over a pipe's buffer, so the decoder is
    still writing when the reader goes, however the two processes are scheduled (with 10
    small frames, 46 KB, it could finish into the buffer first and exit 0 on a loaded CPU)."""
    from imfcodec import api
    frames = moving_pattern(40, 160, 160, seed=5)
    data, _ = api.encode_frames(frames, 25, tiny_model, keyframe_codec="h264")
    (tmp_path / "big.imf").write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "imfcodec", "decode", str(tmp_path / "big.imf"), "-",
                          "--model", str(tiny_model_file), "-q"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=REPO, env=env)
    p.stdout.read(100)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 1
    assert err.strip().splitlines() == ["imfcodec decode: error: the reader closed the output pipe"]


def test_video_to_a_terminal_is_refused(monkeypatch, tmp_path, capsys):
    from imfcodec.media import video
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    with pytest.raises(video.VideoError, match="terminal"):
        video.VideoWriter("-", 64, 48, Fraction(25))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    with pytest.raises(video.VideoError, match="terminal"):
        video.read_video("-")


def test_the_imf_stream_itself_through_pipes(piped, tiny_model_file):
    """`... | imfcodec encode - - | imfcodec decode - - | ffplay -`: the .imf on stdout and
    on stdin too, the summaries on stderr."""
    d, _ = piped
    enc = imfcodec("encode", "-", "-", "--model", tiny_model_file, "--keyframe-codec", "h264", "-q",
                   stdin=(d / "in.y4m").read_bytes())
    assert enc.returncode == 0, enc.stderr.decode()
    assert enc.stdout == (d / "file.imf").read_bytes() and b"-: 10 frames" in enc.stderr
    dec = imfcodec("decode", "-", "-", "--model", tiny_model_file, "-q", stdin=enc.stdout)
    assert dec.returncode == 0, dec.stderr.decode()
    assert dec.stdout == (d / "out.y4m").read_bytes()
    bad = imfcodec("decode", "-", "-", "--model", tiny_model_file, "-q", stdin=enc.stdout[:-3])
    assert bad.returncode == 1 and bad.stdout == b""      # nothing but one line on stderr
    assert bad.stderr.decode().startswith("imfcodec decode: error: standard input: truncated")
    assert len(bad.stderr.decode().strip().splitlines()) == 1


def test_raw_yuv_on_stdin_with_its_size(monkeypatch):
    """`ffmpeg -i IN -f rawvideo -pix_fmt yuv420p - | imfcodec encode - OUT --size 64x48 --fps 30`."""
    from imfcodec.media import video
    raw = np.random.default_rng(0).integers(0, 255, 3 * 64 * 48 * 3 // 2, dtype=np.uint8).tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    info, frames = video.read_video(video.PIPE, (64, 48), 30)
    assert (info.width, info.height, info.fps) == (64, 48, 30)
    assert [f.shape for f in frames] == [(48, 64, 3)] * 3
