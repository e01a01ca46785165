"""What a training checkpoint is, for the trainer and for the model loader alike.

Kept apart from both so that either can ask without importing the other (the model
loader pulls in the entropy coder, the trainer the data pipeline and losses).
"""
from __future__ import annotations

CKPT_FORMAT = "imfcodec-train-checkpoint"


def is_training_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CKPT_FORMAT


def checkpoint_generator_state(ck: dict) -> dict:
    """The generator weights a training checkpoint stands for: the moving average when the
    run kept one (``ema_decay``; it is what validation scored), else the raw weights."""
    return ck["generator_ema"] if "generator_ema" in ck else ck["generator"]
