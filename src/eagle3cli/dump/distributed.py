"""The processes of a dump: one, or several started by ``torchrun`` / ``accelerate launch``.

The launchers set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; the
dump only needs a barrier and small sums, so it talks through the launcher's key-value store
(``torch.distributed.rendezvous("env://")``: the agent's store under torchrun, else one that
process 0 serves) — no process group, so no communication threads are left running when the
interpreter shuts down (gloo's were, and aborted a process now and then at exit). When the
caller already initialised ``torch.distributed``, its default store is used.
Process ``r`` of ``W`` owns the shards ``k`` with ``k % W == r``.
"""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from eagle3cli.errors import Eagle3Error

T = TypeVar("T")
# How long a process waits for the others at a sum: a shard can take hours on a slow process;
# when a process dies, the launcher stops the others.
WAIT = datetime.timedelta(days=7)


class Processes:
    """This process's place among the dump's processes, and the sums they share."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, store: Any = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.store = store  # a torch.distributed Store; None when alone
        self._rounds = itertools.count()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard_index: int) -> bool:
        return shard_index % self.world_size == self.rank

    def sum(self, values: Sequence[int]) -> list[int]:
        """Element-wise sum of ``values`` over all processes (every process calls it in the same order)."""
        if self.world_size == 1:
            return list(values)
        prefix = f"sum-{next(self._rounds)}"
        for position, value in enumerate(values):
            self.store.add(f"{prefix}/{position}", int(value))
        if self.store.add(f"{prefix}/arrived", 1) == self.world_size:
            self.store.set(f"{prefix}/complete", "1")
        self.store.wait([f"{prefix}/complete"], WAIT)
        return [self.store.add(f"{prefix}/{position}", 0) for position in range(len(values))]


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

    if dist.is_initialized():
        store, rank = dist.distributed_c10d._get_default_store(), dist.get_rank()
    else:
        store, rank, world_size = next(dist.rendezvous("env://", timeout=WAIT))
    # Workers restarted by the launcher share the agent's store: keep each attempt's keys apart.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    yield Processes(rank, world_size, env_int("LOCAL_RANK", 0), dist.PrefixStore(f"eagle3-dump-{attempt}", store))


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
