"""Writing finished shards in background threads, so the next shard's forward overlaps the
previous shards' hashing and disk writes (both release the GIL).

One thread hashes and writes about 0.6 GB/s (sha256 ~1.5 GB/s, page-cache writes ~1.2 GB/s
per core), less than an 8B target on one H100-class GPU emits (~1 GB/s of bf16 states), so
``NUM_WRITER_THREADS`` shards are written at once. At most that many shards wait to be written
while the next is computed, which bounds host memory at ``NUM_WRITER_THREADS + 1`` shards.
A shard is streamed to a temporary file, renamed, and only then gets its record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import torch

from eagle3cli.dump.manifest import ShardRecord, shard_file, write_record
from eagle3cli.dump.plan import ShardInput
from eagle3cli.dump.shard_file import HiddenSample, ShardDigest, write_shard
from eagle3cli.fileio import atomic_write

NUM_WRITER_THREADS = 3


def save_shard(
    directory: Path,
    shard: ShardInput,
    samples: list[HiddenSample],
    *,
    num_skipped_without_loss: int,
    hidden_size: int,
    dtype: torch.dtype,
    ready: Callable[[], None],
) -> ShardRecord:
    """Wait until ``samples`` are on the host (``ready``), write shard ``shard.index``
    atomically, then its record; return the record."""
    ready()
    path = shard_file(directory, shard.index)
    digests: list[ShardDigest] = []
    atomic_write(
        path, lambda handle: digests.append(write_shard(handle, samples, hidden_size=hidden_size, dtype=dtype))
    )
    record = ShardRecord(
        index=shard.index,
        file=path.relative_to(directory).as_posix(),
        first_sample=shard.first_sample,
        num_samples=len(samples),
        num_skipped_without_loss=num_skipped_without_loss,
        num_tokens=sum(sample.num_tokens for sample in samples),
        num_loss_tokens=sum(int(sample.loss_mask.sum()) for sample in samples),
        num_bytes=digests[0].num_bytes,
        sha256=digests[0].sha256,
        records_sha256=shard.records_sha256,
    )
    write_record(directory, record)
    return record


class ShardWriter:
    """Saves shards in background threads, at most ``NUM_WRITER_THREADS`` at once; a context manager."""

    def __init__(self, directory: Path, *, hidden_size: int, dtype: torch.dtype) -> None:
        self.directory = Path(directory)
        self.hidden_size = hidden_size
        self.dtype = dtype
        self.records: list[ShardRecord] = []
        self._executor = ThreadPoolExecutor(max_workers=NUM_WRITER_THREADS, thread_name_prefix="shard-writer")
        self._pending: deque[Future[ShardRecord]] = deque()

    def submit(
        self,
        shard: ShardInput,
        samples: list[HiddenSample],
        *,
        num_skipped_without_loss: int,
        ready: Callable[[], None],
    ) -> None:
        """Queue a shard; when every thread is busy, first wait for the oldest (its errors surface here)."""
        while len(self._pending) >= NUM_WRITER_THREADS:
            self.records.append(self._pending.popleft().result())
        self._pending.append(self._executor.submit(
            save_shard, self.directory, shard, samples, num_skipped_without_loss=num_skipped_without_loss,
            hidden_size=self.hidden_size, dtype=self.dtype, ready=ready,
        ))

    def wait(self) -> None:
        """Wait for every shard being written."""
        while self._pending:
            self.records.append(self._pending.popleft().result())

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self._executor.shutdown(wait=True)
