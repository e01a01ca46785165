"""Loading codec models: generator + entropy tables + config + quality table, in one file.

What the decoder needs. Making model files (export, calibration) is
:mod:`imfcodec.export`, the trainer's side.

A model file is a ``torch.save`` dict of tensors and plain data, loaded with
``weights_only=True``; it is identified in streams by its name (``model_id``) and the first
8 bytes of the sha256 of the file. Shipped models live in ``imfcodec/weights/<name>.pt``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import checkpoint_generator_state, is_training_checkpoint
from .codec.ladder import CRF_KEYS, DEFAULT_BASE_LADDER, DEFAULT_QUALITY_TABLE, quality_table_for
from .config import ConfigError, ModelConfig, from_dict
from .entropy import QUALITY_LEVELS, TokenEntropyModel, resize_buffers_for
from .errors import IMFCodecError, describe
from .models.imf import IMFGenerator
from .options import DEFAULT_MODEL, PRECISIONS, check_device, shipped_models

MODEL_FORMAT = "imfcodec-model"
MODEL_FORMAT_VERSION = 1
# the quality ladder's tables (what a model file without a key takes): imfcodec/codec/ladder.py


class ModelError(IMFCodecError, ValueError):
    """A model file that cannot be used (missing, not a model, wrong model for a stream)."""


@dataclass
class CodecModel:
    model_id: str
    sha256: str
    config: ModelConfig
    generator: IMFGenerator
    entropy: TokenEntropyModel
    quality_table: list
    device: torch.device
    meta: dict
    dtype: torch.dtype = torch.float32      # what the networks compute in (resolve_precision)

    @property
    def hash8(self) -> bytes:
        return bytes.fromhex(self.sha256[:16])

    def step_mult(self, quality: int) -> float:
        return float(self.quality_table[quality - 1]["step_mult"])

    def _ladder(self, quality: int, key: str, defaults: list = DEFAULT_QUALITY_TABLE):
        """The model's value of a quality-table key; older files lack the ladder keys
        (crf_vp9, refresh_drop, min_keyframe_interval) and take ``defaults``' (the base-layer
        keys: DEFAULT_BASE_LADDER's)."""
        return self.quality_table[quality - 1].get(key, defaults[quality - 1][key])

    def _base_chain(self, quality: int, codec: str | None, base: bool) -> dict:
        """The AV1 chain's own base-layer ladder entry (crf, min_keyframe_interval) when the
        base layer is on and the keyframes are that chain; {} otherwise."""
        if not base or codec != "av1-chain":
            return {}
        return dict(self._ladder(quality, "base_av1_chain", DEFAULT_BASE_LADDER))

    def keyframe_crf(self, quality: int, codec: str, base: bool = False) -> int:
        """The level's keyframe CRF for ``codec``; with ``base``, for coding with the base layer on."""
        chain = self._base_chain(quality, codec, base)
        return int(chain["crf"] if chain else self._ladder(quality, CRF_KEYS[codec]))

    def refresh_drop(self, quality: int) -> float:
        return float(self._ladder(quality, "refresh_drop"))

    def min_keyframe_interval(self, quality: int, base: bool = False, codec: str | None = None) -> float:
        """The refresh rule's min keyframe interval at this level: the token-only one, or with
        ``base`` the one it uses with its base layer on (``base_min_keyframe_interval``; with
        the AV1 chain as ``codec``, that chain's own)."""
        chain = self._base_chain(quality, codec, base)
        if chain:
            return float(chain["min_keyframe_interval"])
        if base:
            return float(self._ladder(quality, "base_min_keyframe_interval", DEFAULT_BASE_LADDER))
        return float(self._ladder(quality, "min_keyframe_interval"))

    def base_size(self, quality: int) -> int:
        """The base picture's side at this level; 0 (also for files without the key): the
        level is token-only."""
        return int(self.quality_table[quality - 1].get("base_size", 0)) if self.has_base_layer else 0

    def base_layer_at(self, quality: int, mode: str = "auto") -> bool:
        """Whether the encoder codes a base layer at this level under ``--base-layer mode``
        without a size override: auto and on where the level has a base picture size (on
        refuses a level without one), never with off (imfcodec.codec.encoder.Encoder)."""
        return mode != "off" and self.base_size(quality) > 0

    def base_crf(self, quality: int) -> int:
        return int(self._ladder(quality, "base_crf", DEFAULT_BASE_LADDER))

    def base_anchor(self, quality: int) -> int:
        """The keyframe anchor's threshold (1/1000) at this level with its base layer; 0: none."""
        return int(self._ladder(quality, "base_anchor", DEFAULT_BASE_LADDER))

    def compute(self):
        """Context for the reference and frame networks: bf16 autocast when the model runs in
        bf16, nothing otherwise."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def reference(self, x_r: torch.Tensor, q_r: torch.Tensor, mult: float):
        """The keyframe's cached reference from its picture and quantized token, in the
        model's precision. Encoder and decoder both go through here (and :meth:`decode`),
        so the closed loop sees what the decoder will show."""
        with self.compute():
            return self.generator.prepare_reference(x_r, self.generator.dequantize(q_r, mult))

    @property
    def has_base_layer(self) -> bool:
        """Whether D_F can read a base-layer picture (issue 15's models)."""
        return self.config.base_channels > 0

    def decode(self, q: torch.Tensor, mult: float, ref, base: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (B, 3, S, S) float32 from quantized tokens (B, C) and a :meth:`reference`;
        ``base``: the frames' decoded base-layer pictures (B, 3, b, b) in [0, 1], or None."""
        with self.compute():
            return self.generator.decode_frame(self.generator.dequantize(q, mult), ref, base).float()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (a string is
    checked by :func:`imfcodec.options.check_device`), or a torch.device."""
    if isinstance(device, str):
        check_device(device)
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA GPU is available")
    return dev


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX (Linux /proc/cpuinfo) and a oneDNN build that uses it. Elsewhere
    bf16 would be emulated, slower than fp32."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        flags = Path("/proc/cpuinfo").read_text().split()
    except Exception:   # not Linux, or a torch without the private check
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto': bf16 on a CPU that computes it natively (the shipped model's pictures stay
    within ~50 dB PSNR of fp32 and decoding is 1.5-2x faster: bench/speed.py), else fp32.
    'fp32' / 'bf16' force one."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and _cpu_has_native_bf16() else torch.float32
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    raise ModelError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def model_path(name_or_path: str | os.PathLike | None) -> Path:
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
        if DEFAULT_MODEL not in shipped_models():
            raise ModelError(f"no default model is installed (imfcodec/weights/{DEFAULT_MODEL}.pt is "
                             "missing); pass --model PATH to a model made by `imfcodec export`")
    p = Path(name_or_path)
    if p.exists():
        if p.is_dir():
            raise ModelError(f"{p}: is a directory, not a model file")
        return p
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    known = ", ".join(shipped) or "none installed"
    raise ModelError(f"model {str(name_or_path)!r} not found: not a file, and not a shipped model ({known})")


def load_torch_file(path, data: bytes | None = None, what: str = "an imfcodec model file"):
    """``torch.load(weights_only=True)`` of a file a user hands us, with an error that says
    which thing is wrong: not a PyTorch archive at all, or an archive this torch does not
    load (damaged, or written by another torch version). Whether the object loaded is ours
    is the caller's check."""
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{path}: no such file") from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelError(f"{path}: not {what} (not a PyTorch archive)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:     # weights_only refuses an object in the archive
        raise ModelError(f"{path}: a PyTorch archive holding objects torch {torch.__version__} will "
                         f"not load safely ({describe(e)}); if imfcodec wrote it, another torch "
                         f"version may read it, else it is not {what}") from None
    except Exception as e:  # torch's reader of a damaged or foreign archive raises many types
        raise ModelError(f"{path}: a PyTorch archive that torch {torch.__version__} cannot load "
                         f"({describe(e)}); it is damaged or needs another "
                         f"torch version") from None


def load_model(name_or_path=None, device="auto", precision="auto") -> CodecModel:
    """Load a model by shipped name (``imf-cpu``) or file path; None means the default.
    ``precision``: auto, fp32 or bf16 (:func:`resolve_precision`)."""
    path = model_path(name_or_path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    blob = load_torch_file(path, data)
    if not _is_model_blob(blob):
        if is_training_checkpoint(blob):
            # its entropy tables would be built here from float weights, and could differ from
            # machine to machine while the stream's hash (of this file) vouches for them
            raise ModelError(f"{path}: a training checkpoint, not a model file; make one with "
                             f"`imfcodec export {path} MODEL.pt` and pass --model MODEL.pt")
        raise ModelError(f"{path}: not an imfcodec model file (a PyTorch archive without "
                         f"imfcodec's format tag)")
    if blob.get("version") != MODEL_FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {blob.get('version')} is not supported")
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    state = _generator_state(path, blob)
    try:
        cfg = from_dict(ModelConfig, blob["config"], where=str(path))
        gen = IMFGenerator(cfg)
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        ent = TokenEntropyModel(cfg.token_dim)
        resize_buffers_for(ent, blob["entropy"])
        ent.load_state_dict(blob["entropy"])
    except (KeyError, RuntimeError, ConfigError) as e:
        raise ModelError(f"{path}: model file is damaged or does not match its config "
                         f"({str(e).splitlines()[0][:120]})") from None
    gen.eval().requires_grad_(False).to(dev)
    if dev.type == "cpu":
        gen.frame_decoder.use_channels_last()
    return CodecModel(blob["model_id"], sha, cfg, gen, ent, _check_quality_table(path, blob.get("quality_table")),
                      dev, dict(blob.get("meta", {})), dtype)


# the quality-table keys the encoder reads as numbers (CodecModel's ladder methods)
LADDER_NUMBER_KEYS = ("step_mult", "keyframe_crf", "crf_h26x", "crf_vp9", "crf_av1_chain", "refresh_drop",
                      "min_keyframe_interval", "base_size", "base_crf", "base_min_keyframe_interval", "base_anchor")


def _check_quality_table(path, table) -> list:
    """The file's quality table as the codec reads it: QUALITY_LEVELS dicts of finite numbers,
    a positive step_mult, and `base_av1_chain` (if there) a dict of its two numbers; anything
    else is a damaged file, refused with one line here rather than a traceback mid-encode."""
    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def level_ok(r):
        if not (isinstance(r, dict) and num(r.get("step_mult")) and r["step_mult"] > 0
                and all(num(r[k]) for k in LADDER_NUMBER_KEYS if k in r)):
            return False
        chain = r.get("base_av1_chain")
        return chain is None or (isinstance(chain, dict)
                                 and all(num(chain.get(k)) for k in ("crf", "min_keyframe_interval")))

    if not (isinstance(table, (list, tuple)) and len(table) == QUALITY_LEVELS and all(map(level_ok, table))):
        raise ModelError(f"{path}: model file is damaged (its quality table is not {QUALITY_LEVELS} "
                         f"levels of numbers)")
    return list(table)


def _generator_state(path: Path, blob: dict) -> dict:
    """The generator's tensors. An extension model file (``blob["parent"]``: the model_id
    and sha256 of another model file) holds only the tensors it adds or changes, e.g. the
    base-layer stems trained on a frozen imf-cpu: the rest come from the parent, found
    beside the file or among the shipped models and checked against its sha256. One level
    only: a parent that is itself an extension is refused."""
    parent = blob.get("parent")
    if parent is None:
        return blob.get("generator", {})
    try:
        pid, psha = str(parent["model_id"]), str(parent["sha256"])
    except (KeyError, TypeError):
        raise ModelError(f"{path}: model file is damaged (bad parent record)") from None
    shipped = shipped_models()
    candidates = [path.parent / f"{pid}.pt"] + ([shipped[pid]] if pid in shipped else [])
    for cand in candidates:
        if cand.is_file():
            data = cand.read_bytes()
            if hashlib.sha256(data).hexdigest() == psha:
                pblob = load_torch_file(cand, data)
                if not _is_model_blob(pblob) or pblob.get("parent") is not None:
                    raise ModelError(f"{path}: its parent {cand} is not a plain imfcodec model file")
                return {**pblob.get("generator", {}), **blob.get("generator", {})}
    raise ModelError(f"{path}: extends model {pid!r} (sha256 {psha[:16]}), which is neither beside it "
                     f"nor shipped with this imfcodec")


def _is_model_blob(blob) -> bool:
    return isinstance(blob, dict) and blob.get("format") == MODEL_FORMAT


def generator_from_checkpoint(ck: dict, path) -> IMFGenerator:
    """The generator a training checkpoint stands for (eval mode), or a ModelError."""
    try:
        cfg = from_dict(ModelConfig, ck["model_config"], where=str(path))
        gen = IMFGenerator(cfg)
        gen.load_state_dict(checkpoint_generator_state(ck))
    except (KeyError, RuntimeError, ConfigError) as e:
        raise ModelError(f"{path}: damaged training checkpoint ({str(e).splitlines()[0][:120]})") from None
    return gen.eval()




def build_entropy(gen: IMFGenerator, quality_table, delta_std=None) -> TokenEntropyModel:
    """Integer tables for every quality level: symbol std = σ_c / (Δ_c · mult_q), with σ the
    measured delta std when given, else the trained rate model's exp(log_sigma)."""
    sigma = delta_std if delta_std is not None else gen.log_sigma.detach().exp()
    mults = torch.tensor([r["step_mult"] for r in quality_table]).view(-1, 1)
    sym = sigma.view(1, -1) / (gen.log_step.detach().exp().view(1, -1) * mults)
    ent = TokenEntropyModel(gen.cfg.token_dim, len(quality_table))
    ent.update(sym)
    return ent


def random_model(config: ModelConfig, seed: int = 0, device="cpu", precision="auto") -> CodecModel:
    """An untrained model (for tests and speed benchmarks), entropy tables from its init."""
    torch.manual_seed(seed)
    gen = IMFGenerator(config).eval().requires_grad_(False)
    table = quality_table_for(config)
    ent = build_entropy(gen, table)
    if torch.device(device).type == "cpu":
        gen.frame_decoder.use_channels_last()
    return CodecModel(config.name, hashlib.sha256(f"random-{config.name}-{seed}".encode()).hexdigest(),
                      config, gen.to(device), ent, table, torch.device(device), {},
                      resolve_precision(precision, torch.device(device)))
