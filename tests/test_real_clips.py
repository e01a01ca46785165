"""Real files from the shared data folder (conftest.SHARED): raw YUV at odd rates, raw H.264, a talking-head clip."""
from fractions import Fraction

import pytest

from imfcodec import cli
from imfcodec.media import video

from conftest import SHARED

MISC = SHARED / "misc"
needs_misc = pytest.mark.skipif(not MISC.exists(), reason=f"shared data not found at {MISC}")


@needs_misc
def test_raw_yuv_clip(tmp_path, capsys, tiny_model_file):
    src = MISC / "openh264_CiscoVT2people_160x96_6fps.yuv"
    imf, rec = tmp_path / "a.imf", tmp_path / "a.mp4"
    assert cli.main(["encode", str(src), str(imf), "--size", "160x96", "--fps", "6",
                     "--model", str(tiny_model_file), "-q"]) == 0
    assert cli.main(["decode", str(imf), str(rec), "--model", str(tiny_model_file), "-q"]) == 0
    info = video.probe(rec)
    assert (info.width, info.height, info.fps) == (160, 96, Fraction(6))
    assert len(list(video.read_frames(rec))) == src.stat().st_size // (160 * 96 * 3 // 2)


@needs_misc
def test_raw_h264_elementary_stream(tmp_path, tiny_model_file):
    src = MISC / "openh264_Cisco_Men_whisper_640x320_CABAC_Bframe_9.264"
    n = len(list(video.read_frames(src)))
    imf = tmp_path / "b.imf"
    assert cli.main(["encode", str(src), str(imf), "--model", str(tiny_model_file), "-q"]) == 0
    from imfcodec.format.streaminfo import stream_info
    d = stream_info(imf)
    assert d["frames"] == n and (d["width"], d["height"]) == (640, 320)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "faces/val").exists(), reason="shared val clips not found")
def test_default_model_on_a_val_clip(tmp_path):
    from imfcodec.model import DEFAULT_MODEL, shipped_models
    if DEFAULT_MODEL not in shipped_models():
        pytest.skip("no shipped default model")
    src = SHARED / "faces/val/tpsmm_driving.mp4"
    imf, rec = tmp_path / "c.imf", tmp_path / "c.mp4"
    assert cli.main(["encode", str(src), str(imf), "-q"]) == 0
    assert cli.main(["decode", str(imf), str(rec), "-q"]) == 0
    assert len(list(video.read_frames(rec))) == len(list(video.read_frames(src)))


@pytest.mark.skipif(not (SHARED / "faces/val").exists(), reason="shared val clips not found")
def test_default_model_is_driven_by_the_token():
    """The token must carry the motion: decoding frame c with its own token has to beat
    decoding it with the keyframe's token (which reproduces the keyframe). A model that
    copies the keyframe and ignores the token (the first imf-cpu weights did) fails."""
    import numpy as np
    import torch
    from imfcodec.metrics import psnr
    from imfcodec.model import DEFAULT_MODEL, load_model, shipped_models
    if DEFAULT_MODEL not in shipped_models():
        pytest.skip("no shipped default model")
    m = load_model(DEFAULT_MODEL, "cpu")
    g = m.generator
    frames = list(video.read_frames(SHARED / "faces/val/tpsmm_driving.mp4", max_frames=60))
    x = video.to_model(np.stack(frames[::4]), m.config.image_size)     # 15 frames, 2.4 s
    mult = m.step_mult(4)
    with torch.no_grad():
        t_hat = g.dequantize(g.quantize(g.encode_token(x), mult), mult)
        ref = g.prepare_reference(x[:1], t_hat[:1])
        own = psnr(g.decode_frame(t_hat[1:], ref), x[1:])
        still = psnr(g.decode_frame(t_hat[:1].expand(len(x) - 1, -1), ref), x[1:])
    assert (own - still).mean() > 0.5, f"token gains only {(own - still).mean():.2f} dB"
