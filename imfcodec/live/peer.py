"""A live call over WebRTC (aiortc): :class:`Sender` and :class:`Receiver`. Spec: docs/live.md.

Signalling is aiortc's own :class:`~aiortc.contrib.signaling.TcpSocketSignaling`, as in
aiortc's examples/datachannel-cli: the receiver listens on HOST:PORT and makes the offer
(with its two data channels), the sender connects and answers. Media goes on an unordered
channel with no retransmission; the stream header, "need keyframe" and the closing message
on an ordered, reliable one.

Threads: the asyncio loop runs aiortc only. The sender reads its source on one thread
(paced at the source's frame rate) and encodes on another; the receiver decodes on one.
Between the source and the encoder sits one slot: a frame the encoder has not taken when
the next arrives is dropped, so a sender that falls behind drops frames and never queues.
"""
from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np

from ..errors import IMFCodecError
from ..format.container import KeyframePacket, frame_groups, packet_to_bytes
from . import wire
from .playout import PLI_INTERVAL_S, Concealer, LiveDecoder

CONNECT_TIMEOUT_S = 15.0        # sender: the receiver's signalling port, then the data channels
MAX_BUFFERED_BYTES = 256 * 1024  # media bytes aiortc may hold unsent before the sender drops units
BYE_GRACE_S = 0.5               # receiver: media still in flight after the (reliable) closing message


class LiveError(IMFCodecError):
    """A call that cannot start or went silent (one line)."""


def host_port(s: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> (host, port), or a LiveError."""
    host, _, port = str(s).rpartition(":")
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not 1 <= p <= 65535:
        raise LiveError(f"expected HOST:PORT or PORT with a port 1..65535, got {s!r}")
    return host or default_host, p


def use_loopback_candidates(host: str) -> bool:
    """aioice gathers ICE host candidates on every interface but loopback. For a call whose
    signalling host is loopback (tests, bench/live.py), gather 127.0.0.1 only, so that the
    media stays on 127.0.0.1 too. Returns whether it did (process-wide)."""
    if host not in ("127.0.0.1", "localhost"):
        return False
    import aioice.ice
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    return True


def _peer_connection():
    from aiortc import RTCConfiguration, RTCPeerConnection
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))   # no STUN: host candidates only


async def _consume_signaling(pc, signaling):
    """aiortc's examples/datachannel-cli consume_signaling: descriptions and candidates
    until the other side says BYE (or closes)."""
    from aiortc import RTCIceCandidate, RTCSessionDescription
    while True:
        obj = await signaling.receive()
        if isinstance(obj, RTCSessionDescription):
            await pc.setRemoteDescription(obj)
            if obj.type == "offer":
                await pc.setLocalDescription(await pc.createAnswer())
                await signaling.send(pc.localDescription)
        elif isinstance(obj, RTCIceCandidate):
            await pc.addIceCandidate(obj)
        else:       # BYE, or None: the signalling connection ended
            return


def _dtls_bytes_sent(pc) -> int | None:
    """Bytes the DTLS transport sent (SCTP and DTLS overhead included; UDP/IP headers and
    ICE checks not), or None where aiortc does not say."""
    try:
        report = pc.sctp.transport._get_stats()      # aiortc 1.x: the DTLS transport's own counters
        return sum(getattr(s, "bytesSent", 0) for s in report.values())
    except Exception:   # noqa: BLE001 - a statistic, never a reason to fail a call
        return None


def units(packets) -> list[list]:
    """An encoder's packets grouped into frame units: [B] then one K, P or T packet
    (:func:`~imfcodec.format.container.frame_groups`: a B packet with nothing after it is a
    ValueError, never sent alone)."""
    return frame_groups(packets)


def unit_is_intra(unit) -> bool:
    main = unit[-1]
    return isinstance(main, KeyframePacket) and not main.predicted and (len(unit) == 1 or unit[0].key)


# ---- sender ----------------------------------------------------------------------------
@dataclass
class SendStats:
    frames_captured: int = 0      # frames the source gave
    frames_dropped: int = 0       # ... dropped because the encoder was still busy (fell behind)
    frames_sent: int = 0          # frames coded and handed to the transport
    messages: int = 0             # media messages put on the channel
    bytes: int = 0                # their bytes, transport headers included
    header_bytes: int = 0         # control-channel messages (header, BYE)
    wire_bytes: int | None = None  # DTLS bytes sent over the whole call (aiortc's stats)
    dropped_by_shim: int = 0      # media messages the loss shim dropped (bench/tests only)
    dropped_buffer: int = 0       # media messages dropped because aiortc's buffer was full
    keyframe_requests: int = 0    # "need keyframe" messages received
    keyframes_forced: int = 0     # intra keyframes coded for them
    keyframes: int = 0
    encode_ms: list = field(default_factory=list)
    log: list = field(default_factory=list)   # per coded frame: (frame, source index, capture time)
    seconds: float = 0.0


class LossShim:
    """A drop shim in the sender's transport (not network emulation): drops each media
    message with probability ``loss`` (seeded), and every one sent during an outage
    ``(start_s, end_s)`` after the first frame. bench/live.py and the tests use it."""

    def __init__(self, loss: float = 0.0, seed: int = 0, outages: Iterable[tuple[float, float]] = ()):
        if not 0 <= loss < 1:
            raise LiveError(f"loss must be in [0, 1), got {loss}")
        self.loss, self.rng, self.outages = loss, random.Random(seed), list(outages)
        self.t0: float | None = None
        self.drop_frames: set[int] = set()      # frames whose unit is always dropped (tests)

    def drops(self, frame: int, now: float) -> bool:
        if self.t0 is None:
            self.t0 = now
        t = now - self.t0
        hit = self.rng.random() < self.loss      # drawn for every message: the same draws with or without outages
        return hit or frame in self.drop_frames or any(a <= t < b for a, b in self.outages)


class Sender:
    """Codes ``frames`` (an iterable of (H, W, 3) uint8 RGB at ``fps``) and sends them to a
    :class:`Receiver` listening at ``host``:``port``. ``realtime``: play the source at its
    frame rate (a file); False: take frames as fast as the source gives them (a camera
    paces itself). ``encoder_options``: keywords of :class:`imfcodec.options.EncoderOptions`
    (packet_frames defaults to 1 here: one frame a message). ``shim``: a :class:`LossShim`."""

    def __init__(self, frames: Iterable[np.ndarray], fps, width: int, height: int, host: str, port: int,
                 model, quality: int | None = None, realtime: bool = True, shim: LossShim | None = None,
                 max_buffered: int = MAX_BUFFERED_BYTES, clock: Callable[[], float] = time.monotonic,
                 **encoder_options):
        from ..codec.encoder import Encoder
        encoder_options.setdefault("packet_frames", 1)
        self.frames, self.fps = frames, Fraction(fps)
        self.host, self.port = host, port
        self.enc = Encoder(model, width, height, self.fps, quality, **encoder_options)
        self.realtime, self.shim, self.max_buffered, self.clock = realtime, shim, max_buffered, clock
        self.stats = SendStats()
        self.seq = 0
        self.last_intra = -1          # frame of the last intra unit handed to the transport
        self.key_wanted = threading.Event()
        self.error: BaseException | None = None

    async def run(self) -> SendStats:
        from aiortc.contrib.signaling import TcpSocketSignaling
        use_loopback_candidates(self.host)
        loop = asyncio.get_running_loop()
        signaling = TcpSocketSignaling(self.host, self.port)
        pc = _peer_connection()
        channels: dict = {}
        both_open = asyncio.Event()

        @pc.on("datachannel")
        def on_datachannel(channel):
            channels[channel.label] = channel
            if channel.label == wire.CONTROL_CHANNEL:
                channel.on("message", self._control)

            def opened():
                if all(c in channels and channels[c].readyState == "open"
                       for c in (wire.MEDIA_CHANNEL, wire.CONTROL_CHANNEL)):
                    both_open.set()
            channel.on("open", opened)
            opened()

        t0 = self.clock()
        try:
            await self._connect(signaling, pc)
            signals = asyncio.ensure_future(_consume_signaling(pc, signaling))
            try:
                await asyncio.wait_for(both_open.wait(), CONNECT_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise LiveError(f"no data channels from {self.host}:{self.port} within "
                                f"{CONNECT_TIMEOUT_S:g} s") from None
            self.media, self.control = channels[wire.MEDIA_CHANNEL], channels[wire.CONTROL_CHANNEL]
            self._send_control(wire.HEADER_MSG, 0, self.enc.header(0).to_bytes())
            done = loop.create_future()
            threading.Thread(target=self._encode_thread, args=(loop, done), daemon=True,
                             name="imfcodec-live-encode").start()
            await done
            await self._drain()
            self._send_control(wire.BYE_MSG, min(self.enc.index, wire.MAX_FRAME))
            await self._drain(self.control)
            self.stats.wire_bytes = _dtls_bytes_sent(pc)
            signals.cancel()
        finally:
            self.stats.seconds = self.clock() - t0
            await pc.close()
            await signaling.close()
        if self.error is not None:
            raise self.error
        return self.stats

    async def _connect(self, signaling, pc):
        """The offer, waiting for the receiver to listen (up to CONNECT_TIMEOUT_S)."""
        from aiortc import RTCSessionDescription
        deadline = self.clock() + CONNECT_TIMEOUT_S
        while True:
            try:
                obj = await signaling.receive()
                break
            except OSError:
                if self.clock() > deadline:
                    raise LiveError(f"no receiver listening at {self.host}:{self.port}") from None
                await asyncio.sleep(0.2)
        if not isinstance(obj, RTCSessionDescription) or obj.type != "offer":
            raise LiveError(f"{self.host}:{self.port} did not send a WebRTC offer")
        await pc.setRemoteDescription(obj)
        await pc.setLocalDescription(await pc.createAnswer())
        await signaling.send(pc.localDescription)

    async def _drain(self, channel=None, timeout: float = 2.0):
        channel = channel or self.media
        end = self.clock() + timeout
        while channel.bufferedAmount > 0 and self.clock() < end:
            await asyncio.sleep(0.02)

    def _control(self, data):
        """A message on the control channel: "need keyframe" from frame F."""
        try:
            msg = wire.parse(data)
        except wire.MessageError:
            return
        if msg.type == wire.NEED_KEY_MSG:
            self.stats.keyframe_requests += 1
            if msg.frame >= self.last_intra:    # no intra unit sent since the frame it lost
                self.key_wanted.set()

    def _send_control(self, typ: int, frame: int, payload: bytes = b""):
        data = wire.Message(typ, 0, frame, payload).to_bytes()
        self.stats.header_bytes += len(data)
        self.control.send(data)

    def _send_unit(self, frame: int, data: bytes, intra: bool):
        """On the loop: one media message, unless the shim or a full buffer drops it."""
        if intra:
            self.last_intra = frame
        if self.shim is not None and self.shim.drops(frame, self.clock()):
            self.stats.dropped_by_shim += 1
            return
        if self.media.readyState != "open":
            return
        if self.media.bufferedAmount > self.max_buffered:
            self.stats.dropped_buffer += 1
            self.key_wanted.set()           # the receiver's chain is broken from here
            return
        self.media.send(data)
        self.stats.messages += 1
        self.stats.bytes += len(data)

    # ---- threads -----------------------------------------------------------------------
    def _capture_thread(self, slot: queue.Queue, stop: threading.Event, first: threading.Event):
        """The source into a one-frame slot. ``realtime``: paced at its frame rate from the
        moment frame 0 is coded (the networks' first run is not the call's), a frame the
        encoder has not taken when the next is due is dropped; else as fast as the encoder
        takes them, none dropped."""
        t0 = None
        try:
            for i, frame in enumerate(self.frames):
                if stop.is_set():
                    break
                if self.realtime and t0 is not None:
                    wait = t0 + i / float(self.fps) - self.clock()
                    if wait > 0:
                        time.sleep(wait)
                item = (i, self.clock(), frame)
                self.stats.frames_captured += 1
                if not self.realtime or i == 0:
                    slot.put(item)
                    if i == 0:
                        first.wait()
                        t0 = self.clock() - 1 / float(self.fps)
                    continue
                try:
                    slot.put_nowait(item)
                except queue.Full:
                    try:
                        slot.get_nowait()
                        self.stats.frames_dropped += 1
                    except queue.Empty:
                        pass
                    slot.put_nowait(item)
        except BaseException as e:      # noqa: BLE001 - raised again by run()
            self.error = e
        finally:
            slot.put(None)

    def _encode_thread(self, loop, done):
        slot: queue.Queue = queue.Queue(1)
        stop, first = threading.Event(), threading.Event()
        threading.Thread(target=self._capture_thread, args=(slot, stop, first), daemon=True,
                         name="imfcodec-live-capture").start()
        try:
            while True:
                item = slot.get()
                if item is None:
                    break
                src, t_cap, frame = item
                if self.key_wanted.is_set():
                    self.key_wanted.clear()
                    self.enc.request_keyframe()
                    self.stats.keyframes_forced += 1
                index = self.enc.index
                t = time.perf_counter()
                packets = self.enc.push(frame)
                self.stats.encode_ms.append((time.perf_counter() - t) * 1000)
                self.stats.log.append((index, src, t_cap))
                self._post(loop, packets)
                first.set()
            self._post(loop, self.enc.flush())
        except BaseException as e:      # noqa: BLE001 - raised again by run()
            self.error = e
        finally:
            stop.set()
            first.set()
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    def _post(self, loop, packets):
        for unit in units(packets):
            main = unit[-1]
            frame = main.frame_index if isinstance(main, KeyframePacket) else main.first_frame
            count = 1 if isinstance(main, KeyframePacket) else main.count
            intra = unit_is_intra(unit)
            self.stats.keyframes += isinstance(main, KeyframePacket)
            self.stats.frames_sent += count
            payload = b"".join(packet_to_bytes(p) for p in unit)
            if len(payload) > wire.MAX_PAYLOAD_BYTES:   # never at 256x256; a new key would not fit either
                self.key_wanted.set()
                continue
            data = wire.Message(wire.MEDIA_MSG, self.seq & wire.MAX_SEQUENCE, frame, payload).to_bytes()
            self.seq += 1
            loop.call_soon_threadsafe(self._send_unit, frame, data, intra)


# ---- receiver --------------------------------------------------------------------------
@dataclass
class Shown:
    """One frame index on the receiver's screen."""
    index: int
    frame: np.ndarray
    concealed: bool               # the last good frame repeated
    time: float                   # when it was shown (the receiver's clock)


class Receiver:
    """Listens at ``host``:``port`` for one :class:`Sender`, decodes and conceals;
    ``on_frame(Shown)`` gets every frame index in order (on the decode thread).
    ``model``: a CodecModel, or None for the shipped model the stream names. The call ends
    at the sender's closing message, when the connection closes, or after ``idle_timeout``
    seconds without a message once connected."""

    def __init__(self, host: str, port: int, model=None, on_frame: Callable[[Shown], None] | None = None,
                 device: str = "cpu", idle_timeout: float = 10.0, pli_interval: float = PLI_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, max_queue: int = 256):
        self.host, self.port = host, port
        if model is None:
            from ..api import model_for
            model = lambda header: model_for(header, None, device)   # noqa: E731
        self.live = LiveDecoder(model, pli_interval, clock)
        self.conceal = Concealer()
        self.on_frame = on_frame or (lambda shown: None)
        self.idle_timeout, self.clock = idle_timeout, clock
        self.inbox: queue.Queue = queue.Queue()
        self.max_queue = max_queue
        self.overflow = 0              # media messages dropped because decoding fell behind
        self.error: BaseException | None = None
        self.connected = asyncio.Event()

    async def run(self):
        from aiortc.contrib.signaling import TcpSocketSignaling
        use_loopback_candidates(self.host)
        loop = asyncio.get_running_loop()
        signaling = TcpSocketSignaling(self.host, self.port)
        pc = _peer_connection()
        media = pc.createDataChannel(wire.MEDIA_CHANNEL, ordered=False, maxRetransmits=0)
        control = pc.createDataChannel(wire.CONTROL_CHANNEL)
        self.last_message = None

        def on_media(data):
            self.last_message = self.clock()
            if self.inbox.qsize() >= self.max_queue:
                self.overflow += 1          # decoding fell behind: drop, never queue without bound
            else:
                self.inbox.put_nowait(data)

        def on_control(data):               # few and small: always queued
            self.last_message = self.clock()
            self.inbox.put_nowait(data)
        media.on("message", on_media)
        control.on("message", on_control)

        def send_control(data):
            if control.readyState == "open":
                control.send(data)

        done = loop.create_future()
        try:
            await pc.setLocalDescription(await pc.createOffer())
            await signaling.send(pc.localDescription)     # listens, and waits for the sender
            self.connected.set()
            self.last_message = self.clock()
            signals = asyncio.ensure_future(_consume_signaling(pc, signaling))
            threading.Thread(target=self._decode_thread, args=(loop, done, send_control), daemon=True,
                             name="imfcodec-live-decode").start()
            while not done.done():
                await asyncio.wait([done], timeout=0.1)
                if pc.connectionState in ("failed", "closed") or (
                        self.clock() - self.last_message > self.idle_timeout):
                    self.inbox.put(None)
                    await done
            signals.cancel()
        finally:
            await pc.close()
            await signaling.close()
        if self.error is not None:
            raise self.error
        if self.live.error is not None:
            raise LiveError(self.live.error)
        return self.live.stats

    def _decode_thread(self, loop, done, send_control):
        bye_at = None
        try:
            while True:
                try:
                    data = self.inbox.get(timeout=0.05)
                except queue.Empty:
                    data = False
                if data is None:
                    break
                if data is not False:
                    for index, frame in self.live.feed(data):
                        self._show(self.conceal.show(index, frame))
                if self.live.error is not None:
                    break
                pli = self.live.need_keyframe_message()
                if pli is not None:
                    loop.call_soon_threadsafe(send_control, pli)
                if self.live.ended is not None:
                    bye_at = bye_at or self.clock()
                    if self.clock() - bye_at > BYE_GRACE_S or self.conceal.next >= self.live.ended:
                        break
            if self.live.ended is not None:
                self._show(self.conceal.fill(self.live.ended))
        except BaseException as e:      # noqa: BLE001 - raised again by run()
            self.error = e
        finally:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    def _show(self, items):
        now = self.clock()
        for index, frame, concealed in items:
            self.on_frame(Shown(index, frame, concealed, now))
