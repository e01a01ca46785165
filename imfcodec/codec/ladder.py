"""The quality ladder: what each quality level 1..8 codes with.

Per level: the token step multiplier, the keyframe CRF of each keyframe codec, the refresh
rule (drop in dB, min keyframe interval) and, for a model whose D_F reads a base picture,
the base layer's picture side and VP9 CRF. Every exported model file stores its own
quality table; the tables below are what a file without a key takes (and what export
writes). How they were chosen: docs/notes/quality-ladder.md and tools/results/ladder_base/.

:func:`level_settings` resolves a model's table and the encoder's options once into a
frozen :class:`LevelSettings`, which is all the encoder reads of the ladder.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError
from ..format.container import BASE_SIZES, MAX_ANCHOR
from ..options import QUALITIES, base_layer_mode

# ---- the token-only ladder ----------------------------------------------------------------
VP9_CRF_OFFSET = -6     # VP9 (qmin = crf) at AV1's CRF - 6: about the same PSNR (bench/keyframe_chain.py)
LADDER_VP9_CRF = (45, 42, 40, 38, 35, 32, 29, 26)                     # bench/tune_ladder.py
LADDER_REFRESH_DROP_DB = (6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 5.0, 4.0)
LADDER_MIN_KEYFRAME_INTERVAL_S = (2.0, 2.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5)
# the SVT-AV1 chain: the VP9 CRF + 8 (about the same LPIPS), + 4 at q8 to reach as far up
LADDER_AV1_CHAIN_CRF = (53, 50, 48, 46, 43, 40, 37, 30)
CRF_KEYS = {"av1": "keyframe_crf", "vp9": "crf_vp9", "hevc": "crf_h26x", "h264": "crf_h26x",
            "av1-chain": "crf_av1_chain"}
DEFAULT_QUALITY_TABLE = [
    {"quality": q, "step_mult": round(2 ** ((4 - q) / 2), 4),       # halves every two levels
     "keyframe_crf": 50 - 4 * (q - 1), "crf_h26x": 42 - 3 * (q - 1),
     "crf_vp9": LADDER_VP9_CRF[q - 1], "crf_av1_chain": LADDER_AV1_CHAIN_CRF[q - 1],
     "refresh_drop": LADDER_REFRESH_DROP_DB[q - 1],
     "min_keyframe_interval": LADDER_MIN_KEYFRAME_INTERVAL_S[q - 1]}
    for q in QUALITIES
]

# ---- the base layer's ladder (models with config.base_channels > 0) -------------------------
# side 0: a token-only level (q1, the paper's codec as the floor); bench/results/ladder_base/sweep.txt
BASE_LADDER_SIZE = (0, 48, 48, 48, 48, 48, 64, 64)
BASE_LADDER_CRF = (63, 63, 60, 56, 50, 44, 40, 36)
# refreshing sooner buys quality from q5 up; bench/results/ladder_base/interval_sweep.txt
BASE_LADDER_MIN_KEYFRAME_INTERVAL_S = (2.0, 2.0, 1.0, 0.5, 0.33, 0.25, 0.16, 0.08)
# with the AV1 chain (cheaper keyframes): its own CRF and interval per level, quality-table
# key `base_av1_chain`; bench/results/ladder_base/av1_chain_refresh_sweep.txt
BASE_AV1_CHAIN_CRF = LADDER_AV1_CHAIN_CRF
BASE_AV1_CHAIN_MIN_KEYFRAME_INTERVAL_S = (2.0, 1.0, 1.0, 0.33, 0.25, 0.16, 0.16, 0.08)
# the keyframe anchor's threshold in 1/1000 (imfcodec/codec/anchor.py; 0: none, the stream is
# version 5/6); it pays where the keyframe is sharper than the frames made from it, q6-q8
# (thresholds from training-clip sweeps): docs/notes/anchor.md, experiments/temporal_anchor/
BASE_LADDER_ANCHOR = (0, 0, 0, 0, 0, 20, 30, 30)
DEFAULT_BASE_LADDER = [
    {"base_size": BASE_LADDER_SIZE[q - 1], "base_crf": BASE_LADDER_CRF[q - 1],
     "base_anchor": BASE_LADDER_ANCHOR[q - 1],
     "base_min_keyframe_interval": BASE_LADDER_MIN_KEYFRAME_INTERVAL_S[q - 1],
     "base_av1_chain": {"crf": BASE_AV1_CHAIN_CRF[q - 1],
                        "min_keyframe_interval": BASE_AV1_CHAIN_MIN_KEYFRAME_INTERVAL_S[q - 1]}}
    for q in QUALITIES
]


def quality_table_for(config, table=None) -> list:
    """The quality table a model file of ``config`` (a ModelConfig) gets: ``table`` (default
    DEFAULT_QUALITY_TABLE) plus DEFAULT_BASE_LADDER's keys when D_F reads a base picture."""
    table = [dict(r) for r in (table or DEFAULT_QUALITY_TABLE)]
    if config.base_channels:
        table = [{**b, **r} for r, b in zip(table, DEFAULT_BASE_LADDER)]
    return table


@dataclass(frozen=True)
class LevelSettings:
    """One quality level of one model, as the encoder codes it (the options applied)."""

    quality: int
    step_mult: float                 # token step multiplier (Δ = exp(log_step) * step_mult)
    keyframe_codec: str
    keyframe_crf: int
    refresh_drop: float              # dB below the keyframe's own reconstruction; 0: never
    min_keyframe_interval: float     # seconds between refresh keyframes at least
    base_size: int = 0               # base picture side; 0: no base layer
    base_crf: int | None = None      # its VP9 CRF
    anchor: int = 0                  # keyframe anchor threshold in 1/1000 (codec/anchor.py); 0: none

    @property
    def base_layer(self) -> bool:
        return self.base_size > 0


def level_settings(model, options) -> LevelSettings:
    """The level ``options.quality`` of ``model`` (a CodecModel) under ``options`` (an
    :class:`imfcodec.options.EncoderOptions`): the model's quality table, each value an
    option sets replacing the table's. An OptionError where the base layer cannot be coded
    as asked."""
    q, codec = options.quality, options.keyframe_codec
    size, crf = _base_layer(model, options)
    on = size > 0
    anchor = _anchor(model, options) if on else 0
    return LevelSettings(
        quality=q, step_mult=model.step_mult(q), keyframe_codec=codec,
        keyframe_crf=model.keyframe_crf(q, codec, on) if options.keyframe_crf is None else options.keyframe_crf,
        refresh_drop=model.refresh_drop(q) if options.refresh_drop is None else options.refresh_drop,
        min_keyframe_interval=(model.min_keyframe_interval(q, base=on, codec=codec)
                               if options.min_keyframe_interval is None else options.min_keyframe_interval),
        base_size=size, base_crf=crf, anchor=anchor)


def _anchor(model, options) -> int:
    """The keyframe anchor's threshold (1/1000) of a level coded with its base layer."""
    a = model.base_anchor(options.quality) if options.anchor is None else options.anchor
    if not (isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= MAX_ANCHOR):
        raise OptionError(f"keyframe anchor must be an integer 0..{MAX_ANCHOR} (thousandths), got {a!r}")
    return a


def _base_layer(model, options) -> tuple[int, int | None]:
    """The base picture's side (0: none) and VP9 CRF, from the options and the ladder."""
    mode, m, q = base_layer_mode(options.base_layer), model, options.quality
    if mode == "off":
        return 0, None
    if not m.has_base_layer:
        if mode == "on":
            raise OptionError(f"--base-layer on needs a model whose decoder reads a base layer; "
                              f"model {m.model_id!r} is token-only")
        return 0, None
    size = m.base_size(q) if options.base_size is None else options.base_size
    if size == 0:
        if mode == "on":
            raise OptionError(f"quality {q} is a token-only level of model {m.model_id!r} (no base "
                              "picture size in its ladder); use --base-layer auto or another quality")
        return 0, None
    if size not in BASE_SIZES:
        raise OptionError(f"base picture size must be one of {', '.join(map(str, BASE_SIZES))}, "
                          f"got {size!r}")
    crf = m.base_crf(q) if options.base_crf is None else options.base_crf
    if not (isinstance(crf, int) and 0 <= crf <= 63):
        raise OptionError(f"base-layer CRF must be an integer 0..63, got {crf!r}")
    return size, crf
