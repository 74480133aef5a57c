"""Which samples each process trains on, in a resumable order, and how they are padded.

The order is a pure function of ``(seed, epoch)``, so a resumed run needs only the data
position (epoch, micro-batch) to continue exactly where it stopped — no sampler state.

Micro-batch ``m`` of an epoch is the global slice ``order[m * G : (m + 1) * G]`` with
``G = per_device_batch_size * world_size``; process ``r`` takes its ``r``-th part of
``per_device_batch_size`` samples. A 1-process run with ``per_device_batch_size = G`` sees the
same global batches as a ``world_size``-process run. The last incomplete global batch of an
epoch is dropped in training; evaluation covers every sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch`` (the same on every process and every rerun)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


def num_micro_batches(num_samples: int, per_device_batch_size: int, world_size: int) -> int:
    """Complete global micro-batches per epoch."""
    return num_samples // (per_device_batch_size * world_size)


def local_micro_batch(
    order: Sequence[int], micro_batch: int, *, per_device_batch_size: int, world_size: int, rank: int
) -> list[int]:
    """The sample indices process ``rank`` trains on in ``micro_batch``."""
    start = (micro_batch * world_size + rank) * per_device_batch_size
    return list(order[start : start + per_device_batch_size])


def eval_batches(num_samples: int, batch_size: int, *, world_size: int, rank: int) -> Iterator[list[int]]:
    """Every sample once: process ``rank`` takes ``rank, rank + world_size, ...`` in batches."""
    indices = list(range(rank, num_samples, world_size))
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def pad_right(rows: Sequence[torch.Tensor], value: float | int = 0) -> torch.Tensor:
    """Stack ``[T_i, ...]`` tensors into ``[B, max T, ...]``, padding at the end with ``value``."""
    length = max(row.shape[0] for row in rows)
    out = rows[0].new_full((len(rows), length, *rows[0].shape[1:]), value)
    for index, row in enumerate(rows):
        out[index, : row.shape[0]] = row
    return out


def attention_mask_for(lengths: Sequence[int]) -> torch.Tensor:
    """``[B, max length]`` bool, True on the real tokens of each right-padded row."""
    return torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
