"""Bjontegaard delta rate and the "best size" curve of a codec (the lower convex hull of its
streams at all coded sizes)."""
from __future__ import annotations

import math

import numpy as np


def bd_rate(rate_anchor, q_anchor, rate_test, q_test, higher_is_better: bool = True) -> dict:
    """Bjontegaard delta rate (%) of the test curve against the anchor: the average
    difference of log-rate at equal quality, over the quality interval both curves cover,
    with log-rate interpolated as a piecewise cubic Hermite (PCHIP) function of quality.

    -50 means the test codec needs half the anchor's rate. Quality is negated for
    lower-is-better metrics (LPIPS, DISTS). Returns bd_rate (NaN without overlap or with fewer
    than two distinct points on a curve), overlap_lo/overlap_hi (in the metric's own units)
    and overlap_width."""
    from scipy.interpolate import PchipInterpolator
    nan = {"bd_rate": float("nan"), "overlap_lo": float("nan"), "overlap_hi": float("nan"),
           "overlap_width": 0.0}
    sign = 1.0 if higher_is_better else -1.0

    def curve(rate, q):
        rate, q = np.asarray(rate, float), sign * np.asarray(q, float)
        ok = np.isfinite(rate) & np.isfinite(q) & (rate > 0)
        rate, q = rate[ok], q[ok]
        if len(q) == 0:
            return q, q
        order = np.argsort(q, kind="stable")
        q, lr = q[order], np.log(rate[order])
        keep = np.concatenate([[True], np.diff(q) > 0])          # PCHIP needs strictly rising x
        return q[keep], lr[keep]

    qa, la = curve(rate_anchor, q_anchor)
    qt, lt = curve(rate_test, q_test)
    if len(qa) < 2 or len(qt) < 2:
        return {**nan, "note": "fewer than 2 usable points"}
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return {**nan, "note": "no overlap in quality"}
    ia = PchipInterpolator(qa, la).integrate(lo, hi)
    it = PchipInterpolator(qt, lt).integrate(lo, hi)
    bd = (math.exp((it - ia) / (hi - lo)) - 1.0) * 100.0
    a, b = sorted((sign * lo, sign * hi))
    return {"bd_rate": bd, "overlap_lo": a, "overlap_hi": b, "overlap_width": b - a, "note": ""}


def lower_hull(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the points on the lower-left convex hull of (rate, distortion): sorted by
    rate, a point is kept when it lowers the distortion and lies on or below every chord."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    hull: list[int] = []
    for i in order:
        if hull and points[i][1] >= points[hull[-1]][1]:
            continue                                   # costs more and is no better
        while len(hull) >= 2:
            (x1, y1), (x2, y2), (x3, y3) = (points[j] for j in (hull[-2], hull[-1], i))
            if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) <= 0:   # middle point not convex
                hull.pop()
            else:
                break
        hull.append(i)
    return set(hull)


def best_size(results: list, metric: str, higher_is_better: bool) -> list:
    """The streams (of one codec and clip, any coded size) on the lower convex hull of
    (kbps, distortion), distortion = the metric's mean (negated when higher is better), in
    rate order: the curve a sender that picks its resolution (and may switch between two
    neighbouring operating points) could reach. Streams with a NaN metric are left out."""
    rs = [r for r in results if math.isfinite(r.mean(metric)) and r.kbps > 0]
    sign = -1.0 if higher_is_better else 1.0
    keep = lower_hull([(r.kbps, sign * r.mean(metric)) for r in rs])
    return sorted((rs[i] for i in keep), key=lambda r: r.kbps)
