"""DISTS (imfcodec.metrics.dists) against the authors' published example score.

Reference: github.com/dingkeyan93/DISTS at 1267d8c, ``DISTS_pytorch/DISTS_pt.py`` and
``DISTS_matlab/DISTS.m`` both give ``score: 0.3347`` for ``images/r0.png`` vs ``images/r1.png``
(256x256, so the reference's resize-to-256 step does nothing). Those two images are in
tests/data/dists_ref (MIT, LICENSE there). Needs the VGG16 weights (`imfcodec fetch-weights`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imfcodec import assets

REF = Path(__file__).resolve().parent / "data" / "dists_ref"


@pytest.fixture(scope="module")
def dists():
    if not assets.weights_available():
        pytest.skip(f"backbone weights not in {assets.cache_dir()}; run `imfcodec fetch-weights`")
    from imfcodec.metrics import get_dists
    return get_dists("cpu")


def _load(name):
    from PIL import Image
    a = np.array(Image.open(REF / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1)[None]


def test_published_example(dists):
    with torch.no_grad():
        got = float(dists(_load("r0.png"), _load("r1.png"))[0])
    assert got == pytest.approx(0.3347, abs=6e-5)


def test_identity_symmetry_and_order(dists):
    a = _load("r0.png")[..., :128, :128]
    g = torch.Generator().manual_seed(0)
    noisy = [(a + s * torch.randn(a.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.08, 0.2)]
    with torch.no_grad():
        assert float(dists(a, a)[0]) == pytest.approx(0.0, abs=1e-6)
        ab, ba = dists(a, noisy[1]), dists(noisy[1], a)
        assert float(ab[0]) == pytest.approx(float(ba[0]), abs=1e-6)
        d = [float(dists(a, n)[0]) for n in noisy]
        batch = dists(a.repeat(3, 1, 1, 1), torch.cat(noisy))
    assert d[0] < d[1] < d[2]
    assert batch.shape == (3,) and torch.allclose(batch, torch.tensor(d), atol=1e-5)


def test_alpha_beta_file_is_checked(tmp_path):
    from imfcodec.metrics.dists import load_alpha_beta
    alpha, beta = load_alpha_beta()
    assert alpha.shape == beta.shape == (1, 1475, 1, 1)
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not the file")
    with pytest.raises(ValueError, match="sha256"):
        load_alpha_beta(bad)
