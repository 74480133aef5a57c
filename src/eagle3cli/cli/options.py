"""Typer options generated from the stage config models: a setting is declared once.

Each field of a pydantic stage config becomes one option: ``--field-name`` (``_`` → ``-``, the
config-file key is the field name), its type, its default shown from the model, its
description as help. A ``Literal`` field's values are shown and completed by the shell, and
checked by the model (one clear line naming the flag for a bad one). A bool field is a
``--x/--no-x`` pair (``no_*`` fields a single flag). Only flags given on the command line override the
``--config`` file; an option's environment variable (``OPENAI_API_KEY``) fills in only what
neither the file nor a flag gives.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar, Union

import typer
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.markup import escape

F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="YAML, TOML or JSON file with the command's settings (keys = flag names with _); flags override it.", dir_okay=False),
]


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def cli_type(annotation: Any) -> Any:
    """The type Typer parses for a config field: text for choices (the model checks them, so a
    bad value is one clear line naming the flag), mappings and secrets (the model parses them)."""
    annotation = _strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return cli_type(typing.get_args(annotation)[0])
    if annotation in (bool, int, float, str):
        return annotation
    if origin is list:
        return list[cli_type(typing.get_args(annotation)[0])]  # type: ignore[misc]
    if origin is Literal or origin is dict or annotation in (SecretStr, Path):
        return str
    if origin in (Union, types.UnionType):  # e.g. a number or "auto": the model parses the text
        return str
    raise TypeError(f"no command-line type for {annotation!r}")


def choices(annotation: Any) -> tuple[str, ...] | None:
    """The values of a ``Literal`` field (also inside ``Optional``/``Annotated``), else None."""
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is Annotated:
        return choices(typing.get_args(annotation)[0])
    return tuple(map(str, typing.get_args(annotation))) if typing.get_origin(annotation) is Literal else None


def field_default(field: FieldInfo) -> Any:
    default = field.get_default(call_default_factory=True)
    return None if default is PydanticUndefined else default


def field_parameter(
    name: str, field: FieldInfo, *, flags: tuple[str, ...] | None, panel: str | None, envvar: str | None
) -> inspect.Parameter:
    """One keyword parameter carrying the Typer option for config field ``name``."""
    kind = cli_type(field.annotation)
    dashed = name.replace("_", "-")
    if flags is None:
        flags = (f"--{dashed}",) if kind is not bool or name.startswith("no_") else (f"--{dashed}/--no-{dashed}",)
    default = field_default(field)
    description = field.description or ""
    if field.is_required():
        description += " Required (as a flag or in --config)."
    values = choices(field.annotation)
    option = typer.Option(
        *flags, help=escape(description), rich_help_panel=panel, envvar=envvar,
        metavar=None if values is None else "<" + "|".join(values) + ">",
        autocompletion=None if values is None else (lambda incomplete: [value for value in values if value.startswith(incomplete)]),
        show_default=(default is not None and default is not False and default != []) or (kind is bool and not name.startswith("no_")),
        show_envvar=envvar is not None,
    )
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[Optional[kind], option])


def config_options(
    model: type[BaseModel],
    *,
    exclude: tuple[str, ...] = (),
    flags: Mapping[str, tuple[str, ...]] | None = None,
    panels: Mapping[str, tuple[str, ...]] | None = None,
    envvars: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Add an option per field of ``model`` (minus ``exclude``) to a command.

    The command keeps its own parameters and receives ``overrides`` (the fields given as flags)
    and ``fallbacks`` (the fields read from environment variables). ``panels`` groups fields
    under help headings, in that order; fields in no panel go under "Options", required ones
    first. A model's own fields come before those it shares with other stages (``TargetRef``,
    ``ChatSettings``, ...).
    """
    panel_of = {name: title for title, names in (panels or {}).items() for name in names}
    names = [name for name in model.model_fields if name not in exclude]
    unknown = (set(panel_of) | set(flags or {}) | set(envvars or {})) - set(names)
    if unknown:
        raise TypeError(f"{model.__name__} has no option field(s) {sorted(unknown)}")
    order = {name: index for index, name in enumerate(panel_of)}
    # required fields first; the stage's own before each shared settings class's, in the order of its bases
    declared = {name: rank for rank, base in reversed(list(enumerate(model.__mro__))) for name in base.__dict__.get("__annotations__", {})}
    names.sort(key=lambda name: (order.get(name, len(order)), not model.model_fields[name].is_required(), declared[name]))
    generated = [
        field_parameter(
            name, model.model_fields[name], flags=(flags or {}).get(name), panel=panel_of.get(name),
            envvar=(envvars or {}).get(name),
        )
        for name in names
    ]

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> Any:
            given = {name: (kwargs.pop(name), getattr(ctx.get_parameter_source(name), "name", None)) for name in names}
            overrides = {name: value for name, (value, source) in given.items() if source == "COMMANDLINE"}
            fallbacks = {name: value for name, (value, source) in given.items() if source == "ENVIRONMENT"}
            return command(**kwargs, overrides=overrides, fallbacks=fallbacks)

        hints = typing.get_type_hints(command, include_extras=True)  # the module's string annotations, resolved
        own = [
            parameter.replace(annotation=hints[parameter.name], kind=inspect.Parameter.KEYWORD_ONLY)
            for parameter in inspect.signature(command).parameters.values()
            if parameter.name not in ("overrides", "fallbacks")
        ]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        signature = inspect.Signature([context, *generated, *own])
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {name: parameter.annotation for name, parameter in signature.parameters.items()}
        del wrapper.__wrapped__  # typer must read the new signature, not the original's
        return wrapper  # type: ignore[return-value]

    return decorate
