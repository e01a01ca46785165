"""Per-frame quality (PSNR-RGB, MS-SSIM, LPIPS-alex, DISTS) and the temporal measures pulse,
flicker and tLP (definitions in bench/conditions.md, section 4)."""
from __future__ import annotations

import numpy as np

METRICS = ["psnr", "ms_ssim", "lpips", "dists"]
#: per-clip temporal measures (one value per stream, from the per-frame series)
TEMPORAL = ["pulse", "flicker", "tlp"]
HIGHER_IS_BETTER = {"psnr": True, "ms_ssim": True, "lpips": False, "dists": False}
METRIC_LABEL = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS-alex (lower is better)",
                "dists": "DISTS (lower is better)", "flicker": "flicker (8-bit luma levels)",
                "tlp": "tLP (lower is better)"}
PSNR_CAP = 100.0          # dB, for a frame identical to its source (MSE 0)
METRIC_BATCH = 8
#: a pixel is "still" in the source when its luma moves by at most this many 8-bit levels
STILL_LEVELS = 2.0
#: frames whose still area is below this fraction of the picture get no flicker value
MIN_STILL_FRACTION = 0.01
DISTS_EVERY = 16
#: the seed of DISTS's frame offsets (dists_frames): fixed, so every codec of a clip is
#: measured on the same frames
DISTS_SEED = 2026
#: names the frame choice in the row cache's key; rows of the old choice (frames 0, 25, 50,
#: ...) are found by ``config(legacy="dists")`` and re-measured by ``rd_curve.py --remeter-dists``
DISTS_SAMPLING = "stratified"
LEGACY_DISTS_EVERY = 25


def dists_frames(n: int, every: int = DISTS_EVERY) -> list[int]:
    """The frames DISTS is measured on: one in each run of ``every`` frames (0..K-1, K..2K-1,
    ...), at an offset drawn from a fixed seed, so the same frames for every codec of a clip.
    Not frames 0, K, 2K, ...: a codec that refreshes at a fixed interval is then measured on
    its refresh pictures only (imfcodec refreshing every second at 25 fps, K = 25, scored its
    keyframes' DISTS at quality 3 and nothing else)."""
    rng = np.random.default_rng(DISTS_SEED)
    return [j + int(rng.integers(0, min(every, n - j))) for j in range(0, n, every)]


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB (N, H, W, 3), float32 in 8-bit levels."""
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def pulse(per_frame: np.ndarray) -> float:
    """Mean absolute change of a per-frame series between consecutive frames
    (``mean_t |x_t - x_{t-1}|``, t = 1..N-1; NaN pairs ignored). On per-frame LPIPS this is
    the bench's "pulse": a sawtooth of amplitude A and period P frames scores 2A/P."""
    x = np.asarray(per_frame, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    d = np.abs(np.diff(x))
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def flicker_per_frame(src: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Per frame t >= 1: the mean absolute temporal change of the coding error,
    ``|(D_t - S_t) - (D_{t-1} - S_{t-1})|`` in luma levels, over the pixels the source holds
    still (``|S_t - S_{t-1}| <= STILL_LEVELS``). NaN for frame 0 and for frames whose still
    area is under ``MIN_STILL_FRACTION`` of the picture."""
    n = len(src)
    out = np.full(n, np.nan)
    prev_s = prev_e = None
    for i in range(n):
        s = luma(src[i:i + 1])[0]
        e = luma(dec[i:i + 1])[0] - s
        if prev_s is not None:
            still = np.abs(s - prev_s) <= STILL_LEVELS
            if still.mean() >= MIN_STILL_FRACTION:
                out[i] = float(np.abs(e - prev_e)[still].mean())
        prev_s, prev_e = s, e
    return out


def tlp_per_frame(src_steps: np.ndarray, dec_steps: np.ndarray) -> np.ndarray:
    """TecoGAN's tLP per frame t >= 1: ``|LPIPS(S_(t-1), S_t) - LPIPS(D_(t-1), D_t)|``, from
    the LPIPS of each consecutive pair of the source and of the decode (index t holds the
    pair (t-1, t); index 0 is NaN). A decode that changes between frames as much as its
    source scores 0; a still decode of a moving source, or a pop at a refresh, scores the
    difference. Unlike pulse it sees a jump between two frames of equal quality."""
    return np.abs(np.asarray(src_steps, np.float64) - np.asarray(dec_steps, np.float64))


class Metrics:
    """Per-frame PSNR-RGB, MS-SSIM, LPIPS-alex and DISTS (imfcodec.metrics), flicker and tLP,
    NaN where undefined. DISTS is measured on one frame in every ``dists_every``
    (:func:`dists_frames`): a VGG16 pass per frame costs about 15x an AlexNet one; the source's
    DISTS statistics and its consecutive-frame LPIPS (for tLP) are computed once per clip
    (:meth:`set_source`)."""

    def __init__(self, size: int, skip, dists_every: int = DISTS_EVERY, use_dists: bool = True):
        import torch  # noqa: F401
        from imfcodec.metrics import MS_SSIM_MIN_SIDE
        self.use_msssim = size >= MS_SSIM_MIN_SIDE
        self.msssim_note = ("" if self.use_msssim else
                            f"MS-SSIM undefined below {MS_SSIM_MIN_SIDE} px (test size {size}): NaN")
        if not self.use_msssim:
            skip("ms_ssim", "metric", self.msssim_note)
        self.dists_every = dists_every
        self.lpips = self.dists = None
        self.lpips_note = self.dists_note = ""
        self._src_key = None
        self._src_stats = {}
        self._src_steps = None
        try:
            from imfcodec.assets import MissingWeightsError
            from imfcodec.metrics import get_dists, get_lpips
            try:
                self.lpips = get_lpips("alex", "cpu")
            except MissingWeightsError as e:
                self.lpips_note = f"LPIPS weights missing, LPIPS is NaN ({str(e).splitlines()[0]})"
            if use_dists:
                try:
                    self.dists = get_dists("cpu")
                except MissingWeightsError as e:
                    self.dists_note = f"VGG16 weights missing, DISTS is NaN ({str(e).splitlines()[0]})"
            else:
                self.dists_note = "DISTS not measured (--no-dists): NaN"
        except ImportError as e:
            self.lpips_note = f"LPIPS unavailable ({e}), LPIPS is NaN"
            self.dists_note = f"DISTS unavailable ({e}), DISTS is NaN"
        if self.lpips_note:
            skip("lpips", "metric", self.lpips_note)
        if self.dists_note:
            skip("dists", "metric", self.dists_note)

    def config(self, legacy: str | None = None) -> dict:
        """What the per-frame values depend on (part of the row cache's key). ``legacy``: the
        key the same row had in an earlier bench, "dists" when DISTS was measured on frames 0,
        25, 50, ..., "tlp" before tLP was measured (the other metrics are defined as they were
        then)."""
        k = {"metrics": METRICS + (["tlp"] if legacy is None else []),
             "dists_every": self.dists_every if self.dists else None,
             "lpips": self.lpips is not None, "ms_ssim": self.use_msssim,
             "still_levels": STILL_LEVELS, "min_still_fraction": MIN_STILL_FRACTION}
        if legacy == "dists":
            k["dists_every"] = LEGACY_DISTS_EVERY if self.dists else None
        elif self.dists:
            k["dists_sampling"] = DISTS_SAMPLING
        return k

    def dists_frames(self, n: int) -> list[int]:
        return dists_frames(n, self.dists_every)

    @staticmethod
    def _tensor(frames):
        import torch
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0

    def set_source(self, key, src: np.ndarray):
        """Compute the source's DISTS statistics and consecutive-frame LPIPS once per clip."""
        import torch
        if key == self._src_key:
            return
        self._src_stats = {}
        with torch.inference_mode():
            if self.dists is not None:
                for i in self.dists_frames(len(src)):
                    self._src_stats[i] = self.dists.stats(self._tensor(src[i:i + 1]))
        self._src_steps = self.lpips_steps(src)
        self._src_key = key

    def lpips_steps(self, frames: np.ndarray) -> np.ndarray:
        """LPIPS between each frame and the one before (index 0: NaN); all NaN without LPIPS."""
        import torch
        n = len(frames)
        out = np.full(n, np.nan)
        if self.lpips is None:
            return out
        with torch.inference_mode():
            for i in range(1, n, METRIC_BATCH):
                j = min(n, i + METRIC_BATCH)
                out[i:j] = self.lpips(self._tensor(frames[i - 1:j - 1]), self._tensor(frames[i:j])).double().numpy()
        return out

    def __call__(self, src: np.ndarray, dec: np.ndarray) -> dict:
        import torch
        from imfcodec.metrics import ms_ssim, psnr
        n = len(src)
        out = {m: np.full(n, np.nan) for m in METRICS}
        with torch.inference_mode():
            for i in range(0, n, METRIC_BATCH):
                a, b = self._tensor(src[i:i + METRIC_BATCH]), self._tensor(dec[i:i + METRIC_BATCH])
                out["psnr"][i:i + len(a)] = psnr(a, b).clamp(max=PSNR_CAP).numpy()
                if self.use_msssim:
                    out["ms_ssim"][i:i + len(a)] = ms_ssim(a, b).double().numpy()
                if self.lpips is not None:
                    out["lpips"][i:i + len(a)] = self.lpips(a, b).double().numpy()
        out["dists"] = self.dists_per_frame(src, dec)
        out["flicker"] = flicker_per_frame(src, dec)
        src_steps = self._src_steps if self._src_steps is not None and len(self._src_steps) == n \
            else self.lpips_steps(src)
        out["tlp"] = tlp_per_frame(src_steps, self.lpips_steps(dec))
        return out

    def dists_per_frame(self, src: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Per-frame DISTS on :meth:`dists_frames`, NaN elsewhere (and everywhere without DISTS)."""
        import torch
        n = len(src)
        out = np.full(n, np.nan)
        if self.dists is None:
            return out
        with torch.inference_mode():
            for i in self.dists_frames(n):
                ref = self._src_stats.get(i) or self.dists.stats(self._tensor(src[i:i + 1]))
                out[i] = float(self.dists.compare(ref, self.dists.stats(self._tensor(dec[i:i + 1])))[0])
        return out


def summary(per_frame: dict) -> dict:
    """Per-stream values: each metric's mean over frames, pulse (of per-frame LPIPS), flicker
    and tLP (means of their per-frame values; tLP NaN for rows measured before it existed)."""
    out = {}
    for m in METRICS + ["flicker", "tlp"]:
        v = per_frame.get(m)
        out[m] = (float(np.nanmean(v)) if v is not None and np.isfinite(v).any() else float("nan"))
    lp = per_frame.get("lpips")
    out["pulse"] = pulse(lp) if lp is not None else float("nan")
    return out
