"""One base class for every error a user can cause (bad file, bad model, bad option).

The CLI prints such an error as one line and exits non-zero; anything else is a bug.
"""


class IMFCodecError(Exception):
    """Base of all user-facing imfcodec errors."""


class OptionError(IMFCodecError, ValueError):
    """A coding option out of range or unknown (quality, keyframe codec, packet size...)."""
