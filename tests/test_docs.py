"""What the README and docs promise matches the code."""
import importlib.util
import re
import shlex

import pytest

from imfcodec import api
from imfcodec import options
from imfcodec import model

from conftest import REPO, moving_pattern, write_clip

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def fenced(text, lang):
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def needs_shipped_model():
    if model.DEFAULT_MODEL not in model.shipped_models():
        pytest.skip("no shipped default model")


def test_design_quality_table_matches_code():
    text = (REPO / "docs/design.md").read_text()
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


def test_readme_is_a_short_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    first_fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert first_fence < 40 and lines[first_fence + 1].strip()


def test_readme_has_no_project_history():
    text = README.read_text()
    for pattern in (r"\bissue \d+", r"\bstage \d", r"\bstep \d", r"\bsitting\b", r"\bprevious\b",
                    r"\bsince\b", r"\bwas\b", r"\b20\d\d-\d\d", r"(January|February|March|April|May|June|July|"
                    r"August|September|October|November|December) 20\d\d"):
        assert not re.search(pattern, text, re.I), pattern


def test_no_machine_paths_in_docs():
    files = [README, REPO / "NEWS.md", *(REPO / "docs").rglob("*.md")]
    for f in files:
        assert "../shared" not in f.read_text(), f


def _model_card():
    spec = importlib.util.spec_from_file_location("model_card", REPO / "bench/model_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_docs_are_up_to_date():
    """docs/benchmarks.md and the marked tables of README.md and docs/MODEL_CARD.md are what
    `python bench/model_card.py` writes from bench/results."""
    for path, text in _model_card().render(REPO).items():
        assert path.read_text() == text, f"{path} is out of date: run python bench/model_card.py"


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of the README runs, in a folder holding a small in.mp4: whole
    files, streaming (10 frames decoded), in memory, and MultiDecoder ([4, 4, 4])."""
    needs_shipped_model()
    write_clip(tmp_path / "in.mp4", moving_pattern(12, 144, 176))
    monkeypatch.chdir(tmp_path)
    blocks = fenced(README.read_text(), "python")
    assert len(blocks) >= 4
    assert len([b for b in blocks if "StreamReader" in b]) == 1       # streaming, for a live call
    assert len([b for b in blocks if "MultiDecoder" in b]) == 1       # many calls on one machine
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), {})
    out = capsys.readouterr().out
    assert "10 frames decoded" in out and "[4, 4, 4] frames per call" in out
    assert (tmp_path / "rec.mp4").stat().st_size > 0


def test_readme_cli_examples_run(tmp_path, monkeypatch, capsys):
    """The README's ```bash blocks made of plain imfcodec commands run (pipes need ffmpeg and
    a player: not run)."""
    needs_shipped_model()
    from imfcodec import cli
    write_clip(tmp_path / "in.mp4", moving_pattern(12, 144, 176))
    monkeypatch.chdir(tmp_path)
    ran = 0
    for block in fenced(README.read_text(), "bash"):
        commands = [line.split("#")[0].strip() for line in block.splitlines()]
        commands = [c for c in commands if c]
        if not all(c.startswith("imfcodec ") and "|" not in c for c in commands):
            continue
        for c in commands:
            assert cli.main(shlex.split(c)[1:]) == 0, c
            ran += 1
    assert ran >= 4
    assert (tmp_path / "rec.mov").stat().st_size > 0
    assert "imf-cpu-base" in capsys.readouterr().out
