"""Training: overfitting, exact resume, DDP under torchrun, configs and bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from imfcodec import cli
from imfcodec.config import ConfigError, load_model_config, load_train_config
from imfcodec.train.trainer import ZERO_START_STEMS

from conftest import REPO, moving_pattern, write_clip

TINY = REPO / "configs/train/tiny.yaml"


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("IMFCODEC_HOME", str(tmp_path / "home"))
    d = tmp_path / "data"
    d.mkdir()
    write_clip(d / "a.mp4", moving_pattern(12, 48, 64, seed=3))
    write_clip(d / "b.mp4", moving_pattern(10, 64, 64, seed=4))
    (d / "broken.mp4").write_text("not a video")
    return d


def test_tiny_model_overfits_one_pair():
    from imfcodec.models.imf import IMFGenerator
    torch.manual_seed(0)
    g = IMFGenerator(load_model_config(REPO / "configs/model/tiny.yaml"))
    opt = torch.optim.Adam(g.parameters(), 3e-3, betas=(0.5, 0.999))
    frames = torch.from_numpy(__import__("numpy").stack(moving_pattern(8, 64, 64))).permute(0, 3, 1, 2) / 255.0
    x_r, x_c = frames[:1].float(), frames[5:6].float()
    losses = []
    for _ in range(60):
        x_hat, bits = g(x_r, x_c, torch.ones(1, 1))
        loss = (x_hat - x_c).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0] / 4, losses[::10]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["generator"]


def test_resume_equals_uninterrupted(tmp_path, data, capsys):
    base = ["train", "--config", str(TINY), "--data", str(data), "-q"]
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--max-steps", "3"]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--max-steps", "5", "--resume"]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "b"), "--max-steps", "5"]) == 0
    wa, wb = _weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert torch.load(tmp_path / "a/last.pt", weights_only=True)["step"] == 5
    # a second start without --resume must not clobber the run
    code = cli.main(base + ["--out", str(tmp_path / "a"), "--max-steps", "5"])
    assert code == 1 and "already holds a run" in capsys.readouterr().err


def test_cli_train_resume_encode_export(tmp_path, data, capsys):
    run = tmp_path / "run"
    base = ["train", "--config", str(TINY), "--data", str(data), "--val", str(data / "a.mp4"),
            "--out", str(run), "-q"]
    assert cli.main(base + ["--max-steps", "3"]) == 0
    assert cli.main(base + ["--max-steps", "5", "--resume"]) == 0
    rows = (run / "log.jsonl").read_text().splitlines()
    assert any("val_psnr" in r for r in rows) and any('"l1"' in r for r in rows)
    assert (run / "best.pt").exists()
    clip = data / "a.mp4"
    imf = tmp_path / "o.imf"
    # a training checkpoint is no model: its entropy tables would be built from floats at
    # load time, which the stream's hash cannot vouch for
    capsys.readouterr()
    assert cli.main(["encode", str(clip), str(imf), "--model", str(run / "last.pt"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "training checkpoint" in err and "imfcodec export" in err and len(err.splitlines()) == 1
    out = tmp_path / "m.pt"
    assert cli.main(["export", str(run / "best.pt"), str(out)]) == 0
    import hashlib
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert sha in capsys.readouterr().out
    assert (tmp_path / "m.pt.sha256").read_text().startswith(sha)
    from imfcodec.model import load_model
    m = load_model(out, "cpu")
    assert m.model_id == "tiny" and m.sha256 == sha
    assert cli.main(["encode", str(clip), str(imf), "--model", str(out), "-q"]) == 0
    assert cli.main(["decode", str(imf), str(tmp_path / "r.mp4"), "--model", str(out), "-q"]) == 0
    # --step-scale coarsens every level's token step; its entropy tables follow
    coarse = tmp_path / "m8.pt"
    assert cli.main(["export", str(run / "best.pt"), str(coarse), "--step-scale", "8"]) == 0
    m8 = load_model(coarse, "cpu")
    assert [m8.step_mult(q) for q in range(1, 9)] == pytest.approx([8 * m.step_mult(q) for q in range(1, 9)], rel=1e-3)
    assert m8.meta["step_scale"] == 8.0
    import imfcodec
    from imfcodec.media.video import read_frames
    frames = list(read_frames(clip))
    assert len(imfcodec.encode_frames(frames, 25, m8, 4)[0]) <= len(imfcodec.encode_frames(frames, 25, m, 4)[0])
    capsys.readouterr()
    assert cli.main(["export", str(run / "best.pt"), str(tmp_path / "m0.pt"), "--step-scale", "0"]) == 1
    assert "--step-scale must be > 0" in capsys.readouterr().err and not (tmp_path / "m0.pt").exists()
    assert cli.main(["plot", str(run)]) == 0 and (run / "log.png").exists()


def test_bad_training_inputs(tmp_path, data, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.read_text() + "\nlearning_rate: 0.1\n")
    (tmp_path / "m").mkdir()
    code = cli.main(["train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "unknown key(s) learning_rate" in err
    with pytest.raises(ConfigError, match="must be an integer"):
        from imfcodec.config import TrainConfig, from_dict
        from_dict(TrainConfig, {"model": "x", "batch_size": "eight"})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.mp4").write_text("no video here")
    code = cli.main(["train", "--config", str(TINY), "--data", str(empty), "--out", str(tmp_path / "r2"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "no readable video" in err and err.count("error") == 1
    # a checkpoint from another model config
    run = tmp_path / "r3"
    assert cli.main(["train", "--config", str(TINY), "--data", str(data), "--out", str(run),
                     "--max-steps", "1", "-q"]) == 0
    other = tmp_path / "other.yaml"
    other_model = tmp_path / "tiny2.yaml"
    other_model.write_text((REPO / "configs/model/tiny.yaml").read_text().replace("token_dim: 8", "token_dim: 4"))
    other.write_text(TINY.read_text().replace("../model/tiny.yaml", str(other_model)))
    before = (run / "last.pt").read_bytes()
    code = cli.main(["train", "--config", str(other), "--data", str(data), "--out", str(run),
                     "--resume", "--max-steps", "2", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "another model config" in err
    assert (run / "last.pt").read_bytes() == before


TRAIN_CONFIGS = sorted(p.stem for p in (REPO / "configs/train").glob("*.yaml"))


def test_every_train_config_is_validated():
    assert {"tiny", "imf-cpu", "imf-cpu-base-pxj", "paper"} <= set(TRAIN_CONFIGS)


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_train_configs_validate(name):
    cfg = load_train_config(REPO / f"configs/train/{name}.yaml")
    load_model_config(cfg.model)
    import dataclasses
    with pytest.raises(ConfigError, match="perceptual_net"):
        dataclasses.replace(cfg, perceptual_net="vgg19")


def test_torchrun_two_processes_agree(tmp_path, data):
    env = dict(os.environ, OMP_NUM_THREADS="1", IMFCODEC_HOME=str(tmp_path / "home"))
    import socket
    with socket.socket() as sock:          # a free port, not a fixed one another run may hold
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           "-m", "imfcodec", "train", "--config", str(TINY), "--data", str(data),
           "--out", str(tmp_path / "ddp"), "--max-steps", "3"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "weights identical on all 2 ranks" in r.stderr
    assert torch.load(tmp_path / "ddp/last.pt", weights_only=True)["step"] == 3


def test_init_from_an_exported_model(tmp_path, data, tiny_model_file, other_tiny_model_file):
    from imfcodec.model import load_model
    run = tmp_path / "init"
    assert cli.main(["train", "--config", str(TINY), "--data", str(data), "--out", str(run),
                     "--max-steps", "1", "--init", str(other_tiny_model_file), "-q"]) == 0
    gen = load_model(other_tiny_model_file, "cpu").generator   # seed 1: unlike a fresh seed-0 init
    after = _weights(run / "last.pt")
    # one small Adam step (lr 2e-3) from the exported weights, not a fresh initialisation
    for k, p in gen.named_parameters():
        assert (after[k] - p).abs().max() < 0.01, k


def test_init_resets_the_quantizer_and_a_frozen_step_stays(tmp_path, data, other_tiny_model_file):
    import yaml
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(model=str(REPO / "configs/model/tiny.yaml"), step_lr=0.0, sigma_lr=0.05,
               init_log_step=-3.0, init_log_sigma=-1.0, init_reset=["token_encoder"], equalized_lr=0.01)
    path = tmp_path / "quant.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "quant"
    assert cli.main(["train", "--config", str(path), "--data", str(data), "--out", str(run),
                     "--max-steps", "3", "--init", str(other_tiny_model_file), "-q"]) == 0
    after = _weights(run / "last.pt")
    assert torch.equal(after["log_step"], torch.full_like(after["log_step"], -3.0))
    # sigma learns at its own rate: three Adam steps of 0.05 move it well past lr's 3 x 2e-3
    assert 0.02 < (after["log_sigma"] + 1.0).abs().max() < 0.151
    # the reset part starts afresh, the rest from the model (three small Adam steps away)
    from imfcodec.model import load_model
    init = dict(load_model(other_tiny_model_file, "cpu").generator.named_parameters())
    far = [k for k in init if (after[k] - init[k]).abs().max() > 0.05
           and k not in ("log_step", "log_sigma")]
    assert far and all(k.startswith("token_encoder.") for k in far), far
    # equalized layers (IMF_D's modulated convs) step at equalized_lr, 5x the lr of 2e-3
    moved = max((after[k] - init[k]).abs().max().item() for k in init
                if k.startswith("token_decoder.") and k.endswith(".weight"))
    assert 0.012 < moved < 0.05, moved
    bad = dict(cfg, init_reset=["no_such_part"])
    path.write_text(yaml.safe_dump(bad))
    assert cli.main(["train", "--config", str(path), "--data", str(data), "--out",
                     str(tmp_path / "bad"), "--max-steps", "1", "--init",
                     str(other_tiny_model_file), "-q"]) == 1


def test_frame_cache_follows_content_not_path_or_mtime(tmp_path, data):
    import shutil
    import warnings
    from imfcodec.train.data import build_cache
    logged = []
    root = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # broken.mp4 is skipped with a warning
        first = build_cache([data], 32, root, log=logged.append)
        assert len(logged) == 2
        copy = tmp_path / "copy"
        shutil.copytree(data, copy)           # new path, new mtimes: same bytes
        os.utime(copy / "a.mp4", (1, 1))
        again = build_cache([copy], 32, root, log=logged.append)
        assert len(logged) == 2 and [c.path for c in again] == [c.path for c in first]
        build_cache([copy], 32, root, max_frames=4, log=logged.append)
        assert len(logged) == 4               # a different frame limit is a different entry
        write_clip(copy / "a.mp4", moving_pattern(12, 48, 64, seed=5))
        build_cache([copy], 32, root, log=logged.append)
        assert len(logged) == 5               # changed bytes: decoded again


def test_moving_average_is_validated_kept_and_exported(tmp_path, data, capsys):
    """ema_decay: best.pt/export follow the average, the raw weights keep training, and
    the average can be switched on when resuming a run that had none."""
    import json
    import yaml
    from imfcodec.model import load_model
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"] = str(REPO / "configs/model/tiny.yaml")
    plain, averaged = tmp_path / "plain.yaml", tmp_path / "ema.yaml"
    plain.write_text(yaml.safe_dump(cfg))
    averaged.write_text(yaml.safe_dump(dict(cfg, ema_decay=0.5)))
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--val", str(data / "a.mp4"), "--out", str(run), "-q"]
    assert cli.main(base + ["--config", str(plain), "--max-steps", "2"]) == 0
    assert "generator_ema" not in torch.load(run / "last.pt", weights_only=True)
    # the recipe check lets the average in; another change is still refused
    assert cli.main(base + ["--config", str(averaged), "--max-steps", "4", "--resume"]) == 0
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["ema_updates"] == 2
    raw, avg = ck["generator"], ck["generator_ema"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())
    rows = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_psnr" in r]
    assert "raw_val_psnr" not in val[0] and "raw_val_psnr" in val[-1] and val[-1]["step"] == 4
    # resuming carries the average on: 2 more updates, not a fresh copy
    assert cli.main(base + ["--config", str(averaged), "--max-steps", "6", "--resume"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["ema_updates"] == 4
    out = tmp_path / "m.pt"
    assert cli.main(["export", str(run / "last.pt"), str(out)]) == 0
    m = load_model(out, "cpu")
    assert m.meta["weights"] == "moving average over 4 steps"
    ck = torch.load(run / "last.pt", weights_only=True)
    raw, avg = ck["generator"], ck["generator_ema"]
    half = {k: v.half().float() if v.is_floating_point() else v for k, v in avg.items()}  # stored half
    for k, v in m.generator.state_dict().items():
        assert torch.equal(v, half[k]), k
    assert any(not torch.equal(raw[k].half().float(), half[k]) for k in raw if raw[k].is_floating_point())
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(cfg, ema_decay=0.5, lr=0.001)))
    assert cli.main(base + ["--config", str(bad), "--max-steps", "8", "--resume"]) == 1
    assert "differs in: lr" in capsys.readouterr().err
    # switching the average off again is allowed, but said
    assert cli.main(base[:-1] + ["--config", str(plain), "--max-steps", "7", "--resume"]) == 0
    assert "moving average (4 steps) is dropped" in capsys.readouterr().err
    assert "generator_ema" not in torch.load(run / "last.pt", weights_only=True)


def test_learning_rate_drops_apply_from_their_step_and_may_be_added_on_resume(tmp_path, data, capsys):
    """lr_drops: the logged rate follows the schedule; a drop ahead of the run may be added
    when resuming (the run then equals one trained with it from the start), one behind it not."""
    import json
    import yaml
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"] = str(REPO / "configs/model/tiny.yaml")
    cfg["log_every"] = 1
    plain, dropped, late = (tmp_path / f"{n}.yaml" for n in ("plain", "drop", "late"))
    plain.write_text(yaml.safe_dump(cfg))
    dropped.write_text(yaml.safe_dump(dict(cfg, lr_drops=[[3, 0.5], [4, 0.1]])))
    late.write_text(yaml.safe_dump(dict(cfg, lr_drops=[[1, 0.5]])))
    lr = load_train_config(plain).lr
    base = ["train", "--data", str(data), "-q"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(base + ["--config", str(plain), "--out", str(a), "--max-steps", "3"]) == 0
    assert cli.main(base + ["--config", str(dropped), "--out", str(a), "--max-steps", "5", "--resume"]) == 0
    assert cli.main(base + ["--config", str(dropped), "--out", str(b), "--max-steps", "5"]) == 0
    rows = [json.loads(r) for r in (b / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([lr, lr, lr, lr * 0.5, lr * 0.05])
    wa, wb = _weights(a / "last.pt"), _weights(b / "last.pt")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    capsys.readouterr()
    assert cli.main(base + ["--config", str(late), "--out", str(a), "--max-steps", "6", "--resume"]) == 1
    assert "differs in: lr_drops before step 5" in capsys.readouterr().err


@pytest.mark.parametrize("drops", [[[10, 0]], [[10]], [[20, 0.5], [10, 0.5]], [[1.5, 0.5]]])
def test_bad_learning_rate_drops_are_refused(tmp_path, drops):
    import yaml
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"] = str(REPO / "configs/model/tiny.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(dict(cfg, lr_drops=drops)))
    with pytest.raises(ConfigError, match="lr_drops"):
        load_train_config(p)


def test_coded_references_start_on_their_step_and_may_be_switched_on_when_resuming(tmp_path, data, capsys):
    """ref_coding: from ref_coding_start the references are VP9 key pictures (what the
    decoder warps from), the current frames untouched; switching it on ahead of a running
    run is allowed, behind it refused; validation on coded references restarts best.pt."""
    import yaml
    from imfcodec.train.data import PairSampler, build_cache
    clips = build_cache([data / "a.mp4", data / "b.mp4"], 64, tmp_path / "cache", log=lambda *a: None)
    plain = PairSampler(clips, seed=1)
    coded = PairSampler(clips, seed=1, ref_coding=1.0, ref_crf=(40, 40), ref_coding_start=3)
    for step in (2, 3):
        (r0, c0), (r1, c1) = plain.batch(step, 4), coded.batch(step, 4)
        assert torch.equal(c0, c1)
        assert torch.equal(r0, r1) == (step < 3)
    r2, _ = coded.batch(3, 4)
    assert torch.equal(r1, r2)                                  # a pure function of the step
    assert 0 < (r1 - r0).abs().mean() < 0.1                     # coded, not replaced
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"] = str(REPO / "configs/model/tiny.yaml")
    paths = {n: tmp_path / f"{n}.yaml" for n in ("plain", "ahead", "behind")}
    paths["plain"].write_text(yaml.safe_dump(cfg))
    paths["ahead"].write_text(yaml.safe_dump(dict(cfg, ref_coding=1.0, ref_coding_start=2, val_ref_crf=40)))
    paths["behind"].write_text(yaml.safe_dump(dict(cfg, ref_coding=1.0, ref_coding_start=1)))
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--val", str(data / "a.mp4"), "--out", str(run)]
    assert cli.main(base + ["--config", str(paths["plain"]), "--max-steps", "2", "-q"]) == 0
    capsys.readouterr()
    assert cli.main(base + ["--config", str(paths["ahead"]), "--max-steps", "4", "--resume"]) == 0
    assert "best.pt follows the new validation" in capsys.readouterr().err
    assert torch.load(run / "best.pt", weights_only=True)["step"] > 2     # chosen after the switch
    assert cli.main(base + ["--config", str(paths["behind"]), "--max-steps", "6", "--resume", "-q"]) == 1
    assert "ref_coding before step 4" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"ref_coding": 1.5}, {"ref_crf": [40, 30]}, {"ref_crf": [20, 70]},
                                 {"val_ref_crf": 64}])
def test_bad_reference_coding_settings_are_refused(tmp_path, bad):
    import yaml
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model"] = str(REPO / "configs/model/tiny.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(dict(cfg, **bad)))
    with pytest.raises(ConfigError, match="ref_c|val_ref"):
        load_train_config(p)


def test_init_from_a_training_checkpoint_brings_its_discriminator(tmp_path, data, capsys):
    """--init RUN/x.pt: the generator it validated (the average when it kept one) and its
    discriminator; a checkpoint whose networks do not fit is one error line."""
    base = ["train", "--config", str(TINY), "--data", str(data)]
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--max-steps", "3", "-q"]) == 0
    a = torch.load(tmp_path / "a/last.pt", weights_only=True)
    # gan_start is 2: the new run's first step leaves its discriminator untouched
    assert cli.main(base + ["--out", str(tmp_path / "b"), "--max-steps", "1",
                            "--init", str(tmp_path / "a/last.pt")]) == 0
    assert "generator and discriminator initialised from training checkpoint" in capsys.readouterr().err
    b = torch.load(tmp_path / "b/last.pt", weights_only=True)
    for k, v in a["discriminator"].items():
        assert torch.equal(b["discriminator"][k], v), k
    for k, v in a["generator"].items():        # one Adam step (lr 2e-3) away
        if "running_" in k or "num_batches" in k:
            continue                           # batch-norm statistics follow the batch
        assert (b["generator"][k] - v).abs().max() < 0.01, k
    del a["generator"]["log_sigma"]
    torch.save(a, tmp_path / "bad.pt")
    assert cli.main(base + ["--out", str(tmp_path / "c"), "--max-steps", "1", "-q",
                            "--init", str(tmp_path / "bad.pt")]) == 1
    err = capsys.readouterr().err
    assert "its networks do not fit" in err and "Traceback" not in err


def test_time_limit_ends_the_run_with_a_checkpoint(tmp_path, data, capsys):
    run = tmp_path / "run"
    base = ["train", "--config", str(TINY), "--data", str(data), "--out", str(run), "--max-steps", "50"]
    assert cli.main(base + ["--time-limit", "1e-6"]) == 0
    assert "time limit (1e-06 s) reached at step 1" in capsys.readouterr().err
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 1
    assert cli.main(base + ["--time-limit", "0", "--resume"]) == 1
    assert "--time-limit must be > 0" in capsys.readouterr().err


def test_prefetched_batches_are_the_batches(tmp_path, data):
    from imfcodec.train.data import PairSampler, build_cache
    from imfcodec.train.trainer import _Prefetch
    clips = build_cache([data / "a.mp4", data / "b.mp4"], 64, tmp_path / "cache", log=lambda *a: None)
    sampler = PairSampler(clips, max_gap=5, seed=3)
    fetch = _Prefetch(sampler, 2, 0, workers=2)
    try:
        for step in range(6):
            got, want = fetch(step, 6), sampler.batch(step, 2, 0)
            assert all(torch.equal(g, w) for g, w in zip(got, want)), step
    finally:
        fetch.close()


def test_base_layer_training_moves_only_the_base_stems(tmp_path, data, other_tiny_model_file, capsys):
    """Issue 15: a token-only model initialises a base-layer model (its stems, D_F's and
    IMF_A's queries', start at zero: the same frames), the sampler adds coded base pictures, and with train_parts only
    the stems move; the frozen parts keep their weights and batch-norm statistics."""
    import yaml
    from imfcodec.models.imf import IMFGenerator
    from imfcodec.model import load_model
    from imfcodec.train.data import PairSampler, build_cache
    mpath = tmp_path / "tiny-base.yaml"
    mpath.write_text((REPO / "configs/model/tiny.yaml").read_text().replace("name: tiny", "name: tiny-base")
                     + "\nbase_channels: 8\nbase_query_channels: 8\n")
    # the sampler: same pairs as without a base layer, plus (n, 3, b, b) coded pictures
    clips = build_cache([data / "a.mp4", data / "b.mp4"], 64, tmp_path / "cache", log=lambda *a: None)
    plain = PairSampler(clips, seed=1)
    based = PairSampler(clips, seed=1, base_sizes=(16,), base_crf=(50, 50))
    (r0, c0), (r1, c1, b1) = plain.batch(2, 3), based.batch(2, 3)
    assert torch.equal(r0, r1) and torch.equal(c0, c1) and b1.shape == (3, 3, 16, 16)
    small = torch.nn.functional.interpolate(c1, size=(16, 16), mode="bilinear", antialias=True)
    assert 0 < (b1 - small).abs().mean() < 0.1                 # coded, not replaced
    assert torch.equal(based.batch(2, 3)[2], b1)                # a pure function of the step
    # zero stems: the base-layer model decodes the token-only model's frames exactly
    tok = load_model(other_tiny_model_file, "cpu").generator.eval()
    gen = IMFGenerator(load_model_config(mpath)).eval()
    gen.load_state_dict(tok.state_dict(), strict=False)
    x_r, x_c = r1[:1], c1[:1]
    with torch.no_grad():
        mult = torch.ones(1, 1)
        out, ref = gen(x_r, x_c, mult, b1[:1])[0], gen(x_r, x_c, mult)[0]
        assert torch.equal(out, ref) and torch.allclose(ref, tok(x_r, x_c, mult)[0], atol=1e-6)
    # training: only the stems move
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(model=str(mpath), base_sizes=[16], base_crf=[40, 60], val_base=[16, 50],
               train_parts=["frame_decoder.base_stems", "base_query_stems"], loss_gan=0.0, lr=0.01)
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--data", str(data), "--val", str(data / "a.mp4"),
                     "--out", str(run), "--max-steps", "3", "--init", str(other_tiny_model_file)]) == 0
    assert "they start at zero" in capsys.readouterr().err
    after = torch.load(run / "last.pt", weights_only=True)["generator"]
    init = tok.state_dict()
    moved = [k for k in after if k not in init or not torch.equal(after[k].float(), init[k].float())]
    assert moved and all(k.startswith(ZERO_START_STEMS) for k in moved), moved
    assert any(k.startswith("base_query_stems.") for k in moved)       # the query stems learn too
    # refused: a base recipe on a model without stems, and a part that does not exist
    for bad in (dict(cfg, model=str(REPO / "configs/model/tiny.yaml")), dict(cfg, train_parts=["nope"])):
        path.write_text(yaml.safe_dump(bad))
        assert cli.main(["train", "--config", str(path), "--data", str(data), "--out",
                         str(tmp_path / "bad"), "--max-steps", "1", "-q"]) == 1


def test_export_an_extension_of_the_parent_model(tmp_path, data, other_tiny_model_file, capsys):
    """A checkpoint that only trained base stems exports as an extension file: the stems
    and the parent's hash; it loads to the full model, and refuses a missing or changed parent."""
    import shutil
    import yaml
    from imfcodec.model import ModelError, load_model
    mpath = tmp_path / "tiny-base.yaml"
    mpath.write_text((REPO / "configs/model/tiny.yaml").read_text().replace("name: tiny", "name: tiny-base")
                     + "\nbase_channels: 8\n")
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(model=str(mpath), base_sizes=[16], train_parts=["frame_decoder.base_stems"], loss_gan=0.0)
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--data", str(data), "--out", str(run),
                     "--max-steps", "2", "--init", str(other_tiny_model_file), "-q"]) == 0
    models = tmp_path / "models"
    models.mkdir()
    parent = models / "tiny.pt"
    shutil.copy(other_tiny_model_file, parent)
    ext = models / "tiny-base.pt"
    assert cli.main(["export", str(run / "last.pt"), str(ext), "--parent", str(parent)]) == 0
    m, p = load_model(ext, "cpu", "fp32"), load_model(parent, "cpu", "fp32")
    assert m.has_base_layer and not p.has_base_layer
    ms, ps = m.generator.state_dict(), p.generator.state_dict()
    assert all(torch.equal(ms[k], ps[k]) for k in ps) and any(".base_stems." in k for k in ms)
    assert m.quality_table[3]["step_mult"] == p.quality_table[3]["step_mult"] and "base_size" in m.quality_table[3]
    assert ext.stat().st_size < parent.stat().st_size
    # --calib: the same tensors, the parent's tables with each level's choice fitted to the
    # rounded token differences of the calibration clips, which they then code in no more bits
    from imfcodec.export import calibration_clips, clip_tokens, token_symbol_deltas
    fitted = models / "tiny-base-fitted.pt"
    assert cli.main(["export", str(run / "last.pt"), str(fitted), "--parent", str(parent), "--calib", str(data)]) == 0
    f = load_model(fitted, "cpu", "fp32")
    fs = f.generator.state_dict()
    assert all(torch.equal(fs[k], ms[k]) for k in ms) and f.quality_table == m.quality_table
    assert "fewest bits" in f.meta["entropy_calibration"]
    clips = calibration_clips([data], f.config.image_size)
    deltas = token_symbol_deltas(f.generator, clip_tokens(f.generator, clips), f.quality_table)
    assert all(f.entropy.bits(d, q + 1) <= m.entropy.bits(d, q + 1) for q, d in enumerate(deltas))
    parent.write_bytes(parent.read_bytes() + b"x")           # not the parent it was made from
    with pytest.raises(ModelError, match="extends model"):
        load_model(ext, "cpu")
    # a checkpoint whose token path moved cannot extend the parent
    full = dict(cfg, train_parts=[])
    path.write_text(yaml.safe_dump(full))
    assert cli.main(["train", "--config", str(path), "--data", str(data), "--out", str(tmp_path / "full"),
                     "--max-steps", "1", "--init", str(other_tiny_model_file), "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "full/last.pt"), str(tmp_path / "x.pt"), "--parent",
                     str(other_tiny_model_file)]) == 1
    assert "token path" in capsys.readouterr().err
