"""The encoder's keyframe refresh rule, with scripted reconstruction PSNRs so each case is exact."""
from fractions import Fraction

import pytest
import torch

from imfcodec import api
from imfcodec.codec import encoder
from imfcodec.errors import OptionError

from conftest import moving_pattern


def keyframes_for(model, monkeypatch, psnrs, base=30.0, **opts):
    """Encode len(psnrs) + 1 frames where predicted frame i + 1 reconstructs at psnrs[i] dB
    and every keyframe's own reconstruction (the level drops are measured from) at ``base``
    dB (frame 0 is the first keyframe; a refresh keyframe consumes its frame's value).
    Returns the keyframe indices."""
    script = iter(psnrs)
    real_psnr, real_decode = encoder.psnr, model.generator.decode_frame
    predicted = []

    def decode_frame(*a, **k):
        predicted.append(True)
        return real_decode(*a, **k)

    def fake_psnr(a, b):
        return torch.tensor(float(next(script))) if predicted and predicted.pop() else real_psnr(a, b)

    monkeypatch.setattr(encoder, "psnr", fake_psnr)
    monkeypatch.setattr(api.Encoder, "_base_psnr", lambda self, x, q_r, base_pic=None: float(base))
    monkeypatch.setattr(model.generator, "decode_frame", decode_frame)
    _, st = api.encode_frames(moving_pattern(n=len(psnrs) + 1), Fraction(25), model, 4, **opts)
    return st.keyframe_indices


OPTS = dict(refresh_drop=3.0, min_keyframe_interval=0.0, max_keyframe_interval=100.0)


def test_single_frame_drop_refreshes_by_default(tiny_model, monkeypatch):
    psnrs = [30, 30, 26, 30, 30]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, **OPTS) == [0, 3]


def test_transient_drop_is_ignored_when_persistence_is_asked(tiny_model, monkeypatch):
    # a 2-frame dip (a blink) with refresh_persist=3: no refresh
    psnrs = [30, 30, 26, 26, 30, 30, 30]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, refresh_persist=3, **OPTS) == [0]


def test_lasting_drop_refreshes_on_its_nth_frame(tiny_model, monkeypatch):
    psnrs = [30, 30, 26, 26, 26, 26, 30]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, refresh_persist=3, **OPTS) == [0, 5]


def test_drop_is_measured_from_the_keyframes_own_reconstruction(tiny_model, monkeypatch):
    # the keyframe reconstructs at 24: 22 is only 2 dB below it, no refresh; 20.5 is 3.5 below
    psnrs = [24, 23, 22, 22, 20.5, 30]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, base=24, **OPTS) == [0, 5]


def test_a_keyframe_whose_predictions_start_poor_is_replaced(tiny_model, monkeypatch):
    # taken mid-motion: every prediction from it is 10 dB below the keyframe itself. Measured
    # from the first predicted frame (the old rule) this never refreshed.
    psnrs = [20, 20, 20]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, base=30, **OPTS) == [0, 1, 2, 3]


def test_base_is_the_model_reconstructing_the_keyframe_itself(tiny_model):
    from imfcodec.media import video
    size = tiny_model.config.image_size
    frames = [video.to_uint8(video.to_model(f, size))[0] for f in moving_pattern(n=2)]
    enc = api.Encoder(tiny_model, size, size, Fraction(25), 4)
    enc.push(frames[0])
    x = video.to_model(frames[0], size)
    q_r = tiny_model.generator.quantize(tiny_model.generator.encode_token(enc.recon), enc.mult)
    with torch.no_grad(), tiny_model.compute():
        x_self = tiny_model.generator.decode_frame(tiny_model.generator.dequantize(q_r, enc.mult), enc.ref)
    assert enc.base_psnr == pytest.approx(encoder.psnr(x_self.float(), x).item(), abs=1e-4)


def test_min_interval_delays_the_refresh(tiny_model, monkeypatch):
    # 25 fps, min interval 0.2 s = 5 frames: a drop at frame 2 waits until frame 5
    psnrs = [30, 20, 20, 20, 20, 20, 20]
    opts = dict(OPTS, min_keyframe_interval=0.2)
    assert keyframes_for(tiny_model, monkeypatch, psnrs, **opts) == [0, 5]


def test_zero_drop_disables_refresh(tiny_model, monkeypatch):
    psnrs = [30, 10, 10, 10, 10]
    assert keyframes_for(tiny_model, monkeypatch, psnrs, **dict(OPTS, refresh_drop=0)) == [0]


def test_bad_persistence_is_refused(tiny_model):
    with pytest.raises(OptionError, match="refresh_persist"):
        api.Encoder(tiny_model, 64, 48, Fraction(25), refresh_persist=0)


def test_encoder_recon_is_what_the_decoder_rebuilds(tiny_model, monkeypatch):
    """Encoder.recon (used by bench/tune_ladder.py to score settings without a decode) must
    match the decoded frames, keyframes and refreshes included."""
    from imfcodec.media import video
    import itertools
    script = itertools.cycle([29.0, 29.0, 20.0])       # every third prediction refreshes
    monkeypatch.setattr(encoder, "psnr", lambda a, b: torch.tensor(next(script)))
    monkeypatch.setattr(api.Encoder, "_base_psnr", lambda self, x, q_r, base_pic=None: 30.0)
    size = tiny_model.config.image_size
    frames = [video.to_uint8(video.to_model(f, size))[0] for f in moving_pattern(n=14)]
    enc = api.Encoder(tiny_model, size, size, Fraction(25), 4, refresh_drop=3.0,
                        min_keyframe_interval=0.0, max_keyframe_interval=100.0)
    packets, recon = [], []
    for f in frames:
        packets += enc.push(f)
        recon.append(video.to_uint8(enc.recon)[0])
    packets += enc.flush()
    assert 1 < enc.stats.keyframes < len(frames)      # refreshes and predicted frames both seen
    dec = api.Decoder(tiny_model, enc.header(len(frames)))
    out = [f for p in packets for f in dec.push(p)]
    assert len(out) == len(frames)
    for a, b in zip(recon, out):
        assert abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_model_file_without_ladder_keys_uses_the_default_ladder(tiny_model):
    """Model files exported before the ladder lived in the quality table (the step-4750
    imf-cpu) have no crf_vp9 / refresh_drop / min_keyframe_interval: they get LADDER_*."""
    from dataclasses import replace
    from imfcodec.codec.ladder import LADDER_AV1_CHAIN_CRF, LADDER_MIN_KEYFRAME_INTERVAL_S, LADDER_REFRESH_DROP_DB, LADDER_VP9_CRF
    ladder = ("crf_vp9", "crf_av1_chain", "refresh_drop", "min_keyframe_interval")
    old = replace(tiny_model, quality_table=[{k: v for k, v in r.items() if k not in ladder}
                                             for r in tiny_model.quality_table])
    assert [old.keyframe_crf(q, "vp9") for q in range(1, 9)] == list(LADDER_VP9_CRF)
    assert [old.keyframe_crf(q, "av1-chain") for q in range(1, 9)] == list(LADDER_AV1_CHAIN_CRF)
    assert [old.refresh_drop(q) for q in range(1, 9)] == list(LADDER_REFRESH_DROP_DB)
    assert [old.min_keyframe_interval(q) for q in range(1, 9)] == list(LADDER_MIN_KEYFRAME_INTERVAL_S)
    assert [old.keyframe_crf(q, "av1") for q in range(1, 9)] == [50 - 4 * (q - 1) for q in range(1, 9)]
