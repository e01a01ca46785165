"""The library's seams: what the decode path imports, which error says what, and the
encoder parameters the benches use instead of patching internals."""
import subprocess
import sys
from fractions import Fraction

import pytest

from conftest import REPO, moving_pattern
from imfcodec import api
from imfcodec import options
from imfcodec.format import container
from imfcodec.media import keyframe
from imfcodec.errors import OptionError
from imfcodec.fileio import OutputError


def test_decode_path_loads_no_training_or_asset_code(tiny_model_file):
    """Importing the codec, loading a model and decoding a stream never loads the trainer or
    the weight fetcher (pip, tar and pickle code)."""
    script = f"""
import sys
from fractions import Fraction
sys.path.insert(0, {str(REPO / 'tests')!r})
from conftest import moving_pattern
import imfcodec.api as c
m = c.load_model({str(tiny_model_file)!r}, "cpu")
data, _ = c.encode_frames(moving_pattern(3), Fraction(25), m, keyframe_codec="h264")
_, frames = c.decode_bytes(data, m)
assert len(list(frames)) == 3
print(sorted(n for n in ("imfcodec.assets", "imfcodec.train", "imfcodec.export", "lpips")
             if any(k == n or k.startswith(n + ".") for k in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("opts", [{"quality": 0}, {"quality": 2.5}, {"keyframe_codec": "mjpeg"},
                                  {"packet_frames": 0}, {"refresh_persist": 0}])
def test_bad_codec_options_are_option_errors(tiny_model, opts):
    with pytest.raises(OptionError):
        api.Encoder(tiny_model, 64, 48, Fraction(25), **opts)


def test_missing_output_folder_is_an_output_error(tmp_path, clip, tiny_model):
    with pytest.raises(OutputError, match="output folder does not exist"):
        api.encode_file(clip, tmp_path / "nope" / "o.imf", tiny_model, keyframe_codec="h264")
    data, _ = api.encode_frames(moving_pattern(2), Fraction(25), tiny_model, keyframe_codec="h264")
    (tmp_path / "a.imf").write_bytes(data)
    with pytest.raises(OutputError, match="output folder does not exist"):
        api.decode_file(tmp_path / "a.imf", tmp_path / "nope" / "o.mp4", tiny_model)


def test_keyframe_crf_and_options_are_parameters(tiny_model):
    frames = moving_pattern(3)

    def size(**opts):
        data, st = api.encode_frames(frames, Fraction(25), tiny_model, 4, **opts)
        return st.keyframe_bytes
    own = size()
    assert size(keyframe_crf=tiny_model.keyframe_crf(4, options.DEFAULT_KEYFRAME_CODEC)) == own
    assert size(keyframe_crf=20) > own > size(keyframe_crf=60)
    assert size(keyframe_options={"crf": "60", "qmin": "60"}) < own


def test_keyframe_encoder_options_reach_the_encoder():
    pic = moving_pattern(1, 64, 64)[0]
    plain = keyframe.KeyframeEncoder("vp9", 30).encode(pic)
    assert keyframe.KeyframeEncoder("vp9", 30, {}).encode(pic) == plain
    assert keyframe.KeyframeEncoder("vp9", 30, {"crf": "60", "qmin": "60"}).encode(pic) != plain


def test_encode_file_takes_a_frame_reader(tmp_path, clip, tiny_model):
    calls = []

    def reader(src, raw_size=None, raw_fps=None):
        calls.append(src)
        return iter(moving_pattern(4))
    st = api.encode_file(clip, tmp_path / "o.imf", tiny_model, keyframe_codec="h264", reader=reader)
    assert calls == [clip] and st.frames == 4
    data, _ = api.encode_frames(moving_pattern(4), Fraction(25), tiny_model, keyframe_codec="h264")
    assert (tmp_path / "o.imf").read_bytes() == data


def test_stream_stats_are_the_containers_count(tiny_model):
    data, st = api.encode_frames(moving_pattern(5), Fraction(25), tiny_model, packet_frames=2)
    header, packets = container.parse(data)
    again, sizes = container.assemble(header, packets)
    assert again == data
    assert (st.bytes, st.header_bytes, st.keyframe_bytes, st.token_bytes) == \
        (sizes.total, sizes.header, sizes.of("keyframe"), sizes.of("tokens"))
    assert st.kbps == header.kbps(len(data)) == pytest.approx(len(data) * 8 * 25 / 5 / 1000)
