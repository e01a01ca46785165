"""Fuzz the .imf reader and decoder: container.parse, StreamReader fed in random chunks,
and imfcodec.decode_bytes with a real model, under a memory cap and a time bound per case.

The only exceptions allowed are IMFCodecError subclasses; anything else, a case slower
than ``--case-seconds``, or memory beyond ``--mem-gb`` (address space) is a finding.

Coverage-guided (atheris, ``pip install imfcodec[fuzz]``); libFuzzer's flags pass through::

    python tests/fuzz/fuzz_imf.py NEW_CORPUS tests/fuzz/corpus -max_total_time=60
    python tests/fuzz/fuzz_imf.py NEW_CORPUS tests/fuzz/corpus -runs=100000 --case-seconds 30

(libFuzzer adds new inputs to the first folder: keep the seeds in tests/fuzz/corpus small.)

Inputs are whole streams. The custom mutator either applies libFuzzer's byte mutations and
then recomputes every CRC (streams.fix_crcs), or reads the mutated bytes as choices for a
field-by-field stream (streams.stream). Without atheris: ``--random N`` runs N streams
from the same generator on a seeded random.Random. ``--replay FILE|DIR...`` runs given
inputs once (for coverage: ``coverage run tests/fuzz/fuzz_imf.py --replay DIR``).
"""
from __future__ import annotations

import argparse
import random
import resource
import signal
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))      # the checkout's imfcodec, not an installed one

import numpy as np  # noqa: E402


def _imports():
    """imfcodec and the generator, imported late so that atheris can instrument them."""
    global streams, api, container, keyframe, IMFCodecError
    import streams
    from imfcodec import api
    from imfcodec.format import container
    from imfcodec.media import keyframe
    from imfcodec.errors import IMFCodecError

MAX_DECODE_FRAMES = 24          # per case: enough to reach every decoder state, keeps cases short


class CaseTimeout(Exception):
    """Not an IMFCodecError: a case over the time bound is a finding."""


def target_for(model) -> streams.Target:
    """Real keyframe pictures at the model's coded size (each codec, plus a VP9 inter
    picture, plus an AV1 picture four times too large), real token strings, a real
    frame-layer stream (face framing), and for a model with a base layer a real base
    stream (a key picture and inter pictures)."""
    import torch
    s = model.config.image_size
    yy, xx = np.mgrid[0:s, 0:s]
    pics = [np.stack([xx * 255 // s, yy * 255 // s, (xx + yy) * 127 // s], -1).astype(np.uint8),
            np.full((s, s, 3), 128, np.uint8)]
    t = streams.Target(model.model_id, model.hash8, s, model.config.token_dim)
    for name in keyframe.ENCODERS:
        enc = keyframe.KeyframeEncoder(name, 50)
        t.pictures[name] = [enc.encode(p, intra=(i == 0)) for i, p in enumerate(pics)]
    if model.has_base_layer:
        from imfcodec.media import baselayer
        enc = baselayer.BaseEncoder(56)
        thumbs = baselayer.thumbnail(torch.from_numpy(np.stack(pics * 2)).permute(0, 3, 1, 2) / 255.0,
                                     t.base_size)
        t.base_pictures = [enc.encode(p)[0] for p in thumbs]
    lw, lh = t.layer_size           # a frame-layer stream (versions 3 and 6): key, then inter
    enc = keyframe.KeyframeEncoder("vp9", 50)
    t.layer_pictures = [enc.encode(np.ascontiguousarray(p[:lh, :lw] if i % 2 == 0 else p[-lh:, -lw:]), intra=(i == 0))
                        for i, p in enumerate(pics * 2)]
    big = np.full((4 * s, 4 * s, 3), 128, np.uint8)
    t.pictures["av1"].append(keyframe.encode(big, "av1", 60))
    t.pictures["av1-chain"].append(t.pictures["av1"][-1])     # the same OBUs, in the chain
    g = torch.Generator().manual_seed(0)
    for count in (1, 2, 3, 4):
        for scale in (0, 3, 30):
            sym = (torch.randn(count, t.token_dim, generator=g) * scale).round().to(torch.int64)
            sym[0, 0] = container.MAX_SYMBOL if scale == 30 else sym[0, 0]      # one escape at the limit
            try:
                t.token_payloads.append((count, model.entropy.encode(sym, 1 + count)))
            except IMFCodecError:       # too large for a small model's packet: skip it
                pass
    return t


def check_one(data: bytes, model) -> str:
    """Run every target on one input; returns how far it got (for the statistics)."""
    try:
        header, packets = container.parse(data)
    except IMFCodecError as e:
        header, why = None, str(e)
    rng = random.Random(zlib.crc32(data))
    reader, got = container.StreamReader(), []
    try:
        pos = 0
        while pos < len(data):
            n = rng.choice([1, 2, 3, 7, 64, 1000, len(data)])
            reader.feed(data[pos:pos + n])
            pos += n
            got += list(reader.packets())
        if header is not None:
            assert reader.header == header and got == packets, "StreamReader and parse disagree"
    except IMFCodecError:
        assert header is None, "StreamReader refused a stream parse accepts"
    if header is None:
        return "refused by parse: " + why.split("(")[0].split(":")[0].split(" at byte")[0].split(" version")[0].strip()
    try:
        h, frames = api.decode_bytes(data, model)
        for i, f in enumerate(frames):
            assert f.shape == (h.height, h.width, 3) and f.dtype == np.uint8, f"frame {i}: {f.shape}"
            if i + 1 >= MAX_DECODE_FRAMES:
                break
    except IMFCodecError as e:
        return "refused by decode: " + str(e).split("(")[0].strip()
    return "decoded"


def limit_memory(gb: float):
    cap = int(gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def time_bound(seconds: int):
    def on_alarm(*_):
        raise CaseTimeout(f"case took over {seconds} s")
    signal.signal(signal.SIGALRM, on_alarm)


def run_case(data, model, seconds):
    if not seconds:                 # under libFuzzer, whose -timeout owns SIGALRM
        return check_one(data, model)
    signal.alarm(seconds)
    try:
        return check_one(data, model)
    finally:
        signal.alarm(0)


def mutation_outcomes(data: bytes, model, count: int, tag: str, seconds: int = 20) -> dict:
    """{outcome: how many} of ``count`` seeded mutations of a real stream (byte edits, CRCs
    fixed so the parser looks past them), each run through :func:`run_case`; the seeds are
    ``f"{tag}-{i}"``."""
    outcomes = {}
    for i in range(count):
        d = streams.RandomDraw(f"{tag}-{i}")
        out = run_case(streams.fix_crcs(streams._mutate(d, data)), model, seconds)
        outcomes[out] = outcomes.get(out, 0) + 1
    return outcomes


def load(model_name: str):
    import torch
    from imfcodec.model import load_model
    torch.set_num_threads(1)
    return load_model(model_name, "cpu")


def random_run(model, n: int, seed: int, seconds: int, target=None) -> dict:
    """n streams from the structure-aware generator; half of them also byte-mutated with
    CRCs fixed. Returns the outcome counts."""
    t = target or target_for(model)
    stats: dict = {}
    for i in range(n):
        d = streams.RandomDraw(f"{seed}-{i}")
        data = streams.stream(d, t)
        if i % 2:
            data = streams.fix_crcs(streams._mutate(d, data))
        out = run_case(data, model, seconds)
        stats[out] = stats.get(out, 0) + 1
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="imf-cpu", help="shipped model name or model file")
    ap.add_argument("--mem-gb", type=float, default=8.0, help="address-space cap of this process")
    ap.add_argument("--case-seconds", type=int, default=20, help="time bound of one case")
    ap.add_argument("--random", type=int, default=None, metavar="N", help="no atheris: N random streams")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay", nargs="+", default=None, help="run these inputs (files or folders) once")
    ap.add_argument("--write-seeds", default=None, metavar="DIR", help="write seed streams to DIR and exit")
    args, rest = ap.parse_known_args(argv)
    fuzzing = not (args.write_seeds or args.replay or args.random is not None)
    if fuzzing:
        import atheris
        with atheris.instrument_imports(include=["imfcodec", "streams"]):
            _imports()
    else:
        _imports()
    model = load(args.model)
    if not fuzzing:
        time_bound(args.case_seconds)
    if args.write_seeds:
        return write_seeds(model, Path(args.write_seeds))
    limit_memory(args.mem_gb)
    if args.replay:
        files = [f for p in map(Path, args.replay) for f in (sorted(p.iterdir()) if p.is_dir() else [p])]
        stats: dict = {}
        t0 = time.time()
        for f in files:
            out = run_case(f.read_bytes(), model, args.case_seconds)
            stats[out] = stats.get(out, 0) + 1
        print(f"replayed {len(files)} inputs in {time.time() - t0:.0f} s: {stats}")
        return 0
    if args.random is not None:
        t0 = time.time()
        stats = random_run(model, args.random, args.seed, args.case_seconds)
        print(f"{args.random} random streams in {time.time() - t0:.0f} s: {stats}")
        return 0
    t = target_for(model)

    def mutator(data, max_size, seed):
        r = random.Random(seed)
        k = r.random()
        if k < 0.45:
            return streams.fix_crcs(atheris.Mutate(data, max_size))[:max_size]
        if k < 0.5:
            return atheris.Mutate(data, max_size)
        return streams.stream(atheris.FuzzedDataProvider(atheris.Mutate(data, max_size)), t)[:max_size]

    def one(data):
        run_case(bytes(data), model, 0)

    atheris.Setup([sys.argv[0]] + rest + ["-timeout=%d" % (args.case_seconds + 10)], one,
                  custom_mutator=mutator)
    atheris.Fuzz()


def write_seeds(model, out: Path):
    """Small real streams (5 frames of a drifting blob, 2 per token packet) for each
    keyframe codec, one with frame count 0 (a live recording), and for a model with a base
    layer one with base pictures (version 5) and one face-framed with them (version 6)."""
    out.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    frames = []
    for i in range(5):
        blob = np.exp(-((yy - 24 - 3 * i) ** 2 + (xx - 32 + 2 * i) ** 2) / 60.0)[..., None]
        img = np.stack([xx / 64, yy / 48, 0.5 + 0 * xx], -1) * (1 - blob) + blob * np.array([0.9, 0.7, 0.6])
        frames.append((img * 255).astype(np.uint8))
    for name in keyframe.ENCODERS:
        data, _ = api.encode_frames(frames, 25, model, 1, keyframe_codec=name, packet_frames=2)
        (out / f"seed_{name}.imf").write_bytes(data)
        if name == "vp9":
            (out / "seed_live.imf").write_bytes(streams.with_header(data, frame_count=0))
    if model.has_base_layer:            # a version-5 stream: base pictures at the lowest base level
        q = next(q for q in range(1, 9) if model.base_size(q))
        data, _ = api.encode_frames(frames, 25, model, q, base_layer="on", packet_frames=2)
        (out / "seed_base.imf").write_bytes(data)
        wide = [np.ascontiguousarray(np.concatenate([f, f[:, ::-1]], 1)) for f in frames]   # 128x48
        data, _ = api.encode_frames(wide, 25, model, q, framing="face", base_layer="on", packet_frames=2)
        (out / "seed_base_face.imf").write_bytes(data)      # version 6
    print(f"seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
