"""``eagle3 convert-gguf``: a GGUF file → an HF model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eagle3cli.cli.progress import stderr


def convert_gguf(
    gguf_file: Annotated[Path, typer.Argument(help="The .gguf file.", dir_okay=False)],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write the HF model directory.")],
    dtype: Annotated[str, typer.Option("--dtype", help="float32 (default), bfloat16 or float16.")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")] = False,
) -> None:
    """Convert a GGUF model (de-quantised) into an HF directory usable by every eagle3 stage and vLLM.

    Example: eagle3 convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf --output-dir runs/smollm2
    """
    from eagle3cli.errors import Eagle3Error
    from eagle3cli.gguf import convert_gguf as convert

    if dtype not in ("float32", "bfloat16", "float16"):
        raise Eagle3Error(f"--dtype {dtype} is not supported", hint="use float32, bfloat16 or float16")
    stderr.print(f"converting {gguf_file} ({dtype}) …")
    path = convert(gguf_file, output_dir, dtype=dtype, overwrite=overwrite)  # type: ignore[arg-type]
    typer.echo(str(path))
