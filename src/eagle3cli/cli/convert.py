"""``eagle3 convert-gguf`` (a GGUF file → an HF model directory) and ``eagle3 convert`` (a draft between layouts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import stderr
from eagle3cli.config import ConvertConfig, ConvertGgufConfig
from eagle3cli.configfile import resolve_config


@config_options(ConvertGgufConfig, exclude=("gguf_file",), flags={"output_dir": ("--output-dir", "-o")})
def convert_gguf(
    overrides: dict[str, Any],
    fallbacks: dict[str, Any],
    gguf_file: Annotated[Optional[str], typer.Argument(help="The .gguf file.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Convert a GGUF model (de-quantised) into an HF directory usable by every eagle3 stage and vLLM.

    Example: eagle3 convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf --output-dir runs/smollm2
    """
    from eagle3cli.gguf import convert_gguf as convert

    resolved = resolve_config(ConvertGgufConfig, config, overrides | {"gguf_file": gguf_file}, fallbacks)
    stderr.print(f"converting {resolved.gguf_file} ({resolved.dtype}) …")
    path = convert(resolved.gguf_file, resolved.output_dir, dtype=resolved.dtype, overwrite=resolved.overwrite)
    typer.echo(str(path))


@config_options(ConvertConfig, exclude=("draft_dir",), flags={"output_dir": ("--output-dir", "-o")})
def convert(
    overrides: dict[str, Any],
    fallbacks: dict[str, Any],
    draft_dir: Annotated[Optional[str], typer.Argument(help="Source draft folder or hub id, in any layout.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Convert a draft between layouts (in: any; out: eagle3, speculators or modelopt), checked by a read-back.

    Reads EAGLE, SpecForge, AngelSlim, speculators and ModelOpt drafts; the written draft is read
    back and compared with the source tensor for tensor before it replaces --output-dir.

    Example: eagle3 convert runs/draft/best --to speculators --output-dir runs/draft-speculators --target-model Qwen/Qwen3-8B
    """
    from eagle3cli.draft.convert import convert_draft
    from eagle3cli.target.spec import read_target_config
    from eagle3cli.draft.layouts import DESCRIPTIONS
    from eagle3cli.target.hub import resolve_model_dir

    resolved = resolve_config(ConvertConfig, config, overrides | {"draft_dir": draft_dir}, fallbacks)
    source = resolve_model_dir(resolved.draft_dir)
    target_config = read_target_config(resolved.target_model) if resolved.target_model is not None else None
    done = convert_draft(
        source, resolved.to, resolved.output_dir, target_config=target_config,
        target_name=verifier_name(resolved.target_model), speculative_tokens=resolved.num_speculative_tokens,
        overwrite=resolved.overwrite,
    )
    stderr.print(f"{escape(str(source))}: {DESCRIPTIONS[done.source_layout]} → {resolved.to}, {done.num_tensors} tensors, read back identical")
    for note in done.notes:
        stderr.print(f"  filled in: {escape(note)}")
    for warning in done.warnings:
        stderr.print(f"  [yellow]the source as is: {escape(warning)}[/yellow]")
    typer.echo(str(done.output_dir))


def verifier_name(target_model: str | None) -> str | None:
    """The target as a speculators verifier: a local folder as an absolute path (vLLM loads it
    from wherever it is served), a hub id as given."""
    if target_model is None:
        return None
    return str(Path(target_model).resolve()) if Path(target_model).is_dir() else target_model
