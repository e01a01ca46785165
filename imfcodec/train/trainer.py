"""The training loop: one process on CPU, or one process per GPU under torchrun (DDP).

Rank 0 logs (``RUN/log.jsonl``) and writes checkpoints (``RUN/last.pt``, ``RUN/best.pt``)
atomically. Every random draw of a step (pairs, augmentation, step multipliers,
quantization noise) is seeded by (seed, step, rank), so ``--resume`` continues exactly
where a run stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import IMFCodecError
from ..fileio import atomic_copy, atomic_write
from ..config import ConfigError, ModelConfig, TrainConfig, load_model_config, \
    load_train_config, to_dict
from ..entropy import symbol_likelihood
from ..models.imf import IMFGenerator, MultiScaleDiscriminator
from ..checkpoint import CKPT_FORMAT, checkpoint_generator_state, is_training_checkpoint
from .datapath import data_paths
from .data import PairSampler, build_cache, cache_bytes, code_reference, frame_cache_root, val_frames
from .losses import LPIPSLoss, PerceptualLoss, hinge_d_loss, hinge_g_loss


class TrainError(IMFCodecError, RuntimeError):
    pass


def save_atomic(obj, path: Path):
    atomic_write(path, lambda f: torch.save(obj, f))


def _dist():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(rank):
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _seed_step(seed, step, rank):
    torch.manual_seed(int(np.random.default_rng([seed, step, rank, 7]).integers(2 ** 62)))


# a recipe's defaults, for checkpoints saved before a key existed
_TRAIN_DEFAULTS = to_dict(TrainConfig(model=""))


def _schedules_before(recipe: dict, step: int) -> dict:
    """What a recipe's step schedules (learning-rate drops, coded references) did before
    ``step``: the only part of them a resumed run must keep."""
    r = {**_TRAIN_DEFAULTS, **recipe}
    coded = r["ref_coding"] and r["ref_coding_start"] < step
    return {"lr_drops": [list(d) for d in r["lr_drops"] if d[0] < step],
            "ref_coding": (r["ref_coding"], list(r["ref_crf"]), r["ref_coding_start"]) if coded else None}


def _all_agree(flag: bool, world: int, device) -> bool:
    """Rank 0's ``flag`` on every rank (clocks differ between processes)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def _training_checkpoint(path):
    """The training checkpoint at ``path`` (for --init); None for anything else (a model name
    or file, which :func:`imfcodec.model.load_model` reads and judges)."""
    if not Path(path).is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return ck if is_training_checkpoint(ck) else None


def _unwrap(m):
    return m.module if hasattr(m, "module") else m


@torch.no_grad()
def validate(gen: IMFGenerator, clips, fps=25.0, lpips=None, device="cpu", batch=8, ref_crf=0,
             ref_coder=code_reference, base=()):
    """Reference = first frame (with ``ref_crf`` > 0: ``ref_coder(frame, ref_crf)``, by
    default coded as a VP9 key picture at that CRF, as the codec sends it), every other frame
    coded at step multiplier 1 (quality 4). ``base`` = (size, crf): every frame also gets its
    base picture, the clip coded as one base stream (imfcodec.media.baselayer).
    Returns mean PSNR, mean LPIPS (or None) and estimated token kbps (previous-frame deltas)."""
    from ..metrics import psnr
    gen.eval()
    psnrs, lps, bits = [], [], []
    for frames in clips:
        pics = None
        if base:
            from ..media import baselayer
            pics = baselayer.to_tensor(baselayer.code_chain(baselayer.thumbnail(frames, base[0]), base[1])).to(device)
        frames = frames.to(device)
        t = gen.encode_token(frames)
        q = gen.quantize(t, 1.0)
        t_hat = gen.dequantize(q, 1.0)
        x_r = frames[:1]
        if ref_crf:
            x_r = ref_coder(x_r[0].cpu(), ref_crf)[None].to(device)
        ref = gen.prepare_reference(x_r, t_hat[:1])
        for i in range(1, len(frames), batch):
            x_hat = gen.decode_frame(t_hat[i:i + batch], ref, None if pics is None else pics[i:i + batch])
            psnrs.append(psnr(x_hat, frames[i:i + batch]))
            if lpips is not None:
                lps.append(lpips(x_hat, frames[i:i + batch]))
        d = q[1:] - q[:-1]
        sig = gen.log_sigma.exp() / gen.step(1.0)
        bits.append(-torch.log2(symbol_likelihood(d, sig)).sum(1))
    gen.train()
    return {"val_psnr": torch.cat(psnrs).mean().item(),
            "val_lpips": torch.cat(lps).mean().item() if lps else None,
            "val_token_kbps": torch.cat(bits).mean().item() * fps / 1000}


class _Prefetch:
    """``sampler.batch(step, ...)`` for the next steps, computed by background threads.

    A batch is a pure function of (seed, step, rank), so drawing it ahead changes nothing the
    run sees; it only hides the sampling (decoding, augmentation, coded references) behind
    the GPU's work. ``workers=0`` draws each batch when it is asked for (the CPU default:
    with 2 cores, threads would compete with the training step itself)."""

    def __init__(self, sampler, n, rank, workers):
        self.sampler, self.n, self.rank, self.workers = sampler, n, rank, workers
        self.pending = {}
        self.pool = None
        if workers:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="imfcodec-batch")

    def __call__(self, step, last):
        if self.pool is None:
            return self.sampler.batch(step, self.n, self.rank)
        for s in range(step, min(step + 2 * self.workers, last)):
            if s not in self.pending:
                self.pending[s] = self.pool.submit(self.sampler.batch, s, self.n, self.rank)
        return self.pending.pop(step).result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def train(config: str, data: list, out: str, max_steps: int | None = None, resume: bool = False,
          val_data: list | None = None, batch_size: int | None = None, init: str | None = None,
          log=print, time_limit: float | None = None, reader=None):
    """Train (or resume) a run in ``out``; returns the last step. ``time_limit`` (seconds of
    training, setup excluded) ends the run early, at a step boundary, with a checkpoint.
    ``data`` (files or folders of clips) defaults to ``$IMFCODEC_DATA/train``.
    ``reader(path, max_frames=...)`` decodes the videos (default imfcodec.media.video.read_frames)."""
    data = data_paths(data)             # else $IMFCODEC_DATA/train, or one error line
    rank, world = _dist()
    device = _device(rank)
    cfg, mcfg = _recipe(config, max_steps, batch_size, world)
    out, last = _run_folder(out, rank, resume)
    torch.manual_seed(cfg.seed)
    run = _networks(cfg, mcfg, device, rank)
    if resume:
        _resume(run, last, cfg, mcfg, rank, log)
    elif init:
        _init_from(run, init, cfg, mcfg, log)
    perceptual = _perceptual_loss(cfg, device)
    sampler = _sampler(data, cfg, mcfg, rank, log, reader)
    vclips, lpips = _validation_set(val_data, cfg, mcfg, rank, device, log, reader)
    _loop(run, sampler, cfg, mcfg, out, rank, world, device, perceptual, vclips, lpips,
          time_limit, log)
    if world > 1:
        _check_ranks_agree(run.gen, rank, world, log)
    if rank == 0 and not (out / "best.pt").exists() and last.exists():
        # no validation data: the last checkpoint is the best we know of
        atomic_copy(last, out / "best.pt")
    if world > 1:
        dist.destroy_process_group()
    return run.step


@dataclasses.dataclass
class _Run:
    """What a run trains and carries from step to step (and saves in its checkpoints)."""
    gen: IMFGenerator
    disc: MultiScaleDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    base_lr: list           # the recipe's rates (a resumed optimizer's state carries the rates last used)
    ema: object = None      # AveragedModel of gen (rank 0, ema_decay > 0)
    step: int = 0
    best: float | None = None

    def checkpoint(self, cfg, mcfg) -> dict:
        return _checkpoint(self.gen, self.disc, self.opt_g, self.opt_d, self.step, self.best,
                           cfg, mcfg, self.ema)


def _recipe(config, max_steps, batch_size, world) -> tuple[TrainConfig, ModelConfig]:
    """The training recipe with the command line's overrides, and its model config."""
    cfg: TrainConfig = load_train_config(config)
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, max_steps=max_steps)
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        cfg = dataclasses.replace(cfg, batch_size=batch_size)
    mcfg: ModelConfig = load_model_config(cfg.model)
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    return cfg, mcfg


def _run_folder(out, rank, resume) -> tuple[Path, Path]:
    """The run folder and its last.pt, refusing to resume nothing or to overwrite a run."""
    out = Path(out)
    last = out / "last.pt"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if resume and not last.exists():
        raise TrainError(f"--resume: no checkpoint at {last}")
    if not resume and last.exists():
        raise TrainError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return out, last


def _networks(cfg: TrainConfig, mcfg: ModelConfig, device, rank) -> _Run:
    """Fresh generator and discriminator, their optimizers and the moving average."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    gen = IMFGenerator(mcfg).to(device)
    disc = MultiScaleDiscriminator(mcfg).to(device)
    if cfg.base_sizes and not mcfg.base_channels:
        raise ConfigError(f"base_sizes needs a model with a base-layer input (base_channels > 0); {mcfg.name} has none")
    gen.log_step.requires_grad_(cfg.step_lr != 0)
    for part in cfg.train_parts:
        try:
            gen.get_submodule(part)
        except AttributeError:
            raise ConfigError(f"train_parts: the generator has no part {part!r}") from None
    for name, p in gen.named_parameters():
        if cfg.train_parts and not any(name.startswith(part + ".") for part in cfg.train_parts):
            p.requires_grad_(False)
    opt_g = torch.optim.Adam(_param_groups(gen, cfg), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
    base_lr = [[g["lr"] for g in opt.param_groups] for opt in (opt_g, opt_d)]
    ema = None
    if cfg.ema_decay and rank == 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        # the first update copies the weights; buffers (none that training moves) follow
        ema = AveragedModel(gen, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    return _Run(gen, disc, opt_g, opt_d, base_lr, ema)


def _frozen_eval(gen: IMFGenerator, cfg: TrainConfig):
    """Parts outside ``train_parts`` run in eval mode: their batch-norm statistics stay."""
    if cfg.train_parts:
        gen.eval()
        for part in cfg.train_parts:
            gen.get_submodule(part).train()


def _param_groups(gen: IMFGenerator, cfg: TrainConfig) -> list:
    """The generator's optimizer groups: plain weights, equalized-lr weights (their own
    rate), the rate model's log_sigma and, unless frozen, the quantizer's log_step."""
    from ..models.layers import EqualConv2d, EqualLinear, ModulatedConv2d
    equalized = {id(p) for mod in gen.modules()
                 if isinstance(mod, (EqualConv2d, EqualLinear, ModulatedConv2d))
                 for p in mod.parameters(recurse=False)}
    rest = [p for n, p in gen.named_parameters()
            if n not in ("log_step", "log_sigma") and id(p) not in equalized and p.requires_grad]
    groups = [{"params": rest},
              {"params": [p for p in gen.parameters() if id(p) in equalized and p.requires_grad],
               "lr": cfg.equalized_lr or cfg.lr},
              {"params": [gen.log_sigma] if gen.log_sigma.requires_grad else [], "lr": cfg.sigma_lr or cfg.lr}]
    if cfg.step_lr != 0:
        groups.append({"params": [gen.log_step], "lr": cfg.step_lr or cfg.lr})
    return groups


def _resume(run: _Run, last: Path, cfg: TrainConfig, mcfg: ModelConfig, rank, log):
    """Load last.pt into ``run`` after checking that it was trained with this recipe."""
    ck = torch.load(last, map_location=run.gen.log_step.device, weights_only=True)
    if ck.get("format") != CKPT_FORMAT:
        raise TrainError(f"{last} is not an imfcodec training checkpoint")
    if ck["model_config"] != to_dict(mcfg):
        raise TrainError(f"{last} was trained with another model config "
                         f"({ck['model_config'].get('name')}); it does not fit {cfg.model}")
    saved = dict(ck["train_config"])
    _check_same_recipe(saved, to_dict(cfg), ck["step"], last)
    run.gen.load_state_dict(ck["generator"])
    run.disc.load_state_dict(ck["discriminator"])
    run.opt_g.load_state_dict(ck["opt_g"])
    run.opt_d.load_state_dict(ck["opt_d"])
    run.step, run.best = ck["step"], ck.get("best")
    was = {**_TRAIN_DEFAULTS, **saved}
    for key in ("val_ref_crf", "val_metric"):
        if was[key] != getattr(cfg, key):
            run.best = None     # another validation measure: best.pt restarts from the next one
            log(f"{key} {getattr(cfg, key)} (was {was[key]}): best.pt follows the new "
                f"validation from here")
    ema = run.ema
    if ema is not None and "generator_ema" in ck:
        ema.module.load_state_dict(ck["generator_ema"])
        ema.n_averaged.fill_(ck["ema_updates"])
    elif ema is not None:
        log(f"ema_decay {cfg.ema_decay}: the average starts from the weights at step {run.step}")
    elif "generator_ema" in ck and rank == 0:
        log(f"ema_decay 0: the checkpoint's moving average ({ck['ema_updates']} steps) is "
            f"dropped; later checkpoints, validation and export use the raw weights")
    log(f"resumed {last} at step {run.step}")


def _check_same_recipe(saved: dict, now: dict, step: int, last: Path):
    """A resumed run may change only keys that change nothing the weights have seen; the
    schedules may change only where the run has not been yet."""
    free = ("max_steps", "model", "ema_decay", "lr_drops", "val_ref_crf", "val_metric",
            "ref_coding", "ref_crf", "ref_coding_start")
    diff = sorted(k for k in now if k not in free and saved.get(k) != now[k])
    before = _schedules_before(saved, step)
    diff += [f"{k} before step {step}"
             for k, v in _schedules_before(now, step).items() if before[k] != v]
    if diff:
        raise TrainError(f"{last} was trained with another recipe (differs in: {', '.join(diff)})")


# the parts a model may add to the one it starts from: zero-initialised base-layer stems,
# with which it decodes exactly the start model's frames
ZERO_START_STEMS = ("frame_decoder.base_stems.", "frame_decoder.ref_blend.", "base_query_stems.")


def _init_from(run: _Run, init: str, cfg: TrainConfig, mcfg: ModelConfig, log):
    """Start a new run from a training checkpoint (its generator as validated, and its
    discriminator) or from an exported model's generator (e.g. the shipped weights)."""
    gen, disc = run.gen, run.disc
    ck = _training_checkpoint(init)
    if ck is not None:
        disc_state = ck.get("discriminator")
        origin = f"training checkpoint {init} (step {ck.get('step')})"
    else:
        from ..model import load_model
        m = load_model(init, "cpu")
        disc_state = None
        origin = f"{init} (sha256 {m.sha256[:16]})"
    try:    # any model with the same parameters fits (align_mode has none of its own)
        g_state = checkpoint_generator_state(ck) if ck is not None else m.generator.state_dict()
        # a token-only model initialises a base-layer one: its new stems keep their zero start
        res = gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in g_state.items()},
                                  strict=False)
        if res.unexpected_keys or any(not k.startswith(ZERO_START_STEMS) for k in res.missing_keys):
            raise RuntimeError("parameters differ")
        if res.missing_keys:
            log(f"--init {init}: no base-layer stems in it; they start at zero (its frames exactly)")
        if disc_state is not None:
            disc.load_state_dict({k: v.float() for k, v in disc_state.items()})
    except (RuntimeError, KeyError, AttributeError):
        raise TrainError(f"--init {init}: its networks do not fit {cfg.model}") from None
    for name in cfg.init_reset:
        if not isinstance(getattr(gen, name, None), torch.nn.Module):
            raise TrainError(f"init_reset: the generator has no part {name!r}")
    if cfg.init_reset:
        fresh = IMFGenerator(mcfg)
        for name in cfg.init_reset:
            getattr(gen, name).load_state_dict(getattr(fresh, name).state_dict())
    with torch.no_grad():
        if cfg.init_log_step is not None:
            gen.log_step.fill_(cfg.init_log_step)
        if cfg.init_log_sigma is not None:
            gen.log_sigma.fill_(cfg.init_log_sigma)
    log(f"generator {'and discriminator ' if disc_state is not None else ''}initialised from {origin}")


def _perceptual_loss(cfg: TrainConfig, device):
    if not cfg.loss_perceptual > 0:
        return None
    from ..assets import MissingWeightsError
    try:
        if cfg.perceptual_net == "lpips-alex":
            return LPIPSLoss().to(device)
        return PerceptualLoss(cfg.perceptual_size, cfg.perceptual_scales).to(device)
    except MissingWeightsError as e:
        raise TrainError(f"the {cfg.perceptual_net} perceptual loss needs its ImageNet weights: {e}") from None


def _sampler(data, cfg: TrainConfig, mcfg: ModelConfig, rank, log, reader) -> PairSampler:
    """The training clips (decoded once into the frame cache) and the pair sampler over them."""
    clips = build_cache(data, mcfg.image_size, frame_cache_root(mcfg.image_size),
                        log=log if rank == 0 else (lambda *a: None), reader=reader, crop=cfg.data_crop)
    if rank == 0:
        log(f"data: {len(clips)} clips, {sum(c.frames for c in clips)} frames, "
            f"cache {cache_bytes(clips) / 1e9:.2f} GB")
    return PairSampler(clips, cfg.max_gap, cfg.color_jitter, cfg.scale_jitter, cfg.seed,
                       cfg.ref_coding, cfg.ref_crf, cfg.ref_coding_start,
                       cfg.base_sizes, cfg.base_crf, cfg.base_dropout)


def _validation_set(val_data, cfg: TrainConfig, mcfg: ModelConfig, rank, device, log, reader):
    """Rank 0's validation clips and LPIPS (None without val data, or with val_metric psnr)."""
    if rank != 0 or not val_data:
        return None, None
    vc = build_cache(val_data, mcfg.image_size, frame_cache_root(mcfg.image_size), log=log, reader=reader)
    vclips, lpips = val_frames(vc, cfg.val_frames), None
    if cfg.val_metric == "lpips":
        from .. import metrics
        from ..assets import MissingWeightsError
        try:
            lpips = metrics.get_lpips("alex", device)
        except MissingWeightsError as e:
            raise TrainError(f"best.pt is picked by val LPIPS, which needs the AlexNet weights "
                             f"({e}); run `imfcodec fetch-weights`, or set val_metric: psnr "
                             f"in the recipe") from None
    else:
        log("val_metric psnr: best.pt is picked by val PSNR (no LPIPS)")
    return vclips, lpips


def _loop(run: _Run, sampler, cfg: TrainConfig, mcfg: ModelConfig, out: Path, rank, world, device,
          perceptual, vclips, lpips, time_limit, log):
    """Train until max_steps or the time limit; rank 0 logs, validates and saves."""
    gen, disc = run.gen, run.disc
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == "cuda" else None
        gen_t = DDP(gen, device_ids=ids)
        disc_t = DDP(disc, device_ids=ids, broadcast_buffers=False)
    else:
        gen_t, disc_t = gen, disc
    per_rank = cfg.batch_size // world
    fetch = _Prefetch(sampler, per_rank, rank, workers=min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    gen.train(), disc.train()
    _frozen_eval(gen, cfg)
    lo, hi = math.log(cfg.step_mult_range[0]), math.log(cfg.step_mult_range[1])
    logf = open(out / "log.jsonl", "a") if rank == 0 else None
    t0, n0 = time.time(), run.step
    stop = False
    try:
        while run.step < cfg.max_steps and not stop:
            step = run.step
            _seed_step(cfg.seed, step, rank)
            x_r, x_c, *base = fetch(step, cfg.max_steps)
            x_r, x_c = x_r.to(device), x_c.to(device)
            base = base[0].to(device) if base and base[0] is not None else None
            factor = cfg.lr_factor(step)
            for opt, lrs in zip((run.opt_g, run.opt_d), run.base_lr):
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr * factor
            mult = torch.exp(torch.empty(per_rank, 1).uniform_(lo, hi)).to(device)
            rec = _step(run, gen_t, disc_t, x_r, x_c, mult, cfg, perceptual, base)
            run.step = step = step + 1
            if time_limit is not None:
                stop = _all_agree(time.time() - t0 >= time_limit, world, device)
            final = stop or step == cfg.max_steps
            if rank == 0:
                if step % cfg.log_every == 0 or final:
                    rec["sec_per_step"] = (time.time() - t0) / (step - n0)
                    rec["step_mult"] = gen.log_step.exp().mean().item()
                    _log_record(logf, rec)
                    log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
                if vclips is not None and (step % cfg.val_every == 0 or final):
                    _validate_and_keep_best(run, vclips, lpips, device, cfg, mcfg, out, logf, log)
                if stop:
                    log(f"time limit ({time_limit:g} s) reached at step {step}")
                if step % cfg.ckpt_every == 0 or final:
                    save_atomic(run.checkpoint(cfg, mcfg), out / "last.pt")
            if world > 1:
                dist.barrier()
    finally:     # queued batches are not waited for, even when a step fails
        fetch.close()
        if logf:
            logf.close()


def _step(run: _Run, gen_t, disc_t, x_r, x_c, mult, cfg: TrainConfig, perceptual, base=None) -> dict:
    """One optimizer step of the generator (and of the discriminator once the GAN is on);
    returns the step's log record."""
    step = run.step
    x_hat, bits = gen_t(x_r, x_c, mult, base)
    l1 = (x_hat - x_c).abs().mean()
    loss = cfg.loss_l1 * l1 + (cfg.rate_lambda if step >= cfg.rate_start else 0.0) * bits.mean()
    rec = {"step": step + 1, "lr": run.opt_g.param_groups[0]["lr"], "l1": l1.item(),
           "bits": bits.mean().item()}
    if cfg.base_sizes:
        rec["base"] = 0 if base is None else base.shape[-1]
    if perceptual is not None and step >= cfg.perceptual_start:
        p = perceptual(x_hat, x_c)
        loss = loss + cfg.loss_perceptual * p
        rec["perceptual"] = p.item()
    use_gan = cfg.loss_gan > 0 and step >= cfg.gan_start
    if use_gan:
        g_adv = hinge_g_loss(disc_t(x_hat))
        loss = loss + cfg.loss_gan * g_adv
        rec["g_adv"] = g_adv.item()
    run.opt_g.zero_grad(set_to_none=True)
    if loss.requires_grad:      # not when only the base stems train and the batch has no base
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.gen.parameters(), cfg.grad_clip)
        run.opt_g.step()
    if run.ema is not None:
        run.ema.update_parameters(run.gen)
    if use_gan:
        run.opt_d.zero_grad(set_to_none=True)
        d_loss = hinge_d_loss(disc_t(x_c), disc_t(x_hat.detach()))
        d_loss.backward()
        run.opt_d.step()
        rec["d_loss"] = d_loss.item()
    rec["loss"] = loss.item()
    return rec


def _log_record(logf, rec: dict):
    logf.write(json.dumps(rec) + "\n")
    logf.flush()


def _validate_and_keep_best(run: _Run, vclips, lpips, device, cfg: TrainConfig, mcfg: ModelConfig,
                            out: Path, logf, log):
    """Validate the weights export would ship (the moving average when kept; the raw weights
    too, for comparison), log it, and save best.pt when the score improved."""
    v = validate(run.gen if run.ema is None else run.ema.module, vclips, lpips=lpips, device=device,
                 ref_crf=cfg.val_ref_crf, base=cfg.val_base)
    if run.ema is not None:     # the raw weights, for comparison (best.pt follows the average)
        raw = validate(run.gen, vclips, lpips=lpips, device=device, ref_crf=cfg.val_ref_crf, base=cfg.val_base)
        v.update({f"raw_{k}": x for k, x in raw.items()}, ema_decay=cfg.ema_decay)
    _frozen_eval(run.gen, cfg)      # validate() leaves every part in training mode
    v["step"] = run.step
    _log_record(logf, v)
    log(f"validation step {run.step}: " + " ".join(f"{k}={v[k]}" for k in v))
    score = v["val_lpips"] if cfg.val_metric == "lpips" else -v["val_psnr"]
    if run.best is None or score < run.best:
        run.best = score
        save_atomic(run.checkpoint(cfg, mcfg), out / "best.pt")


def _check_ranks_agree(gen: IMFGenerator, rank, world, log):
    """DDP keeps replicas identical; check it rather than assume it."""
    flat = torch.cat([p.detach().flatten().double() for p in gen.parameters()])
    sums = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.float64,
                                                         device=flat.device)).sum()])
    gathered = [torch.zeros_like(sums) for _ in range(world)]
    dist.all_gather(gathered, sums)
    if rank == 0:
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainError("ranks disagree on the generator weights after training")
        log(f"weights identical on all {world} ranks")


def _checkpoint(gen, disc, opt_g, opt_d, step, best, cfg, mcfg, ema=None):
    ck = {"format": CKPT_FORMAT, "step": step, "best": best,
          "train_config": to_dict(cfg), "model_config": to_dict(mcfg),
          "generator": gen.state_dict(), "discriminator": disc.state_dict(),
          "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
    if ema is not None and int(ema.n_averaged) > 0:
        # what export and --model RUN/x.pt use (checkpoint.checkpoint_generator_state)
        ck["generator_ema"] = ema.module.state_dict()
        ck["ema_updates"] = int(ema.n_averaged)
    return ck
