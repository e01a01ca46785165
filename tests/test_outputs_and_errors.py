"""Outputs are ordinary files written all or nothing; errors say what really went wrong (a
bad file, a torch that cannot read it, or a bug of ours), never one for the other."""
from __future__ import annotations

import contextlib
import os
import stat
from fractions import Fraction

import pytest
import torch

from conftest import REPO, moving_pattern


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- permissions and temp files --------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_write_gives_open_s_permissions(tmp_path, mask):
    from imfcodec.fileio import atomic_write
    with umask(mask):
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
        with open(tmp_path / "b.bin", "wb"):
            pass
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "b.bin") == 0o666 & ~mask


@pytest.mark.parametrize("name", ["rec.mp4", "rec.y4m", "rec.yuv"])
def test_decoded_video_has_ordinary_permissions(tmp_path, clip, tiny_model, name):
    from imfcodec import api
    with umask(0o027):
        api.encode_file(clip, tmp_path / "x.imf", tiny_model, keyframe_codec="h264")
        api.decode_file(tmp_path / "x.imf", tmp_path / name, tiny_model)
    assert mode(tmp_path / name) == 0o640 and mode(tmp_path / "x.imf") == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "x.imf"])   # no temp left


def test_video_writer_removes_its_temp_file_when_the_output_does_not_open(tmp_path, monkeypatch):
    import av
    from imfcodec.media import video

    def refuse(*a, **k):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
    monkeypatch.setattr(av, "open", refuse)
    with pytest.raises(video.VideoError, match=r"rec.mp4: cannot open for writing \(InvalidDataError: Invalid data"):
        video.VideoWriter(tmp_path / "rec.mp4", 64, 48, Fraction(25))
    assert list(tmp_path.iterdir()) == []

    def bug(*a, **k):              # not PyAV's refusal: passes through, and still cleans up
        raise TypeError("a bug")
    monkeypatch.setattr(av, "open", bug)
    with pytest.raises(TypeError):
        video.VideoWriter(tmp_path / "rec.mkv", 64, 48, Fraction(25))
    assert list(tmp_path.iterdir()) == []


def test_model_and_its_sha256_sidecar_are_written_atomically(tmp_path, tiny_model, monkeypatch):
    from imfcodec import export, fileio
    written = []
    real = fileio.atomic_write
    monkeypatch.setattr(export, "atomic_write", lambda p, w: (written.append(os.path.basename(p)), real(p, w)))
    with umask(0o022):
        sha = export.save_model(tmp_path / "m.pt", tiny_model.generator, tiny_model.entropy, "tiny")
    assert written == ["m.pt", "m.pt.sha256"]
    assert (tmp_path / "m.pt.sha256").read_text() == f"{sha}  m.pt\n"
    assert mode(tmp_path / "m.pt") == mode(tmp_path / "m.pt.sha256") == 0o644


def test_atomic_copy_is_all_or_nothing(tmp_path, monkeypatch):
    import shutil
    from imfcodec.fileio import atomic_copy
    (tmp_path / "last.pt").write_bytes(b"new" * 1000)
    (tmp_path / "best.pt").write_bytes(b"old")
    monkeypatch.setattr(shutil, "copyfileobj", lambda s, d: (d.write(s.read(10)), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        atomic_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 2
    monkeypatch.undo()
    atomic_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_bytes() == b"new" * 1000


# ---- LPIPS in training -------------------------------------------------------------------
def _recipe(tmp_path, **over):
    import yaml
    cfg = yaml.safe_load((REPO / "configs/train/tiny.yaml").read_text())
    cfg.update(model=str(REPO / "configs/model/tiny.yaml"), max_steps=3, val_every=3, **over)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    from conftest import write_clip
    d = tmp_path_factory.mktemp("train")
    write_clip(d / "a.mp4", moving_pattern(16, 64, 64, seed=4))
    return d


def test_lpips_that_does_not_load_stops_training(tmp_path, train_data, monkeypatch, capsys):
    """best.pt picked by LPIPS must not quietly become best.pt picked by PSNR."""
    from imfcodec import metrics
    from imfcodec.assets import MissingWeightsError
    from imfcodec.cli import main

    def missing(*a, **k):
        raise MissingWeightsError("AlexNet weights not found")
    monkeypatch.setattr(metrics, "get_lpips", missing)
    args = ["train", "--data", str(train_data), "--val", str(train_data / "a.mp4"), "-q"]
    assert main(args + ["--config", str(_recipe(tmp_path, val_metric="lpips")), "--out", str(tmp_path / "r1")]) == 1
    err = capsys.readouterr().err
    assert "val LPIPS" in err and "val_metric: psnr" in err and "fetch-weights" in err
    assert not (tmp_path / "r1" / "best.pt").exists()
    # the explicit choice runs, and says what picks best.pt
    assert main(args[:-1] + ["--config", str(_recipe(tmp_path, val_metric="psnr")),
                             "--out", str(tmp_path / "r2")]) == 0
    assert "best.pt is picked by val PSNR" in capsys.readouterr().err
    assert (tmp_path / "r2" / "best.pt").exists()


def test_val_metric_is_validated():
    from imfcodec.config import ConfigError, TrainConfig
    with pytest.raises(ConfigError, match="val_metric"):
        TrainConfig(model="tiny", val_metric="ssim")


# ---- model files: not ours, not torch, or not this torch ---------------------------------
def test_model_load_errors_say_which_problem(tmp_path, monkeypatch, tiny_model_file):
    import datetime
    from imfcodec.model import ModelError, load_model
    (tmp_path / "text.pt").write_bytes(b"hello, not a model")
    with pytest.raises(ModelError, match=r"not an imfcodec model file \(not a PyTorch archive\)"):
        load_model(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="PyTorch archive without imfcodec's format tag"):
        load_model(tmp_path / "other.pt")
    torch.save({"format": "imfcodec-model", "when": datetime.date(2026, 1, 1)}, tmp_path / "obj.pt")
    with pytest.raises(ModelError, match=r"torch [0-9.]+.* will not load safely \(UnpicklingError"):
        load_model(tmp_path / "obj.pt")

    # a quality table the encoder could not read: one line at load, not a traceback mid-encode
    blob = torch.load(tiny_model_file, weights_only=True)
    for bad in ([], blob["quality_table"][:7], [dict(r, refresh_drop="6") for r in blob["quality_table"]],
                [dict(r, step_mult=0.0) for r in blob["quality_table"]],
                [dict(r, base_av1_chain=5) for r in blob["quality_table"]],
                [dict(r, base_av1_chain={"crf": float("nan"), "min_keyframe_interval": 1}) for r in
                 blob["quality_table"]]):
        torch.save(dict(blob, quality_table=bad), tmp_path / "bad_table.pt")
        with pytest.raises(ModelError, match="quality table is not 8 levels of numbers"):
            load_model(tmp_path / "bad_table.pt")
    torch.save(dict(blob, quality_table=[dict(r, base_av1_chain={"crf": 40, "min_keyframe_interval": 1})
                                         for r in blob["quality_table"]]), tmp_path / "good_table.pt")
    assert load_model(tmp_path / "good_table.pt").keyframe_crf(4, "av1-chain") == 46   # token-only: unused

    def old_torch(*a, **k):         # what a torch that cannot read a newer archive does
        raise RuntimeError("PytorchStreamReader failed reading file data/0: invalid header\nmore")
    monkeypatch.setattr(torch, "load", old_torch)
    with pytest.raises(ModelError) as e:
        load_model(tiny_model_file)
    msg = str(e.value)
    assert "not an imfcodec model" not in msg and "cannot load (RuntimeError: PytorchStreamReader" in msg
    assert "another torch version" in msg and "\n" not in msg


def test_export_of_a_foreign_archive_is_not_a_torch_problem(tmp_path):
    from imfcodec.export import export_checkpoint
    from imfcodec.model import ModelError
    torch.save({"step": 3}, tmp_path / "ck.pt")
    with pytest.raises(ModelError, match="not an imfcodec training checkpoint"):
        export_checkpoint(tmp_path / "ck.pt", tmp_path / "m.pt")
    with pytest.raises(ModelError, match="no such file"):
        export_checkpoint(tmp_path / "none.pt", tmp_path / "m.pt")


# ---- decode errors: the data's fault, or ours ----------------------------------------------
def test_keyframe_errors_keep_pyav_s_message():
    from imfcodec.media import keyframe
    with pytest.raises(keyframe.KeyframeError,
                       match=r"h264 keyframe picture does not decode \(InvalidDataError: Invalid data found"):
        keyframe.decode(b"\x00\x00\x01\xff" * 40, "h264")


@pytest.fixture(scope="module")
def stream(tiny_model):
    from imfcodec import api
    data, _ = api.encode_frames(moving_pattern(6, 48, 64), Fraction(25), tiny_model,
                                  keyframe_codec="h264", packet_frames=4)
    return data


def test_a_bug_in_the_token_decoder_is_not_a_corrupt_payload(stream, tiny_model, monkeypatch):
    from imfcodec import api
    from imfcodec import entropy

    def bug(*a, **k):
        raise TypeError("rans_decode() got an unexpected keyword argument")
    monkeypatch.setattr(entropy, "rans_decode", bug)
    with pytest.raises(TypeError):
        list(api.decode_bytes(stream, tiny_model)[1])
    monkeypatch.undo()

    # a damaged payload, by contrast, is the stream's fault: one EntropyError line
    from imfcodec.format import container
    header, packets = container.parse(stream)
    tok = next(p for p in packets if isinstance(p, container.TokenPacket))
    with pytest.raises(entropy.EntropyError):
        tiny_model.entropy.decode(tok.payload[:-4], tok.count, header.quality)


def test_cli_labels_a_bug_as_an_internal_error(tmp_path, stream, tiny_model_file, monkeypatch, capsys):
    from imfcodec import api
    from imfcodec.cli import main
    (tmp_path / "x.imf").write_bytes(stream)

    def bug(self, packet):
        raise AssertionError("ref is None")
    monkeypatch.setattr(api.Decoder, "push", bug)
    rc = main(["decode", str(tmp_path / "x.imf"), str(tmp_path / "y.mp4"), "--model", str(tiny_model_file), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 70 and len(err) == 1
    assert err[0].startswith("imfcodec decode: internal error (AssertionError: ref is None); this is a bug")
    assert "corrupt" not in err[0] and not (tmp_path / "y.mp4").exists()
    monkeypatch.setenv("IMFCODEC_DEBUG", "1")
    with pytest.raises(AssertionError):
        main(["decode", str(tmp_path / "x.imf"), str(tmp_path / "y.mp4"), "--model", str(tiny_model_file), "-q"])
