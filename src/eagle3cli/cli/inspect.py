"""``eagle3 inspect DRAFT_DIR``: validate a draft checkpoint and print its summary.

The checks live in :func:`eagle3cli.draft.checkpoint.inspect_checkpoint`; this command only
prints: a table on stdout when the checkpoint is valid, else one line per problem on stderr
and exit code 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from eagle3cli.cli.errors import stderr
from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.config import InspectConfig
from eagle3cli.configfile import resolve_config

if TYPE_CHECKING:
    from eagle3cli.draft.checkpoint import CheckpointReport


@config_options(InspectConfig, exclude=("draft_dir",))
def inspect(
    overrides: dict[str, Any],
    fallbacks: dict[str, Any],
    draft_dir: Annotated[Optional[str], typer.Argument(help="Draft folder or hub id (eagle3, EAGLE, SpecForge, AngelSlim, speculators or ModelOpt layout).", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Check a draft checkpoint (any layout) as vLLM and SGLang would load it, and summarise it.

    Example: eagle3 inspect runs/draft/final --target-model Qwen/Qwen3-8B
    """
    from eagle3cli.draft.checkpoint import inspect_checkpoint
    from eagle3cli.target.spec import read_target_config

    from eagle3cli.target.hub import resolve_model_dir

    resolved = resolve_config(InspectConfig, config, overrides | {"draft_dir": draft_dir}, fallbacks)
    directory = resolve_model_dir(resolved.draft_dir)
    target_config = read_target_config(resolved.target_model) if resolved.target_model is not None else None
    report = inspect_checkpoint(directory, target_config=target_config)
    if report.problems:
        count = len(report.problems)
        stderr.print(f"[red]invalid draft checkpoint {escape(str(directory))} ({count} problem{'s' * (count != 1)}):[/red]")
        for problem in report.problems:
            stderr.print(f"- {escape(problem)}")
        raise typer.Exit(code=1)
    Console(soft_wrap=True).print(summary_table(report, resolved.target_model))
    for note in report.notes:
        stderr.print(f"filled in: {escape(note)}")
    for warning in report.warnings:
        stderr.print(f"[yellow]warning: {escape(warning)}[/yellow]")


def summary_table(report: CheckpointReport, target_model: str | None) -> Table:
    """Parameters, vocabularies, sizes and capture layers in both numberings."""
    from eagle3cli.draft.layouts import DESCRIPTIONS

    config = report.config
    assert config is not None  # a report without problems has a config
    table = Table(title=f"EAGLE-3 draft {report.directory}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = {
        "layout": DESCRIPTIONS[report.layout],
        "parameters": f"{report.num_parameters:,}",
        "weights dtype": report.dtypes["fc.weight"],
        "embed_tokens": "included" if report.has_embed else "omitted (the target's is used)",
        "vocab / draft vocab": f"{config.vocab_size} / {config.draft_vocab_size}",
        "hidden / target hidden": f"{config.hidden_size} / {config.target_hidden_size}",
        "heads / kv heads / head dim": f"{config.num_attention_heads} / {config.num_key_value_heads} / {config.head_dim}",
        "intermediate size": str(config.intermediate_size),
        "capture layers (vLLM)": ", ".join(map(str, config.aux_layer_ids)),
        "capture layers (SGLang)": ", ".join(map(str, config.sglang_layer_ids)),
        "fc_norm": "on (vLLM applies it; an engine without fc_norm support would skip the norms)" if config.fc_norm else "off",
        "target check": "passed" if target_model else "not run (pass --target-model)",
    }
    for name, value in rows.items():
        table.add_row(name, escape(value))
    return table
