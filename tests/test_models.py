"""The IMF networks: configs build, shapes hold, the reference cache is exact."""
import pytest
import torch

from imfcodec.config import ConfigError, ModelConfig, from_dict, load_model_config, load_yaml
from imfcodec.models.imf import IMFGenerator, MultiScaleDiscriminator

from conftest import REPO


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_config_builds_with_its_parameter_count():
    cfg = load_model_config(REPO / "configs/model/imf-paper.yaml")
    with torch.device("meta"):          # no memory for 160 M parameters
        g = IMFGenerator(cfg)
        d = MultiScaleDiscriminator(cfg)
    # PAPER.md estimates 175-185 M for the paper's generator; ours, with the unstated
    # choices documented in the YAML, is 159.8 M
    assert n_params(g) == 159_782_435
    assert 2.7e6 < n_params(d) / 2 < 2.8e6


@pytest.mark.slow
def test_paper_config_forward_pass():
    cfg = load_model_config(REPO / "configs/model/imf-paper.yaml")
    g = IMFGenerator(cfg).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        x_hat, bits = g(x, x, torch.ones(1, 1))
    assert x_hat.shape == x.shape and bits.shape == (1,)


@pytest.mark.parametrize("name", ["tiny", "imf-cpu"])
def test_forward_shapes_and_cached_decode(name):
    cfg = load_model_config(REPO / f"configs/model/{name}.yaml")
    torch.manual_seed(0)
    g = IMFGenerator(cfg).eval()
    S = cfg.image_size
    x_r, x_c = torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)
    with torch.no_grad():
        x_hat, bits = g(x_r, x_c, torch.ones(2, 1))
        assert x_hat.shape == (2, 3, S, S) and bits.shape == (2,)
        assert 0 <= x_hat.min() and x_hat.max() <= 1
        # the codec path (reference prepared once, tokens quantized) equals the training path
        t = g.encode_token(torch.cat([x_r, x_c]))
        q = g.quantize(t, 1.0)
        t_hat = g.dequantize(q, 1.0)
        ref = g.prepare_reference(x_r[:1], t_hat[:1])
        a = g.decode_frame(t_hat[2:3], ref)
        b, _ = g(x_r[:1], x_c[:1], torch.ones(1, 1))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        # one cached reference serves a batch of frames
        many = g.decode_frame(t_hat[2:4], ref)
        torch.testing.assert_close(many[:1], a, atol=1e-5, rtol=0)


def test_cpu_default_size():
    g = IMFGenerator(load_model_config(REPO / "configs/model/imf-cpu.yaml"))
    assert 5.5e6 < n_params(g) < 6.5e6


def test_config_validation():
    base = load_yaml(REPO / "configs/model/tiny.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(ModelConfig, dict(base, heads=3))
    with pytest.raises(ConfigError, match="needs 2 entries"):
        from_dict(ModelConfig, dict(base, attn_dim=[8]))
    with pytest.raises(ConfigError, match="decoder reaches"):
        from_dict(ModelConfig, dict(base, decoder_out_shuffle=1))
    with pytest.raises(ConfigError, match="missing required key"):
        from_dict(ModelConfig, {k: v for k, v in base.items() if k != "name"})
    with pytest.raises(ConfigError, match="not found"):
        load_model_config(REPO / "configs/model/nope.yaml")
