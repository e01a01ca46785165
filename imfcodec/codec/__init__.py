"""The codec: frames <-> packets, wiring the model, the token entropy coder, the keyframe
and base-layer codecs and the container.

* :mod:`.ladder`: what a quality level means (keyframe CRF, refresh rule, base layer),
  resolved once into a :class:`~.ladder.LevelSettings`;
* :mod:`.encoder`: :class:`~.encoder.Encoder` (frames in, packets out, closed loop);
* :mod:`.decoder`: :class:`~.decoder.Decoder` (packets in, frames out);
* :mod:`.framing`: face framing of non-square video (format versions 3 and 6);
* :mod:`.multi`: :class:`~.multi.MultiDecoder`, many streams batched through the networks.

Whole files and in-memory streams are :mod:`imfcodec.api`'s.
"""
