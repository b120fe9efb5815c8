"""Decoding video files into RGB uint8 frames with PyAV, with one clear error per bad file.

Upstream decodes with decord (RGB, whole video, aspect ratio kept). Here PyAV (FFmpeg) decodes
every frame in order, converts it to RGB24 and hands it to ``transform`` (the protocol's resize)
only when ``keep(index)`` says it can be sampled, so memory stays bounded by the resized frames
that are kept whatever the source resolution. No TensorFlow, no torch.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np

# A frame above this many pixels is refused before decoding (8K UHD is 33.2 megapixels):
# decoding such a video for a 224-pixel model is almost surely a mistake, and slow.
MAX_PIXELS = 36_000_000
MIN_FRAMES = 2


class VideoError(ValueError):
    """A video that cannot be turned into views; ``str()`` is one line naming the file."""

    def __init__(self, path: str, problem: str, hint: str = ""):
        self.path = path
        self.problem = problem
        message = f"{path}: {problem}"
        super().__init__(f"{message}; {hint}" if hint else message)


def _ffmpeg_message(error: Exception) -> str:
    # FFmpeg errors carry a readable strerror; str() adds the errno and the path again
    text = " ".join(str(getattr(error, "strerror", None) or error).split())
    return text[:200] if text else type(error).__name__


def quiet_ffmpeg(verbose: bool = False) -> None:
    """Keep FFmpeg's own log lines (``[h264 @ 0x...] error while decoding``) off stderr."""
    import av.logging

    av.logging.set_level(av.logging.VERBOSE if verbose else None)


def decode_frames(path: str, keep: Optional[Callable[[int], bool]] = None,
                  transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                  max_pixels: int = MAX_PIXELS,
                  min_frames: int = MIN_FRAMES) -> Tuple[Dict[int, np.ndarray], int]:
    """Decode ``path``; return ({index: transform(rgb frame)} for kept indices, frame count).

    Raises VideoError (one line: the file, what was found, what to do) for a missing or empty
    file, a file that is not a video, a file with no video stream, a frame size above
    ``max_pixels``, a frame size that changes mid-stream, a decoding error, fewer frames than
    the container declares (truncated), or fewer than ``min_frames`` frames.
    """
    import av

    if not os.path.exists(path):
        raise VideoError(path, "no such file", "check the path (and --root for a list)")
    if os.path.isdir(path):
        raise VideoError(path, "is a folder, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "is empty (0 bytes)", "re-download or re-encode it")
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoError(path, "is not a video file FFmpeg can read "
                               f"({_ffmpeg_message(error)})",
                         "is it truncated, or another kind of file?") from None
    try:
        if not container.streams.video:
            found = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise VideoError(path, f"has no video stream (found: {found})")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise VideoError(path, f"frames are {width}x{height} ({width * height / 1e6:.1f} "
                                   f"megapixels), above the limit of {max_pixels / 1e6:.0f}",
                             "downscale it first (e.g. ffmpeg -vf scale=-2:320)")
        declared = stream.frames
        stream.thread_type = "AUTO"  # frame/slice threads: same pixels, faster
        kept: Dict[int, np.ndarray] = {}
        count = 0
        size = None
        try:
            for frame in container.decode(stream):
                if (frame.width, frame.height) != size:
                    if size is not None:  # the views of one video are stacked: one size
                        raise VideoError(path, f"frame size changes mid-stream ({size[0]}x"
                                               f"{size[1]} up to frame {count - 1}, "
                                               f"{frame.width}x{frame.height} at frame {count})",
                                         "re-encode it at one size (e.g. ffmpeg -vf "
                                         "scale=-2:320)")
                    size = (frame.width, frame.height)
                if keep is None or keep(count):
                    rgb = frame.to_ndarray(format="rgb24")
                    kept[count] = transform(rgb) if transform is not None else rgb
                count += 1
        except (av.FFmpegError, OSError, ValueError) as error:
            raise VideoError(path, f"decoding failed after {count} frames "
                                   f"({_ffmpeg_message(error)})",
                             "the file is truncated or corrupt: re-download it") from None
    finally:
        container.close()
    if declared and count < declared:
        raise VideoError(path, f"only {count} of the {declared} frames it declares could be "
                               "decoded", "the file is truncated or corrupt: re-download it")
    if count == 0:
        raise VideoError(path, "has no decodable frames", "the file is truncated or corrupt")
    if count < min_frames:
        raise VideoError(path, f"has {count} frame; a clip needs at least {min_frames}",
                         "is it a still image?")
    return kept, count


def read_views(path: str, protocol, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 views ``(num_views, T, S, S, 3)`` of the video at ``path`` under ``protocol``."""
    kept, count = decode_frames(path, protocol.keeps_frame(), protocol.resize_frame,
                                max_pixels=max_pixels)
    return protocol.views_from_frames(kept, count)
