"""Every user-facing option and its default, in one place: the CLI's choices, the API's
defaults and the codec's checks all read them here.

Imports nothing but the standard library and :mod:`imfcodec.errors` (no torch, no numpy),
so the CLI can check a command line and answer at once, before any network loads.
"""
from __future__ import annotations

import dataclasses
import operator
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

from .errors import OptionError

# ---- what is coded -----------------------------------------------------------------------
QUALITIES = range(1, 9)           # quality levels: 1 = fewest bits, 8 = best pictures
DEFAULT_QUALITY = 4
# the shipped model that encode uses without --model (decode takes the model a stream names)
DEFAULT_MODEL = "imf-cpu-base"

# keyframe codecs, as streams name them (imfcodec/format/container.py numbers them):
# av1-chain and vp9 predict refresh keyframes from the previous one, the others are intra
KEYFRAME_CODECS = ("av1", "hevc", "h264", "vp9", "av1-chain")
DEFAULT_KEYFRAME_CODEC = "av1-chain"
KEYFRAME_PRESETS = range(0, 14)   # SVT-AV1's presets (imfcodec.media.keyframe.preset_options)

# framing of a non-square source (imfcodec/codec/framing.py): auto = face from an aspect of
# 4:3 and a short side of 128 px, else stretch
FRAMINGS = ("auto", "face", "stretch")
# the base layer (format version 5): auto = where the model and the quality level have one;
# on = the same, or an error where they do not; off = the paper's token-only codec
BASE_LAYER_MODES = ("auto", "on", "off")
# the keyframe anchor's threshold (format versions 7, 8; imfcodec/codec/anchor.py): an integer
# 0..ANCHOR_MAX in 1/ANCHOR_SCALE of full scale; 0 = no anchor
ANCHOR_MAX = 255
ANCHOR_SCALE = 1000

DEFAULT_PACKET_FRAMES = 8         # token frames per packet
DEFAULT_MAX_KEYFRAME_INTERVAL_S = 10.0
# frames a reconstruction drop must last before a refresh keyframe (1: refresh at once)
DEFAULT_REFRESH_PERSIST = 1

# ---- how it runs -------------------------------------------------------------------------
PRECISIONS = ("auto", "fp32", "bf16")    # network arithmetic (imfcodec.model.resolve_precision)
DEVICES = "auto, cpu, cuda or cuda:N"    # what --device accepts (check_device)

# ---- files -------------------------------------------------------------------------------
PIPE = "-"                                # stdin as an input, stdout as an output
VIDEO_OUTPUTS = (".mp4", ".mkv", ".mov", ".y4m", ".yuv")   # decode's output types
RAW_INPUTS = (".yuv",)                    # inputs that need --size (and take --fps)


def shipped_models() -> dict[str, Path]:
    """The models shipped inside the package (``imfcodec/weights/<name>.pt``): name -> file."""
    root = resources.files("imfcodec") / "weights"
    out = {}
    try:
        for entry in root.iterdir():
            if entry.name.endswith(".pt"):
                out[entry.name[:-3]] = Path(str(entry))
    except FileNotFoundError:
        pass
    return dict(sorted(out.items()))


def check_quality(quality) -> int:
    """``quality`` as an int in :data:`QUALITIES`, or an OptionError."""
    try:
        q = operator.index(quality)
    except TypeError:
        q = None
    if q is None or q not in QUALITIES:
        raise OptionError(f"quality must be an integer {QUALITIES.start}..{QUALITIES.stop - 1}, "
                          f"got {quality!r}")
    return q


def check_device(device) -> str:
    """``device`` if it is one :data:`DEVICES` names (a torch.device passes too), else an
    OptionError naming what is accepted."""
    s = str(device)
    if s in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", s):
        return s
    raise OptionError(f"unknown device {s!r}; use {DEVICES}")


def base_layer_mode(value) -> str:
    """``base_layer`` as given to the API (auto/on/off, True/False, None = auto) -> a mode."""
    if value is None or isinstance(value, bool):
        return {None: "auto", True: "on", False: "off"}[value]
    if value not in BASE_LAYER_MODES:
        raise OptionError(f"base_layer must be {', '.join(BASE_LAYER_MODES[:-1])} or "
                          f"{BASE_LAYER_MODES[-1]}, got {value!r}")
    return value


def is_raw_input(path) -> bool:
    return os.fspath(path).lower().endswith(RAW_INPUTS)


@dataclass(frozen=True)
class EncoderOptions:
    """What an :class:`imfcodec.codec.encoder.Encoder` codes with, checked once here. None
    takes the quality level's value from the model (imfcodec/codec/ladder.py).

    The API's encode functions take these as keywords (``quality=3, packet_frames=1``);
    :meth:`build` turns keywords into one of these."""

    quality: int = DEFAULT_QUALITY
    keyframe_codec: str = DEFAULT_KEYFRAME_CODEC
    packet_frames: int = DEFAULT_PACKET_FRAMES
    # refresh rule: a new keyframe when a frame's reconstruction PSNR falls refresh_drop dB
    # below the model's reconstruction of the keyframe itself (0 disables) for
    # refresh_persist frames, at most once per min_keyframe_interval seconds
    refresh_drop: float | None = None
    refresh_persist: int = DEFAULT_REFRESH_PERSIST
    min_keyframe_interval: float | None = None
    max_keyframe_interval: float = DEFAULT_MAX_KEYFRAME_INTERVAL_S
    # the keyframe codec: the level's CRF replaced, encoder options added (e.g. {"sharpness": "4"})
    keyframe_crf: int | None = None
    keyframe_options: Mapping | None = None
    # the base layer (auto, on, off; True/False/None are on/off/auto) and its picture side
    # and VP9 CRF replacing the level's
    base_layer: str = "auto"
    base_size: int | None = None
    base_crf: int | None = None
    # the keyframe anchor's threshold in 1/1000 (imfcodec/codec/anchor.py), replacing the
    # level's; 0 turns it off (a base-layer stream without it is format version 5)
    anchor: int | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)      # noqa: E731 (frozen)
        set_("quality", check_quality(self.quality))
        if self.keyframe_codec not in KEYFRAME_CODECS:
            raise OptionError(f"unknown keyframe codec {self.keyframe_codec!r}; choose from "
                              f"{', '.join(KEYFRAME_CODECS)}")
        if self.packet_frames < 1:
            raise OptionError("packet_frames must be >= 1")
        if self.refresh_persist is None:
            set_("refresh_persist", DEFAULT_REFRESH_PERSIST)
        if self.refresh_persist < 1:
            raise OptionError("refresh_persist must be >= 1")
        set_("base_layer", base_layer_mode(self.base_layer))
        if self.keyframe_options is not None:
            set_("keyframe_options", dict(self.keyframe_options))

    @classmethod
    def build(cls, options: "EncoderOptions | None" = None, **kwargs) -> "EncoderOptions":
        """``options`` (default: the defaults) with the given keywords replaced; None-valued
        ``quality`` keeps the options' own. An unknown keyword is a TypeError, as for a call."""
        if kwargs.get("quality", 0) is None:
            del kwargs["quality"]
        unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown encoder option(s): {', '.join(unknown)}")
        return dataclasses.replace(options, **kwargs) if options is not None else cls(**kwargs)
