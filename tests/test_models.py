"""The IMF networks: configs build, shapes hold, the reference cache is exact."""
import dataclasses

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
    for bad in (dict(base_query_channels=8), dict(ref_pixel_channels=8), dict(base_query_channels=-1)):
        with pytest.raises(ConfigError, match="base_channels"):          # the stems read a base picture
            from_dict(ModelConfig, dict(base, **bad))
    with pytest.raises(ConfigError, match="missing required key"):
        from_dict(ModelConfig, {k: v for k, v in base.items() if k != "name"})
    with pytest.raises(ConfigError, match="not found"):
        load_model_config(REPO / "configs/model/nope.yaml")


def test_borrow_scale_moves_blocks_with_the_coarser_attention_map():
    import torch.nn.functional as F
    cfg = load_model_config(REPO / "configs/model/imf-cpu.yaml")
    assert cfg.align_mode[0] == "borrow"
    torch.manual_seed(0)
    g = IMFGenerator(cfg).eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        t = g.encode_token(x)
        ref = g.prepare_reference(x[:1], t[:1])
        m_c = g.token_decoder(t[1:])
        out, warped = g.motion_alignment(m_c, ref.caches, pixels=True)
        assert warped is None                     # imf-cpu has no pixel skip
        # the 32x32 scale's attention map, written out by hand, averaged over heads
        sc, c = g.motion_alignment.scales[1], ref.caches[1]
        q = sc._heads(sc.q(sc.norm_q(m_c[1].flatten(2).transpose(1, 2))) + sc.pos)
        p = (q @ c.k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1).mean(1)   # (1, N, N)
        f1 = ref.caches[0].f_r                                                     # (1, C, 64, 64)
        blocks = F.pixel_unshuffle(f1, 2).flatten(2).transpose(1, 2)              # (1, N, 4C)
        want = F.pixel_shuffle((p @ blocks).transpose(1, 2).reshape(1, -1, 32, 32), 2)
        torch.testing.assert_close(out[0], want, atol=1e-5, rtol=1e-4)
        # and an identity map would give f^1 back exactly (nothing lost in the block moves)
        eye = torch.eye(p.shape[-1])[None]
        same = F.pixel_shuffle((eye @ blocks).transpose(1, 2).reshape(1, -1, 32, 32), 2)
        assert torch.equal(same, f1)
        # the pixel skip (ref_pixel_channels) moves the keyframe's 8x8 pixel blocks by that map
        gp = IMFGenerator(dataclasses.replace(cfg, base_channels=8, ref_pixel_channels=8)).eval()
        gp.load_state_dict(g.state_dict(), strict=False)
        ref = gp.prepare_reference(x[:1], t[:1])
        out_p, warped = gp.motion_alignment(m_c, ref.caches, pixels=True)
        px = F.pixel_unshuffle(x[:1], 8).flatten(2).transpose(1, 2)                 # (1, N, 192)
        want_px = F.pixel_shuffle((p @ px).transpose(1, 2).reshape(1, -1, 32, 32), 8)
        torch.testing.assert_close(warped, want_px, atol=1e-5, rtol=1e-4)
        assert torch.equal(out_p[0], out[0])           # the features move as before
        assert gp.motion_alignment(m_c, ref.caches)[1] is None     # token-only: not computed


def test_borrow_needs_an_attending_scale_at_half_size():
    base = load_yaml(REPO / "configs/model/imf-cpu.yaml")
    for modes in (["attn", "attn", "attn", "borrow"], ["borrow", "skip", "attn", "attn"],
                  ["fly", "attn", "attn", "attn"]):
        with pytest.raises(ConfigError, match="align_mode"):
            from_dict(ModelConfig, dict(base, align_mode=modes))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_head_mean_is_torch_mean_bit_for_bit(dtype):
    """The decoder's two-head mean (a faster path, issue 36) gives exactly t.mean(1): streams
    coded by an encoder that used either must decode to the same frames. Attention maps
    (softmax rows with tiny and exactly-zero entries) and signed values."""
    from imfcodec.models.imf import _head_mean
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 64, 64, generator=g) * torch.tensor([1.0, 30.0, 200.0]).view(3, 1, 1, 1)
    att = logits.softmax(-1).to(dtype)
    vals = (torch.randn(3, 2, 64, 40, generator=g) * 10.0 ** torch.randint(-6, 4, (3, 2, 64, 40), generator=g)).to(dtype)
    for t in (att, vals, vals[..., 7:]):
        assert torch.equal(_head_mean(t), t.mean(1))
    four = torch.randn(2, 4, 8, 8, generator=g).to(dtype)
    assert torch.equal(_head_mean(four), four.mean(1))
