"""``dump-hidden``: the target's hidden states for offline training, resumable, multi-process.

Steps (every process runs them; process 0 alone writes the shared files):

1. Resolve the target, its draft config (capture layers) and tokenizer; check an existing
   manifest against this run's settings; write the manifest header (``complete: false``),
   ``config.json`` and ``draft_config.json``.
2. Plan: read the data, group it into shards, keep the shards this process owns whose record
   does not verify (sha256), and estimate their tokens. The estimate (bytes/token x tokens) is
   checked against free disk.
3. Load the target; per pending shard: tokenise (a thread, one shard ahead), forward in
   token-budget batches (hooks on the capture layers, base model only), copy the real tokens
   to the host (asynchronously on CUDA), write the shard (a thread, overlapping the next).
   With ``--backend vllm`` a vLLM engine computes the states instead (:mod:`.vllm_states`).
4. Process 0: every shard's record into ``manifest.json`` (``complete: true``) and the vocab
   map from all shards' loss-masked token counts — the same after any number of resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eagle3cli.config import DumpHiddenConfig
from eagle3cli.data.tokenize import TokenizedSample
from eagle3cli.draft.vocab import VOCAB_MAP_FILE, build_vocab_map, save_vocab_map
from eagle3cli.dump.compute import HostTransfer, batch_token_budget, compute_dtype, compute_samples
from eagle3cli.dump.distributed import Processes, collectively, processes_from_env
from eagle3cli.dump.manifest import (
    DRAFT_CONFIG_FILE,
    check_resumable,
    read_manifest,
    read_record,
    remove_dump,
    remove_temporaries,
    write_manifest,
)
from eagle3cli.dump.plan import (
    DumpPlan,
    LocalPlan,
    ShardInput,
    TokenizedRecords,
    check_plan,
    plan_local,
    shard_inputs,
    tokenize_shard,
)
from eagle3cli.dump.prefetch import prefetched
from eagle3cli.dump.shard_file import DUMP_DTYPES, HiddenSample
from eagle3cli.dump.target import DumpTarget, manifest_header, prepare_target
from eagle3cli.dump.vllm_states import VllmStates
from eagle3cli.dump.vocab_counts import total_loss_token_counts
from eagle3cli.dump.writer import ShardWriter
from eagle3cli.errors import Eagle3Error
from eagle3cli.outputs import claimed_output_dir
from eagle3cli.target.loading import load_target, resolve_device


@dataclass(frozen=True)
class DumpProgress:
    """This process's progress, told to ``on_progress`` after each forward batch."""

    num_samples: int
    num_tokens: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.num_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class DumpSummary:
    """The run (this process's share) and the finished dump (all shards, from the manifest)."""

    output_dir: Path
    world_size: int
    rank: int
    num_shards: int
    num_shards_resumed: int
    num_shards_written: int
    num_tokens_written: int
    num_truncated: int
    elapsed_s: float
    manifest: dict[str, Any] = field(repr=False)

    @property
    def tokens_per_s(self) -> float:
        return self.num_tokens_written / self.elapsed_s if self.elapsed_s > 0 else 0.0


def dump_hidden(
    config: DumpHiddenConfig,
    *,
    on_start: Callable[[DumpPlan], None] | None = None,
    on_progress: Callable[[DumpProgress], None] | None = None,
    vllm_engine_args: dict[str, Any] | None = None,
    vllm_env: dict[str, str] | None = None,
) -> DumpSummary:
    """Dump the target's hidden states for ``config.data`` into ``config.output_dir``.

    Rerunning the same command resumes; under ``torchrun``/``accelerate launch`` each process
    takes the shards ``k % world_size == rank``. ``on_start`` and ``on_progress`` are called
    on process 0 only. ``vllm_engine_args`` / ``vllm_env``: extra ``vllm.LLM`` arguments and
    environment for ``--backend vllm``.
    """
    with processes_from_env() as processes, ExitStack() as stack:
        directory = collectively(processes, lambda: stack.enter_context(
            claimed_output_dir(config.output_dir, "dump-hidden", is_main=processes.is_main)
        ))
        target = collectively(processes, lambda: prepare_target(config))
        header = manifest_header(config, target)
        if not config.overwrite:
            collectively(processes, lambda: check_resumable(directory, header))
        collectively(processes, lambda: start_output(directory, config, target, header) if processes.is_main else None)
        plan = collectively(processes, lambda: plan_local(config, target, directory, processes))
        dump_plan = collectively(processes, lambda: check_plan(config, target, directory, plan, processes))
        # what the whole dump will hold: train offline --stream sizes its schedule from it mid-run
        header = {**header, "planned": {"num_shards": plan.num_shards, "num_records": plan.num_records}}
        collectively(processes, lambda: write_manifest(directory, header, None) if processes.is_main else None)
        if processes.is_main and on_start is not None:
            on_start(dump_plan)
        model = collectively(processes, lambda: stack.enter_context(
            open_backend(config, target, directory, processes, vllm_engine_args, vllm_env)
        ) if plan.pending else None)
        started = time.perf_counter()
        report = on_progress if processes.is_main else None
        written = collectively(processes, lambda: write_pending(config, target, model, directory, plan, report))
        if model is not None:
            model.close()
        elapsed_s = time.perf_counter() - started
        collectively(
            processes, lambda: finish_output(directory, header, plan, target) if processes.is_main else None
        )
        return summarize(directory, processes, plan, written, elapsed_s)


def start_output(directory: Path, config: DumpHiddenConfig, target: DumpTarget, header: dict[str, Any]) -> None:
    """Process 0, before any shard is written: clear (``--overwrite``) or tidy, then write the header."""
    from eagle3cli.configfile import write_resolved_config
    from eagle3cli.draft.config_json import write_draft_config

    directory.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        remove_dump(directory)
    remove_temporaries(directory)
    earlier = read_manifest(directory)
    if earlier is not None and "planned" in earlier:  # a streaming trainer reads it while this run plans again
        header = {**header, "planned": earlier["planned"]}
    write_manifest(directory, header, None)
    # Written as the settings of the dump: rerunning with --config config.json resumes it, so the
    # one-off actions (wipe, ignore the disk check) are not carried over.
    write_resolved_config(config.model_copy(update={"overwrite": False, "force": False}), directory)
    write_draft_config(directory / DRAFT_CONFIG_FILE, target.draft)


@dataclass
class WriteResult:
    """What this process wrote."""

    num_shards: int = 0
    num_tokens: int = 0
    num_truncated: int = 0


class HFStates(AbstractContextManager["HFStates"]):
    """The target in this process (transformers) on this process's device, in the dump's
    compute dtype (bfloat16 for a float8 dump)."""

    def __init__(self, config: DumpHiddenConfig, target: DumpTarget, processes: Processes) -> None:
        device = resolve_device(config.device, processes.local_rank)
        self.model = load_target(
            target.spec.directory, dtype=compute_dtype(DUMP_DTYPES[config.dtype], device), device=device, trust_remote_code=config.trust_remote_code
        )
        self.aux_layer_ids = target.draft.aux_layer_ids
        self.transfer = HostTransfer(device)
        self.batch_tokens = batch_token_budget(config.batch_tokens, device)

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.model = None

    def compute(self, samples: list[TokenizedSample], *, dtype: torch.dtype, on_batch: Callable[[int, int], None]) -> list[HiddenSample]:
        return compute_samples(self.model, samples, aux_layer_ids=self.aux_layer_ids, dtype=dtype,
                               batch_tokens=self.batch_tokens, transfer=self.transfer, on_batch=on_batch)

    def fence(self) -> Callable[[], None]:
        return self.transfer.fence()


def open_backend(
    config: DumpHiddenConfig, target: DumpTarget, directory: Path, processes: Processes,
    engine_args: dict[str, Any] | None, env: dict[str, str] | None,
) -> HFStates | VllmStates:
    if config.backend == "vllm":
        device = resolve_device(config.device, processes.local_rank)
        return VllmStates(config, target, directory, rank=processes.rank, local_rank=processes.local_rank,
                          world_size=processes.world_size, compute_dtype=compute_dtype(DUMP_DTYPES[config.dtype], device),
                          engine_args=engine_args, env=env, cpu=device.type == "cpu")
    return HFStates(config, target, processes)


def write_pending(
    config: DumpHiddenConfig,
    target: DumpTarget,
    model: HFStates | VllmStates | None,
    directory: Path,
    plan: LocalPlan,
    on_progress: Callable[[DumpProgress], None] | None,
) -> WriteResult:
    """Compute and write this process's pending shards (``model`` is None when there are none)."""
    result = WriteResult()
    if model is None:
        return result
    dtype = DUMP_DTYPES[config.dtype]
    report = progress_reporter(on_progress)
    with ExitStack() as stack:
        writer = stack.enter_context(ShardWriter(directory, hidden_size=target.spec.hidden_size, dtype=dtype))
        shards = stack.enter_context(closing(prefetched(tokenized_pending_shards(config, target, plan))))
        for shard, tokenized in shards:
            samples = model.compute(tokenized.samples, dtype=dtype, on_batch=report)
            report(tokenized.num_skipped_without_loss, 0)
            writer.submit(
                shard, samples, num_skipped_without_loss=tokenized.num_skipped_without_loss, ready=model.fence()
            )
            result.num_truncated += tokenized.num_truncated
    result.num_shards, result.num_tokens = len(writer.records), sum(record.num_tokens for record in writer.records)
    return result


def tokenized_pending_shards(
    config: DumpHiddenConfig, target: DumpTarget, plan: LocalPlan
) -> Iterator[tuple[ShardInput, TokenizedRecords]]:
    """This process's pending shards, tokenised."""
    for shard in shard_inputs(config):
        if shard.index in plan.pending:
            yield shard, tokenize_shard(shard.records, target.spec.tokenizer, config)


def progress_reporter(on_progress: Callable[[DumpProgress], None] | None) -> Callable[[int, int], None]:
    """A per-batch callback that accumulates counts and calls ``on_progress``."""
    started = time.perf_counter()
    totals = [0, 0]

    def report(num_samples: int, num_tokens: int) -> None:
        totals[0] += num_samples
        totals[1] += num_tokens
        if on_progress is not None:
            on_progress(DumpProgress(totals[0], totals[1], time.perf_counter() - started))

    return report


def finish_output(directory: Path, header: dict[str, Any], plan: LocalPlan, target: DumpTarget) -> None:
    """Process 0, after every process is done: the complete manifest and the vocab map."""
    records = [read_record(directory, index) for index in range(plan.num_shards)]
    missing = [
        index for index, record in enumerate(records) if record is None or not (directory / record.file).is_file()
    ]
    if missing:
        raise Eagle3Error(
            f"{len(missing)} shard(s) are missing after the run (first: {missing[:5]})",
            hint="rerun the same command to compute them",
        )
    complete = [record for record in records if record is not None]
    counts = total_loss_token_counts(directory, complete, target.spec.vocab_size)
    save_vocab_map(directory / VOCAB_MAP_FILE, build_vocab_map(counts, target.draft.draft_vocab_size))
    write_manifest(directory, header, complete, bad_records=plan.bad_records)


def summarize(
    directory: Path, processes: Processes, plan: LocalPlan, written: WriteResult, elapsed_s: float
) -> DumpSummary:
    """This process's summary, with the finished dump's manifest."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise Eagle3Error(f"{directory / 'manifest.json'} disappeared during the run")
    return DumpSummary(directory, processes.world_size, processes.rank, plan.num_shards, plan.num_resumed, written.num_shards,
                       written.num_tokens, written.num_truncated, elapsed_s, manifest)
