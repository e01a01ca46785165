"""Soak: a long live call through the streaming API, and calls joining and leaving a MultiDecoder.

    python bench/soak.py --seconds 600 --out bench/results/soak_600.json [--clip FILE]
        [--realtime] [--quality 4] [--model NAME|FILE] [--multi-seconds S] [--calls 8] [--seed 0]
        [--parts single,multi] [--threads N]
    python bench/soak.py --seconds 3600 --multi-seconds 600 --out bench/results/soak_3600.json

Single call: a real clip (``--clip``, default the first of ``$IMFCODEC_DATA/val``) looped
for ``--seconds`` seconds of video, one frame per packet, through one ``Encoder`` -> packet
bytes -> ``StreamReader`` -> ``Decoder``: a sender and a receiver in one process. Each
decoded frame is checked against the encoder's closed-loop reconstruction of that frame
(``Encoder.recon`` at output size), which is what a lone decoder of the stream must give.

Many calls: one ``MultiDecoder`` and ``--calls`` call slots. Each slot joins at a seeded
random time in the first second, holds a call for a seeded random length (1 s up to the whole
replayed stream), receiving one frame's packets per tick, then leaves (``remove``), waits a
seeded random gap (0-4 s of video) and joins again. A call replays one of two streams encoded once before the part starts (the clip at
``--quality`` and at q1, token-only, so one step mixes base-layer and token-only groups)
from its start. Every frame it gives is compared with the hash of the same frame from a
lone ``Decoder`` of that stream.

``--realtime`` paces each part at the clip's frame rate (a frame, or a MultiDecoder step,
per frame interval); by default each runs as fast as it can. Sampled every second of video:
the process's resident memory (``/proc/self/statm``), and per frame the wall time of
encode + decode (single) or of the tick's pushes and ``step`` (multi).

JSON (``--out``, written whole at the end, also after SIGINT/SIGTERM, then with
``stopped_early``): per part (``single``, ``multi``) ``frames``,
``seconds_of_video``, ``rss_mb_first`` (after the first minute of video, or after the first
10 % of a run shorter than 2 minutes: ``rss_first_at_s`` says which), ``rss_mb_last``,
``rss_mb_max``, ``rss_growth_pct``, ``frame_ms_p50``, ``frame_ms_p99``,
``frame_ms_p99_first`` (the same first window), ``frame_ms_p99_last`` (the last window of
that length), ``errors`` (with the first messages), ``mismatches``, per-window series, and
``targets`` (issue 34's: RSS within 5 %, p99 within 1.5x of the first window's, no error, no
mismatch). The top level repeats the single part's fields (the multi part's with
``--parts multi``), errors and mismatches summed over the parts. Exit status 0 when every target
is met, 1 when one is missed, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

import imfcodec
from imfcodec.fileio import atomic_write, check_output_folder
from imfcodec.format import container
from imfcodec.options import DEFAULT_QUALITY
from imfcodec.media import video
from imfbench.report import machine_info

PAGE = os.sysconf("SC_PAGE_SIZE")
FIRST_WINDOW_S = 60.0      # "after the first minute" ...
SHORT_RUN_S = 120.0        # ... or the first 10 % of a run shorter than this
RSS_TOLERANCE = 0.05
P99_TOLERANCE = 1.5


STOP = []                  # set by SIGINT/SIGTERM: each part stops, the JSON says so and is written


def _stop(signum, frame):
    STOP.append(signum)


def rss_mb() -> float:
    """The process's resident set now (not its peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2 ** 20


def frame_hash(frame: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=8).hexdigest()


def default_clip() -> Path | None:
    data = os.environ.get("IMFCODEC_DATA")
    if not data:
        return None
    clips = sorted((Path(data) / "val").glob("*.mp4"))
    return clips[0] if clips else None


def load_clip(path, max_frames: int):
    """The clip's first frames played forward then backward (ping-pong): looped without a
    cut, as a call has none."""
    info, frames = video.read_video(path, max_frames=max_frames)
    frames = list(frames)
    if not frames:
        raise video.VideoError(f"{path}: no frames")
    return info, frames + frames[-2:0:-1]


class Meter:
    """Per-frame times and RSS samples of one part, with the windows the targets compare."""

    def __init__(self, frames: int, fps: float):
        self.fps = fps
        self.ms = np.full(frames, np.nan)           # touched now: its pages do not grow RSS later
        self.n = 0
        self.rss: list[tuple[float, float]] = [(0.0, rss_mb())]   # (seconds of video, MB)
        self.every = max(1, int(round(fps)))

    def add(self, ms: float):
        self.ms[self.n] = ms
        self.n += 1
        if self.n % self.every == 0:
            self.rss.append((self.n / self.fps, rss_mb()))

    def summary(self) -> dict:
        ms = self.ms[:self.n]
        secs = self.n / self.fps
        first_s = FIRST_WINDOW_S if secs >= SHORT_RUN_S else round(secs * 0.1, 3)
        k = max(1, int(round(first_s * self.fps)))
        rss_t = np.array([t for t, _ in self.rss])
        rss_v = np.array([v for _, v in self.rss])
        first_i = int(np.searchsorted(rss_t, first_s))
        rss_first = float(rss_v[min(first_i, len(rss_v) - 1)])
        last = rss_mb()
        p = lambda a, q: round(float(np.percentile(a, q)), 2) if len(a) else None   # noqa: E731
        win = max(1, int(round(max(first_s, 60.0 if secs >= 120 else first_s) * self.fps)))
        windows = [{"from_s": round(i / self.fps, 1), "frame_ms_p50": p(ms[i:i + win], 50),
                    "frame_ms_p99": p(ms[i:i + win], 99),
                    "rss_mb": round(float(rss_v[min(int(np.searchsorted(rss_t, (i + win) / self.fps)),
                                                     len(rss_v) - 1)]), 1)}
                   for i in range(0, self.n, win)]
        return {"frames": self.n, "seconds_of_video": round(secs, 2),
                "rss_first_at_s": first_s,
                "rss_first_rule": "after the first minute of video" if secs >= SHORT_RUN_S
                else "after the first 10 % of the run (shorter than 2 minutes)",
                "rss_mb_start": round(self.rss[0][1], 1), "rss_mb_first": round(rss_first, 1),
                "rss_mb_last": round(last, 1), "rss_mb_max": round(max(float(rss_v.max()), last), 1),
                "rss_growth_pct": round(100 * (last - rss_first) / rss_first, 2),
                "frame_ms_mean": round(float(ms.mean()), 2) if len(ms) else None,
                "frame_ms_p50": p(ms, 50), "frame_ms_p99": p(ms, 99),
                "frame_ms_p99_first": p(ms[:k], 99), "frame_ms_p99_last": p(ms[-k:], 99),
                "frame_ms_max": round(float(ms.max()), 1) if len(ms) else None,
                "windows": windows,
                "rss_mb_samples": [round(v, 1) for v in rss_v.tolist()],
                "rss_samples_every_s": round(self.every / self.fps, 3)}


def targets(part: dict) -> dict:
    t = {"rss_within_5pct": abs(part["rss_growth_pct"]) <= 100 * RSS_TOLERANCE,
         "p99_within_1.5x_first": (part["frame_ms_p99"] is not None
                                   and part["frame_ms_p99"] <= P99_TOLERANCE * part["frame_ms_p99_first"]),
         "no_error": part["errors"] == 0,
         "every_frame_equal": part["mismatches"] == 0 and part["frames_checked"] > 0}
    t["all"] = all(t.values())
    return t


def pace(t0: float, i: int, fps: float, realtime: bool):
    if realtime:
        wait = t0 + i / fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)


def single_part(model, clip, fps, seconds: float, quality: int, realtime: bool, log) -> dict:
    """One call: Encoder -> bytes -> StreamReader -> Decoder, the clip looped."""
    h, w = clip[0].shape[:2]
    n = int(round(seconds * fps))
    meter = Meter(n, fps)
    enc = imfcodec.make_encoder(model, w, h, fps, quality, framing="stretch", packet_frames=1)
    reader, dec = imfcodec.StreamReader(), None
    reader.feed(enc.header(frame_count=0).to_bytes())
    errors, mismatches, checked, messages = 0, 0, 0, []
    t_start = time.perf_counter()
    for i in range(n):
        if STOP:
            break
        pace(t_start, i, fps, realtime)
        t0 = time.perf_counter()
        try:
            shown = []
            for p in enc.push(clip[i % len(clip)]):
                reader.feed(imfcodec.packet_to_bytes(p))
            for packet in reader.packets():
                dec = dec or imfcodec.make_decoder(model, reader.header)
                shown += dec.push(packet)
            expect = video.from_model(enc.recon, w, h)[0]
        except Exception as e:                      # a soak counts failures and stops the part
            errors += 1
            messages.append(f"frame {i}: {type(e).__name__}: {e}")
            break
        meter.add(1000 * (time.perf_counter() - t0))
        if len(shown) != 1 or not np.array_equal(shown[0], expect):
            mismatches += 1
            if len(messages) < 10:
                messages.append(f"frame {i}: {len(shown)} frames decoded, or not the encoder's reconstruction")
        checked += 1
        if (i + 1) % int(round(60 * fps)) == 0:
            log(f"single: {(i + 1) / fps:.0f} s of video, {rss_mb():.1f} MB, "
                f"p99 {np.nanpercentile(meter.ms[:meter.n], 99):.1f} ms")
    if not errors:                                  # the stream's end: nothing may be left over
        for p in enc.flush():
            reader.feed(imfcodec.packet_to_bytes(p))
        for packet in reader.packets():
            dec = dec or imfcodec.make_decoder(model, reader.header)
            if dec.push(packet):
                errors += 1
                messages.append("frames decoded after the last frame")
    out = meter.summary()
    out.update(errors=errors, mismatches=mismatches, frames_checked=checked, messages=messages,
               keyframes=enc.stats.keyframes, wall_s=round(time.perf_counter() - t_start, 1),
               check="each decoded frame equals the encoder's closed-loop reconstruction (Encoder.recon)")
    return out


def encode_call(model, clip, fps, frames: int, quality: int) -> tuple[imfcodec.Header, list[list]]:
    """A call's stream, encoded once: header and one packet group per frame."""
    h, w = clip[0].shape[:2]
    enc = imfcodec.make_encoder(model, w, h, fps, quality, framing="stretch", packet_frames=1)
    packets = []
    for i in range(frames):
        packets += enc.push(clip[i % len(clip)])
    packets += enc.flush()
    header, parsed = imfcodec.parse(container.assemble(enc.header(frames), packets)[0])   # as a file holds it
    return header, container.frame_groups(parsed)


def lone_hashes(model, header, groups) -> list[str]:
    dec = imfcodec.make_decoder(model, header)
    out = []
    for g in groups:
        for p in g:
            out += [frame_hash(f) for f in dec.push(p)]
    assert len(out) == len(groups)
    return out


def multi_part(model, clip, fps, seconds: float, quality: int, calls: int, seed: int, stream_s: float,
               realtime: bool, log) -> dict:
    """``calls`` slots joining and leaving one MultiDecoder at seeded random times."""
    frames = int(round(stream_s * fps))
    t_prep = time.perf_counter()
    streams, prep = [], []
    for q in dict.fromkeys((quality, 1)):
        t = time.perf_counter()
        header, groups = encode_call(model, clip, fps, frames, q)
        t_enc = time.perf_counter() - t
        streams.append((q, header, groups, lone_hashes(model, header, groups)))
        prep.append({"quality": q, "encode_s": round(t_enc, 1), "lone_decode_s": round(time.perf_counter() - t - t_enc, 1)})
    prep_s = time.perf_counter() - t_prep
    rng = random.Random(seed)
    n = int(round(seconds * fps))
    meter = Meter(n, fps)
    md = imfcodec.MultiDecoder(model)
    # slot state: None (waiting until tick `wake`) or [sid, stream, next group, frames checked]
    slots = [{"call": None, "wake": rng.randrange(0, int(fps))} for _ in range(calls)]   # all join in the first second
    joins = leaves = errors = mismatches = checked = 0
    messages, active_max, active_sum = [], 0, 0
    owner: dict[int, dict] = {}
    t_start = time.perf_counter()
    for tick in range(n):
        if STOP:
            break
        pace(t_start, tick, fps, realtime)
        t0 = time.perf_counter()
        try:
            for s in slots:
                c = s["call"]
                if c is None and tick >= s["wake"]:
                    k = rng.randrange(len(streams))
                    length = rng.randrange(int(fps), frames + 1)
                    sid = md.add(streams[k][1])
                    c = s["call"] = {"sid": sid, "stream": k, "next": 0, "got": 0, "length": length}
                    owner[sid] = c
                    joins += 1
                if c is not None and c["next"] >= c["length"]:
                    md.remove(c["sid"])
                    del owner[c["sid"]]
                    s["call"], s["wake"] = None, tick + rng.randrange(0, int(4 * fps) + 1)
                    leaves += 1
                    continue
                if c is not None:
                    for p in streams[c["stream"]][2][c["next"]]:
                        md.push(c["sid"], p)
                    c["next"] += 1
            active = len(md)
            for sid, got in md.step().items():
                c = owner[sid]
                want = streams[c["stream"]][3]
                for f in got:
                    if frame_hash(f) != want[c["got"]]:
                        mismatches += 1
                        if len(messages) < 10:
                            messages.append(f"tick {tick}: call {sid} frame {c['got']} differs from a lone decoder's")
                    c["got"] += 1
                    checked += 1
        except Exception as e:
            errors += 1
            messages.append(f"tick {tick}: {type(e).__name__}: {e}")
            break
        meter.add(1000 * (time.perf_counter() - t0))
        active_max, active_sum = max(active_max, active), active_sum + active
        if (tick + 1) % int(round(60 * fps)) == 0:
            log(f"multi: {(tick + 1) / fps:.0f} s of video, {joins} joins, {rss_mb():.1f} MB, "
                f"p99 {np.nanpercentile(meter.ms[:meter.n], 99):.1f} ms")
    out = meter.summary()
    out.update(errors=errors, mismatches=mismatches, frames_checked=checked, frames_decoded=checked,
               messages=messages, joins=joins, leaves=leaves, calls=calls, seed=seed,
               calls_active_max=active_max, calls_active_mean=round(active_sum / max(meter.n, 1), 2),
               streams=[{"quality": q, "frames": len(g), "base_layer": h.base_layer is not None}
                        for q, h, g, _ in streams],
               prepare_s=round(prep_s, 1), prepare=prep, wall_s=round(time.perf_counter() - t_start, 1),
               check="each frame a call gives equals (blake2b hash) the same frame from a lone Decoder",
               frame_ms_is="wall time of one tick: every call's packets pushed and one MultiDecoder.step")
    # a step's time is per tick, and a tick holds several calls' frames: `frames` counts ticks
    out["frames_per_tick_is"] = "frames counts ticks (steps); frames_checked counts the frames the calls got"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, required=True, help="seconds of video of the single call")
    ap.add_argument("--parts", default="single,multi", help="which parts run (default single,multi)")
    ap.add_argument("--multi-seconds", type=float, default=None,
                    help="seconds of video of the MultiDecoder part (default --seconds; 0 skips it)")
    ap.add_argument("--out", required=True, help="JSON written at the end")
    ap.add_argument("--clip", default=None, help="video looped (default: first clip of $IMFCODEC_DATA/val)")
    ap.add_argument("--clip-frames", type=int, default=250, help="frames of the clip looped")
    ap.add_argument("--model", default=None, help="shipped model name or model file (default: the default model)")
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY, choices=range(1, 9), metavar="1..8")
    ap.add_argument("--realtime", action="store_true", help="pace at the clip's frame rate")
    ap.add_argument("--calls", type=int, default=8, help="MultiDecoder call slots")
    ap.add_argument("--call-seconds", type=float, default=20.0,
                    help="length of the stream each MultiDecoder call replays (encoded once)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default torch's: one per core); on a machine shared with other "
                         "jobs 1 avoids the threads of one pass waiting on each other")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    args.argv = argv
    multi_s = args.seconds if args.multi_seconds is None else args.multi_seconds
    parts = args.parts.split(",")
    if not parts or set(parts) - {"single", "multi"}:
        ap.error("--parts: single, multi or single,multi")
    if "multi" not in parts:
        multi_s = 0.0
    if args.seconds <= 0 or multi_s < 0 or (args.threads is not None and args.threads < 1) or args.calls < 1 or args.call_seconds < 1 or args.clip_frames < 1:
        ap.error("--seconds, --call-seconds, --clip-frames and --threads must be positive, --multi-seconds >= 0, "
                 "--calls >= 1")
    clip_path = args.clip or default_clip()
    if clip_path is None:
        ap.error("no --clip and no $IMFCODEC_DATA/val/*.mp4")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        check_output_folder(args.out)
        info, clip = load_clip(clip_path, args.clip_frames)
        model = imfcodec.load_model(args.model)
    except imfcodec.IMFCodecError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 2
    fps = float(info.fps)
    threads = torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:                    # a caller in this process (the smoke test) gets torch and signals back as they were
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        with torch.no_grad():
            return _run(args, parts, multi_s, clip_path, info, clip, model, fps, log)
    finally:
        torch.set_num_threads(threads)
        for sig, h in handlers.items():
            signal.signal(sig, h)
        STOP.clear()


def _run(args, parts, multi_s, clip_path, info, clip, model, fps, log) -> int:
    res = {"command": "python bench/soak.py " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
           "clip": Path(clip_path).name, "clip_frames": len(clip), "size": [info.width, info.height],
           "fps": fps, "model": model.model_id, "quality": args.quality, "realtime": args.realtime,
           "multi_seconds": multi_s,
           "multi_seconds_note": None if multi_s == args.seconds else
           f"the MultiDecoder part ran {multi_s:g} s of video, shorter than the single call's {args.seconds:g} s",
           "machine": machine_info(), "loadavg_start": os.getloadavg()}
    t0 = time.time()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if "single" in parts:
        res["single"] = single_part(model, clip, fps, args.seconds, args.quality, args.realtime, log)
        res["single"]["targets"] = targets(res["single"])
    if multi_s > 0 and not STOP:
        res["multi"] = multi_part(model, clip, fps, multi_s, args.quality, args.calls, args.seed,
                                  min(args.call_seconds, multi_s), args.realtime, log)
        res["multi"]["targets"] = targets(res["multi"])
    res["stopped_early"] = bool(STOP)      # by a signal: the parts hold what ran until then
    res["loadavg_end"] = os.getloadavg()
    res["wall_s"] = round(time.time() - t0, 1)
    first = res["single" if "single" in res else "multi"]
    for k in ("frames", "rss_first_at_s", "rss_mb_first", "rss_mb_last", "rss_mb_max", "frame_ms_p50",
              "frame_ms_p99", "frame_ms_p99_first"):
        res[k] = first[k]
    res["top_level_part"] = "single" if "single" in res else "multi"
    res["errors"] = sum(res[p]["errors"] for p in ("single", "multi") if p in res)
    res["mismatches"] = sum(res[p]["mismatches"] for p in ("single", "multi") if p in res)
    res["targets_met"] = not STOP and all(res[p]["targets"]["all"] for p in ("single", "multi") if p in res)
    atomic_write(Path(args.out), lambda f: f.write((json.dumps(res, indent=1) + "\n").encode()))
    summary = {k: v for k, v in res.items() if k not in ("single", "multi", "machine")}
    print(json.dumps(summary))
    return 0 if res["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
