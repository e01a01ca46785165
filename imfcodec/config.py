"""Configs are data: YAML files validated into frozen dataclasses.

A config's keys are exactly the dataclass fields; an unknown key, a missing required key
or a value of the wrong type is a :class:`ConfigError` with one clear line. The validated
config is stored (as a plain dict) inside every checkpoint and exported model.

A YAML file may name a parent (``parent: other.yaml``, a path relative to the file) and hold
only what differs from it: :func:`load_yaml` deep-merges the chain, child over parent.
Relative ``model:`` paths keep pointing where their own file meant.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import IMFCodecError

class ConfigError(IMFCodecError, ValueError):
    """A config file or dict that does not describe a valid config."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the IMF networks (PAPER.md, "Architecture details").

    Per-scale tuples run from the finest feature scale (l = 1) to the coarsest (l = 4).
    """

    name: str
    image_size: int = 256                 # frames are coded at image_size x image_size
    token_dim: int = 32                   # d_m, length of the latent token t
    # E_T, latent token encoder
    token_stem: str = "conv"              # "conv": ConvLayer at full res; "unshuffle": PixelUnshuffle(4)
    token_channels: tuple = (64, 128, 256, 512, 512, 512)   # one ResBlock (/2) each, down to 4x4
    token_mlp_dim: int = 512
    token_mlp_layers: int = 4
    # E_F, dense feature encoder
    dense_stem: str = "conv7"             # "conv7": 7x7 conv at full res; "unshuffle": PixelUnshuffle(2)
    dense_stem_channels: int = 64
    dense_channels: tuple = (64, 128, 256, 512, 512)        # DownConvResBlocks, each /2
    dense_res_blocks: int = 2             # FeatResBlocks per DownConvResBlock
    feature_sizes: tuple = (64, 32, 16, 8)                 # spatial size of f^1..f^4
    # IMF_D, latent token decoder (StyleGAN2-like)
    style_dim: int = 512
    style_mlp_layers: int = 2
    motion_trunk_channels: tuple = (256, 512, 512, 512)    # trunk width at each feature size
    motion_channels: tuple = (256, 512, 512, 512)          # m^1..m^4 channels
    # IMF_A, implicit motion alignment
    # per scale: "attn" (cross-attention), "borrow" (aligned with the attention map of the
    # next coarser scale, 2x2 blocks of f_r as one value; no parameters) or "skip" (f_r passed
    # through unaligned: a shortcut that lets the decoder ignore the motion; avoid)
    align_mode: tuple = ("attn", "attn", "attn", "attn")
    attn_dim: tuple = (256, 256, 512, 512)                 # width of Q/K/V per scale
    attn_heads: tuple = (4, 4, 8, 8)
    transformer_blocks: tuple = (4, 4, 4, 4)
    ffn_mult: int = 4
    # D_F, frame decoder
    decoder_channels: tuple = (256, 512, 512, 512)         # width at each feature size
    decoder_skip_blocks: int = 3          # FeatResBlocks on each f_c^l before concatenation
    decoder_up_channels: tuple = (128, 64)                 # extra UpConv stages above f^1 size
    decoder_out_shuffle: int = 1          # >1: last stage predicts 3*s*s channels + PixelShuffle(s)
    norm: str = "batch"                   # "batch" | "group" | "none" in E_F/D_F res blocks
    # base layer (issue 15): D_F also reads a decoded low-resolution picture of the current
    # frame (any size; resized inside) through zero-initialised stems at the f^1 size and at
    # each extra up stage. 0: no base-layer input (the paper's token-only decoder).
    base_channels: int = 0
    # ... and IMF_A's queries read it too: a zero-initialised stem per attention scale adds
    # the picture to m_c (the current frame's motion features) before they are compared with
    # the reference's, so the base layer can steer where each position looks, not only
    # repaint what alignment brought. 0: none (needs base_channels).
    base_query_channels: int = 0
    # ... and the keyframe's own pixels, moved by IMF_A (the 'borrow' scale's attention moves
    # one block of pixels per token of the scale it borrows from), are blended into D_F's
    # frame by a gate that starts at zero: the detail that 64x64 reference features cannot
    # carry. The gate network's width; 0: none (needs base_channels and a 'borrow' finest
    # scale).
    ref_pixel_channels: int = 0
    # discriminator (two-scale patch GAN)
    disc_channels: tuple = (64, 128, 256, 512)
    disc_scales: int = 2

    def __post_init__(self):
        n = len(self.feature_sizes)
        for key in ("motion_trunk_channels", "motion_channels", "align_mode", "attn_dim",
                    "attn_heads", "transformer_blocks", "decoder_channels"):
            if len(getattr(self, key)) != n:
                raise ConfigError(f"model config {self.name!r}: {key} needs {n} entries "
                                  f"(one per feature size), got {len(getattr(self, key))}")
        if list(self.feature_sizes) != sorted(self.feature_sizes, reverse=True):
            raise ConfigError("feature_sizes must run from the finest scale to the coarsest")
        for i, m in enumerate(self.align_mode):
            if m not in ("attn", "borrow", "skip"):
                raise ConfigError(f"align_mode entries must be 'attn', 'borrow' or 'skip', got {m!r}")
            if m == "borrow" and not (i + 1 < n and self.align_mode[i + 1] == "attn"
                                      and self.feature_sizes[i] == 2 * self.feature_sizes[i + 1]):
                raise ConfigError("align_mode 'borrow' needs the next coarser scale to be 'attn' "
                                  "at half the size")
        for d, h in zip(self.attn_dim, self.attn_heads):
            if d % h:
                raise ConfigError(f"attn_dim {d} is not divisible by attn_heads {h}")
        if self.base_channels < 0:
            raise ConfigError(f"base_channels must be 0 (no base layer) or more, got {self.base_channels}")
        if self.base_query_channels < 0 or (self.base_query_channels and not self.base_channels):
            raise ConfigError("base_query_channels must be 0, or more with base_channels > 0, "
                              f"got {self.base_query_channels}")
        if self.ref_pixel_channels < 0 or (self.ref_pixel_channels and not (
                self.base_channels and self.align_mode[0] == "borrow")):
            raise ConfigError("ref_pixel_channels must be 0, or more with base_channels > 0 and a "
                              f"'borrow' finest scale, got {self.ref_pixel_channels}")
        if self.token_stem not in ("conv", "unshuffle"):
            raise ConfigError(f"token_stem must be 'conv' or 'unshuffle', got {self.token_stem!r}")
        if self.dense_stem not in ("conv7", "unshuffle"):
            raise ConfigError(f"dense_stem must be 'conv7' or 'unshuffle', got {self.dense_stem!r}")
        if self.norm not in ("batch", "group", "none"):
            raise ConfigError(f"norm must be batch, group or none, got {self.norm!r}")
        top = self.feature_sizes[0] * 2 ** len(self.decoder_up_channels) * self.decoder_out_shuffle
        if top != self.image_size:
            raise ConfigError(f"decoder reaches {top}x{top}, not image_size {self.image_size}: "
                              "adjust decoder_up_channels or decoder_out_shuffle")
        if self.image_size % 4 or self.image_size // 2 ** len(self.token_channels) != 4 * (
                1 if self.token_stem == "conv" else 4):
            raise ConfigError("token_channels must bring the image down to 4x4 "
                              "(one /2 per entry, after a /4 stem when token_stem is unshuffle)")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe (PAPER.md, "Training"). The model is named by a model config."""

    model: str                              # a model config name or a path to its YAML
    batch_size: int = 8                     # total over all processes
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)
    disc_lr: float = 2e-4
    loss_l1: float = 10.0
    loss_perceptual: float = 10.0
    loss_gan: float = 1.0
    perceptual_size: int = 256              # frames are resized to this before VGG
    perceptual_scales: int = 4              # the frame and 3 successive /2 downsamplings
    perceptual_start: int = 0               # step at which the VGG term switches on
    # the perceptual term's network: "vgg" (the paper's multi-scale VGG16 feature L1) or
    # "lpips-alex" (LPIPS v0.1 on AlexNet at the frame's size, ~20x cheaper on a CPU; it is
    # also the bench's headline metric, so a model trained with it must be judged on DISTS
    # and PSNR as well)
    perceptual_net: str = "vgg"
    gan_start: int = 0                      # step at which the GAN terms switch on
    rate_lambda: float = 0.01               # weight of estimated token bits per frame
    rate_start: int = 0                     # step at which the rate term switches on
    # learning rate of the equalized-learning-rate layers (unit-variance weights scaled at
    # run time: E_T and IMF_D, StyleGAN/LIA style; None: lr). Adam moves every weight about
    # lr per step, so at one shared lr these learn 20-100x slower, relative to their size,
    # than the plainly initialised layers: StyleGAN2 and LIA train them at 2e-3.
    equalized_lr: float | None = None
    # learning rate of the rate model's per-channel log sigma (None: lr). Adam moves a
    # parameter about lr per step: at 2e-4 it could drift only 0.3 in 1,500 steps.
    sigma_lr: float | None = None
    # learning rate of the quantizer's log step (None: lr; 0: frozen). Through the
    # straight-through rounding only the rate term sees the step clearly, so a learned
    # step only grows, until every token rounds to the keyframe's: freeze it and let the
    # token encoder learn the token's scale instead.
    step_lr: float | None = None
    # with --init: reset the quantizer to this log step / log sigma (None: keep)
    init_log_step: float | None = None
    init_log_sigma: float | None = None
    # with --init: generator parts to start afresh (e.g. [token_encoder, token_decoder])
    init_reset: tuple = ()
    step_mult_range: tuple = (0.25, 2.83)   # token step multipliers sampled (log-uniform)
    max_gap: int = 60                       # reference/current frame gap range (frames)
    color_jitter: float = 0.05
    scale_jitter: float = 0.05
    max_steps: int = 1000
    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 100
    val_frames: int = 24                    # frames per val clip (reference = first)
    workers: int = 0
    seed: int = 0
    grad_clip: float = 10.0
    # decay of an exponential moving average of the generator's weights (0: none). The
    # average is validated, picked as best.pt and exported instead of the raw weights: a
    # GAN's raw weights swing from step to step (val LPIPS 0.104 -> 0.128 in 250 steps at
    # batch 8). It never feeds back into training, so it may be switched on when resuming.
    ema_decay: float = 0.0
    # step decay of every learning rate (generator and discriminator): a list of
    # [step, factor]; from each step on the rates are multiplied by its factor (the factors
    # of earlier entries included). Entries at steps a run has not reached yet may be added
    # or changed when resuming: they change nothing the weights have seen.
    lr_drops: tuple = ()
    # share of training references replaced by what the decoder gets: the frame coded as a
    # VP9 key picture (the codec's keyframe encoder) at a CRF drawn from ref_crf (inclusive).
    # Without it the model only ever sees pristine references, but every reference it
    # warps from in use is a lossy keyframe (imf-cpu step 7000: val LPIPS 0.0924 with the
    # pristine first frame, 0.1292 with it coded at CRF 38; bench/coded_reference.py).
    ref_coding: float = 0.0
    ref_crf: tuple = (26, 46)
    ref_coding_start: int = 0               # step at which coded references start
    # > 0: validate with the first frame coded this way at this CRF (38 = the default
    # level's), as the codec does; 0: the pristine frame
    val_ref_crf: int = 0
    # what picks best.pt: "lpips" (val LPIPS; training stops with an error when the LPIPS
    # weights do not load: `imfcodec fetch-weights`) or "psnr" (val PSNR, LPIPS not computed)
    val_metric: str = "lpips"
    # how a non-square clip becomes a square training clip: "centre" crop, or "face": the
    # square of side min(width, height) around the median face centre (imfcodec.codec.framing's
    # locator), the crop face-framed coding gives the model (docs/design.md, "Non-square video")
    data_crop: str = "centre"
    # base layer (issue 15; needs a model with base_channels): every training frame comes
    # with its base picture as the decoder gets it, the frame and the one before it scaled
    # to a size drawn from base_sizes and coded as a two-picture VP9 base stream
    # (imfcodec.media.baselayer.code_chain) at a CRF drawn from base_crf (inclusive). A share
    # base_dropout of the batches goes without, so the token-only path stays trained.
    base_sizes: tuple = ()
    base_crf: tuple = (40, 63)
    base_dropout: float = 0.0
    val_base: tuple = ()                   # [size, crf] of validation's base pictures
    # generator parts that train (module paths, e.g. [frame_decoder.base_stems]); the rest keep their weights and
    # their batch-norm statistics. Empty: everything trains.
    train_parts: tuple = ()

    def __post_init__(self):
        if any(s not in (16, 24, 32, 48, 64, 96, 128) for s in self.base_sizes):
            raise ConfigError(f"base_sizes must come from 16, 24, 32, 48, 64, 96, 128, got {list(self.base_sizes)}")
        if len(self.base_crf) != 2 or not 0 <= self.base_crf[0] <= self.base_crf[1] <= 63:
            raise ConfigError(f"base_crf must be [low, high] VP9 CRFs, got {list(self.base_crf)}")
        if not 0.0 <= self.base_dropout < 1.0:
            raise ConfigError(f"base_dropout must be in [0, 1), got {self.base_dropout}")
        if self.val_base and len(self.val_base) != 2:
            raise ConfigError(f"val_base must be [size, crf], got {list(self.val_base)}")
        if self.perceptual_net not in ("vgg", "lpips-alex"):
            raise ConfigError(f"perceptual_net must be vgg or lpips-alex, got {self.perceptual_net!r}")
        if self.data_crop not in ("centre", "face"):
            raise ConfigError(f"data_crop must be centre or face, got {self.data_crop!r}")
        drops = []
        for d in self.lr_drops:
            if (not isinstance(d, (list, tuple)) or len(d) != 2 or isinstance(d[0], bool)
                    or not isinstance(d[0], int) or d[0] < 0
                    or isinstance(d[1], bool) or not isinstance(d[1], (int, float)) or not d[1] > 0):
                raise ConfigError(f"lr_drops: each entry must be [step, factor] with an integer "
                                  f"step >= 0 and a factor > 0, got {d!r}")
            drops.append((d[0], float(d[1])))
        if [s for s, _ in drops] != sorted({s for s, _ in drops}):
            raise ConfigError("lr_drops: steps must be increasing")
        object.__setattr__(self, "lr_drops", tuple(drops))
        if not 0.0 <= self.ref_coding <= 1.0:
            raise ConfigError(f"ref_coding must be between 0 and 1, got {self.ref_coding}")
        if (len(self.ref_crf) != 2 or not all(isinstance(c, int) and not isinstance(c, bool)
                                              for c in self.ref_crf)
                or not 0 <= self.ref_crf[0] <= self.ref_crf[1] <= 63):
            raise ConfigError(f"ref_crf must be [low, high] VP9 CRFs, 0 <= low <= high <= 63, "
                              f"got {list(self.ref_crf)}")
        if self.val_metric not in ("lpips", "psnr"):
            raise ConfigError(f"val_metric must be lpips or psnr, got {self.val_metric!r}")
        if not 0 <= self.val_ref_crf <= 63:
            raise ConfigError(f"val_ref_crf must be 0 (pristine) or a VP9 CRF up to 63, "
                              f"got {self.val_ref_crf}")

    def lr_factor(self, step: int) -> float:
        """The multiplier of every learning rate for the update made at ``step`` (0-based)."""
        f = 1.0
        for s, factor in self.lr_drops:
            if step >= s:
                f *= factor
        return f


def _coerce(cls, key: str, typ: Any, value: Any, where: str):
    origin = typing.get_origin(typ) or typ
    if typ in ("tuple", tuple) or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return tuple(value)
    if typ in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if typ == "float | None":
        return None if value is None else _coerce(cls, key, float, value, where)
    if typ in ("float", float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if typ in ("str", str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: Mapping[str, Any], where: str = "config"):
    """Validate ``data`` into the frozen dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(cls, name, f.type, data[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive
        raise ConfigError(f"{where}: {e}") from None


def to_dict(cfg) -> dict:
    """Plain-data form, stored inside checkpoints (lists, not tuples, for YAML/JSON)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


PARENT_KEY = "parent"
PATH_KEYS = ("model",)      # values that are paths relative to the file that states them


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return data if data is not None else {}


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; dicts merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def load_yaml(path: str | Path, _chain: tuple = ()) -> dict:
    """A config file as a dict, its ``parent:`` chain resolved (child keys over parent keys,
    dicts deep-merged). A missing parent or a cycle is one :class:`ConfigError`."""
    path = Path(path)
    if path.resolve() in _chain:
        names = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{_chain[0]}: parent cycle: {names}")
    data = _read_yaml(path)
    if not isinstance(data, dict) or PARENT_KEY not in data:
        return data
    parent = data.pop(PARENT_KEY)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: parent must be a file path, got {parent!r}")
    ppath = path.parent / parent
    if not ppath.is_file():
        raise ConfigError(f"{path}: parent config {parent!r} not found (looked at {ppath})")
    base = load_yaml(ppath, (*_chain, path.resolve()))
    for k in PATH_KEYS:         # the parent's relative paths, made relative to this file
        v = base.get(k)
        if isinstance(v, str) and not Path(v).is_absolute() and ppath.parent.resolve() != path.parent.resolve():
            base[k] = os.path.relpath(ppath.parent.resolve() / v, path.parent.resolve())
    return _merge(base, data)


def load_model_config(path: str | Path) -> ModelConfig:
    """A model config from its YAML file (``configs/model/*.yaml``)."""
    return from_dict(ModelConfig, load_yaml(path), where=str(path))


def load_train_config(path: str | Path) -> TrainConfig:
    """A training recipe; its ``model`` key is a model YAML path relative to the recipe."""
    path = Path(path)
    cfg = from_dict(TrainConfig, load_yaml(path), where=str(path))
    model_path = Path(cfg.model)
    if not model_path.is_absolute():
        model_path = (path.parent / model_path).resolve()
    if not model_path.exists():
        raise ConfigError(f"{path}: model config {cfg.model!r} not found (looked at {model_path})")
    return dataclasses.replace(cfg, model=str(model_path))
