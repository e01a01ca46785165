"""What ``imfcodec send`` and ``imfcodec receive`` run: a file played into a :class:`Sender`,
a :class:`Receiver` into a video file, Y4M on stdout, or nowhere."""
from __future__ import annotations

import asyncio

from ..media import video
from .peer import LiveError, Receiver, SendStats, Sender


def send(src, host: str, port: int, model=None, quality: int | None = None, device="auto",
         precision="auto") -> SendStats:
    """Play the video file ``src`` at its frame rate into a call to ``host``:``port``."""
    if str(src).startswith("/dev/video"):
        raise LiveError(f"{src}: camera input is not supported yet; send a video file (docs/live.md)")
    from .. import api
    m = api.load_model(model, device, precision)
    info = video.probe(src)
    sender = Sender(video.read_frames(src), info.fps, info.width, info.height, host, port, m, quality)
    return asyncio.run(sender.run())


def receive(host: str, port: int, output=None, model=None, device="auto"):
    """Wait at ``host``:``port`` for one call; write every frame index (concealed ones too)
    to ``output`` (a video file, ``-``: Y4M on stdout, None: nowhere), all or nothing.
    Returns (ReceiveStats, frames shown, frames concealed)."""
    from .. import api
    state = {"writer": None, "shown": 0, "concealed": 0}
    rx = None

    def on_frame(shown):
        if output is not None and state["writer"] is None:
            h = rx.live.header
            state["writer"] = video.VideoWriter(output, h.width, h.height, h.fps)
        if state["writer"] is not None:
            state["writer"].write(shown.frame)
        state["shown"] += 1
        state["concealed"] += shown.concealed

    loaded = (lambda header: api.model_for(header, model, device)) if model is not None else None
    rx = Receiver(host, port, loaded, on_frame=on_frame, device=device)
    try:
        stats = asyncio.run(rx.run())
    except BaseException:
        if state["writer"] is not None:
            state["writer"].abort()
        raise
    if state["writer"] is not None:
        state["writer"].close()
    elif output is not None:
        raise LiveError("the call ended before any frame decoded; nothing written")
    return stats, state["shown"], state["concealed"]
