"""``eagle3 data check``: see exactly what the draft will be trained on."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from eagle3cli import datacheck
from eagle3cli.cli.progress import progress_bar
from eagle3cli.cli.options import (
    ChatTemplateOption,
    ConfigOption,
    DataOption,
    EnableThinkingOption,
    FormatOption,
    MaxLengthOption,
    NumSamplesOption,
    OnBadRecordOption,
    SystemPromptOption,
    TrustRemoteCodeOption,
)
from eagle3cli.config import DataCheckConfig
from eagle3cli.configfile import resolve_config

stdout = Console(highlight=False)


def check(
    data: DataOption = None,
    tokenizer: Annotated[
        Optional[str], typer.Option("--tokenizer", help="Tokenizer directory or hub id.")
    ] = None,
    target_model: Annotated[
        Optional[str], typer.Option("--target-model", help="Target model (its tokenizer is used).")
    ] = None,
    data_format: FormatOption = None,
    chat_template: ChatTemplateOption = None,
    max_length: MaxLengthOption = None,
    enable_thinking: EnableThinkingOption = None,
    system_prompt: SystemPromptOption = None,
    on_bad_record: OnBadRecordOption = None,
    num_samples: NumSamplesOption = None,
    show: Annotated[Optional[int], typer.Option("--show", help="Print N samples, loss-masked tokens highlighted.")] = None,
    trust_remote_code: TrustRemoteCodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate a chat dataset against a tokenizer and chat template; report lengths and loss-mask coverage.

    Example: eagle3 data check --data chats.jsonl --target-model Qwen/Qwen3-8B --chat-template qwen3 --show 2
    """
    resolved = resolve_config(
        DataCheckConfig,
        config,
        dict(
            data=data,
            tokenizer=tokenizer or target_model,
            format=data_format,
            chat_template=chat_template,
            max_length=max_length,
            enable_thinking=enable_thinking,
            system_prompt=system_prompt,
            on_bad_record=on_bad_record,
            num_samples=num_samples,
            show=show,
            trust_remote_code=trust_remote_code,
        ),
    )
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
