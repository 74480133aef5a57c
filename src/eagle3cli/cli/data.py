"""``eagle3 data check``: see exactly what the draft will be trained on."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from eagle3cli import datacheck
from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import progress_bar
from eagle3cli.config import DataCheckConfig
from eagle3cli.configfile import resolve_config
from eagle3cli.errors import Eagle3Error

stdout = Console(highlight=False)


@config_options(DataCheckConfig, flags={"target_model": ("--target-model", "--tokenizer")})
def check(overrides: dict[str, Any], fallbacks: dict[str, Any], config: ConfigOption = None) -> None:
    """Validate a chat dataset against a tokenizer and chat template; report lengths and loss-mask coverage.

    Example: eagle3 data check --data chats.jsonl --target-model Qwen/Qwen3-8B --chat-template qwen3 --show 2
    """
    resolved = resolve_config(DataCheckConfig, config, overrides, fallbacks)
    with progress_bar(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
        TextColumn("{task.fields[tokens]} tokens"), TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("checking", total=None, tokens=0)
        tokens = [0]

        def on_record(num_tokens: int) -> None:
            tokens[0] += num_tokens
            progress.update(task, advance=1, tokens=tokens[0])

        report = datacheck.check_dataset(resolved, on_record=on_record)
    print_report(report, resolved)
    if report.num_read - report.num_skipped == 0:
        raise Eagle3Error(f"{resolved.data} holds no usable record ({report.num_read} read, {report.num_skipped} skipped)",
                          hint="check the path and --format, or the skipped reasons above")


def print_report(report: datacheck.DataCheckReport, config: DataCheckConfig) -> None:
    """Summary table, skipped-record reasons and highlighted samples, on stdout."""
    table = Table(title=f"data check: {config.data}", show_header=False)
    table.add_row("records read", str(report.num_read))
    table.add_row("records skipped", str(report.num_skipped))
    for reason, count in sorted(report.skipped_by_reason.items()):
        table.add_row(f"  skipped: {reason}", str(count))
    table.add_row("tokens", str(report.num_tokens))
    table.add_row("loss-masked tokens", f"{report.num_loss_tokens} ({report.loss_fraction:.1%})")
    percentiles = report.length_percentiles()
    table.add_row("length p50 / p90 / p99 / max", " / ".join(str(percentiles[k]) for k in ("p50", "p90", "p99", "p100")))
    table.add_row(f"truncated at {config.max_length}", str(report.num_truncated))
    table.add_row("samples with no loss tokens", str(report.num_without_loss_tokens))
    stdout.print(table)
    for sample in report.samples:
        stdout.rule(f"sample {escape(sample.record_id)}  [reverse green]trained on[/] / [dim]context[/]")
        stdout.print("".join(highlight(text, masked) for text, masked in sample.segments))


def highlight(text: str, masked: bool) -> str:
    """Rich markup for a run of tokens: loss-masked text in reverse green, context dim."""
    style = "reverse green" if masked else "dim"
    return f"[{style}]{escape(text)}[/{style}]"
