"""Config files (YAML, TOML, JSON) + flag overrides → a validated stage config.

Unknown keys name the closest valid key; validation errors name the key and whether it
came from the file or a flag. The resolved config is written as ``config.json`` beside the
outputs so a run can be reproduced with ``--config config.json``.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON mapping (chosen by suffix)."""
    if not path.is_file():
        raise Eagle3Error(f"config file {path} does not exist", hint="check the --config path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise Eagle3Error(
            f"config file {path} is not UTF-8 text (byte {error.start} is {error.object[error.start:error.start + 1]!r})",
            hint="save it as UTF-8",
        ) from error
    except OSError as error:
        raise Eagle3Error(f"config file {path} cannot be read: {error.strerror or error}") from error
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise Eagle3Error(f"config file {path} has an unknown suffix", hint="use .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise Eagle3Error(f"config file {path} is not valid {path.suffix[1:].upper()}: {error}") from error
    if not isinstance(data, dict):
        raise Eagle3Error(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def check_keys(model: type[BaseModel], data: dict[str, Any], source: str) -> None:
    """Fail on the first key ``model`` does not define, suggesting the closest valid one."""
    valid = list(model.model_fields)
    for key in data:
        if key not in model.model_fields:
            close = difflib.get_close_matches(str(key).replace("-", "_"), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
            raise Eagle3Error(f"unknown key '{key}' in {source}", hint=hint)


def resolve_config(
    model: type[ConfigT], config_file: Path | None, overrides: dict[str, Any], fallbacks: dict[str, Any] | None = None
) -> ConfigT:
    """``fallbacks`` (environment variables), then the file's values, then every non-``None``
    flag on top, validated by ``model``."""
    data: dict[str, Any] = {key: value for key, value in (fallbacks or {}).items() if value is not None}
    if config_file is not None:
        from_file = read_config_file(config_file)
        check_keys(model, from_file, f"config file {config_file}")
        data.update(from_file)
    flags = {key: value for key, value in overrides.items() if value is not None}
    check_keys(model, flags, "flags")
    data.update(flags)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise Eagle3Error(describe_validation_error(error, flags, config_file)) from error


def describe_validation_error(error: ValidationError, flags: dict[str, Any], config_file: Path | None) -> str:
    """One line per problem: which key, from where, and what is wrong."""
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields: its message names them
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        key, top = ".".join(str(part) for part in item["loc"]), str(item["loc"][0])
        if top in flags:
            where = f"flag --{top.replace('_', '-')}"
        elif config_file is not None and item["type"] != "missing":
            where = f"key '{key}' in {config_file}"
        else:
            where = f"--{key.replace('_', '-')}"
        problems.append(f"{where}: {item['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def write_resolved_config(config: BaseModel, directory: Path) -> Path:
    """Write ``config`` as ``directory/config.json`` (atomically) and return the path."""
    path = Path(directory) / "config.json"
    atomic_write_json(path, config.model_dump(mode="json"))
    return path
