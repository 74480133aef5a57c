"""``eagle3``: the Typer application. Commands import torch/transformers inside their bodies
so ``eagle3 --help`` and shell completion stay fast. Commands are listed in pipeline order."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import TyperGroup, TyperOption

from eagle3cli import __version__
from eagle3cli.cli import bench as bench_commands
from eagle3cli.cli import convert as convert_commands
from eagle3cli.cli import data as data_commands
from eagle3cli.cli import dump as dump_commands
from eagle3cli.cli import inspect as inspect_commands
from eagle3cli.cli import sample as sample_commands
from eagle3cli.cli import serve as serve_commands
from eagle3cli.cli.errors import report_errors
from eagle3cli.cli.train import train_app

# Typer's rich help prints a type for every option, "<bool>" for flags that take no value.
_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)  # type: ignore[method-assign]

PIPELINE_ORDER = ("data", "serve", "sample", "dump-hidden", "train", "inspect", "bench", "convert", "convert-gguf")


class PipelineOrder(TyperGroup):
    """Lists the commands in pipeline order (Typer lists sub-groups after commands)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: PIPELINE_ORDER.index(name) if name in PIPELINE_ORDER else len(PIPELINE_ORDER))


app = typer.Typer(
    name="eagle3",
    cls=PipelineOrder,
    help="EAGLE-3 speculative decoding: regenerate data, dump target hidden states, train drafts, benchmark.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and validate chat datasets.", no_args_is_help=True)
data_app.command("check")(report_errors(data_commands.check))

app.add_typer(data_app, name="data", rich_help_panel="1. Data")
app.command("serve", rich_help_panel="2. Regenerate answers with the target")(report_errors(serve_commands.serve))
app.command("sample", rich_help_panel="2. Regenerate answers with the target")(report_errors(sample_commands.sample))
app.command("dump-hidden", rich_help_panel="3. Target hidden states")(report_errors(dump_commands.dump_hidden))
app.add_typer(train_app, name="train", rich_help_panel="4. Train the draft")
app.command("inspect", rich_help_panel="5. Check and measure")(report_errors(inspect_commands.inspect))
app.command("bench", rich_help_panel="5. Check and measure")(report_errors(bench_commands.bench))
app.command("convert", rich_help_panel="6. Convert")(report_errors(convert_commands.convert))
app.command("convert-gguf", rich_help_panel="6. Convert")(report_errors(convert_commands.convert_gguf))


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"eagle3 {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """EAGLE-3 speculative decoding toolkit."""


def main() -> None:
    """Console-script entry point."""
    app()
