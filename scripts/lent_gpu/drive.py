"""Device-side glue for a GPU session of this workplace (not part of the package).

The device image has torch + opencv but no PyAV: frames are decoded with cv2 there, and the
ImageNet weights travel as fp16 (size limit) and are restored to fp32 with a local manifest.
    drive.py setup                   assets, init checkpoint, frame caches (scripts/lent_gpu/README.md)
    drive.py train NAME CONFIG SECS  one run in /root/run_NAME, then slim copies into $OUT
"""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.getcwd())
import torch  # noqa: E402

H = os.environ["IMFCODEC_HOME"]
A = os.environ.get("GPU_A", ".gpu/a")
B = ".gpu/b"


def cv2_frames(path, raw_size=None, raw_fps=None, max_frames=None):
    import cv2
    cap = cv2.VideoCapture(str(path))
    n = 0
    while max_frames is None or n < max_frames:
        ok, f = cap.read()
        if not ok:
            break
        yield cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()


def setup():
    os.makedirs(H, exist_ok=True)
    man = json.load(open(f"{A}/manifest.json"))
    for name in ("vgg16_features.pt", "alexnet_lpips.pt"):
        st = {k: v.float() for k, v in torch.load(f"{A}/{name}", weights_only=True).items()}
        torch.save(st, f"{H}/{name}")
        b = open(f"{H}/{name}", "rb").read()
        man["files"][name] = {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
    json.dump(man, open(f"{H}/manifest.json", "w"))
    blob = torch.load("imfcodec/weights/imf-cpu.pt", weights_only=True)
    disc = torch.load(f"{A}/disc.pt", weights_only=True)
    from imfcodec.checkpoint import CKPT_FORMAT
    torch.save({"format": CKPT_FORMAT, "step": disc["step"], "model_config": blob["config"],
                "generator": {k: v.float() if v.is_floating_point() else v for k, v in blob["generator"].items()},
                "discriminator": {k: v.float() for k, v in disc["discriminator"].items()}}, "/root/init.pt")
    from imfcodec.train.data import build_cache, frame_cache_root
    t = time.time()
    tr = build_cache([f"{B}/train"], 256, frame_cache_root(256), log=lambda *a: None, reader=cv2_frames)
    va = build_cache([f"{A}/val"], 256, frame_cache_root(256), log=lambda *a: None, reader=cv2_frames)
    print(f"setup: {len(tr)} train clips {sum(c.frames for c in tr)} frames, {len(va)} val clips, "
          f"{time.time() - t:.1f} s; cuda {torch.cuda.is_available()} "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else ''}", flush=True)


def slim(src, dst):
    from imfcodec.checkpoint import checkpoint_generator_state
    ck = torch.load(src, map_location="cpu", weights_only=True)
    g = checkpoint_generator_state(ck)
    torch.save({"format": ck["format"], "step": ck["step"], "best": ck.get("best"),
                "train_config": ck["train_config"], "model_config": ck["model_config"],
                "generator": {k: v.half() if v.is_floating_point() else v for k, v in g.items()},
                "discriminator": {k: v.half() for k, v in ck["discriminator"].items()}}, dst)


def train(name, config, secs):
    from imfcodec.train.trainer import train as run
    out = f"/root/run_{name}"
    t = time.time()
    try:
        run(config, [f"{B}/train"], out, init="/root/init.pt", val_data=[f"{A}/val"],
            time_limit=float(secs), log=lambda *a: print(*a, flush=True), reader=cv2_frames)
    finally:
        o = os.environ.get("OUT", "/tmp")
        for k in ("best", "last"):
            if os.path.exists(f"{out}/{k}.pt"):
                slim(f"{out}/{k}.pt", f"{o}/{name}_{k}.pt")
        if os.path.exists(f"{out}/log.jsonl"):
            os.system(f"cp {out}/log.jsonl {o}/{name}_log.jsonl")
        print(f"{name}: done in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup()
    else:
        train(*sys.argv[2:5])
