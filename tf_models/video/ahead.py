"""Decoding ahead of the model, one way for every list the video tools and fine-tuning's
validation walk: ``decoded_ahead(items, load, workers)``. Stdlib only."""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Iterable, Iterator, Tuple, TypeVar

Item = TypeVar("Item")


def decoded_ahead(items: Iterable[Item], load: Callable[[Item], object],
                  workers: int) -> Iterator[Tuple[Item, Future]]:
    """``(item, future of load(item))`` for each of ``items``, in order, ``load`` running in
    ``workers`` threads with at most ``2 * workers`` (at least 2) loads submitted beyond the
    one handed out: memory stays bounded by that many decoded videos whatever the list's
    length. Closing the generator (``contextlib.closing`` around the loop: a stop or an error
    leaves it) drops the loads still queued without waiting for them; those already running
    finish in their threads."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    pending: Deque[Tuple[Item, Future]] = collections.deque()
    upcoming = iter(items)
    lookahead = max(2, 2 * workers)

    done = object()

    def refill() -> None:
        while len(pending) < lookahead:
            item = next(upcoming, done)
            if item is done:
                return
            pending.append((item, pool.submit(load, item)))

    try:
        refill()
        while pending:
            item, future = pending.popleft()
            refill()
            yield item, future
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
