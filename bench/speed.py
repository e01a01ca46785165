"""Speed, size and cost of the codec's networks at their native resolution.

    python bench/speed.py [--model NAME|PATH | --config configs/model/imf-cpu.yaml] [--frames 100]
    python bench/speed.py --streams 1,4,16,64 [--steps 20] [--repeats 1]
    python bench/speed.py --files A.imf B.imf ... [--repeats 3] --out FILE.json

Reports parameters and multiply-accumulates (MACs, counted by torch's FlopCounterMode) per
module, and wall-clock times measured after a warm-up on this machine: per-frame decode
with the keyframe's reference cached (IMF_D + IMF_A + D_F), the token encoder (E_T),
reference preparation (E_F, IMF_D(t_r), K/V), the default codec's intra keyframe, and whole-file encode and
decode through the public API. Random weights cost the same as trained ones, so
``--config`` measures an architecture before any training. Writes a JSON next to --out.

``--streams N1,N2,..``: many calls on one machine instead. N copies of one live stream
(one frame per packet, the keyframe's reference cached) are decoded frame by frame through
``imfcodec.MultiDecoder`` (one batched pass per step) and through N ``imfcodec.Decoder``s
one after the other, the same packets, after a warm-up. Prints one JSON object per N
(``streams``, ``total_fps``, ``per_stream_fps``, ``step_ms``, ``peak_rss_MB``, and the
same for the sequential decoders) and writes them all, with the machine, to --out
(default bench/results/speed_streams.json). With ``--repeats R`` each number is the median
of R runs (multi and sequential alternate), the runs listed. Frames/s count everything a
caller does per frame: pushing the packet (entropy decoding) and the step.

``--files F.imf ..``: whole real streams (e.g. the RD bench's), each decoded through
``imfcodec.decode_bytes`` once untimed and R times timed: frames/s with every keyframe,
base picture and refresh the stream really has, which a synthetic clip does not
(default R 3; one JSON row per file, median and runs; written to --out if given).
Beside that API time, the whole command a user runs, ``imfcodec decode F.imf OUT.mp4 -q``
in a fresh process, R times: ``command_fps`` (frames over the whole run, start-up
included), ``first_frame_s`` (launch to the first decoded frame: interpreter, imports,
model load, first keyframe) and ``command_steady_fps`` (the frames after the first, over
the time after it, the output's close included). Medians, runs listed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from imfcodec.options import PRECISIONS
from imfcodec.fileio import atomic_write
from imfcodec.format.container import frame_groups


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gmacs(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 2e9


def timeit(fn, n, warmup=5):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, statistics.mean(ts) * 1e3


def synthetic_clip(size: int, n: int) -> list[np.ndarray]:
    """n RGB frames (size, size, 3) of a pattern moving a few pixels a frame."""
    yy, xx = np.mgrid[0:size, 0:size]
    return [(np.stack([(xx + 3 * i) % size, yy, (xx + yy + i) % size], -1) * (255 / size)).astype(np.uint8)
            for i in range(n)]


def _reset_peak_memory(device) -> float:
    """Give freed heap back (glibc), reset the peak counters; returns the RSS now (MB)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:                      # Linux: reset this process's VmHWM, so each run has its own peak
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _peak_memory(device) -> dict:
    out = {"peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                out["peak_rss_MB"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    if device.type == "cuda":
        out["peak_gpu_MB"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _stream_run(m, header, groups, n_streams, warmup, batched: bool) -> dict:
    """Decode n_streams copies of one live stream frame by frame (``groups``: each frame's
    packets, :func:`imfcodec.format.container.frame_groups`); time the steps after the keyframe and ``warmup`` frames."""
    import imfcodec
    sync = torch.cuda.synchronize if m.device.type == "cuda" else (lambda: None)
    rss_start = _reset_peak_memory(m.device)          # the peak covers the decoders' whole life
    if batched:
        md = imfcodec.MultiDecoder(m)
        ids = [md.add(header) for _ in range(n_streams)]

        def tick(group):                 # a step's latency: packets in, every stream's frame out
            t = time.perf_counter()
            for sid in ids:
                for p in group:
                    md.push(sid, p)
            out = md.step()
            return sum(len(f) for f in out.values()), time.perf_counter() - t
    else:
        decs = [imfcodec.Decoder(m, header) for _ in range(n_streams)]

        def tick(group):
            t = time.perf_counter()
            return sum(len(d.push(p)) for d in decs for p in group), time.perf_counter() - t
    for g in groups[:1 + warmup]:                    # the keyframe, then warm-up frames
        tick(g)
    sync()
    frames, steps = 0, []
    t0 = time.perf_counter()
    for g in groups[1 + warmup:]:
        n, dt = tick(g)
        frames += n
        steps.append(dt)
    sync()
    wall = time.perf_counter() - t0
    assert frames == n_streams * len(steps)
    total = frames / wall
    return {"total_fps": round(total, 2), "per_stream_fps": round(total / n_streams, 2),
            "step_ms": round(statistics.median(steps) * 1e3, 2), **_peak_memory(m.device),
            "rss_start_MB": rss_start}


def streams_bench(m, source, counts, steps, warmup, repeats, out_path):
    """--streams: MultiDecoder against sequential Decoders for each stream count."""
    from imfcodec import api
    from imfcodec import options
    from imfcodec.format import container
    S = m.config.image_size
    frames = synthetic_clip(S, 1 + warmup + steps)
    data, _ = api.encode_frames(frames, 25, m, 4, packet_frames=1, refresh_drop=0.0)
    header, packets = container.parse(data)
    groups = frame_groups(packets)
    assert isinstance(groups[0][-1], container.KeyframePacket) and len(groups) == len(frames)
    med = lambda runs, k: round(statistics.median(r[k] for r in runs), 2)       # noqa: E731
    rows = []
    for n in counts:
        multi, seq = [], []
        for _ in range(repeats):
            multi.append(_stream_run(m, header, groups, n, warmup, batched=True))
            seq.append(_stream_run(m, header, groups, n, warmup, batched=False))
            print(f"# {n} streams: batched {multi[-1]['total_fps']} frames/s, sequential "
                  f"{seq[-1]['total_fps']} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        row = {"streams": n}
        for k in multi[0]:
            row[k] = med(multi, k)
        row["sequential"] = {k: med(seq, k) for k in seq[0]}
        row["speedup_total_fps"] = round(row["total_fps"] / row["sequential"]["total_fps"], 3)
        if repeats > 1:
            row["total_fps_runs"] = [r["total_fps"] for r in multi]
            row["sequential"]["total_fps_runs"] = [r["total_fps"] for r in seq]
        print(json.dumps(row), flush=True)
        rows.append(row)
    at25 = [r["streams"] for r in rows if r["per_stream_fps"] >= 25]
    res = {"source": source, "model_id": m.model_id, "image_size": S, "device": str(m.device),
           "gpu": torch.cuda.get_device_name(m.device) if m.device.type == "cuda" else None,
           "precision": str(m.dtype).replace("torch.", ""), "cpu": cpu_name(), "cores": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "load_average_before": [round(v, 2) for v in os.getloadavg()],
           "stream": "one frame per packet (packet_frames=1), quality 4, one keyframe, then tokens" + (f", base layer {header.base_layer.size} px" if header.base_layer else ""),
           "timed_steps": steps, "warmup_steps": warmup, "repeats": repeats,
           "largest_streams_at_25fps_each": max(at25) if at25 else None,
           "results": rows}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write((json.dumps(res, indent=1) + "\n").encode()))
    return 0


#: the recorded run of each shipped model (bench/results), where a plain run writes
RECORDED = {"imf-cpu": "bench/results/speed.json", "imf-cpu-base": "bench/results/speed_base.json"}


# `imfcodec decode IN OUT -q` as the command runs it (cli.run: main, then the exit without
# the interpreter's teardown), the progress callback printing when the first frame is decoded
# (the only change: no tqdm bar, as with -q)
_COMMAND = """import sys, time
from imfcodec import cli
first = []
def note(n):
    if n and not first:
        first.append(n)
        print(time.time(), flush=True)
cli._progress = lambda args, total=None, **kw: (note, lambda: None)
cli.run(["decode", *sys.argv[1:], "-q"])
"""


def command_run(path, frames: int, model: str | None = None) -> dict:
    """One ``imfcodec decode path OUT.mp4 [--model model]`` in a fresh interpreter, timed
    from its launch."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-c", _COMMAND, str(path), os.path.join(d, "out.mp4"),
                            *(["--model", str(model)] if model else [])],
                           capture_output=True, text=True)
        t1 = time.time()
    if r.returncode:
        raise SystemExit(f"imfcodec decode {path}: {r.stderr.strip()}")
    first = float(r.stdout.split()[0]) if r.stdout.split() else float("nan")
    return {"command_s": t1 - t0, "command_fps": frames / (t1 - t0), "first_frame_s": first - t0,
            "command_steady_fps": (frames - 1) / (t1 - first)}


def files_bench(m, source, files, repeats, out_path, model_arg: str | None = None, note: str | None = None) -> int:
    """Whole-file decode speed of real .imf streams (see the module docstring)."""
    import imfcodec
    from imfcodec.format.container import kbps
    rows = []
    for path in files:
        data = Path(path).read_bytes()
        header, frames = imfcodec.decode_bytes(data, m)
        sum(1 for _ in frames)                                              # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = sum(1 for _ in imfcodec.decode_bytes(data, m)[1])
            runs.append(n / (time.perf_counter() - t0))
        row = {"file": str(path), "frames": n, "quality": header.quality,
               "kbps": round(kbps(len(data), n, header.fps), 3), "decode_fps": round(float(np.median(runs)), 1),
               "runs": [round(r, 1) for r in runs]}
        cmd = [command_run(path, n, model_arg) for _ in range(repeats)]
        for k, digits in (("command_fps", 1), ("command_s", 2), ("first_frame_s", 2), ("command_steady_fps", 1)):
            row[k] = round(statistics.median(c[k] for c in cmd), digits)
        row["command_runs"] = [{k: round(v, 2) for k, v in c.items()} for c in cmd]
        row["load_average"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(row))
        rows.append(row)
    if out_path:
        res = {**({"note": note} if note else {}), "source": source, "cpu": cpu_name(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(),
               "command": "imfcodec decode FILE OUT.mp4 -q (a fresh process each run)", "files": rows}
        atomic_write(Path(out_path), lambda f: f.write((json.dumps(res, indent=1) + "\n").encode()))
    return 0


def default_out(model_id: str, random: bool = False) -> str:
    if random:
        return f"bench/results/speed_random_{model_id}.json"
    return RECORDED.get(model_id, f"bench/results/speed_{model_id}.json")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help="shipped model name or model file")
    g.add_argument("--config", default=None, help="model YAML: random weights")
    ap.add_argument("--frames", type=int, default=100, help="timed repetitions")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="network arithmetic (default auto: bf16 on a CPU with native bf16)")
    ap.add_argument("--streams", default=None,
                    help="comma-separated stream counts: batched multi-stream decoding (MultiDecoder)")
    ap.add_argument("--steps", type=int, default=20, help="--streams: timed frames per stream")
    ap.add_argument("--warmup", type=int, default=3, help="--streams: untimed frames first")
    ap.add_argument("--repeats", type=int, default=None,
                    help="--streams: runs per count (median; default 1); --files: timed decodes (default 3)")
    ap.add_argument("--files", nargs="+", default=None, help=".imf streams: whole-file decode speed")
    ap.add_argument("--note", default=None, help="--files: what the streams are, kept in the JSON")
    ap.add_argument("--out", default=None,
                    help="JSON written (default: the model's recorded file, bench/results/speed.json for "
                         "imf-cpu, speed_base.json for imf-cpu-base, speed_<model>.json otherwise; "
                         "speed_streams.json with --streams)")
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    counts = None
    if args.streams:
        try:
            counts = [int(v) for v in args.streams.split(",")]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1 or args.steps < 1 or args.warmup < 0:
            ap.error("--streams takes positive integers (1,4,16,64); --steps, --repeats >= 1")

    from imfcodec import api
    from imfcodec import options
    from imfcodec.media import keyframe, video
    from imfcodec.config import load_model_config
    from imfcodec.model import load_model, random_model
    if args.config:
        m = random_model(load_model_config(args.config), device=args.device, precision=args.precision)
        source = f"random weights, {args.config}"
    else:
        m = load_model(args.model, args.device, args.precision)
        source = f"model {m.model_id} ({m.sha256[:16]})"
    if counts:
        return streams_bench(m, source, counts, args.steps, args.warmup, args.repeats or 1,
                             args.out or "bench/results/speed_streams.json")
    if args.files:
        if args.config:
            ap.error("--files decodes with a model file (--model or the streams' own), not --config")
        return files_bench(m, source, args.files, args.repeats or 3, args.out, args.model, args.note)
    gen, S = m.generator, m.config.image_size
    torch.manual_seed(0)
    x = torch.rand(1, 3, S, S, device=m.device)
    t = gen.encode_token(x)
    ref = gen.prepare_reference(x, t)

    params = {k: sum(p.numel() for p in getattr(gen, k).parameters())
              for k in ("token_encoder", "dense_encoder", "token_decoder", "motion_alignment", "frame_decoder")}
    gen.requires_grad_(False)
    # a base-layer model decodes its default level with a base picture (issue 15)
    bsize = m.base_size(4) if m.has_base_layer else 0
    base = torch.rand(1, 3, bsize, bsize, device=x.device) if bsize else None
    cost = {"decode_frame": gmacs(lambda: gen.decode_frame(t, ref, base)),
            "token_encoder": gmacs(lambda: gen.encode_token(x)),
            "prepare_reference": gmacs(lambda: gen.prepare_reference(x, t))}
    n = args.frames
    with m.compute():                  # as the codec runs them (bf16 autocast or nothing)
        ref = gen.prepare_reference(x, t)
        dec_med, dec_mean = timeit(lambda: gen.decode_frame(t, ref, base), n)
        ref_med, _ = timeit(lambda: gen.prepare_reference(x, t), max(5, n // 10))
    tok_med, _ = timeit(lambda: gen.encode_token(x), n)
    rgb = video.to_uint8(x)[0]
    kc = options.DEFAULT_KEYFRAME_CODEC
    crf = m.keyframe_crf(4, kc, m.base_layer_at(4))
    kf_bytes = keyframe.KeyframeEncoder(kc, crf).encode(rgb)
    kfe, _ = timeit(lambda: keyframe.KeyframeEncoder(kc, crf).encode(rgb), 5, 1)     # intra picture
    kfd, _ = timeit(lambda: keyframe.KeyframeDecoder(kc).decode(kf_bytes), 10, 2)

    # whole pipeline through the public API on a synthetic moving clip at S x S
    frames = synthetic_clip(S, min(n, 50))
    api.encode_frames(frames[:3], 25, m, 4)                                        # warm-up
    data, st = api.encode_frames(frames, 25, m, 4, refresh_drop=0.0)
    # the first decode in a process also builds the kernels for the decoder's batch shapes
    # (a one-off cost, reported apart); the second is the steady speed
    t0 = time.perf_counter()
    nout = sum(1 for _ in api.decode_bytes(data, m)[1])
    dec_cold = (time.perf_counter() - t0)
    t0 = time.perf_counter()
    nout = sum(1 for _ in api.decode_bytes(data, m)[1])
    dec_api = (time.perf_counter() - t0)

    res = {
        "source": source, "model_id": m.model_id, "image_size": S, "device": str(m.device),
        "precision": str(m.dtype).replace("torch.", ""),
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "base_picture": bsize,
        "params_M": {k: round(v / 1e6, 3) for k, v in params.items()},
        "params_total_M": round(sum(params.values()) / 1e6, 3),
        "gmacs": {k: round(v, 3) for k, v in cost.items()},
        "decode_frame_ms_median": round(dec_med, 2), "decode_frame_ms_mean": round(dec_mean, 2),
        "decode_fps_networks": round(1000 / dec_med, 1),
        "token_encoder_ms": round(tok_med, 2), "prepare_reference_ms": round(ref_med, 2),
        "keyframe_codec": kc, "keyframe_encode_ms": round(kfe, 1), "keyframe_decode_ms": round(kfd, 2),
        "api_encode_fps": round(st.frames / st.seconds, 1),
        "api_decode_fps": round(nout / dec_api, 1),
        "api_decode_fps_first_call": round(nout / dec_cold, 1),
        "api_frames": len(frames),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out = Path(args.out or default_out(m.model_id, random=bool(args.config)))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write((json.dumps(res, indent=1) + "\n").encode()))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
