"""A live call on this machine: ``python bench/live.py CLIP --seconds S --loss P --out F.json``.

Plays CLIP (ping-pong repeated up to S seconds) in real time into an imfcodec.live Sender,
over a real WebRTC connection (aiortc, 127.0.0.1 only) to a Receiver in another process.
Loss is a seeded drop shim in the sender's transport (imfcodec.live.peer.LossShim), not
network emulation: on this machine `ip netns add` works but `tc qdisc ... netem` answers
"Specified qdisc kind is unknown" (no sch_netem in the kernel). Midway the shim also cuts
the link for 1 s. Writes JSON with the fields of docs/live.md ("Measured").
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np


def clip_frames(path, seconds: float):
    from imfcodec.media import video
    info = video.probe(path)
    frames = list(video.read_frames(path))
    n = int(round(seconds * float(info.fps)))
    loop = frames + frames[-2:0:-1] if len(frames) > 2 else frames
    return info, [loop[i % len(loop)] for i in range(n)]


def encoder_alone(model, frames, fps, quality):
    """The encoder alone on the frames (refreshes included): frames/s and per-frame ms."""
    from imfcodec.codec.encoder import Encoder
    h, w = frames[0].shape[:2]
    enc = Encoder(model, w, h, fps, quality, packet_frames=1)
    enc.push(frames[0])                     # the networks' first run is not a frame's cost
    enc = Encoder(model, w, h, fps, quality, packet_frames=1)
    ms = []
    t0 = time.perf_counter()
    for f in frames:
        t = time.perf_counter()
        enc.push(f)
        ms.append((time.perf_counter() - t) * 1000)
    enc.flush()
    return len(frames) / (time.perf_counter() - t0), ms, enc.stats.keyframes


def _receiver_process(port: int, out: str, ready):
    from imfcodec.live.peer import Receiver
    shown = []
    rx = Receiver("127.0.0.1", port, None, on_frame=shown.append, idle_timeout=15)
    ready.set()
    stats = asyncio.run(rx.run())
    np.savez(out, index=np.array([s.index for s in shown]), concealed=np.array([s.concealed for s in shown]),
             time=np.array([s.time for s in shown]),
             frames=np.stack([s.frame for s in shown]) if shown else np.zeros((0, 1, 1, 3), np.uint8),
             stats=json.dumps({k: (dict(v) if k == "reasons" else v) for k, v in vars(stats).items()}))


def lpips_of(shown, src):
    import torch
    from imfcodec.metrics import get_lpips
    lp = get_lpips("alex", "cpu")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255   # noqa: E731
    vals = []
    with torch.inference_mode():
        for i in range(0, len(shown), 16):
            vals += lp(t(shown[i:i + 16]), t(src[i:i + 16])).double().tolist()
    return float(np.mean(vals)) if vals else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clip")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--loss", type=float, default=0.0, help="fraction of media messages the shim drops")
    p.add_argument("--outage", type=float, default=1.0, help="seconds the link is cut midway (0: none)")
    p.add_argument("--quality", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. the machine's load)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from imfcodec import api
    from imfcodec.live.peer import LossShim, Sender
    info, frames = clip_frames(a.clip, a.seconds)
    fps = Fraction(info.fps)
    model = api.load_model(None, "cpu")
    load_before = os.getloadavg()
    enc_fps, enc_ms, enc_keys = encoder_alone(model, frames, fps, a.quality)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="imf-live-")
    rx_out = os.path.join(tmp, "shown.npz")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    rx = ctx.Process(target=_receiver_process, args=(port, rx_out, ready))
    rx.start()
    ready.wait(120)
    mid = a.seconds / 2
    outages = [(mid, mid + a.outage)] if a.outage > 0 else []
    shim = LossShim(a.loss, a.seed, outages)
    sender = Sender(frames, fps, info.width, info.height, "127.0.0.1", port, model, a.quality, shim=shim)
    ss = asyncio.run(sender.run())
    rx.join(120)
    if rx.exitcode != 0:
        sys.exit(f"bench/live.py: the receiver process failed (exit {rx.exitcode})")
    r = np.load(rx_out)
    rs = json.loads(str(r["stats"]))
    idx, concealed, t_shown, shown = r["index"], r["concealed"], r["time"], r["frames"]
    log = {i: (src, t) for i, src, t in ss.log}
    decoded = ~concealed
    lat = np.array([(t_shown[k] - log[idx[k]][1]) * 1000 for k in np.flatnonzero(decoded)])
    # recovery: from the end of the outage to the first decoded frame captured after its start
    recover = None
    if outages:
        t_start, t_end = shim.t0 + outages[0][0], shim.t0 + outages[0][1]
        after = [t_shown[k] for k in np.flatnonzero(decoded) if log[idx[k]][1] >= t_start]
        recover = (min(after) - t_end) * 1000 if after else None
    src = np.stack([frames[log[i][0]] for i in idx]) if len(idx) else shown
    duration = ss.frames_captured / float(fps)
    out = {
        "clip": os.path.basename(a.clip), "seconds": a.seconds, "loss": a.loss, "outage_s": a.outage,
        "loss_model": "seeded drop shim in the sender's transport (no netem on this machine)",
        "quality": sender.enc.quality, "model": model.model_id,
        "frames_captured": ss.frames_captured, "frames_dropped_behind": ss.frames_dropped,
        "frames_sent": ss.frames_sent, "frames_shown": int(decoded.sum()),
        "frames_concealed": int(concealed.sum()),
        "shown_fraction": float(decoded.sum()) / max(ss.frames_sent, 1),
        "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else None,
        "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else None,
        "kbps": ss.bytes * 8 / duration / 1000,
        "kbps_dtls": None if ss.wire_bytes is None else ss.wire_bytes * 8 / duration / 1000,
        "recover_ms": recover,
        "lpips_shown": lpips_of(shown[decoded], src[decoded]) if decoded.any() else None,
        "lpips_displayed": lpips_of(shown, src) if len(shown) else None,
        "encode_fps": enc_fps, "encode_ms_p50": float(np.percentile(enc_ms, 50)),
        "encode_ms_p99": float(np.percentile(enc_ms, 99)), "encode_keyframes": enc_keys,
        "live_encode_ms_p99": float(np.percentile(ss.encode_ms, 99)) if ss.encode_ms else None,
        "sender": {k: v for k, v in vars(ss).items() if k not in ("log", "encode_ms")},
        "receiver": rs,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(),
        "note": a.note,
        "command": "python bench/live.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: out[k] for k in ("frames_sent", "frames_shown", "latency_ms_p50", "latency_ms_p95",
                                          "kbps", "recover_ms", "lpips_shown", "encode_fps", "encode_ms_p99")}))


if __name__ == "__main__":
    main()
