"""``eagle3 sample``: regenerate a chat dataset's answers with the target, through vLLM servers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.options import (
    BasePortOption,
    ConfigOption,
    DataOption,
    EnableThinkingOption,
    FormatOption,
    HostOption,
    NumSamplesOption,
    NumServersOption,
    OnBadRecordOption,
)
from eagle3cli.cli.progress import progress_bar, stderr
from eagle3cli.config import SampleConfig
from eagle3cli.configfile import resolve_config
from eagle3cli.errors import Eagle3Error

if TYPE_CHECKING:
    from eagle3cli.serving.sampler import SampleSummary

stdout = Console(highlight=False)


def sample(
    data: DataOption = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Output folder (shards/, failed.jsonl, summary.json, config.json).")] = None,
    data_format: FormatOption = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Input records per shard (default 50000).")] = None,
    server_url: Annotated[Optional[list[str]], typer.Option("--server-url", "--server-urls", help="Server base URL; repeat for several (instead of probing ports).")] = None,
    host: HostOption = None,
    base_port: BasePortOption = None,
    num_servers: NumServersOption = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Served model name (default: the one at /v1/models).")] = None,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="Bearer token for the servers (not written to config.json).")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Records in flight at once (default 256).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Token budget per answer (default 2048).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Temperature of every record (default 0).")] = None,
    temperature_mix: Annotated[Optional[str], typer.Option("--temperature-mix", help='Per-record temperature draw, TEMP:WEIGHT,... e.g. "0:4,0.3:1,1.0:3".')] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling threshold (default 1).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the per-record temperature draw (default 0).")] = None,
    enable_thinking: EnableThinkingOption = None,
    on_bad_record: OnBadRecordOption = None,
    drop_truncated: Annotated[Optional[bool], typer.Option("--drop-truncated", help="Leave out records whose answer hit --max-tokens.")] = None,
    num_samples: NumSamplesOption = None,
    num_retries: Annotated[Optional[int], typer.Option("--num-retries", help="Retries per request (default 5).")] = None,
    request_timeout: Annotated[Optional[float], typer.Option("--request-timeout", help="Seconds to wait for one reply (default 600).")] = None,
    config: ConfigOption = None,
) -> None:
    """Regenerate the assistant turns of a chat dataset with the target model (turn by turn), resumably.

    Example: eagle3 serve --target-model Qwen/Qwen3-8B --num-servers 8 &
             eagle3 sample --data sharegpt.jsonl --output-dir regen --num-servers 8 --temperature-mix "0:4,0.7:1"
    """
    from eagle3cli.serving import sampler

    resolved = resolve_config(
        SampleConfig,
        config,
        dict(
            data=data, output_dir=None if output_dir is None else str(output_dir), format=data_format,
            shard_size=shard_size, server_urls=server_url or None, host=host, base_port=base_port,
            num_servers=num_servers, model=model, api_key=api_key, concurrency=concurrency, max_tokens=max_tokens,
            temperature=temperature, temperature_mix=temperature_mix, top_p=top_p, seed=seed,
            enable_thinking=enable_thinking, on_bad_record=on_bad_record, drop_truncated=drop_truncated,
            num_samples=num_samples, num_retries=num_retries, request_timeout_s=request_timeout,
        ),
    )
    total = sampler.estimate_num_records(resolved.data, resolved.num_samples)
    with progress_bar(
        SpinnerColumn(), TextColumn("sampling"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[tokens_per_s]:.0f} tok/s"), TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("sampling", total=total, tokens_per_s=0.0, failed=0)

        def on_progress(summary: SampleSummary) -> None:
            progress.update(task, completed=summary.num_finished, failed=summary.num_failed, tokens_per_s=summary.tokens_per_s)

        summary = sampler.sample(resolved, on_progress=on_progress)
    print_summary(summary, resolved)
    if summary.stopped_reason:
        raise Eagle3Error(f"run stopped: {summary.stopped_reason}")


def print_summary(summary: SampleSummary, config: SampleConfig) -> None:
    """The run's counts on stdout; failures called out on stderr."""
    table = Table(title=f"sample: {config.data} → {config.output_dir}", show_header=False)
    table.add_row("model", f"{summary.model} on {len(summary.servers)} server(s)")
    table.add_row("records done", str(summary.num_done))
    table.add_row("already done (resumed)", str(summary.num_resumed))
    table.add_row("failed (failed.jsonl)", str(summary.num_failed))
    table.add_row("truncated", f"{summary.num_truncated} ({summary.num_dropped} dropped)")
    table.add_row("bad input records skipped", str(summary.num_skipped))
    if summary.num_not_finished:
        table.add_row("in flight when stopped", str(summary.num_not_finished))
    table.add_row("tokens generated", str(summary.num_tokens))
    table.add_row("tokens/s", f"{summary.tokens_per_s:.1f}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    stdout.print(table)
    failed = summary.num_failed + summary.num_failed_carried
    if failed:
        stderr.print(f"[yellow]{failed} record(s) failed: see {Path(config.output_dir) / 'failed.jsonl'}; "
                     "rerun the same command to retry them[/yellow]")
