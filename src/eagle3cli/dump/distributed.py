"""The processes of a dump: one, or several started by ``torchrun`` / ``accelerate launch``.

The launchers set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; the
dump only needs a barrier and small sums, so it talks through a gloo group (CPU tensors) —
its own group when the caller already initialised ``torch.distributed`` with another backend.
Process ``r`` of ``W`` owns the shards ``k`` with ``k % W == r``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from eagle3cli.errors import Eagle3Error

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    """This process's place among the dump's processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo process group; None when alone

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard_index: int) -> bool:
        return shard_index % self.world_size == self.rank

    def sum(self, values: Sequence[int]) -> list[int]:
        """Element-wise sum of ``values`` over all processes."""
        if self.world_size == 1:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor.tolist()

    def barrier(self) -> None:
        self.sum([0])


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise Eagle3Error(f"environment variable {name}={value!r} is not an integer") from None


@contextmanager
def processes_from_env() -> Iterator[Processes]:
    """The processes from the launcher's environment (one process without a launcher)."""
    world_size = env_int("WORLD_SIZE", 1)
    if world_size == 1:
        yield Processes()
        return
    import torch.distributed as dist

    owns_default_group = not dist.is_initialized()
    if owns_default_group:
        dist.init_process_group(backend="gloo")
    group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    try:
        yield Processes(dist.get_rank(), dist.get_world_size(), env_int("LOCAL_RANK", 0), group)
    finally:
        if owns_default_group:
            dist.destroy_process_group()


def collectively(processes: Processes, step: Callable[[], T]) -> T:
    """Run ``step`` on every process; if it fails on any, fail on all (never hang at a barrier).

    Each process raises its own error; the others raise one that points at it.
    """
    try:
        result = step()
        failed = 0
    except Exception:
        processes.sum([1])
        raise
    if processes.sum([failed])[0]:
        raise Eagle3Error(
            "another dump process failed (its error is above)", hint="fix it and rerun the same command to resume"
        )
    return result
