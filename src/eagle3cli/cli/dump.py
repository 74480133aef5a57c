"""``eagle3 dump-hidden``: the target's hidden states for offline training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from eagle3cli.cli.errors import stderr
from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import progress_bar
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.configfile import resolve_config

if TYPE_CHECKING:
    from eagle3cli.dump.runner import DumpPlan, DumpProgress, DumpSummary

stdout = Console(highlight=False)
PANELS = {
    "Data": ("data", "format", "num_samples", "on_bad_record"),
    "Target and chat template": ("target_model", "draft_config", "draft_vocab_size", "chat_template", "enable_thinking", "system_prompt", "max_length", "trust_remote_code"),
    "Output": ("output_dir", "dtype", "shard_size", "overwrite", "force"),
    "Compute": ("backend", "device", "batch_tokens", "vllm_python", "tensor_parallel_size"),
}


@config_options(DumpHiddenConfig, panels=PANELS)
def dump_hidden(overrides: dict[str, Any], fallbacks: dict[str, Any], config: ConfigOption = None) -> None:
    """Dump the target's hidden states (3 capture layers + final norm output) as safetensors shards, resumably.

    Example: eagle3 dump-hidden --data regen/shards --target-model Qwen/Qwen3-8B --chat-template qwen3 --output-dir dumps/qwen3
    Several GPUs: accelerate launch -m eagle3cli dump-hidden ... (or torchrun --nproc-per-node 8 -m eagle3cli ...)
    """
    from eagle3cli.dump import runner

    resolved = resolve_config(DumpHiddenConfig, config, overrides, fallbacks)
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
    from eagle3cli.fileio import format_bytes

    stderr.print(
        f"{plan.num_shards} shard(s): {plan.num_shards_resumed} already done, {plan.num_shards_pending} to dump "
        f"({plan.num_samples} samples, about {plan.num_tokens} tokens); estimated output "
        f"{format_bytes(plan.estimated_bytes)} ({plan.bytes_per_token} bytes/token), {format_bytes(plan.free_bytes)} free"
    )


def print_summary(summary: DumpSummary) -> None:
    """The run and the finished dump, on stdout."""
    from eagle3cli.fileio import format_bytes

    manifest = summary.manifest
    table = Table(title=f"dump-hidden → {summary.output_dir}", show_header=False)
    table.add_row("capture layers (vLLM / SGLang)", f"{manifest['aux_layer_ids']} / {manifest['sglang_layer_ids']}")
    table.add_row("shards", f"{manifest['num_shards']} ({summary.num_shards_resumed} resumed, {summary.num_shards_written} written"
                  + (f" by process 0 of {summary.world_size}" if summary.world_size > 1 else "") + ")")
    table.add_row("samples / tokens", f"{manifest['num_samples']} / {manifest['num_tokens']}")
    table.add_row("left out (no loss-masked token)", str(manifest["num_skipped_without_loss"]))
    bad = manifest.get("bad_records_skipped", {})
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(bad.get("by_reason", {}).items()))
    table.add_row("malformed input records skipped", f"{bad.get('count', 0)}" + (f" ({reasons})" if reasons else ""))
    table.add_row("truncated this run", str(summary.num_truncated))
    table.add_row("size", f"{format_bytes(manifest['num_bytes'])} ({manifest['num_bytes'] / max(manifest['num_tokens'], 1):.0f} bytes/token)")
    table.add_row("tokens/s this run", f"{summary.tokens_per_s:.1f}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    stdout.print(table)
