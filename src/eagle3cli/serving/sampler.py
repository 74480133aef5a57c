"""``eagle3 sample``: regenerate a chat dataset's assistant turns through OpenAI-compatible servers.

The output folder holds ``config.json`` (the resolved run), ``shards/`` (see
:mod:`~eagle3cli.serving.shards`), ``failed.jsonl`` (see :mod:`~eagle3cli.serving.failures`)
and ``summary.json``. Rerunning the same command resumes exactly where a run stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from eagle3cli.config import SampleConfig
from eagle3cli.configfile import write_resolved_config
from eagle3cli.data.readers import ConversationReader, read_conversations, resolve_sources
from eagle3cli.data.records import Conversation
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json
from eagle3cli.outputs import claimed_output_dir
from eagle3cli.serving.client import ChatClient, RetryPolicy, SamplingParams
from eagle3cli.serving.failures import FailedLog
from eagle3cli.serving.pool import ServerPool, ServersDown, choose_model, find_servers
from eagle3cli.serving.regenerate import RecordFailed, regenerate
from eagle3cli.serving.shards import ShardStore

if TYPE_CHECKING:
    from eagle3cli.serving.hf_engine import LocalChatClient

logger = logging.getLogger(__name__)

SHARDS_DIRNAME = "shards"
FAILED_FILENAME = "failed.jsonl"
SUMMARY_FILENAME = "summary.json"
# Settings that decide which record lands in which shard: a rerun must not change them.
INPUT_SETTINGS = ("data", "format", "shard_size", "num_answers")
EXTRA_CONNECTIONS = 16


@dataclass
class SampleSummary:
    """Counts of one run; ``num_finished`` input records are accounted for so far."""

    model: str = ""
    servers: list[str] = field(default_factory=list)
    num_done: int = 0
    num_failed: int = 0
    num_truncated: int = 0
    num_dropped: int = 0
    num_resumed: int = 0
    num_skipped: int = 0
    num_not_finished: int = 0
    num_failed_carried: int = 0
    num_tokens: int = 0
    elapsed_s: float = 0.0
    stopped_reason: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.num_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def num_finished(self) -> int:
        return self.num_done + self.num_dropped + self.num_failed + self.num_resumed + self.num_skipped

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


ProgressCallback = Callable[[SampleSummary], None]


def sample(config: SampleConfig, *, on_progress: ProgressCallback | None = None) -> SampleSummary:
    """Regenerate ``config.data`` into ``config.output_dir``; resumes a stopped run exactly.

    Returns the summary (also written as ``summary.json``). A run that stopped because no
    server answered has ``stopped_reason`` set; rerunning the same command continues it.
    """
    with claimed_output_dir(config.output_dir, "sample") as output_dir:
        check_same_input(output_dir, config)
        reader = read_conversations(config.data, config, require_assistant=False, num_samples=config.num_samples)
        write_resolved_config(config, output_dir)
        summary = asyncio.run(_sample(config, reader, on_progress or (lambda _: None)))
        atomic_write_json(output_dir / SUMMARY_FILENAME, summary.to_json())
    return summary


def check_same_input(output_dir: Path, config: SampleConfig) -> None:
    """Refuse to resume into a folder sampled from other input or with another shard size."""
    previous_path = output_dir / "config.json"
    if not previous_path.exists():
        return
    previous = json.loads(previous_path.read_text(encoding="utf-8"))
    for key in INPUT_SETTINGS:
        if key in previous and previous[key] != getattr(config, key):
            raise Eagle3Error(
                f"{output_dir} holds a run with {key}={previous[key]!r}, not {getattr(config, key)!r}",
                hint="use a new --output-dir, or the same input settings to resume that run",
            )


def record_seed(config: SampleConfig, input_index: int, answer: int = 0) -> int:
    """The server-side sampling seed of one record (from ``config.seed``, its input index and
    answer number), so a record regenerated after a stopped run is the one an uninterrupted run
    would give."""
    key = f"{config.seed}:{input_index}" + (f":{answer}" if answer else "")
    return random.Random(f"{key}:sampling").randrange(2**31)


def record_temperature(config: SampleConfig, input_index: int, answer: int = 0) -> float:
    """The temperature of one answer: fixed, or drawn from the mix with a per-answer seed. Of
    several answers to one prompt at most one is greedy (the others would repeat it): a later
    answer that draws 0 draws again from the mix's other temperatures."""
    if config.temperature_mix is None:
        return config.temperature if config.temperature is not None else 0.0
    temperatures = list(config.temperature_mix)
    weights = list(config.temperature_mix.values())
    drawn = []
    for number in range(answer + 1):
        rng = random.Random(f"{config.seed}:{input_index}" + (f":{number}" if number else ""))
        temperature = rng.choices(temperatures, weights=weights)[0]
        if temperature == 0 and 0 in drawn:
            sampled = [(value, weight) for value, weight in zip(temperatures, weights) if value > 0]
            temperature = rng.choices([value for value, _ in sampled], weights=[weight for _, weight in sampled])[0]
        drawn.append(temperature)
    return drawn[answer]


def estimate_num_records(data: str, num_samples: int | None) -> int | None:
    """Input records to go through (for a progress bar), when cheap to count; else ``None``."""
    try:
        sources = resolve_sources(data)
    except Eagle3Error:
        return None
    total = 0
    for source in sources:
        if not isinstance(source, Path) or source.suffix not in (".jsonl", ".parquet"):
            return num_samples
        total += _count_jsonl_lines(source) if source.suffix == ".jsonl" else _count_parquet_rows(source)
    return total if num_samples is None else min(total, num_samples)


async def _sample(config: SampleConfig, reader: ConversationReader, on_progress: ProgressCallback) -> SampleSummary:
    if config.backend == "hf":
        return await _sample_in_process(config, reader, on_progress)
    connections = config.concurrency + EXTRA_CONNECTIONS
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"} if config.api_key else {}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=config.request_timeout) as http:
        models_by_url = await find_servers(http, config.server_urls, config.host, config.base_port, config.num_servers)
        summary = SampleSummary(model=choose_model(models_by_url, config.model), servers=list(models_by_url))
        pool = ServerPool(http, summary.servers, down_timeout_s=config.server_down_timeout)
        policy = RetryPolicy(config.num_retries, config.retry_backoff, random.Random())
        run = SampleRun(config, ChatClient(pool, policy, request_timeout_s=config.request_timeout), summary, on_progress)
        prober = asyncio.create_task(pool.run_prober())
        try:
            await run.run(reader)
        finally:
            prober.cancel()
    return summary


async def _sample_in_process(config: SampleConfig, reader: ConversationReader, on_progress: ProgressCallback) -> SampleSummary:
    from eagle3cli.serving.hf_engine import open_local_client

    client, where = open_local_client(config)
    summary = SampleSummary(model=str(config.target_model), servers=[where])
    run = SampleRun(config, client, summary, on_progress)
    try:
        await run.run(reader)
    finally:
        await client.aclose()
    return summary


class SampleRun:
    """One pass over the input: dispatch records, journal results, finish shards in order."""

    def __init__(self, config: SampleConfig, client: ChatClient | LocalChatClient, summary: SampleSummary, on_progress: ProgressCallback) -> None:
        output_dir = config.output_dir
        self.config = config
        self.client = client
        self.summary = summary
        self.on_progress = on_progress
        self.store = ShardStore(output_dir / SHARDS_DIRNAME, config.shard_size, answers=config.num_answers)
        self.failed_log = FailedLog(output_dir / FAILED_FILENAME, answers=config.num_answers)
        self.errors: list[BaseException] = []

    async def run(self, reader: ConversationReader) -> None:
        """Dispatch every not-yet-done record, at most ``concurrency`` in flight, then finish the shards."""
        start = time.monotonic()
        try:
            input_over = await self._dispatch(reader)
        finally:
            self.summary.elapsed_s = time.monotonic() - start
            self.summary.num_skipped = reader.stats.num_skipped
        if input_over and not self.errors:
            self.store.close_all()
        else:
            self.store.release()
        self.summary.num_failed_carried = self.failed_log.close(self.store.is_done)
        if self.errors:
            raise self.errors[0]
        if self.client.gave_up:
            self.summary.stopped_reason = self.client.down_message() + "; rerun the same command to resume"

    async def _dispatch(self, reader: ConversationReader) -> bool:
        """Start a task per record; ``True`` when the input was read to its end."""
        slots = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        input_over = True
        try:
            for input_index, conversation in reader:
                answers = self.config.num_answers
                self.store.close_before(input_index * answers)
                self.summary.num_skipped = reader.stats.num_skipped
                for answer in range(answers):
                    slot = input_index * answers + answer
                    record_id = conversation.id if answers == 1 else f"{conversation.id}#{answer}"
                    if self.store.is_done(slot, record_id):
                        self.summary.num_resumed += 1
                        self.on_progress(self.summary)
                        continue
                    await slots.acquire()
                    if self.errors or self.client.gave_up:
                        input_over = False
                        break
                    self.store.begin(slot)
                    task = asyncio.create_task(self._regenerate(slot, conversation, record_id))
                    tasks.add(task)
                    task.add_done_callback(lambda done: self._task_done(done, tasks, slots))
                if not input_over:
                    break
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
        return input_over

    def _task_done(self, task: asyncio.Task[None], tasks: set[asyncio.Task[None]], slots: asyncio.Semaphore) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    async def _regenerate(self, slot: int, conversation: Conversation, record_id: str) -> None:
        """Answer one record (``slot`` = input index x answers + answer number)."""
        input_index, answer = divmod(slot, self.config.num_answers)
        params = SamplingParams(
            model=self.summary.model,
            temperature=record_temperature(self.config, input_index, answer),
            top_p=self.config.top_p,
            max_tokens=self.config.max_tokens,
            enable_thinking=self.config.enable_thinking,
            seed=record_seed(self.config, input_index, answer),
        )
        if record_id != conversation.id:
            conversation = Conversation(id=record_id, turns=conversation.turns, extra=conversation.extra)
        try:
            result = await regenerate(conversation, self.client, params, stop_when_truncated=self.config.drop_truncated)
        except RecordFailed as failure:
            self.failed_log.add(slot, conversation, failure.reason)
            self.summary.num_failed += 1
            self.store.end(slot)
        except ServersDown:
            self.summary.num_not_finished += 1
            self.store.end(slot)
        else:
            self._keep(slot, conversation.id, result.conversation, result.truncated)
            self.summary.num_tokens += result.num_tokens
        self.on_progress(self.summary)

    def _keep(self, slot: int, record_id: str, record: Conversation, truncated: bool) -> None:
        self.summary.num_truncated += truncated
        if truncated and self.config.drop_truncated:
            self.store.add(slot, record_id, None, dropped="truncated")
            self.summary.num_dropped += 1
        else:
            self.store.add(slot, record_id, record.to_json())
            self.summary.num_done += 1


def _count_jsonl_lines(path: Path) -> int:
    """Newlines (plus an unterminated last line) in chunks: fast, counts blank lines too."""
    count = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _count_parquet_rows(path: Path) -> int:
    import pyarrow.parquet

    return pyarrow.parquet.ParquetFile(path).metadata.num_rows
