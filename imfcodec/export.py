"""Making model files: a training checkpoint -> a shippable model (generator + entropy
tables + config + quality table), with the entropy tables calibrated on training clips.

The trainer's side of :mod:`imfcodec.model` (which only loads): ``imfcodec export`` is a
thin call into :func:`export_checkpoint`.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from .entropy import TokenEntropyModel
from .errors import OptionError
from .fileio import atomic_write
from .codec.ladder import quality_table_for
from .model import (MODEL_FORMAT, MODEL_FORMAT_VERSION, ModelError, build_entropy,
                    generator_from_checkpoint, load_torch_file)
from .config import to_dict
from .models.imf import IMFGenerator
from .checkpoint import is_training_checkpoint


FITTED = "per quality and channel the table that codes the quantized token differences in the fewest bits on"


@torch.no_grad()
def clip_tokens(gen: IMFGenerator, clips, max_frames=200) -> list:
    """The tokens (N, C) of the first ``max_frames`` frames of each of ``clips`` (a list of
    (N, 3, S, S) tensors), encoded once for both calibrations below."""
    return [torch.cat([gen.encode_token(f[i:i + 16]) for i in range(0, min(len(f), max_frames), 16)])
            for f in clips]


def token_delta_std(tokens) -> torch.Tensor:
    """Per-channel std (token units) of the frame-to-frame differences of each clip's
    ``tokens`` (:func:`clip_tokens`): what the codec actually entropy-codes."""
    d = torch.cat([t[1:] - t[:-1] for t in tokens])
    return d.pow(2).mean(0).sqrt()


@torch.no_grad()
def token_symbol_deltas(gen: IMFGenerator, tokens, quality_table) -> list:
    """Per quality level of ``quality_table``, the frame-to-frame differences (N, C) of each
    clip's ``tokens`` (:func:`clip_tokens`) quantized: exactly what the codec's T packets code
    between keyframes (the tables are fitted to these, :meth:`TokenEntropyModel.fit`)."""
    out = []
    for r in quality_table:
        qs = [gen.quantize(t, r["step_mult"]) for t in tokens]
        out.append(torch.cat([q[1:] - q[:-1] for q in qs]).to(torch.int64))
    return out


def calibration_clips(videos, image_size: int, clips: int = 32, frames: int = 64) -> list:
    """The first ``frames`` frames (model size, (N, 3, S, S)) of ``clips`` of the clips in
    ``videos`` (training data, never val), spread evenly over them: what the entropy tables
    are calibrated on."""
    from .train.data import build_cache, frame_cache_root, val_frames
    found = build_cache(videos, image_size, frame_cache_root(image_size), log=lambda *a: None)
    step = max(1, len(found) // clips)      # an even spread over the clips
    return val_frames(found[::step][:clips], frames)


def _stored_state(gen: IMFGenerator, half: bool = True) -> dict:
    """The generator's tensors as a model file stores them (float16 unless ``half`` is off)."""
    return {k: (v.half() if half and v.is_floating_point() else v).contiguous()
            for k, v in gen.state_dict().items()}


def _changed(state: dict, pstate: dict) -> list:
    """Keys of ``state`` whose tensor the parent's stored ``pstate`` lacks or holds otherwise."""
    return [k for k, v in state.items()
            if k not in pstate or pstate[k].shape != v.shape or not torch.equal(pstate[k].cpu(), v.cpu())]


def _checkpoint_meta(ck: dict) -> dict:
    return {"train_step": ck["step"], "train_config": ck["train_config"],
            "weights": (f"moving average over {ck['ema_updates']} steps" if "generator_ema" in ck else "raw")}


def save_model(path, gen: IMFGenerator, ent: TokenEntropyModel, model_id: str,
               quality_table=None, meta=None, half=True, parent=None) -> str:
    """Write a model file atomically; returns its sha256 (also written to PATH.sha256).
    ``parent``: a loaded CodecModel this one extends; the file then holds only the tensors
    that differ from the parent's (``imfcodec.model`` fills in the rest on load)."""
    state = _stored_state(gen, half)
    blob = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "model_id": model_id,
            "config": to_dict(gen.cfg), "generator": state, "entropy": ent.state_dict(),
            "quality_table": quality_table or quality_table_for(gen.cfg), "meta": meta or {}}
    if parent is not None:
        blob["generator"] = {k: state[k] for k in _changed(state, _stored_state(parent.generator, half))}
        blob["parent"] = {"model_id": parent.model_id, "sha256": parent.sha256}
    buf = io.BytesIO()
    torch.save(blob, buf)
    data = buf.getvalue()
    path = Path(path)
    atomic_write(path, lambda f: f.write(data))
    sha = hashlib.sha256(data).hexdigest()
    atomic_write(Path(str(path) + ".sha256"), lambda f: f.write(f"{sha}  {path.name}\n".encode()))
    return sha


def export_checkpoint(ckpt_path, out_path, calib_videos=None, model_id=None, meta=None,
                      step_scale: float = 1.0, calib_clips: int = 32, calib_frames: int = 64,
                      parent=None) -> str:
    """Training checkpoint -> shippable model file (generator + entropy tables + config).
    ``calib_videos``: folders or files whose frame-to-frame token differences the tables are
    built for (:func:`calibration_clips`: each level's tables fitted to the rounded differences,
    :meth:`TokenEntropyModel.fit`; None: the trained rate model). ``step_scale`` multiplies
    every quality level's token step_mult. ``parent``: a model (name or file) whose token path
    the checkpoint kept frozen (``train_parts``); the file then extends it: only the changed
    tensors, the parent's token steps and entropy tables (with ``calib_videos``, their choice
    per level and channel fitted anew: other bytes, the same symbols), so with the base layer
    off it decodes exactly the parent's frames. Returns the file's sha256."""
    if not step_scale > 0:        # before the calibration, which takes a while
        raise OptionError(f"--step-scale must be > 0, got {step_scale}")
    ck = load_torch_file(ckpt_path, what="an imfcodec training checkpoint")
    if not is_training_checkpoint(ck):
        raise ModelError(f"{ckpt_path}: not an imfcodec training checkpoint")
    gen = generator_from_checkpoint(ck, ckpt_path)
    cfg = gen.cfg
    clips = calibration_clips(calib_videos, cfg.image_size, calib_clips, calib_frames) if calib_videos else None
    tokens = clip_tokens(gen, clips) if clips else None
    if parent is not None:
        return _export_extension(ck, gen, out_path, parent, model_id, meta, tokens)
    std = token_delta_std(tokens) if tokens else None
    table = [dict(r, step_mult=round(r["step_mult"] * step_scale, 4)) for r in quality_table_for(cfg)]
    ent = build_entropy(gen, table, std)
    if tokens:
        ent.fit(token_symbol_deltas(gen, tokens, table))
    m = {**_checkpoint_meta(ck),
         "entropy_calibration": (f"{FITTED} {len(tokens)} clips" if tokens else "trained rate model"),
         "step_scale": step_scale}
    m.update(meta or {})
    return save_model(out_path, gen, ent, model_id or cfg.name, quality_table=table, meta=m)


def _export_extension(ck, gen: IMFGenerator, out_path, parent, model_id, meta, tokens=None) -> str:
    import copy
    from .model import load_model
    par = load_model(parent, "cpu", "fp32")
    if par.config.image_size != gen.cfg.image_size or par.config.token_dim != gen.cfg.token_dim:
        raise ModelError(f"--parent {parent}: its sizes differ from the checkpoint's")
    pstate, mine = _stored_state(par.generator), _stored_state(gen)
    # the parent's tensors the checkpoint lost or changed (new stems are allowed)
    token_path = [k for k in _changed(pstate, mine) if not k.startswith("frame_decoder.")]
    if token_path:
        raise ModelError(f"--parent {parent}: the checkpoint changed the parent's token path or "
                         f"encoders ({', '.join(token_path[:3])}...), so its tokens would not be the parent's")
    table = quality_table_for(gen.cfg, par.quality_table)
    ent, calibration = par.entropy, f"the parent's ({par.model_id}, sha256 {par.sha256[:16]})"
    if tokens:      # the parent's token steps and scale tables; each level's choice fitted anew
        ent = copy.deepcopy(par.entropy)
        ent.fit(token_symbol_deltas(gen, tokens, table))
        calibration = f"the parent's ({par.model_id}, sha256 {par.sha256[:16]}) tables, {FITTED} {len(tokens)} clips"
    m = {**_checkpoint_meta(ck), "entropy_calibration": calibration}
    m.update(meta or {})
    return save_model(out_path, gen, ent, model_id or gen.cfg.name, quality_table=table, meta=m, parent=par)
