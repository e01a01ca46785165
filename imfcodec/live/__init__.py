"""Live calls over WebRTC data channels (aiortc): a :class:`Sender` and a :class:`Receiver`.

* :mod:`.wire`: the transport messages (bytes <-> :class:`~.wire.Message`, limits);
* :mod:`.playout`: the receiving end without the network (validate, decode, conceal, ask
  for keyframes);
* :mod:`.peer`: the aiortc peer connections, signalling and threads.

Spec and how to run a call: docs/live.md. Needs the ``live`` extra (``pip install
imfcodec[live]``); importing :mod:`.wire` or :mod:`.playout` does not.
"""
from .playout import Concealer, LiveDecoder, ReceiveStats
from .wire import Message, MessageError

__all__ = ["Concealer", "LiveDecoder", "ReceiveStats", "Message", "MessageError", "Sender", "Receiver",
           "LossShim", "Shown", "SendStats", "LiveError"]


def __getattr__(name):          # aiortc loads only with the peer classes
    if name in ("Sender", "Receiver", "LossShim", "Shown", "SendStats", "LiveError"):
        from . import peer
        return getattr(peer, name)
    raise AttributeError(name)
