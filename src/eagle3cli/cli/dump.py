"""``eagle3 dump-hidden``: the target's hidden states for offline training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

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
from eagle3cli.cli.errors import stderr
from eagle3cli.cli.progress import progress_bar
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.configfile import resolve_config

if TYPE_CHECKING:
    from eagle3cli.dump.runner import DumpPlan, DumpProgress, DumpSummary

stdout = Console(highlight=False)


def dump_hidden(
    data: DataOption = None,
    target_model: Annotated[Optional[str], typer.Option("--target-model", help="Target model directory or hub id.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", help="Output folder (shards/, manifest.json, vocab_map.safetensors).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Forward backend: hf (the only one for now).")] = None,
    max_length: MaxLengthOption = None,
    chat_template: ChatTemplateOption = None,
    draft_config: Annotated[Optional[Path], typer.Option("--draft-config", help="Draft config naming the capture layers (default: derived from the target).", dir_okay=False)] = None,
    draft_vocab_size: Annotated[Optional[int], typer.Option("--draft-vocab-size", help="Draft vocabulary of the vocab map (default: the draft config's).")] = None,
    data_format: FormatOption = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="bfloat16 (default), float16 or float32.")] = None,
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", help="Tokens per forward batch, padding included (default 16384).")] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="Samples per shard (default 128).")] = None,
    num_samples: NumSamplesOption = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto (default), cpu or cuda.")] = None,
    trust_remote_code: TrustRemoteCodeOption = None,
    enable_thinking: EnableThinkingOption = None,
    system_prompt: SystemPromptOption = None,
    on_bad_record: OnBadRecordOption = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Delete an existing dump in --output-dir and start over.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Start even if the estimated size exceeds the free disk space.")] = None,
    config: ConfigOption = None,
) -> None:
    """Dump the target's hidden states (3 capture layers + final norm output) as safetensors shards, resumably.

    Example: eagle3 dump-hidden --data regen/shards --target-model Qwen/Qwen3-8B --chat-template qwen3 --output-dir dumps/qwen3
    Several GPUs: accelerate launch -m eagle3cli dump-hidden ... (or torchrun --nproc-per-node 8 -m eagle3cli ...)
    """
    from eagle3cli.dump import runner

    resolved = resolve_config(
        DumpHiddenConfig,
        config,
        dict(
            data=data, target_model=target_model, output_dir=None if output_dir is None else str(output_dir),
            backend=backend, max_length=max_length, chat_template=chat_template,
            draft_config=None if draft_config is None else str(draft_config), draft_vocab_size=draft_vocab_size,
            format=data_format, dtype=dtype, batch_tokens=batch_tokens, shard_size=shard_size,
            num_samples=num_samples, device=device, trust_remote_code=trust_remote_code,
            enable_thinking=enable_thinking, system_prompt=system_prompt, on_bad_record=on_bad_record,
            overwrite=overwrite, force=force,
        ),
    )
    with progress_bar(
        SpinnerColumn(), TextColumn("dumping"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
        TextColumn("{task.fields[tokens_per_s]:.0f} tok/s"), TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("dumping", total=None, tokens_per_s=0.0, visible=False)

        def on_start(plan: DumpPlan) -> None:
            print_plan(plan)
            progress.update(task, total=plan.num_local_samples, visible=True)

        def on_progress(update: DumpProgress) -> None:
            progress.update(task, completed=update.num_samples, tokens_per_s=update.tokens_per_s)

        summary = runner.dump_hidden(resolved, on_start=on_start, on_progress=on_progress)
    if summary.rank == 0:
        print_summary(summary)


def print_plan(plan: DumpPlan) -> None:
    """The size estimate and what is left to do, on stderr."""
    from eagle3cli.dump.plan import format_bytes

    stderr.print(
        f"{plan.num_shards} shard(s): {plan.num_shards_resumed} already done, {plan.num_shards_pending} to dump "
        f"({plan.num_samples} samples, about {plan.num_tokens} tokens); estimated output "
        f"{format_bytes(plan.estimated_bytes)} ({plan.bytes_per_token} bytes/token), {format_bytes(plan.free_bytes)} free"
    )


def print_summary(summary: DumpSummary) -> None:
    """The run and the finished dump, on stdout."""
    from eagle3cli.dump.plan import format_bytes

    manifest = summary.manifest
    table = Table(title=f"dump-hidden → {summary.output_dir}", show_header=False)
    table.add_row("capture layers (vLLM / SGLang)", f"{manifest['aux_layer_ids']} / {manifest['sglang_layer_ids']}")
    table.add_row("shards", f"{manifest['num_shards']} ({summary.num_shards_resumed} resumed, {summary.num_shards_written} written"
                  + (f" by process 0 of {summary.world_size}" if summary.world_size > 1 else "") + ")")
    table.add_row("samples / tokens", f"{manifest['num_samples']} / {manifest['num_tokens']}")
    table.add_row("left out (no loss-masked token)", str(manifest["num_skipped_without_loss"]))
    table.add_row("truncated this run", str(summary.num_truncated))
    table.add_row("size", f"{format_bytes(manifest['num_bytes'])} ({manifest['num_bytes'] / max(manifest['num_tokens'], 1):.0f} bytes/token)")
    table.add_row("tokens/s this run", f"{summary.tokens_per_s:.1f}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    stdout.print(table)
