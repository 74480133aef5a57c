"""``eagle3``: the Typer application. Commands import torch/transformers inside their bodies
so ``eagle3 --help`` and shell completion stay fast."""

from __future__ import annotations

from typing import Annotated

import typer

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

app = typer.Typer(
    name="eagle3",
    help="EAGLE-3 speculative decoding: regenerate data, dump target hidden states, train drafts, benchmark.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and validate chat datasets.", no_args_is_help=True)
data_app.command("check")(report_errors(data_commands.check))
app.add_typer(data_app, name="data")
app.command("inspect")(report_errors(inspect_commands.inspect))
app.command("convert-gguf")(report_errors(convert_commands.convert_gguf))
app.command("bench")(report_errors(bench_commands.bench))
app.command("serve")(report_errors(serve_commands.serve))
app.command("sample")(report_errors(sample_commands.sample))
app.command("dump-hidden")(report_errors(dump_commands.dump_hidden))
app.add_typer(train_app, name="train")


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
