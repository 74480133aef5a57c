"""``eagle3 sample``: regenerate a chat dataset's answers with the target, through vLLM servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import progress_bar, stderr
from eagle3cli.config import SampleConfig
from eagle3cli.configfile import resolve_config
from eagle3cli.errors import Eagle3Error

if TYPE_CHECKING:
    from eagle3cli.serving.sampler import SampleSummary

stdout = Console(highlight=False)


@config_options(
    SampleConfig, flags={"server_urls": ("--server-url", "--server-urls")}, envvars={"api_key": "OPENAI_API_KEY"},
)
def sample(overrides: dict[str, Any], fallbacks: dict[str, Any], config: ConfigOption = None) -> None:
    """Regenerate the assistant turns of a chat dataset with the target model (turn by turn), resumably.

    Example: eagle3 serve --target-model Qwen/Qwen3-8B --num-servers 8 &
             eagle3 sample --data sharegpt.jsonl --output-dir regen --num-servers 8 --temperature-mix "0:4,0.7:1"
    Without a server: eagle3 sample --backend hf --target-model DIR --data d.jsonl --output-dir regen --num-answers 2 --temperature-mix "0:1,0.7:1"
    """
    from eagle3cli.serving import sampler

    resolved = resolve_config(SampleConfig, config, overrides, fallbacks)
    total = sampler.estimate_num_records(resolved.data, resolved.num_samples)
    total = None if total is None else total * resolved.num_answers
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
    where = summary.servers[0] if config.backend == "hf" else f"{len(summary.servers)} server(s)"
    table.add_row("model", f"{summary.model} on {where}")
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
        stderr.print(f"[yellow]{failed} record(s) failed: see {config.output_dir / 'failed.jsonl'}; "
                     "rerun the same command to retry them[/yellow]")
