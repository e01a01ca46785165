"""What the README and docs promise matches the code."""
import re

from imfcodec import codec, model

from conftest import REPO


def test_readme_quality_table_matches_code():
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \| (\d+) \| ([\d.]+) \|$", text, re.M)
    assert len(rows) == 8
    table = model.DEFAULT_QUALITY_TABLE          # the shipped model's, if there is one
    if model.DEFAULT_MODEL in model.shipped_models():
        table = model.load_model(model.DEFAULT_MODEL, "cpu").quality_table
    for (q, mult, crf, refresh), row, thr in zip(rows, table, codec.DEFAULT_REFRESH_DROP_DB):
        assert int(q) == row["quality"]
        assert float(mult) == round(row["step_mult"], 2)
        assert int(crf) == row["keyframe_crf"]
        assert float(refresh) == thr


def test_bitstream_spec_magic_and_version():
    from imfcodec import container
    spec = (REPO / "docs/bitstream.md").read_text()
    assert f"format version {container.VERSION}" in spec
    assert " ".join(f"{b:02X}" for b in container.MAGIC) in spec
    assert f"0x{container.PKT_KEYFRAME:02X}" in spec and f"0x{container.PKT_TOKENS:02X}" in spec


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
