"""The shipped base-layer model (issue 15): an extension of imf-cpu that adds only the
base-layer stems, so its token-only levels and ``--base-layer off`` decode exactly the
frames imf-cpu decodes, and its base-layer levels code version-5 streams."""
from fractions import Fraction

import numpy as np
import pytest

from conftest import moving_pattern

pytestmark = pytest.mark.skipif("imf-cpu-base" not in __import__("imfcodec.model", fromlist=["x"]).shipped_models(),
                                reason="imf-cpu-base is not installed")


@pytest.fixture(scope="module")
def models():
    from imfcodec.model import load_model
    return load_model("imf-cpu", "cpu", "fp32"), load_model("imf-cpu-base", "cpu", "fp32")


def _decode(data, model):
    from imfcodec.api import decode_bytes
    return np.stack(list(decode_bytes(data, model)[1]))


def test_it_extends_the_shipped_imf_cpu(models):
    import torch
    plain, base = models
    assert base.has_base_layer and not plain.has_base_layer
    ps, bs = plain.generator.state_dict(), base.generator.state_dict()
    assert all(torch.equal(ps[k], bs[k]) for k in ps)
    assert [r["step_mult"] for r in base.quality_table] == [r["step_mult"] for r in plain.quality_table]
    assert base.base_size(1) == 0 and base.base_size(4) > 0


def test_base_layer_at_is_the_encoders_rule(models):
    """CodecModel.base_layer_at (what the bench, speed.py and tune_ladder.py ask) says what
    the Encoder does at every level and mode, for the token-only model too."""
    from imfcodec.codec.encoder import Encoder
    for m in models:
        for q in range(1, 9):
            for mode in ("auto", "on", "off"):
                if mode == "on" and not m.base_layer_at(q):
                    continue        # refused by the encoder (tests/test_base_layer.py)
                enc = Encoder(m, 64, 64, Fraction(25), q, base_layer=mode)
                assert (enc.base_layer is not None) == m.base_layer_at(q, mode), (m.model_id, q, mode)
    assert models[1].base_layer_at(4) and not models[1].base_layer_at(1)
    assert not models[1].base_layer_at(4, "off") and not models[0].base_layer_at(4)


def test_base_layer_off_decodes_imf_cpu_frames_and_on_codes_version_5(models):
    from imfcodec.format import container
    from imfcodec.api import encode_frames
    plain, base = models
    frames = moving_pattern(10, 96, 128, seed=3)
    ref, _ = encode_frames(frames, Fraction(25), plain, 4)
    off, _ = encode_frames(frames, Fraction(25), base, 4, base_layer="off")
    assert np.array_equal(_decode(ref, plain), _decode(off, base))
    on, st = encode_frames(frames, Fraction(25), base, 4)
    header, packets = container.parse(on)
    assert header.version == container.BASE_VERSION and header.base_layer.size == base.base_size(4)
    assert sum(p.count for p in packets if isinstance(p, container.BasePacket)) == 10
    out = _decode(on, base)
    assert out.shape == (10, 96, 128, 3)
    low, _ = encode_frames(frames, Fraction(25), base, 1)           # a token-only level
    assert container.parse(low)[0].base_layer is None


def test_the_config_beside_the_weights_is_the_one_inside(models):
    """imfcodec/weights/imf-cpu-base.yaml documents the shipped file: it must say what the
    file holds (it changed when the pixel skip came)."""
    from pathlib import Path

    import imfcodec
    from imfcodec.config import load_model_config
    weights = Path(imfcodec.__file__).parent / "weights"
    for m in models:
        assert load_model_config(weights / f"{m.model_id}.yaml") == m.config
