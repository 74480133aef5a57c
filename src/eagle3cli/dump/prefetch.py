"""Run an iterator a few items ahead in a background thread.

The dump tokenises the next shard while the target computes the current one: tokenisation is
CPU work that would otherwise leave the accelerator idle (the Rust tokenizer releases the GIL,
and the forward thread mostly waits on the device).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error

PUT_TIMEOUT_S = 0.1  # how often a blocked producer checks whether the consumer went away


def prefetched(items: Iterator[T], *, depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order while a thread computes up to ``depth`` of them ahead.

    An exception raised by ``items`` is re-raised here; leaving the loop early stops the thread.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=PUT_TIMEOUT_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="dump-prefetch", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
