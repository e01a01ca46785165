"""The package's shape: no import cycles (function-level imports included), the layers
import only downwards, and the CLI answers before torch loads."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "imfcodec"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """Every imfcodec module ``name`` imports, at any depth of its code (functions, class
    bodies, ``if`` blocks), relative imports resolved; ``from pkg import mod`` counts as
    ``pkg.mod`` when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_import_graph_is_read():
    assert "imfcodec.codec.encoder" in GRAPH["imfcodec.api"]
    assert "imfcodec.model" in GRAPH["imfcodec.train.trainer"]          # a function-level import
    assert "imfcodec.media.keyframe" in GRAPH["imfcodec.cli"]


def test_no_import_cycles():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_a_made_up_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in GRAPH[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


@pytest.mark.parametrize("layer", ["imfcodec.codec.encoder", "imfcodec.codec.decoder", "imfcodec.codec.multi",
                                   "imfcodec.codec.framing", "imfcodec.model", "imfcodec.api"])
def test_the_codec_never_imports_training_or_the_cli(layer):
    bad = {m for m in _reaches(layer) if m.startswith(("imfcodec.train", "imfcodec.export", "imfcodec.cli"))}
    assert not bad, f"{layer} reaches {sorted(bad)}"


@pytest.mark.parametrize("light", ["imfcodec.options", "imfcodec.format.container", "imfcodec.format.streaminfo"])
def test_light_modules_stay_light(light):
    """options and the container import no networks (the CLI checks a command line with them)."""
    heavy = {"imfcodec.model", "imfcodec.entropy", "imfcodec.models.imf", "imfcodec.metrics", "imfcodec.media.video"}
    assert not (_reaches(light) | {light}) & heavy


def test_the_package_lists_the_api():
    import imfcodec
    import imfcodec.api as api
    assert sorted(imfcodec._API) == sorted(api.__all__)
    assert set(api.__all__) <= set(dir(imfcodec))
    assert all(getattr(imfcodec, n) is getattr(api, n) for n in api.__all__)


def _run(*args, code=None):
    """imfcodec's CLI in a fresh interpreter: (exit status, stdout, stderr, torch loaded?)."""
    script = ("import sys, runpy\n"
              "sys.argv = ['imfcodec', *sys.argv[1:]]\n"
              "try:\n"
              "    from imfcodec.cli import main\n"
              "    rc = main()\n"
              "except SystemExit as e:\n"
              "    rc = e.code\n"
              "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
              "sys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    *err, marker = out.stderr.strip().splitlines()
    return out.returncode, out.stdout, err, marker == "TORCH"


def test_models_lists_without_torch():
    code, out, err, torch_loaded = _run("models")
    assert code == 0 and not err and not torch_loaded
    assert out.strip()


@pytest.fixture(scope="module")
def good_imf(tmp_path_factory, tiny_model):
    from conftest import moving_pattern
    from imfcodec import api
    path = tmp_path_factory.mktemp("imf") / "good.imf"
    path.write_bytes(api.encode_frames(moving_pattern(3), 25, tiny_model, keyframe_codec="h264")[0])
    return path


@pytest.mark.parametrize("args, code, says", [
    (["encode", "{clip}", "{tmp}/o.imf", "--device", "gpu"], 2, "auto, cpu, cuda or cuda:N"),
    (["encode", "{clip}", "{tmp}/o.imf", "--quality", "9"], 2, "--quality"),
    (["encode", "{clip}", "{tmp}/o.imf", "--bogus"], 2, "--bogus"),
    (["encode", "{tmp}/missing.mp4", "{tmp}/o.imf"], 1, "no such file"),
    (["encode", "{clip}", "{tmp}/nowhere/o.imf"], 1, "output folder does not exist"),
    (["encode", "{clip}", "{tmp}/o.imf", "--size", "64x48"], 1, "--size"),
    (["encode", "{clip}", "{tmp}/o.imf", "--packet-frames", "0"], 2, "--packet-frames"),
    (["decode", "{tmp}/missing.imf", "{tmp}/o.mp4"], 1, "no such file"),
    (["decode", "{imf}", "{tmp}/nowhere/o.mp4"], 1, "output folder does not exist"),
    (["decode", "{imf}", "{tmp}/o.avi"], 1, "unsupported output type .avi"),
    (["decode", "{imf}", "{tmp}/o.mp4", "--device", "cuda:x"], 2, "unknown device"),
])
def test_cli_errors_answer_at_once_in_one_line(tmp_path, clip, good_imf, args, code, says):
    argv = [a.format(clip=clip, tmp=tmp_path, imf=good_imf) for a in args]
    got, out, err, torch_loaded = _run(*argv)
    assert got == code and len(err) == 1 and says in err[0], err
    assert not torch_loaded
    assert not list(tmp_path.glob("o.*"))


def test_help_answers_without_torch():
    code, out, err, torch_loaded = _run("encode", "--help")
    assert code == 0 and "--quality" in out and not torch_loaded


def test_info_json_lists_packets_only_when_asked(good_imf):
    import json
    code, out, err, torch_loaded = _run("info", good_imf, "--json")
    assert code == 0 and "packets" not in json.loads(out) and not torch_loaded
    code, out, err, _ = _run("info", good_imf, "--json", "--packets")
    assert code == 0 and [p["type"] for p in json.loads(out)["packets"]][0] == "keyframe"
