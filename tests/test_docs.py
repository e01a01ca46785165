"""What the README and docs promise matches the code."""
import re

from imfcodec import api
from imfcodec import options
from imfcodec import model

from conftest import REPO


def test_readme_quality_table_matches_code():
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (- \| -|\d+ / \d+ \| [\d.]+) \|$",
                      text, re.M)
    assert len(rows) == 8
    from imfcodec.config import load_model_config
    m = model.random_model(load_model_config(REPO / "configs/model/tiny.yaml"))
    if model.DEFAULT_MODEL in model.shipped_models():   # the shipped model's table, if there is one
        m = model.load_model(model.DEFAULT_MODEL, "cpu")
    for (q, mult, crf, drop, gap, base), row in zip(rows, m.quality_table):
        q = int(q)
        assert q == row["quality"]
        assert float(mult) == round(m.step_mult(q), 2)
        assert int(crf) == m.keyframe_crf(q, options.DEFAULT_KEYFRAME_CODEC)
        assert float(drop) == m.refresh_drop(q)
        assert float(gap) == m.min_keyframe_interval(q)
        if not m.has_base_layer:                       # no shipped model: the base columns say nothing
            continue
        if m.base_size(q) == 0:
            assert base == "- | -"
        else:
            side_crf, base_gap = base.split(" | ")
            assert side_crf == f"{m.base_size(q)} / {m.base_crf(q)}"
            assert float(base_gap) == m.min_keyframe_interval(q, base=True, codec=options.DEFAULT_KEYFRAME_CODEC)


def test_bitstream_spec_magic_and_version():
    from imfcodec.format import container
    spec = (REPO / "docs/bitstream.md").read_text()
    assert f"format version {container.VERSION}" in spec
    assert " ".join(f"{b:02X}" for b in container.MAGIC) in spec
    assert f"0x{container.PKT_KEYFRAME:02X}" in spec and f"0x{container.PKT_TOKENS:02X}" in spec
    assert f"0x{container.PKT_BASE:02X} 'B'" in spec and f"## Version {container.BASE_VERSION}: base layer" in spec
    assert ", ".join(map(str, container.BASE_SIZES[:-1])) + f" or {container.BASE_SIZES[-1]}" in spec


def test_readme_streaming_example_runs(capsys):
    from imfcodec.model import DEFAULT_MODEL, shipped_models
    if DEFAULT_MODEL not in shipped_models():
        import pytest
        pytest.skip("no shipped default model")
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    streaming = [b for b in blocks if "StreamReader" in b]
    assert len(streaming) == 1
    exec(compile(streaming[0], "README.md", "exec"), {})
    assert "10 frames decoded" in capsys.readouterr().out


def test_encode_help_states_the_codec_defaults():
    import argparse
    from imfcodec import cli
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub.choices["encode"]._actions}
    assert f"(default: {options.DEFAULT_KEYFRAME_CODEC})" in helps["keyframe_codec"]
    assert f"(default {options.DEFAULT_REFRESH_PERSIST}" in helps["refresh_persist"]
    assert "(default depends on --quality)" in helps["min_keyframe_interval"]
    assert "(default depends on --quality" in helps["refresh_drop"]
    assert f"(default {options.DEFAULT_MAX_KEYFRAME_INTERVAL_S:g})" in helps["max_keyframe_interval"]


def test_readme_multi_stream_example_runs(capsys):
    from imfcodec.model import DEFAULT_MODEL, shipped_models
    if DEFAULT_MODEL not in shipped_models():
        import pytest
        pytest.skip("no shipped default model")
    text = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "MultiDecoder" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert "[4, 4, 4] frames per call" in capsys.readouterr().out
