"""The bench loop: for each clip, every codec at every coded size and setting, measured, cached,
and the tables rewritten after each clip (so a stopped run leaves complete clips behind)."""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from imfbench.anchors import ANCHORS, CODECS, THREAD_TYPE, VP9_CPU_USED, WARMUP_FRAMES, AnchorRunner, \
    ImfRunner, codec_name
from imfbench.cache import RowCache, source_digest
from imfbench.common import BenchError, fmt_num, is_imf, parse_int_list, safe_name
from imfbench.metrics import MIN_STILL_FRACTION, PSNR_CAP, STILL_LEVELS, Metrics, summary, tlp_per_frame
from imfbench.report import codec_versions, machine_info, plot_detail, plot_rd, write_tables
from imfbench.source import find_videos, test_source

from imfcodec.media import baselayer, keyframe

FAST_FRAMES = 8
FAST_QUALITIES = (2, 6)
MIN_SIZE = 32


def default_sizes(test_size: int) -> list[int]:
    """The test size, half and a quarter of it (256: 256, 128, 64), none below MIN_SIZE."""
    return [s for s in (test_size, test_size // 2, test_size // 4) if s >= MIN_SIZE]


def _imf_rule(model, q: int, kc: str, base_layer: str, anchor: int | None = None) -> str:
    """One level's encoder rule as the log prints it: the base-layer levels refresh by
    their own min interval (imfcodec.codec.encoder.Encoder); a keyframe anchor (``anchor``:
    --imf-anchor, else the level's) is named where there is one."""
    base = model.base_layer_at(q, base_layer)
    rule = (f"q{q} {model.keyframe_crf(q, kc, base)} {model.refresh_drop(q):g}/"
            f"{model.min_keyframe_interval(q, base, kc):g}")
    a = (model.base_anchor(q) if anchor is None else anchor) if base else 0
    return rule + (f" {model.base_size(q)}/{model.base_crf(q)}" if base else "") + (f" anchor {a}" if a else "")


def _imf_encoders(model, q: int, kc: str, base_layer: str, keyframe_options: dict | None = None) -> dict:
    """The keyframe and base-layer encoders' settings of one level (imfcodec.media.keyframe)."""
    base = model.base_layer_at(q, base_layer)
    out = {"keyframe": keyframe.encoder_settings(kc, model.keyframe_crf(q, kc, base), keyframe_options)}
    if base:
        out["base"] = keyframe.encoder_settings(baselayer.CODEC, model.base_crf(q), baselayer.OPTIONS)
    return out


def _error(msg: str) -> int:
    print(f"rd_curve.py: error: {msg}", file=sys.stderr)
    return 2


def run(args, argv, out: Path, streams: Path, log, skip, skipped) -> int:
    t_start = time.time()
    argv = list(sys.argv[1:] if argv is None else argv)
    log("rd_curve.py " + " ".join(argv))
    # codecs
    asked = [c.strip() for c in args.codecs.split(",") if c.strip()]
    codecs = []
    for c in asked:
        if c not in CODECS:
            skip(c, "codec", f"unknown codec {c!r}; choose from {', '.join(CODECS)}")
        elif c not in codecs:
            codecs.append(c)
    import av
    for c in list(codecs):
        if c in ANCHORS:
            try:
                av.codec.Codec(ANCHORS[c].encoder, "w")
            except Exception:
                skip(c, "codec", f"encoder {ANCHORS[c].encoder} is not in this PyAV build")
                codecs.remove(c)
    if not codecs:
        return _error(f"no usable codec in --codecs {args.codecs!r} (choose from {', '.join(CODECS)})")
    # settings
    try:
        qualities = (list(FAST_QUALITIES) if args.fast and args.qualities is None else
                     parse_int_list(args.qualities or "1-8", 1, 8))
        ladders = {n: list(a.fast_ladder if args.fast else a.ladder) for n, a in ANCHORS.items()}
        small = {n: list(a.fast_ladder if args.fast else a.small_ladder) for n, a in ANCHORS.items()}
        for spec in args.ladder:
            name, _, lst = spec.partition("=")
            if name not in ANCHORS:
                raise argparse.ArgumentTypeError(f"--ladder {spec!r}: unknown anchor {name!r} "
                                                 f"(choose from {', '.join(ANCHORS)})")
            ladders[name] = small[name] = sorted(parse_int_list(lst, 0, ANCHORS[name].max_crf))
        sizes_arg = parse_int_list(args.sizes, MIN_SIZE, 4096) if args.sizes else None
    except argparse.ArgumentTypeError as e:
        return _error(str(e))
    frames = args.frames or (FAST_FRAMES if args.fast else 250)
    if frames < 1:
        return _error("--frames must be >= 1")
    if args.dists_every < 1:
        return _error("--dists-every must be >= 1")
    # model
    model = None
    if "imf" in codecs:
        import imfcodec
        try:
            model = imfcodec.load_model(args.model, args.device, args.precision)
        except imfcodec.IMFCodecError as e:
            skip("imf", "codec", f"model not loaded: {e}")
            codecs.remove("imf")
        if model is not None and args.base_layer == "on" and not model.has_base_layer:
            skip("imf", "codec", f"--base-layer on needs a model with a base layer; {model.model_id} is token-only")
            codecs.remove("imf")
            model = None
    size = args.size or (model.config.image_size if model is not None else 256)
    if model is not None and size != model.config.image_size:
        log(f"note: test size {size} differs from the model's coded size {model.config.image_size}")
    size_from = ("the model's coded size" if model is not None and size == model.config.image_size
                 else "--size" if args.size else "default, no imf model")
    sizes = sorted({s for s in (sizes_arg or default_sizes(size)) if s <= size} | {size}, reverse=True)
    if sizes_arg and any(s > size for s in sizes_arg):
        log(f"note: coded sizes above the test size {size} are not used: "
            f"{[s for s in sizes_arg if s > size]}")
    log(f"test size {size}x{size} ({size_from}), {frames} frames per clip, codecs {','.join(codecs)}, "
        f"anchor coded sizes {sizes}, imf qualities {qualities}, "
        + ", ".join(f"{c} crf {ladders[c]} (reduced sizes {small[c]})" for c in codecs if c in ANCHORS))
    metrics = Metrics(size, skip, args.dists_every, use_dists=not args.no_dists)
    cache = RowCache(out)
    reuse = []
    for d in args.reuse or []:
        if not (Path(d) / "cache").is_dir():
            return _error(f"--reuse {d}: not a bench output folder (no cache/ in it)")
        reuse.append(RowCache(Path(d), writable=False))
    if args.remeter_dists and metrics.dists is None:
        return _error("--remeter-dists needs DISTS (" + (metrics.dists_note or "not measured") + ")")
    runners = {}
    if model is not None:
        try:
            runners["imf"] = ImfRunner(model, streams, args.imf_keyframe_codec, args.base_layer,
                                       args.imf_keyframe_preset, args.imf_anchor)
        except keyframe.KeyframeError as e:
            return _error(f"--imf-keyframe-preset: {e}")
        kc = runners["imf"].keyframe_codec
        log(f"imf keyframe codec {kc}"
            + (f" at preset {args.imf_keyframe_preset}" if args.imf_keyframe_preset is not None else "")
            + "; per quality: keyframe CRF, refresh drop dB / min interval s[, base picture side/CRF]: "
            + ", ".join(_imf_rule(model, q, kc, args.base_layer, args.imf_anchor) for q in qualities))
    for c in codecs:
        if c in ANCHORS:
            runners[c] = AnchorRunner(ANCHORS[c], streams, strip_sei=not args.keep_sei)
    # plan: (runner name, coded size, [(label, value, order)])
    plan = []
    for c in runners:
        if c == "imf":
            plan.append((c, size, runners[c].settings(qualities)))
        else:
            for s in sizes:
                plan.append((c, s, runners[c].settings(ladders[c] if s == size else small[c])))

    def key_of(c, s, label, n, digest, legacy=None):
        k = {"codec": c, "size": s, "setting": label, "frames": n, "test_size": size, "source": digest,
             "metrics": metrics.config(legacy)}
        if c == "imf":
            k.update(model=model.sha256, precision=str(model.dtype), device=str(model.device),
                     keyframe_codec=runners["imf"].keyframe_codec)
            if model.has_base_layer:    # a token-only model codes alike under every setting: old keys hold
                k.update(base_layer=runners["imf"].base_layer)
            # the level's encoder rule (keyframe CRF, refresh, base picture) and the encoders'
            # own options: a ladder changed in code (a model file without a ladder key takes the
            # code's table) or a keyframe preset changed in code codes anew
            imf = runners["imf"]
            level = (model, int(label[1:]), imf.keyframe_codec, imf.base_layer)
            k.update(rule=_imf_rule(*level, imf.anchor), encoders=_imf_encoders(*level, imf.keyframe_options))
        else:
            a = ANCHORS[c]
            k.update(options=a.options(int(label[3:]), n + 1), encoder=a.encoder, thread_type=THREAD_TYPE,
                     strip_sei=not args.keep_sei)
        return k

    # videos
    videos = find_videos(args.videos, skip)
    names = {}
    for p in videos:
        base = safe_name(p.stem)
        name, k = base, 2
        while name in names.values():
            name, k = f"{base}_{k}", k + 1
        names[p] = name
    results, ran = [], []
    from tqdm import tqdm
    per_clip = sum(len(st) for _, _, st in plan)
    bar = tqdm(total=len(videos) * per_clip, unit="run", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
    log.bar = bar
    counts = {"measured": 0, "cached": 0, "reused": 0, "remetered": 0}

    def write_meta(complete: bool, made=()):
        x264 = runners["x264"].version_info() if "x264" in runners else ""
        meta = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "argv": argv, "complete": complete,
            "machine": machine_info(),
            "test_source": {"size": [size, size], "size_from": size_from, "frames": frames,
                            "resize": "imfcodec.media.video.to_model (bilinear, antialias, stretch) then to_uint8",
                            "fps": "clip's real rate (imfcodec.media.video.probe)"},
            "imf": None if model is None else {
                "model_id": model.model_id, "sha256": model.sha256, "image_size": model.config.image_size,
                "token_dim": model.config.token_dim, "device": str(model.device),
                "precision": str(model.dtype).replace("torch.", ""), "qualities": qualities,
                "model_arg": args.model, "base_layer": args.base_layer,
                "keyframe_preset": args.imf_keyframe_preset, "anchor": args.imf_anchor, "imfcodec_version": __import__("imfcodec").__version__},
            "anchors": {c: {"ladder": ladders[c], "reduced_size_ladder": small[c], "coded_sizes": sizes,
                            "options": ANCHORS[c].options("<crf>", "<frames+1>"),
                            "encoder": ANCHORS[c].encoder, "thread_type": THREAD_TYPE,
                            "format": ANCHORS[c].fmt, "strip_x264_info_sei": c == "x264" and not args.keep_sei}
                        for c in runners if c in ANCHORS},
            "reduced_size": "downscale: imfcodec.media.video.to_model (bilinear, antialias) to the coded size, "
                            "to_uint8; upscale of the decoded frames: PIL Image.resize LANCZOS to the test size",
            "vp9_cpu_used": VP9_CPU_USED,
            "versions": codec_versions([c for c in runners if c in ANCHORS], x264),
            "metrics": {"psnr": f"10 log10(1/MSE) over RGB in [0,1] per frame, capped at {PSNR_CAP} dB, "
                                "mean over frames",
                        "ms_ssim": metrics.msssim_note or "pytorch_msssim 5-scale defaults, data_range 1, "
                                   "per frame, mean over frames",
                        "lpips": metrics.lpips_note or "LPIPS v0.1 AlexNet, inputs [0,1], per frame, mean over frames",
                        "dists": metrics.dists_note or f"imfcodec.metrics.DISTS on one frame in each run of "
                                 f"{args.dists_every} (bench/imfbench/metrics.py dists_frames: a seeded "
                                 f"offset, the same frames for every codec), mean over those",
                        "pulse": "mean over t of |LPIPS_t - LPIPS_(t-1)|",
                        "tlp": "TecoGAN's tLP: mean over t of |LPIPS(S_(t-1), S_t) - LPIPS(D_(t-1), D_t)|",
                        "flicker": f"mean over t of the mean |(D_t - S_t) - (D_(t-1) - S_(t-1))| (BT.601 luma, "
                                   f"8-bit levels) over pixels with |S_t - S_(t-1)| <= {STILL_LEVELS} "
                                   f"(frames with < {MIN_STILL_FRACTION:.0%} such pixels left out)"},
            "remetered": "rows coded by an earlier run (DISTS on frames 0, 25, 50, ..., or no tLP): "
                         "their saved streams decoded again and DISTS (on the frames above) and tLP measured; "
                         "the other metrics, rate and speeds are the earlier run's",
            "timing": f"wall clock (time.perf_counter), frames / seconds, after a {WARMUP_FRAMES}-frame "
                      "warm-up encode+decode per clip, codec and size; encode: RGB frames in -> bytes "
                      "(downscale included); decode: stream bytes -> RGB frames at the test size "
                      "(upscale included). Cached and reused rows keep the speeds of the run that measured them.",
            "rows": counts,
            "videos_ran": ran, "skipped": [dict(zip(["item", "kind", "reason"], s)) for s in skipped],
            "outputs": ["rd.csv", "summary.md", "hulls.csv", "bdrate.csv", "frames.csv", "streams.csv", "skipped.csv"]
                       + list(made),
            "seconds": round(time.time() - t_start, 1),
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    def measure(runner, vname, cname, src, fps, s, digest, todo, group) -> int:
        """Code, decode and measure the settings in ``todo``; results go into ``group``."""
        try:
            runner.warm_up(src, fps, todo[0][1], s)
        except Exception as e:
            skip(f"{vname}:{cname}", "codec", f"warm-up failed: {type(e).__name__}: {e}")
            bar.update(len(todo))
            return 0
        metrics.set_source(digest, src)
        done = 0
        for label, value, key in todo:
            bar.set_postfix_str(f"{cname} {label}")
            try:
                r, dec = runner.run(vname, src, fps, value, s)
            except Exception as e:
                skip(f"{vname}:{cname}:{label}", "setting", f"{type(e).__name__}: {e}")
                bar.update(1)
                continue
            r.per_frame = metrics(src, dec)
            cache.put(r, key)
            group[label] = r
            counts["measured"] += 1
            done += 1
            sm = summary(r.per_frame)
            log(f"[{vname}] {cname} {label}: kbps={r.kbps:.3f} psnr={sm['psnr']:.3f} "
                f"lpips={fmt_num(sm['lpips'], 5)} dists={fmt_num(sm['dists'], 5)} "
                f"pulse={fmt_num(sm['pulse'], 4)} flicker={fmt_num(sm['flicker'], 3)} "
                f"tlp={fmt_num(sm['tlp'], 4)} enc={r.enc_fps:.1f}fps dec={r.dec_fps:.1f}fps bytes={r.nbytes} "
                f"keyframes={r.keyframes}" + (f" ({r.note})" if r.note else ""))
            bar.update(1)
        return done

    def remeter(runner, vname, cname, src, digest, todo, group) -> int:
        """Rows of ``todo`` (label, earlier row, new key) keep their stream, rate and other
        metrics; their DISTS (on the current frames) and tLP are measured from the decoded stream."""
        metrics.set_source(digest, src)
        done = 0
        for label, r, key in todo:
            bar.set_postfix_str(f"{cname} {label} (DISTS)")
            try:
                dec = runner.decode(r, size)
                old = Path(r.stream)
                if out.resolve() not in old.resolve().parents:      # a --reuse folder's stream
                    new = streams / old.name
                    shutil.copyfile(old, new)
                    r.stream = str(new)
                r.per_frame["dists"] = metrics.dists_per_frame(src, dec)
                r.per_frame["tlp"] = tlp_per_frame(metrics.lpips_steps(src), metrics.lpips_steps(dec))
            except Exception as e:
                skip(f"{vname}:{cname}:{label}", "setting", f"--remeter-dists: {type(e).__name__}: {e}")
                bar.update(1)
                continue
            r.note = "; ".join(x for x in [r.note, "DISTS and tLP re-measured"] if x)
            cache.put(r, key)
            group[label] = r
            counts["remetered"] += 1
            done += 1
            sm = summary(r.per_frame)
            log(f"[{vname}] {cname} {label}: DISTS and tLP re-measured {fmt_num(sm['dists'], 5)} "
                f"{fmt_num(sm['tlp'], 5)}")
            bar.update(1)
        return done

    detail_frames = {}
    for path in videos:
        vname = names[path]
        bar.set_description(vname)
        try:
            src, fps = test_source(path, frames, size)
        except BenchError as e:
            skip(str(path), "video", str(e))
            bar.update(per_clip)
            continue
        n = len(src)
        digest = source_digest(src)
        log(f"[{vname}] {path}: {n} frames at {float(fps):.4g} fps ({fps}), test size {size}x{size}"
            + (f" (clip has only {n} < {frames} frames)" if n < frames else ""))
        ok = 0
        for c, s, settings in plan:
            runner = runners[c]
            cname = runner.label if c == "imf" else codec_name(c, s, size)
            todo, again, group = [], [], {}
            for label, value, order in settings:
                key = key_of(c, s, label, n, digest)
                r, how, where = cache.get(vname, cname, label, key, fps), "cached", ""
                for rc in reuse:
                    if r is None:
                        r, how, where = rc.get(vname, cname, label, key, fps), "reused", f"reused ({rc.root})"
                if r is None and args.remeter_dists:
                    for legacy in ("tlp", "dists"):
                        old = key_of(c, s, label, n, digest, legacy=legacy)
                        for rc in [cache] + reuse:
                            r = r or rc.get(vname, cname, label, old, fps)
                    if r is not None:
                        again.append((label, r, key))
                        continue
                if r is None:
                    gone = [str(rc.missing) for rc in [cache] + reuse if rc.missing is not None]
                    if gone:      # a matching row without its stream (a cache copied without streams/)
                        log(f"[{vname}] {cname} {label}: the cached row's stream is missing ({gone[0]}): "
                            "measuring again")
                    todo.append((label, value, key))
                    continue
                r.note = "; ".join(x for x in [r.note, where] if x)
                group[label] = r
                counts[how] += 1
                log(f"[{vname}] {cname} {label}: {how} kbps={r.kbps:.3f}")
                ok += 1
                bar.update(1)
            if again:
                ok += remeter(runner, vname, cname, src, digest, again, group)
            if todo:
                ok += measure(runner, vname, cname, src, fps, s, digest, todo, group)
            results += [group[label] for label, _, _ in settings if label in group]
        if ok:
            ran.append(vname)
            detail_frames[vname] = src[n // 2]
        del src
        write_tables(results, out, skipped, size)
        write_meta(False)
    bar.close()
    log.bar = None
    write_tables(results, out, skipped, size, complete=True)
    made = []
    if results:
        detail = args.detail if args.detail in ran else (ran[0] if ran else None)
        if args.detail and args.detail not in ran:
            log(f"note: --detail {args.detail!r} is not a clip that ran; using {detail!r}")
        try:
            made += plot_rd(results, out, log)
            if detail:
                for r in results:
                    if r.video == detail:
                        r.mid_frame_src = detail_frames[detail]
                        r.mid_frame = runners["imf" if is_imf(r.family) else r.family].decode_middle(r, size)
                made += plot_detail(results, detail, out, log)
        except Exception as e:   # a plot must never cost the numbers
            skip("plots", "output", f"plotting failed: {type(e).__name__}: {e}")
            write_tables(results, out, skipped, size, complete=True)
    write_meta(True, made)
    summary_line = (f"rd_curve: {len(ran)} video(s) ran, {len(results)} streams "
                    f"({counts['measured']} measured, {counts['cached']} from the cache, "
                    f"{counts['reused']} reused, {counts['remetered']} with DISTS and tLP re-measured), {len(skipped)} item(s) skipped"
                    + (f" ({'; '.join(f'{k} {i}' for i, k, _ in skipped)}; see {out / 'skipped.csv'})"
                       if skipped else "")
                    + f"; results in {out}")
    log.fh.write(summary_line + "\n")
    print(summary_line)
    return 0 if ran else 1
