"""Face framing for non-square video: a square face crop coded by IMF plus a frame layer.

The networks are square by construction (a 4x4 learned constant grows the token decoder's
features; the attention stages carry square position embeddings), and stretching a 16:9
frame to a square narrows the face to 0.56 of its width. So a non-square frame is coded in
two parts (format version 3, docs/bitstream.md; version 6 when the crop also has a base layer):

* the **crop**: a square of side min(width, height) around the face, cut from the frame
  without resampling its proportions and coded by IMF exactly as square video is (with the
  model's base layer at that level, its B packets right before each K and T packet);
* the **frame layer**: the whole frame at low resolution (short side ``LAYER_SHORT_SIDE``)
  through a low-delay VP9 chain (imfcodec/media/keyframe.py), a picture at every keyframe and
  every ``layer_interval`` frames, held in between. Inside the crop it carries the frame
  as it was at the crop's keyframe, so it costs almost nothing there;
* the decoder pastes the decoded crop into the upscaled frame layer, fading its edges
  over ``feather`` pixels (none where the crop meets the frame's edge).

Where the crop lies: :class:`FaceLocator` (OpenCV's frontal-face Haar cascade, shipped in
the ``opencv-python-headless`` wheel, no download) finds the largest face every few
frames; :class:`CropTracker` keeps the median of recent face boxes. The first crop is the
frame-centred one, moved only as far as it takes to hold that box with a margin (1/8 of
the side) on every side; later the crop moves only at a keyframe it forces, when the face
has come within half that margin of its edge or sticks out of it, at most once per
``min_move_interval`` seconds, and then only as far as it takes to restore the margin. A
move costs a new IMF reference (a predicted VP9 keyframe), and every pixel of the face the
crop gives up is coded by the blurry frame layer, so it moves rarely and by little
(bench/results/aspect/probe). No face seen yet: the centred crop. A face lost: the crop
holds where it was until a face is seen again.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import IMFCodecError
from ..format.container import BasePacket, CropPacket, Framing, Header, KeyframePacket, LayerPacket, StreamError
from ..media import keyframe
from ..media.video import VideoError, to_uint8
from ..options import FRAMINGS, EncoderOptions
from .decoder import Decoder
from .encoder import Encoder

# auto uses face framing at an aspect ratio of at least this (long side / short side):
# 4:3 (1.33), 16:9 (1.78) and their portrait forms; 11:9 CIF/QCIF (1.22) and squares keep
# the stretch path and its bytes. And only from this short side up (half the model's 256):
# a smaller frame is a thumbnail, coded whole as before.
FACE_MIN_ASPECT = 1.25
FACE_MIN_SIDE = 128
LAYER_SHORT_SIDE = 64           # frame-layer short side in pixels (bench/aspect.py --layer-short)
LAYER_CRF_OFFSET = 4            # frame-layer VP9 CRF = the keyframe VP9 CRF + this
LAYER_INTERVAL_S = 0.4          # a frame-layer picture every this many seconds
FEATHER_FRACTION = 1 / 32       # crop edge fade, as a fraction of the crop side
DETECT_EVERY = 3                # run the face locator on every this many-th frame
TRACK_WINDOW = 9                # detections whose median box is the face
FACE_MARGIN = 0.125             # room kept around the face box inside the crop (x side)
MIN_MOVE_INTERVAL_S = 1.0


class FramingError(IMFCodecError, ValueError):
    pass


def use_face(width: int, height: int, framing: str = "auto") -> bool:
    """Whether ``framing`` (auto | face | stretch) codes a width x height source as face crop
    plus frame layer. auto: at an aspect of 4:3 or wider (either way) and a short side of
    128 px or more."""
    if framing not in FRAMINGS:
        raise FramingError(f"unknown framing {framing!r}; choose from {', '.join(FRAMINGS)}")
    if framing == "auto":
        return (max(width, height) / min(width, height) >= FACE_MIN_ASPECT
                and min(width, height) >= FACE_MIN_SIDE)
    return framing == "face"


def layer_size(width: int, height: int, short: int = LAYER_SHORT_SIDE) -> tuple[int, int]:
    """Frame-layer picture size: the frame's aspect with the short side ``short`` (even sizes,
    never above the frame's own)."""
    s = min(short, width, height) / min(width, height)
    return (max(2, min(width, 2 * round(width * s / 2))), max(2, min(height, 2 * round(height * s / 2))))


# ---- locating and tracking the face ------------------------------------------------------------
class FaceLocator:
    """The largest frontal face in an RGB frame, as (x, y, w, h) in its pixels, or None.
    OpenCV's Haar cascade on a grey copy scaled so its short side is ``work_side``."""

    def __init__(self, work_side: int = 128):
        try:
            import cv2
        except ImportError as e:
            raise FramingError(f"face framing needs OpenCV (pip install opencv-python-headless): {e}") from None
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise FramingError("OpenCV's frontal-face cascade did not load")
        self.work_side = work_side

    def __call__(self, rgb: np.ndarray):
        cv2 = self.cv2
        h, w = rgb.shape[:2]
        s = min(1.0, self.work_side / min(h, w))
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        if s < 1:
            grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        side = min(grey.shape)
        faces = self.cascade.detectMultiScale(grey, scaleFactor=1.15, minNeighbors=5,
                                              minSize=(max(12, side // 6),) * 2)
        if len(faces) == 0:
            return None
        x, y, fw, fh = max(faces, key=lambda f: f[2] * f[3])
        return (x / s, y / s, fw / s, fh / s)


class CropTracker:
    """Where the square crop of side ``side`` lies in a width x height frame. Face boxes go
    in through :meth:`observe`; the face is the per-edge median of the last ``window`` boxes.
    :meth:`target` places the crop as close as it can to a given crop (the frame-centred one
    when none is given) while holding that face with ``margin`` x side to spare on every side
    the frame allows; :meth:`should_move` says whether a crop has let the face come within
    ``margin`` / 2 of its edge (or the latest box stick out of it). A crop that follows the
    face only this far moves rarely and by little: each move costs a new reference, and every
    pixel it gives up is coded by the blurry frame layer."""

    def __init__(self, width: int, height: int, side: int, window: int = TRACK_WINDOW,
                 margin: float = FACE_MARGIN):
        self.width, self.height, self.side = width, height, side
        self.window, self.margin = window, margin
        self.boxes: list[tuple[float, float, float, float]] = []    # (x0, y0, x1, y1)
        self.last_box = None

    def observe(self, box):
        if box is None:
            return                 # a lost face: keep the last position
        x, y, w, h = box
        self.last_box = (x, y, x + w, y + h)
        self.boxes = (self.boxes + [self.last_box])[-self.window:]

    def face(self):
        """The median face box (x0, y0, x1, y1), or None before any face."""
        return tuple(float(v) for v in np.median(np.array(self.boxes), axis=0)) if self.boxes else None

    def _hold(self, at: float, lo: float, hi: float, size: int, margin: float) -> int:
        """The crop origin on one axis nearest ``at`` that holds [lo, hi] with ``margin``
        inside a crop of side ``side`` (centred on it when it does not fit), within the frame."""
        s = self.side
        if hi - lo + 2 * margin > s:
            at = (lo + hi - s) / 2
        else:
            at = min(max(at, hi + margin - s), lo - margin)
        return int(min(max(round(at), 0), size - s))

    def target(self, crop: tuple[int, int] | None = None) -> tuple[int, int]:
        s = self.side
        if crop is None:
            crop = ((self.width - s) / 2, (self.height - s) / 2)
        box = self.face()
        if box is None:
            return (int(min(max(round(crop[0]), 0), self.width - s)),
                    int(min(max(round(crop[1]), 0), self.height - s)))
        m = self.margin * s
        return (self._hold(crop[0], box[0], box[2], self.width, m),
                self._hold(crop[1], box[1], box[3], self.height, m))

    def should_move(self, crop: tuple[int, int]) -> bool:
        if not self.boxes:
            return False
        s, m = self.side, self.margin * self.side / 2
        x0, y0, x1, y1 = self.face()
        near = (x0 - crop[0] < m and crop[0] > 0) or (crop[0] + s - x1 < m and crop[0] + s < self.width) or \
               (y0 - crop[1] < m and crop[1] > 0) or (crop[1] + s - y1 < m and crop[1] + s < self.height)
        x0, y0, x1, y1 = self.last_box     # the latest face sticking out of the crop
        out = x0 < crop[0] or y0 < crop[1] or x1 > crop[0] + s or y1 > crop[1] + s
        return (near or out) and self.target(crop) != tuple(crop)


# ---- compositing ---------------------------------------------------------------------------------
def _ramp(n: int, fade_lo: int, fade_hi: int) -> np.ndarray:
    """Weights along one side of the crop: rising over fade_lo, 1, falling over fade_hi."""
    a = np.ones(n, np.float32)
    if fade_lo:
        a[:fade_lo] = (np.arange(fade_lo) + 0.5) / fade_lo
    if fade_hi:
        a[n - fade_hi:] = ((np.arange(fade_hi) + 0.5) / fade_hi)[::-1]
    return a


class Compositor:
    """Decoded crop pasted into the upscaled frame layer, its edges faded over ``feather``
    pixels except where the crop meets the frame's edge. Only the fade band is blended."""

    def __init__(self, width: int, height: int, feather: int):
        import cv2
        self.cv2, self.width, self.height, self.feather = cv2, width, height, feather
        self.crop = None

    def set_crop(self, x: int, y: int, side: int):
        f, W, H = self.feather, self.width, self.height
        self.crop = (x, y, side)
        # fade widths: top, bottom, left, right (0 at a frame edge)
        self.fade = (f if y > 0 else 0, f if y + side < H else 0, f if x > 0 else 0, f if x + side < W else 0)
        self.alpha = (_ramp(side, self.fade[0], self.fade[1])[:, None]
                      * _ramp(side, self.fade[2], self.fade[3])[None, :])[..., None]

    def __call__(self, crop_rgb: np.ndarray, layer_rgb: np.ndarray) -> np.ndarray:
        """crop (S, S, 3) and frame layer (h, w, 3) uint8 -> frame (height, width, 3) uint8."""
        cv2 = self.cv2
        x, y, s = self.crop
        out = cv2.resize(layer_rgb, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        if crop_rgb.shape[0] != s:
            crop_rgb = cv2.resize(crop_rgb, (s, s), interpolation=cv2.INTER_CUBIC if crop_rgb.shape[0] < s
                                  else cv2.INTER_AREA)
        top, bot, left, right = self.fade
        region = out[y:y + s, x:x + s]
        region[top:s - bot, left:s - right] = crop_rgb[top:s - bot, left:s - right]
        for rows, cols in ((slice(0, top), slice(0, s)), (slice(s - bot, s), slice(0, s)),
                           (slice(top, s - bot), slice(0, left)), (slice(top, s - bot), slice(s - right, s))):
            a = self.alpha[rows, cols]
            if a.size:
                blend = crop_rgb[rows, cols] * a + region[rows, cols] * (1 - a)
                region[rows, cols] = (blend + 0.5).astype(np.uint8)
        return out


# ---- encoder and decoder -------------------------------------------------------------------------
class FaceEncoder:
    """Frames in, packets out, like :class:`~imfcodec.codec.encoder.Encoder` (which codes the
    crop, with ``quality``, ``options`` and the keywords of :class:`~imfcodec.options.EncoderOptions`)."""

    def __init__(self, model, width: int, height: int, fps: Fraction, quality: int | None = None, *,
                 options: EncoderOptions | None = None, layer_short: int = LAYER_SHORT_SIDE, layer_interval: float = LAYER_INTERVAL_S,
                 layer_crf_offset: int = LAYER_CRF_OFFSET, min_move_interval: float = MIN_MOVE_INTERVAL_S,
                 feather_fraction: float = FEATHER_FRACTION, locator=None, **opts):
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.side = min(width, height)
        if self.side < 16:
            raise FramingError(f"face framing needs frames of at least 16 pixels a side, got {width}x{height}")
        if not 0 < feather_fraction <= 0.5:
            raise FramingError(f"feather_fraction must be in (0, 0.5], got {feather_fraction}")
        self.inner = Encoder(model, self.side, self.side, fps, quality, options=options, **opts)
        self.locate = locator or FaceLocator()
        self.track = CropTracker(width, height, self.side)
        lw, lh = layer_size(width, height, layer_short)
        self.framing = Framing(lw, lh, max(1, min(250, round(layer_interval * float(self.fps)))),
                               max(1, round(self.side * feather_fraction)))    # bounds: container
        crf = min(63, model.keyframe_crf(self.inner.quality, "vp9") + layer_crf_offset)
        self.layer_enc = keyframe.KeyframeEncoder("vp9", crf)
        self.min_move = max(1, round(min_move_interval * float(self.fps)))
        self.crop = None
        self.still = None            # the frame at the last keyframe: the layer's inside of the crop
        self.since_move = 0
        self.last_key = 0
        self.index = 0
        self.moves = 0

    # what codec.encode_frames and the benches read
    @property
    def stats(self):
        return self.inner.stats

    @property
    def mean_psnr(self) -> float:
        return self.inner.mean_psnr

    @property
    def recon(self):
        return self.inner.recon

    def header(self, frame_count: int) -> Header:
        h = self.inner.header(frame_count)
        return Header(h.model_id, h.model_hash, self.width, self.height, h.coded_size, h.fps, h.frame_count,
                      h.quality, h.keyframe_codec, h.token_dim, h.packet_frames, self.framing, h.base_layer)

    def _layer_picture(self, frame: np.ndarray, intra: bool) -> LayerPacket:
        import cv2
        x, y = self.crop
        s, f = self.side, self.framing.feather
        pic = frame.copy()
        inner = (slice(y + f, y + s - f), slice(x + f, x + s - f))
        pic[inner] = self.still[inner]          # still between keyframes: next to no bits
        small = cv2.resize(pic, (self.framing.layer_width, self.framing.layer_height), interpolation=cv2.INTER_AREA)
        return LayerPacket(self.index, self.layer_enc.encode(small, intra=intra), predicted=not intra)

    def push(self, frame: np.ndarray) -> list:
        if frame.shape != (self.height, self.width, 3):
            raise VideoError(f"frame {self.index} has shape {frame.shape}, expected ({self.height}, {self.width}, 3)")
        if self.index % DETECT_EVERY == 0:
            self.track.observe(self.locate(frame))
        move = False
        if self.crop is None:
            self.crop = self.track.target()
        elif self.since_move >= self.min_move and self.track.should_move(self.crop):
            self.crop, move = self.track.target(self.crop), True
            self.moves += 1
        x, y = self.crop
        s = self.side
        inner = self.inner.push(np.ascontiguousarray(frame[y:y + s, x:x + s]), force_keyframe=move)
        key = next((p for p in inner if isinstance(p, KeyframePacket)), None)
        out = []
        if key is not None:
            self.still, self.last_key = frame, self.index
            if move:
                self.since_move = 0
            k = inner.index(key)
            if k and isinstance(inner[k - 1], BasePacket):
                k -= 1          # version 6: the keyframe's B packet goes right before it, after C and F
            out = inner[:k] + [CropPacket(self.index, x, y, s), self._layer_picture(frame, not key.predicted)] + inner[k:]
        else:
            if (self.index - self.last_key) % self.framing.layer_interval == 0:
                out.append(self._layer_picture(frame, False))
            out += inner
        self.since_move += 1
        self.index += 1
        return out

    def flush(self) -> list:
        return self.inner.flush()


class FaceDecoder(Decoder):
    """Packets in, frames out (source size), for a version-3 or 6 stream: the crop through
    :class:`~imfcodec.codec.decoder.Decoder`, the frame layer through a VP9 decoder, composited."""

    def __init__(self, model, header: Header):
        super().__init__(model, header)
        f = header.framing
        # FFmpeg refuses a picture beyond the layer's size (in 64-pixel superblocks: its
        # check counts the padded size) before allocating it
        self.layer_dec = keyframe.KeyframeDecoder(f.layer_codec, keyframe.max_pixels_for(f.layer_width, f.layer_height))
        self.compose = Compositor(header.width, header.height, f.feather)
        self.layers: list[tuple[int, np.ndarray]] = []    # decoded, not yet passed frame-layer pictures
        self.next_crop = None
        self.frame = 0

    def frames(self, x) -> list[np.ndarray]:
        """Crop frames at coded size (N, 3, S, S) -> composited frames at source size."""
        out = []
        for crop in to_uint8(x):
            while len(self.layers) > 1 and self.layers[1][0] <= self.frame:
                self.layers.pop(0)
            if not self.layers or self.layers[0][0] > self.frame:
                raise StreamError(f"no frame-layer picture for frame {self.frame}")
            out.append(self.compose(crop, self.layers[0][1]))
            self.frame += 1
        return out

    def push(self, packet) -> list[np.ndarray]:
        f = self.header.framing
        if isinstance(packet, (CropPacket, LayerPacket)) and self.base_order is not None:
            self.base_order.not_between(packet)
        if isinstance(packet, CropPacket):
            self.next_crop = packet
            return []
        if isinstance(packet, LayerPacket):
            pic = self.layer_dec.decode(packet.payload, packet.predicted)
            if pic.shape[:2] != (f.layer_height, f.layer_width):
                raise StreamError("frame-layer picture has the wrong size for this stream")
            self.layers.append((packet.frame_index, pic))
            return []
        if isinstance(packet, KeyframePacket):
            c = self.next_crop
            if c is None or c.frame_index != packet.frame_index:
                raise StreamError(f"keyframe {packet.frame_index} without a crop packet")
            self.compose.set_crop(c.x, c.y, c.side)
            self.next_crop = None
        return super().push(packet)
