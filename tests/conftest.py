"""Shared fixtures: a random tiny model file, small synthetic clips, the shared data dir, and
the bench/tools/experiments scripts as modules."""
from __future__ import annotations

import importlib.util
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# The shared clips (never committed): $IMFCODEC_SHARED_DATA, else a shared/data folder next to
# the checkout. Tests reach them only through SHARED and shared_data().
SHARED = Path(os.environ.get("IMFCODEC_SHARED_DATA") or REPO.parent / "shared" / "data")
os.environ.setdefault("SVT_LOG", "1")


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder (e.g. ``shared_data("faces", "val")``); skips the
    calling test with the path it looked at when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set IMFCODEC_SHARED_DATA)")
    return path


def load_script(relpath: str):
    """A script of bench/, tools/ or experiments/ (``"tools/tune_ladder.py"``) as a fresh
    module loaded from its file: they are scripts, not packages. It imports imfbench as the
    scripts do, from the editable install `make setup` makes."""
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location("script_" + path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod         # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


def write_clip(path, frames, fps=Fraction(25), codec="libx264", pix_fmt="yuv420p"):
    """Write RGB uint8 frames to a video file with PyAV."""
    import av
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = {"crf": "18"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def moving_pattern(n=12, h=48, w=64, seed=0):
    """A smooth blob drifting over a gradient: something a codec can follow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0 * xx], -1)
    frames = []
    for i in range(n):
        cy, cx = h / 2 + 4 * np.sin(i / 3), w / 2 + 6 * np.cos(i / 4)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)[..., None]
        img = base * (1 - blob) + blob * np.array([0.9, 0.7, 0.6])
        img = img + rng.normal(0, 0.01, img.shape)
        frames.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    from imfcodec.config import load_model_config
    from imfcodec.export import save_model
    from imfcodec.model import random_model
    m = random_model(load_model_config(REPO / "configs/model/tiny.yaml"))
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(path, m.generator, m.entropy, "tiny")
    return path


@pytest.fixture(scope="session")
def other_tiny_model_file(tmp_path_factory):
    from imfcodec.config import load_model_config
    from imfcodec.export import save_model
    from imfcodec.model import random_model
    m = random_model(load_model_config(REPO / "configs/model/tiny.yaml"), seed=1)
    path = tmp_path_factory.mktemp("models2") / "tiny.pt"
    save_model(path, m.generator, m.entropy, "tiny")
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_file):
    from imfcodec.model import load_model
    return load_model(tiny_model_file, "cpu")


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """12 frames, 64x48, 25 fps."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", moving_pattern())


@pytest.fixture(scope="session")
def odd_clip(tmp_path_factory):
    """9 frames of an odd size (63x47) at 30000/1001 fps (4:4:4 to allow odd sizes)."""
    frames = moving_pattern(9, 47, 63, seed=2)
    return write_clip(tmp_path_factory.mktemp("clips") / "odd.mkv", frames, Fraction(30000, 1001),
                      pix_fmt="yuv444p")


def assert_stream_checked(data: bytes, flip: int = 0x10):
    """A well-formed stream: StreamReader fed byte by byte gives the packets parse does, and
    every truncation and a bit flip at every byte is a StreamError."""
    import pytest
    from imfcodec.format import container as C
    r = C.StreamReader()
    got = []
    for b in data:
        r.feed(bytes([b]))
        got += list(r.packets())
    assert got == C.parse(data)[1]
    for cut in range(len(data)):
        with pytest.raises(C.StreamError):
            C.parse(data[:cut])
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= flip
        with pytest.raises(C.StreamError):
            C.parse(bytes(bad))
