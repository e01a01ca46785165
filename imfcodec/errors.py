"""One base class for every error a user can cause (bad file, bad model, bad option).

The CLI prints such an error as one line and exits non-zero; anything else is a bug.
"""


class IMFCodecError(Exception):
    """Base of all user-facing imfcodec errors."""


class OptionError(IMFCodecError, ValueError):
    """A coding option out of range or unknown (quality, keyframe codec, packet size...)."""


def describe(e: BaseException, limit: int = 160) -> str:
    """Another library's exception in one line, for the end of ours: its type and the first
    line of its message (an OS or FFmpeg error's text without its errno number)."""
    text = getattr(e, "strerror", None) or (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:limit]}"
