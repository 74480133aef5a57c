"""``eagle3 convert-gguf``: a GGUF file → an HF model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from eagle3cli.cli.options import ConfigOption, config_options
from eagle3cli.cli.progress import stderr
from eagle3cli.config import ConvertGgufConfig
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
    path = convert(Path(resolved.gguf_file), Path(resolved.output_dir), dtype=resolved.dtype, overwrite=resolved.overwrite)
    typer.echo(str(path))
