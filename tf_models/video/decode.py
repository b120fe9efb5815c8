"""Decoding video files into RGB uint8 frames with PyAV, with one clear error per bad file.

Upstream decodes with decord (RGB, whole video, aspect ratio kept). Here PyAV (FFmpeg) decodes
every frame in order, converts it to RGB24 and hands it to ``transform`` (the protocol's resize)
only when ``keep(index)`` says it can be sampled, so memory stays bounded by the resized frames
that are kept whatever the source resolution. ``decode_sampled`` keeps only the frames the
views (or one clip) sample, whatever the video's length. A file is judged complete by time
(its last frame against the duration it declares, ``check_complete``), so a Matroska / WebM
file cut short is refused though it declares no frame count, and an MP4 whose edit list hides
samples it still lists is read whole. No TensorFlow, no torch.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

# A frame above this many pixels is refused before decoding (8K UHD is 33.2 megapixels):
# decoding such a video for a 224-pixel model is almost surely a mistake, and slow.
MAX_PIXELS = 36_000_000
MIN_FRAMES = 2
# a video whose last frame ends more than this many frames before the end it declares is
# truncated (containers round durations; an edit list may cut a frame short)
TRUNCATION_SLACK_FRAMES = 2


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
    ``max_pixels``, a frame size that changes mid-stream, a decoding error, frames that stop
    before the end the file declares (truncated: see :func:`check_complete`), or fewer than
    ``min_frames`` frames.
    """
    kept, count, _ = _decode(path, lambda expected: keep, transform, max_pixels, min_frames)
    return kept, count


def decode_sampled(path: str, indices_for: Callable[[int], Sequence[int]],
                   transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                   max_pixels: int = MAX_PIXELS,
                   min_frames: int = MIN_FRAMES) -> Tuple[Dict[int, np.ndarray], int]:
    """Decode ``path`` keeping only the frames ``indices_for(frame count)`` picks.

    Returns ({index: transform(rgb frame)} for those indices, frame count): what keeping every
    frame and picking afterwards gives, without holding every frame. The count is taken first
    from the file's own facts (:func:`expected_frames`); where it proves wrong (an edit list,
    a rate that varies, no facts at all) the file is decoded once more with the true count.
    Raises VideoError as :func:`decode_frames` does.
    """
    def keep_for(expected: int) -> Callable[[int], bool]:
        if expected < 1:  # nothing to go by: count in this pass, keep in the next
            return lambda index: False
        return set(indices_for(expected)).__contains__

    kept, count, _ = _decode(path, keep_for, transform, max_pixels, min_frames)
    wanted = set(indices_for(count))
    if not wanted <= set(kept):
        kept, again, _ = _decode(path, lambda expected: wanted.__contains__, transform,
                                 max_pixels, min_frames)
        if again != count:
            raise VideoError(path, f"decodes to {count} frames, then to {again}",
                             "the file is corrupt: re-encode or re-download it")
    return {index: kept[index] for index in wanted}, count


def expected_frames(container, stream) -> int:
    """The frame count the file's own facts promise: its declared duration times its average
    frame rate where it states both, else the count it declares, else 0 (unknown)."""
    end = declared_end(container, stream)
    if end is not None and stream.average_rate:
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        return max(0, int(round((end - start) * float(stream.average_rate))))
    return int(stream.frames or 0)


def declared_end(container, stream) -> Optional[float]:
    """Seconds at which the video stream's last frame ends by the file's own account: the
    stream's start plus its duration, else Matroska's per-track ``DURATION`` tag (FFmpeg and
    mkvmerge write one), else the container's duration if the video is its only stream; None
    where it states none.

    A truncated file keeps these (they are written in its header or index), so its frames stop
    short of them; an intact file whose edit list drops samples declares the shorter time.
    """
    if stream.duration and stream.time_base:
        return float((int(stream.start_time or 0) + stream.duration) * stream.time_base)
    tag = _tag_seconds(stream.metadata.get("DURATION", ""))
    if tag:
        return tag
    if container.duration and container.duration > 0 and len(container.streams) == 1:
        # the container's is the longest of its streams' (an audio track may run on): it
        # stands for the video's only where the video is all the file holds
        import av

        return container.duration / av.time_base
    return None


def _tag_seconds(text: str) -> Optional[float]:
    # Matroska statistics tags write durations as HH:MM:SS.nnnnnnnnn
    parts = text.strip().split(":")
    try:
        hours, minutes, seconds = (float(part) for part in parts) if len(parts) == 3 else ()
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def check_complete(path: str, count: int, end: Optional[float], frame_seconds: float,
                   declared_seconds: Optional[float], declared_count: int) -> None:
    """Refuse a video whose decoded frames stop short of what the file declares (truncated).

    Judged by time: the end of the last decoded frame (its presentation time plus one frame)
    against :func:`declared_end`, within ``TRUNCATION_SLACK_FRAMES`` frames. Where the file
    declares no duration (or its frames carry no timestamps), the declared frame count stands
    in. Raises VideoError naming the file.
    """
    hint = "the file is truncated or corrupt: re-download it"
    if end is not None and declared_seconds is not None:
        if end < declared_seconds - TRUNCATION_SLACK_FRAMES * frame_seconds:
            raise VideoError(path, f"its frames stop at {end:.2f} s of the "
                                   f"{declared_seconds:.2f} s it declares ({count} frames "
                                   "decoded)", hint)
    elif declared_count and count < declared_count:
        raise VideoError(path, f"only {count} of the {declared_count} frames it declares could "
                               "be decoded", hint)


def _decode(path: str, keep_for: Callable[[int], Optional[Callable[[int], bool]]],
            transform: Optional[Callable[[np.ndarray], np.ndarray]], max_pixels: int,
            min_frames: int) -> Tuple[Dict[int, np.ndarray], int, int]:
    """decode_frames with ``keep`` chosen from the expected frame count: (kept, count, expected)."""
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
        declared_seconds = declared_end(container, stream)
        expected = expected_frames(container, stream)
        keep = keep_for(expected)
        rate_seconds = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
        stream.thread_type = "AUTO"  # frame/slice threads: same pixels, faster
        kept: Dict[int, np.ndarray] = {}
        count = 0
        size = None
        end: Optional[float] = None  # where the latest-presented frame ends, in seconds
        timed = True  # every frame carried a timestamp
        frame_seconds = rate_seconds
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
                if frame.pts is None or frame.time_base is None:
                    timed = False
                elif timed:
                    # PyAV before 14 has no Frame.duration: the average rate stands in
                    length = getattr(frame, "duration", None)
                    own = float(length * frame.time_base) if length else 0.0
                    frame_seconds = max(own, rate_seconds)
                    ends = float(frame.pts * frame.time_base) + (own or rate_seconds)
                    end = ends if end is None else max(end, ends)
                if keep is None or keep(count):
                    rgb = frame.to_ndarray(format="rgb24")
                    kept[count] = transform(rgb) if transform is not None else rgb
                count += 1
        except VideoError:  # a frame size change: already one line
            raise
        except (av.FFmpegError, OSError, ValueError) as error:
            raise VideoError(path, f"decoding failed after {count} frames "
                                   f"({_ffmpeg_message(error)})",
                             "the file is truncated or corrupt: re-download it") from None
        declared_count = int(stream.frames or 0)
    finally:
        container.close()
    check_complete(path, count, end if timed else None, frame_seconds, declared_seconds,
                   declared_count)
    if count == 0:
        raise VideoError(path, "has no decodable frames", "the file is truncated or corrupt")
    if count < min_frames:
        raise VideoError(path, f"has {count} frame; a clip needs at least {min_frames}",
                         "is it a still image?")
    return kept, count, expected


def read_views(path: str, protocol, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 views ``(num_views, T, S, S, 3)`` of the video at ``path`` under ``protocol``.

    Only the frames some view reads are kept (``decode_sampled``): at most clips x T resized
    frames, however long the video."""
    kept, count = decode_sampled(path, protocol.needed_indices, protocol.resize_frame,
                                 max_pixels=max_pixels)
    return protocol.views_from_frames(kept, count)
