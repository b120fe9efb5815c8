"""The training input: a labelled list of videos -> global batches of augmented clips.

One video at position ``p`` of epoch ``e`` is decoded once, sampled in time with the generator
keyed (seed, SAMPLE, e, p, 0) and augmented ``num_sample`` times (upstream's repeated
augmentation) with the generators keyed (seed, SAMPLE, e, p, 1 + r); mixup / cutmix draws from
(seed, MIX, e, step). A batch is therefore a function of (seed, epoch, step) only: the same for
any number of devices, hosts, threads or restarts. Videos decode in a thread pool (PyAV and
OpenCV release the GIL) a few steps ahead of the training step; leaving the batches (a stop)
cancels the decodes queued, so it never waits for them.

A video that fails to decode gives its place (position ``p``) to the next video of the
epoch's order that decodes, starting one step further on (``replacement_positions``), decoded
with position ``p``'s generators, as upstream's loader replaces a bad sample with another: so
each process fills its own share with no word from the others, and a resumed run fills it
again the same way. Only a list in which no video decodes stops the run.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, List, Sequence, Set, Tuple

import numpy as np

from ..video.decode import MAX_PIXELS, VideoError, decode_sampled
from ..presets import DATASETS
from ..video.protocol import normalize_views, resize_short_side
from .augment import RECIPE, mix_batch, random_erase, random_resized_crop
from .randaugment import rand_augment
from .sampling import MIX, SAMPLE, epoch_order, rng_for, train_indices

# decoded frames are shrunk to this many times the clip size on the short side before the
# random-resized crop (upstream crops full-resolution frames; the crop is scale-free)
DECODE_SHORT_SIDE = 2


class TrainDataError(ValueError):
    """A list or batch setting that cannot make training batches; ``str()`` is one line."""


@dataclass
class Batch:
    """One step's input: clips (B, T, S, S, 3) float32, soft targets (B, C), failed videos."""

    epoch: int
    step: int
    clips: np.ndarray
    targets: np.ndarray
    failed: List[str] = field(default_factory=list)


@dataclass
class TrainSet:
    """``items`` ((relative path, label) pairs under ``root``) as upstream's training set."""

    items: Sequence[Tuple[str, int]]
    root: str
    num_classes: int
    num_frames: int
    img_size: int
    dataset: str = "k400"
    seed: int = 0
    num_sample: int = RECIPE["num_sample"]
    augment: bool = True      # False: centre crop, no flip / erasing / mixup (smoothing kept)
    rand_augment: bool = True
    max_pixels: int = MAX_PIXELS
    # videos found undecodable in this process: not decoded again as another's replacement
    known_bad: Set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self):
        labelled = [key for key, facts in DATASETS.items() if facts.labelled]
        if self.dataset not in labelled:
            raise TrainDataError(f"dataset {self.dataset!r}: expected one of "
                                 f"{', '.join(labelled)}")
        facts = DATASETS[self.dataset]
        # upstream trains with its test-time sampler (dense / segment) and sampling rate
        self.sampler, self.rate, self.flip = facts.test.sampler, facts.test.rate, \
            facts.train_flip

    def videos_per_step(self, batch_size: int) -> int:
        """Videos per global step: ``batch_size`` clips, ``num_sample`` from each video."""
        if batch_size % self.num_sample:
            raise TrainDataError(f"--batch-size {batch_size}: must be a multiple of "
                                 f"--num-sample {self.num_sample} (clips per video)")
        if self.augment and batch_size % 2:
            raise TrainDataError(f"--batch-size {batch_size}: mixup pairs clips, so it must "
                                 "be even")
        return batch_size // self.num_sample

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full global batches per epoch (upstream drops the last partial one)."""
        per_step = self.videos_per_step(batch_size)
        steps = len(self.items) // per_step
        if steps == 0:
            raise TrainDataError(f"the list holds {len(self.items)} videos, fewer than one "
                                 f"global batch of {per_step} videos (--batch-size "
                                 f"{batch_size} / {self.num_sample} clips each); lower "
                                 f"--batch-size")
        return steps

    # --- one video -------------------------------------------------------------------------

    def _shrink(self, frame):
        height, width = frame.shape[:2]
        limit = DECODE_SHORT_SIDE * self.img_size
        if min(height, width) <= limit:
            return frame
        return resize_short_side(frame, height, width, limit)

    def _read(self, path: str, rng) -> np.ndarray:
        # the same draw for whatever count decode_sampled tries (each from a copy of rng)
        def indices_for(count: int) -> List[int]:
            return list(train_indices(self.sampler, count, self.num_frames, self.rate,
                                      rng_copy(rng)))

        kept, count = decode_sampled(path, indices_for, self._shrink, max_pixels=self.max_pixels)
        return np.stack([kept[i] for i in indices_for(count)])

    def clips_of(self, epoch: int, position: int, video: str) -> np.ndarray:
        """The ``num_sample`` augmented, normalised clips (R, T, S, S, 3) of one video."""
        frames = self._read(os.path.join(self.root, video), rng_for(self.seed, SAMPLE, epoch,
                                                                     position, 0))
        clips = []
        for repeat in range(self.num_sample):
            rng = rng_for(self.seed, SAMPLE, epoch, position, 1 + repeat)
            if self.augment:
                clip = random_resized_crop(frames, self.img_size, rng)
                if self.rand_augment:
                    clip = rand_augment(clip, rng)
                if self.flip and rng.uniform() < 0.5:
                    clip = clip[:, :, ::-1]
                clip = random_erase(normalize_views(clip), rng)
            else:
                clip = normalize_views(_centre_crop(frames, self.img_size))
            clips.append(clip)
        return np.stack(clips)

    # --- batches ---------------------------------------------------------------------------

    def step_videos(self, epoch: int, step: int, batch_size: int) -> List[Tuple[int, str, int]]:
        """(position, video, label) of the videos making global step ``step`` of ``epoch``."""
        per_step = self.videos_per_step(batch_size)
        order = epoch_order(self.seed, epoch, len(self.items))
        positions = range(step * per_step, (step + 1) * per_step)
        return [(p, *self.items[int(order[p])]) for p in positions]

    def _fill(self, epoch: int, order: np.ndarray, position: int, per_step: int):
        """(clips, label, failure messages) for ``position``: its own video, or when that fails
        to decode the first of ``replacement_positions`` that does (clips None: none did)."""
        failures: List[str] = []
        for candidate in replacement_positions(position, per_step, len(order)):
            video, label = self.items[int(order[candidate])]
            if video in self.known_bad:
                continue  # reported where it failed (this batch or an earlier one)
            try:
                return self.clips_of(epoch, position, video), label, failures
            except VideoError as error:
                self.known_bad.add(video)
                failures.append(str(error))
        return None, None, failures

    def batches(self, epoch: int, start_step: int, batch_size: int, workers: int = 2,
                shard: Tuple[int, int] = (0, 1), lookahead: int = 2) -> Iterator[Batch]:
        """Batches of ``epoch`` from ``start_step``; ``shard`` (index, count) keeps this
        process's contiguous share of each global batch (several hosts). At most
        ``lookahead + 1`` steps are decoded ahead of the one being trained; closing the
        iterator (a stop) cancels them without waiting."""
        steps = self.steps_per_epoch(batch_size)
        per_step = self.videos_per_step(batch_size)
        order = epoch_order(self.seed, epoch, len(self.items))
        index, count = shard
        share = per_step // count
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            pending = collections.deque()

            def submit(step):
                first = step * per_step + index * share
                pending.append((step, [pool.submit(self._fill, epoch, order, position,
                                                   per_step)
                                       for position in range(first, first + share)]))

            upcoming = iter(range(start_step, steps))
            for step in upcoming:
                submit(step)
                if len(pending) > lookahead:
                    break
            while pending:
                step, loads = pending.popleft()
                following = next(upcoming, None)
                if following is not None:
                    submit(following)
                yield self._assemble(epoch, step, [load.result() for load in loads])
        finally:
            # a stop (or an error) must not wait for every queued decode: the ones running
            # finish in their threads, the rest are dropped
            pool.shutdown(wait=False, cancel_futures=True)

    def _assemble(self, epoch: int, step: int, filled) -> Batch:
        failed = [message for _, _, failures in filled for message in failures]
        if any(clips is None for clips, _, _ in filled):
            # counted from 1, as the history and the command's lines count epochs
            first = f" (first: {failed[0]})" if failed else ""
            raise TrainDataError(f"epoch {epoch + 1} step {step + 1}: no video of the list "
                                 f"could be decoded{first}; check --root and the list")
        clips = np.concatenate([c for c, _, _ in filled])
        labels = np.repeat(np.asarray([label for _, label, _ in filled]), self.num_sample)
        rng = rng_for(self.seed, MIX, epoch, step)
        if self.augment:
            clips, targets, _ = mix_batch(clips, labels, self.num_classes, rng)
        else:
            clips, targets, _ = mix_batch(clips, labels, self.num_classes, rng, mixup=0,
                                          cutmix=0)
        return Batch(epoch, step, np.ascontiguousarray(clips, np.float32), targets, failed)


def replacement_positions(position: int, per_step: int, count: int) -> Iterator[int]:
    """The positions whose videos may fill ``position`` of an epoch of ``count`` videos, in
    the order tried: itself, then from the same place one step (``per_step``) further on,
    wrapping round, every other position once; those of its own step come last."""
    yield position
    for offset in range(per_step, per_step + count):
        candidate = (position + offset) % count
        if candidate != position:
            yield candidate


def _centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    height, width = frames.shape[1:3]
    scaled = np.stack([resize_short_side(f, height, width, size) for f in frames])
    height, width = scaled.shape[1:3]
    top, left = (height - size) // 2, (width - size) // 2
    return scaled[:, top:top + size, left:left + size]


def rng_copy(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator in the same state (to draw the same indices twice)."""
    copy = np.random.default_rng()
    copy.bit_generator.state = rng.bit_generator.state
    return copy


def failed_videos(batches_failed: Sequence[str], seen: Set[str]) -> List[str]:
    """The messages of ``batches_failed`` not already in ``seen`` (each bad video once)."""
    fresh = [m for m in batches_failed if m not in seen]
    seen.update(fresh)
    return fresh
