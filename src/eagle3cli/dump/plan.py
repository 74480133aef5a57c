"""From chat records to work: shards of the data, what is left to do, tokenised samples,
token-budget batches, and the size estimate checked against free disk.

Shard ``k`` is the records at positions ``[k * shard_size, (k + 1) * shard_size)`` of the
reader's order (bad records skipped by policy are not counted), so shard names depend on
neither the number of processes nor the batching.

Planning reads the data once without tokenising it all: shards whose record verifies are
done, the rest are pending, and their token count is estimated from a seeded random sample of
at most 1000 records (exact for smaller data). Each record is tokenised once, when dumped.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eagle3cli.config import ChatSettings, DumpHiddenConfig
from eagle3cli.data.readers import ReadStats
from eagle3cli.data.records import Conversation
from eagle3cli.data.tokenize import TokenizedSample, tokenize_records
from eagle3cli.dump.distributed import Processes
from eagle3cli.dump.manifest import read_record, record_verifies, records_sha256
from eagle3cli.dump.shard_file import DUMP_DTYPES, FP8, NUM_AUX_STATES
from eagle3cli.dump.target import DumpTarget
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import format_bytes

# Records tokenised to estimate the output size (all of them when there are fewer).
NUM_ESTIMATE_RECORDS = 1000
# Per-shard allowance for the safetensors header, the id list and the token counts.
SHARD_OVERHEAD_BYTES = 64 << 10
INDEX_BYTES_PER_SAMPLE = 16  # sample_offsets + sample_indices (int64 each)
INDEX_BYTES_PER_TOKEN = 5  # input_ids int32 + loss_mask uint8


@dataclass(frozen=True)
class ShardInput:
    """The records of one shard: ``(sample_index, conversation)`` in data order."""

    index: int
    first_sample: int
    records: list[tuple[int, Conversation]]

    @property
    def records_sha256(self) -> str:
        return records_sha256([
            [conversation.id, [[turn.role, turn.content] for turn in conversation.turns]] for _, conversation in self.records
        ])


@dataclass(frozen=True)
class TokenizedRecords:
    """The records that have loss-masked tokens, tokenised, and how many were left out."""

    samples: list[TokenizedSample]
    num_skipped_without_loss: int

    @property
    def num_tokens(self) -> int:
        return sum(len(sample.input_ids) for sample in self.samples)

    @property
    def num_truncated(self) -> int:
        return sum(sample.truncated for sample in self.samples)


def iter_shard_inputs(conversations: Iterator[Conversation], shard_size: int) -> Iterator[ShardInput]:
    """Number the conversations and group them into consecutive shards of ``shard_size`` (the last may be short)."""
    batch: list[tuple[int, Conversation]] = []
    index = 0
    for sample_index, conversation in enumerate(conversations):
        batch.append((sample_index, conversation))
        if len(batch) == shard_size:
            yield ShardInput(index, index * shard_size, batch)
            batch, index = [], index + 1
    if batch:
        yield ShardInput(index, index * shard_size, batch)


def shard_inputs(config: DumpHiddenConfig, on_done: Callable[[ReadStats], None] | None = None) -> Iterator[ShardInput]:
    """One pass over the data, grouped into shards; ``on_done`` gets the pass's read statistics
    (records read, malformed ones skipped and why) once it is complete."""
    from eagle3cli.data.readers import read_conversations

    reader = read_conversations(config.data, config, num_samples=config.num_samples)
    yield from iter_shard_inputs((conversation for _, conversation in reader), config.shard_size)
    if on_done is not None:
        on_done(reader.stats)


def shard_is_done(directory: Path, shard: ShardInput) -> bool:
    """True when the shard's record exists and its file verifies (size, sha256, same records)."""
    record = read_record(directory, shard.index)
    return record is not None and record_verifies(
        directory, record, first_sample=shard.first_sample, records_sha256=shard.records_sha256
    )


def tokenize_shard(records: Sequence[tuple[int, Conversation]], tokenizer: Any, chat: ChatSettings) -> TokenizedRecords:
    """Tokenise records with the chat settings; samples without a loss-masked token are left out."""
    tokenized = list(tokenize_records(records, tokenizer, chat))
    samples = [sample for sample in tokenized if sample.has_loss]
    return TokenizedRecords(samples, len(tokenized) - len(samples))


class RecordSample:
    """A uniform random sample of at most ``size`` records from a stream (reservoir sampling),
    seeded, so the size estimate does not depend on how the data is ordered."""

    def __init__(self, size: int, *, seed: int = 0) -> None:
        self.size = size
        self.records: list[tuple[int, Conversation]] = []
        self.num_seen = 0
        self._rng = random.Random(seed)

    def add(self, record: tuple[int, Conversation]) -> None:
        self.num_seen += 1
        if len(self.records) < self.size:
            self.records.append(record)
            return
        slot = self._rng.randrange(self.num_seen)
        if slot < self.size:
            self.records[slot] = record

    def estimate_tokens(self, tokenizer: Any, chat: ChatSettings) -> int:
        """Tokens of all records seen: exact when all were kept, else extrapolated from the sample."""
        if not self.records:
            return 0
        num_tokens = tokenize_shard(self.records, tokenizer, chat).num_tokens
        return round(num_tokens * self.num_seen / len(self.records))


def token_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group sample positions into batches costing at most ``batch_tokens`` padded tokens.

    Samples are taken longest first, so a batch's padding is small; a sample longer than the
    budget runs alone. Returns positions into ``lengths``.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for position in order:
        # The first sample of a batch is its longest: the padded cost is size * that length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(position)
        else:
            batches.append([position])
    return batches


def bytes_per_token(hidden_size: int, dtype: torch.dtype) -> int:
    """Bytes one token costs in a shard: ``aux_hidden`` + ``last_hidden`` (+ their float32
    scales in a float8 dump) + ids and mask."""
    scales = (NUM_AUX_STATES + 1) * 4 if dtype == FP8 else 0
    return 4 * hidden_size * dtype.itemsize + scales + INDEX_BYTES_PER_TOKEN


def estimate_bytes(*, num_tokens: int, num_samples: int, num_shards: int, hidden_size: int, dtype: torch.dtype) -> int:
    """Estimated size of the shards to write (tensors exact, headers approximated)."""
    return (
        num_tokens * bytes_per_token(hidden_size, dtype)
        + num_samples * INDEX_BYTES_PER_SAMPLE
        + num_shards * SHARD_OVERHEAD_BYTES
    )


def check_free_disk(directory: Path, needed_bytes: int, *, force: bool) -> int:
    """Return the free bytes at ``directory``; raise when fewer than ``needed_bytes`` (unless ``force``)."""
    free_bytes = shutil.disk_usage(directory).free
    if needed_bytes > free_bytes and not force:
        raise Eagle3Error(
            f"the dump needs about {format_bytes(needed_bytes)} but {directory} has {format_bytes(free_bytes)} free",
            hint="free some space, use another --output-dir, dump fewer samples, or pass --force to start anyway",
        )
    return free_bytes


@dataclass
class LocalPlan:
    """This process's shards: the pending ones, and how many were resumed."""

    num_shards: int = 0  # in the whole data
    num_records: int = 0  # in the whole data
    pending: set[int] = field(default_factory=set)
    num_resumed: int = 0
    num_samples: int = 0  # records of the pending shards
    num_tokens: int = 0  # estimated tokens of the pending shards
    bad_records: dict[str, Any] = field(default_factory=dict)  # malformed input records skipped: count, by_reason


@dataclass(frozen=True)
class DumpPlan:
    """What is left to do (all processes), told to ``on_start`` before the target is loaded."""

    num_shards: int
    num_shards_resumed: int
    num_shards_pending: int
    num_samples: int
    num_tokens: int  # estimated
    num_local_samples: int  # this process's part of num_samples
    bytes_per_token: int
    estimated_bytes: int
    free_bytes: int


def plan_local(config: DumpHiddenConfig, target: DumpTarget, directory: Path, processes: Processes) -> LocalPlan:
    """Find this process's shards that are done and those pending; estimate the pending tokens."""
    plan = LocalPlan()
    sample = RecordSample(NUM_ESTIMATE_RECORDS)
    def keep_read_stats(stats: ReadStats) -> None:
        plan.bad_records = {"count": stats.num_skipped, "by_reason": dict(stats.skipped_by_reason)}

    for shard in shard_inputs(config, on_done=keep_read_stats):
        plan.num_shards += 1
        plan.num_records += len(shard.records)
        if not processes.owns(shard.index):
            continue
        if shard_is_done(directory, shard):
            plan.num_resumed += 1
            continue
        plan.pending.add(shard.index)
        plan.num_samples += len(shard.records)
        for record in shard.records:
            sample.add(record)
    if plan.num_shards == 0:
        raise Eagle3Error(f"{config.data} holds no records to dump")
    plan.num_tokens = sample.estimate_tokens(target.spec.tokenizer, config)
    return plan


def check_plan(
    config: DumpHiddenConfig, target: DumpTarget, directory: Path, plan: LocalPlan, processes: Processes
) -> DumpPlan:
    """Totals over all processes, the size estimate, and the free-disk check."""
    resumed, pending, samples, tokens = processes.sum(
        [plan.num_resumed, len(plan.pending), plan.num_samples, plan.num_tokens]
    )
    dtype = DUMP_DTYPES[config.dtype]
    estimated = estimate_bytes(
        num_tokens=tokens, num_samples=samples, num_shards=pending, hidden_size=target.spec.hidden_size, dtype=dtype
    )
    scratch = 0
    if config.backend == "vllm" and pending:  # vLLM's per-request states files of the shard in flight
        from eagle3cli.dump.compute import compute_dtype
        from eagle3cli.dump.vllm_states import scratch_bytes
        from eagle3cli.target.loading import resolve_device

        scratch = scratch_bytes(tokens, pending, target, compute_dtype(dtype, resolve_device(config.device, processes.local_rank)))
    return DumpPlan(
        num_shards=plan.num_shards,
        num_shards_resumed=resumed,
        num_shards_pending=pending,
        num_samples=samples,
        num_tokens=tokens,
        num_local_samples=plan.num_samples,
        bytes_per_token=bytes_per_token(target.spec.hidden_size, dtype),
        estimated_bytes=estimated,
        free_bytes=check_free_disk(directory, estimated + scratch, force=config.force),
    )
