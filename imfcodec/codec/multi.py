"""Many streams on one machine: the frame networks batched over streams.

A service decoding many calls at once holds them in one :class:`MultiDecoder`::

    md = MultiDecoder(model)
    a = md.add(header_a)                      # -> stream id; b = md.add(header_b) ...
    md.push(a, packet)                        # any time, per stream, in stream order
    for sid, frames in md.step().items():     # every stream with a pending frame advances by
        show(sid, frames)                     # one, in ONE forward pass of IMF_D + IMF_A + D_F
    md.remove(a)                              # a call ends; its undecoded frames are dropped

Per stream everything is what :class:`imfcodec.codec.decoder.Decoder` does (it *is* a Decoder for
the keyframe chain, the entropy decoding and the reference, E_F / IMF_D(t_r) / K/V, built
once per keyframe when the keyframe is pushed). Only the per-frame networks move here: the
cached references of the streams in a step are stacked along the batch (B = streams), each
stream's symbols are dequantized with its own quality's step, and x̂_c = D_F(IMF_A(IMF_D(t̂_c),
ref)) runs once for all. A stream whose keyframe arrives does its reference work in
:meth:`MultiDecoder.push`, between steps: the others' step does not wait for it, and its
next token frame joins the batch with the new reference. Token frames already queued keep
the reference they were coded against.

Base-layer streams (format version 5) decode here too: a stream's base pictures are decoded
when their packets are pushed and ride with their token frames; a step whose streams differ
in base picture size (or mix base-layer and token-only streams) runs one pass per size.

All streams share the one model (a header naming another model is refused with
:class:`~imfcodec.model.ModelError`). Networks are per-sample (no batch statistics at
inference), so a stream's frames equal its lone Decoder's up to the arithmetic a different
batch size picks (tests/test_multi.py).
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..media import video
from .decoder import Decoder
from ..format.container import BasePacket, Header, KeyframePacket, StreamError
from ..model import CodecModel, ModelError
from ..models.imf import ReferenceState, ScaleCache


@dataclass
class _Stream:
    dec: Decoder
    # in display order: np.ndarray (a keyframe picture, ready) or (symbols (C,), reference,
    # base picture (1, 3, b, b) or None, keyframe anchor or None)
    queue: deque = field(default_factory=deque)


def stack_references(refs: list[ReferenceState]) -> ReferenceState:
    """One reference of batch B from B references of batch 1, scale by scale."""
    return ReferenceState([ScaleCache.cat(list(cs)) for cs in zip(*(r.caches for r in refs))])


def _slice(ref: ReferenceState, lo: int, hi: int) -> ReferenceState:
    return ReferenceState([c.map(lambda t: t[lo:hi]) for c in ref.caches])


class MultiDecoder:
    """N independent streams of one model, advanced together one frame per :meth:`step`.

    ``max_batch`` caps the streams per forward pass (None: all in one); a step with more
    runs several passes. The stacked references of the last step are kept while the same
    streams keep the same references (one more copy of them in memory), so a steady step
    costs no stacking."""

    def __init__(self, model: CodecModel, max_batch: int | None = None):
        if max_batch is not None and max_batch < 1:
            raise ModelError("max_batch must be >= 1")
        self.m = model
        self.max_batch = max_batch
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count()
        self._stacked: tuple[list, ReferenceState] | None = None

    # ---- membership ------------------------------------------------------------------
    def add(self, header: Header) -> int:
        """Open a stream for ``header`` (which must name this model); returns its id."""
        if header.framing is not None:
            raise StreamError("MultiDecoder takes whole-frame streams (format version 2); decode a "
                              "face-framed one (version 3 or 6) with imfcodec.make_decoder")
        dec = Decoder(self.m, header)           # refuses another model with a ModelError
        sid = next(self._ids)
        self._streams[sid] = _Stream(dec)
        return sid

    def remove(self, sid: int):
        """Close a stream; frames it has not yet given out are dropped."""
        self._get(sid)
        del self._streams[sid]

    @property
    def streams(self) -> list[int]:
        return list(self._streams)

    def __len__(self):
        return len(self._streams)

    def header(self, sid: int) -> Header:
        return self._get(sid).dec.header

    def pending(self, sid: int) -> int:
        """Frames of stream ``sid`` pushed but not yet returned by :meth:`step`."""
        return len(self._get(sid).queue)

    def _get(self, sid: int) -> _Stream:
        try:
            return self._streams[sid]
        except (KeyError, TypeError):
            raise StreamError(f"no stream {sid!r} in this MultiDecoder") from None

    # ---- packets in ------------------------------------------------------------------
    @torch.no_grad()
    def push(self, sid: int, packet) -> int:
        """Take one packet of stream ``sid`` (in stream order). A keyframe is decoded and its
        reference built now; a token packet is entropy-decoded and its frames queued.
        Returns the stream's pending frame count."""
        st = self._get(sid)
        if isinstance(packet, BasePacket):
            st.dec.base_packet(packet)
        elif isinstance(packet, KeyframePacket):
            x_r = st.dec.decode_keyframe(packet)
            st.queue.append(st.dec.frames(x_r)[0])
        else:
            base = st.dec.take_base(packet.first_frame, packet.count)
            q = st.dec.symbols(packet)
            st.queue.extend((row, st.dec.ref, None if base is None else base[i:i + 1], st.dec.anchor)
                            for i, row in enumerate(q))
        return len(st.queue)

    # ---- frames out ------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> dict[int, list[np.ndarray]]:
        """Advance every stream with a pending token frame by one frame, all in one batched
        forward pass. Returns {stream id: frames, in order} for the streams that gave
        frames: the decoded one, with any keyframe pictures queued just before or after it."""
        out: dict[int, list[np.ndarray]] = {}
        batch = []                              # (sid, symbols (C,), reference, base, anchor)
        for sid, st in self._streams.items():
            ready = self._ready(st)
            if ready:
                out[sid] = ready
            if st.queue:
                batch.append((sid, *st.queue.popleft()))
        if not batch:
            return out
        x = self._decode(batch).cpu()                    # (B, 3, S, S): one copy off the device
        for (sid, *_), x_i in zip(batch, x):
            st = self._streams[sid]
            frame = video.from_model(x_i[None], st.dec.header.width, st.dec.header.height)[0]
            out.setdefault(sid, []).append(frame)
            out[sid] += self._ready(st)
        return out

    def drain(self):
        """Step until no stream has pending frames; yields each step's result."""
        while any(st.queue for st in self._streams.values()):
            yield self.step()

    @staticmethod
    def _ready(st: _Stream) -> list[np.ndarray]:
        frames = []
        while st.queue and isinstance(st.queue[0], np.ndarray):
            frames.append(st.queue.popleft())
        return frames

    def _decode(self, batch) -> torch.Tensor:
        """Frames (B, 3, S, S) of the batch, in its order: one pass (or max_batch-sized
        passes) per base picture size, token-only frames being one more group."""
        groups: dict = {}
        for i, b in enumerate(batch):
            groups.setdefault(None if b[3] is None else b[3].shape[-1], []).append(i)
        if len(groups) == 1:
            return self._decode_group(batch, cache=True)
        out = [None] * len(batch)
        for idx in groups.values():
            for i, x in zip(idx, self._decode_group([batch[i] for i in idx], cache=False)):
                out[i] = x
        return torch.stack(out)

    def _decode_group(self, batch, cache: bool) -> torch.Tensor:
        q = torch.stack([b[1] for b in batch])          # (B, C) integer symbols
        mult = torch.tensor([[self._streams[b[0]].dec.mult] for b in batch],
                            dtype=torch.float32, device=q.device)      # (B, 1): per-stream step
        refs = [b[2] for b in batch]
        ref = self._stack(refs) if cache else stack_references(refs)
        base = None if batch[0][3] is None else torch.cat([b[3] for b in batch])    # (B, 3, b, b)
        n = self.max_batch or len(batch)
        x = torch.cat([self.m.decode(q[i:i + n], mult[i:i + n], _slice(ref, i, i + n),
                                     None if base is None else base[i:i + n])
                       for i in range(0, len(batch), n)])
        if any(b[4] is not None for b in batch):        # keyframe anchors (versions 7, 8), per stream
            x = torch.cat([self._streams[b[0]].dec.apply_anchor(x[i:i + 1], b[3], b[4]) if b[4] is not None
                           else x[i:i + 1] for i, b in enumerate(batch)])
        return x

    def _stack(self, refs: list[ReferenceState]) -> ReferenceState:
        if len(refs) == 1:
            return refs[0]
        last = self._stacked
        if last is not None and len(last[0]) == len(refs) and all(a is b for a, b in zip(last[0], refs)):
            return last[1]
        stacked = stack_references(refs)
        self._stacked = (refs, stacked)
        return stacked
