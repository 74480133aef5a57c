"""The package's import rules (the README's Development section), read from every module's
import statements, function-local imports included."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "eagle3cli"
STAGES = ("dump", "training", "bench", "serving")
# The one edge between stages: training reads the dump's on-disk format (not its loader or runner).
DUMP_FORMAT = {"eagle3cli.dump", "eagle3cli.dump.reader", "eagle3cli.dump.manifest", "eagle3cli.dump.shard_file",
               "eagle3cli.dump.vocab_counts"}
DECODER_CORE_ALLOWED = ("eagle3cli.decoding", "eagle3cli.draft", "eagle3cli.errors")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports (``from eagle3cli.x import y`` counts as ``eagle3cli.x`` and,
    when ``y`` is a submodule, ``eagle3cli.x.y``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / node.module.replace(".", "/") / alias.name).exists()
                         or (PACKAGE.parent / f"{node.module.replace('.', '/')}/{alias.name}.py").exists())
    return names


IMPORTS = {module_name(path): imported_names(path) for path in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    """``eagle3cli.dump.reader`` → ``dump``; ``eagle3cli.config`` → ``config``."""
    return module.split(".")[1] if module.count(".") else ""


def project_imports(module: str) -> set[str]:
    return {name for name in IMPORTS[module] if name.startswith("eagle3cli.")}


def broken(rule) -> list[str]:
    return sorted(f"{module} imports {name}" for module in IMPORTS for name in project_imports(module) if rule(module, name))


def test_the_rules_see_every_module() -> None:
    assert {"eagle3cli.dump.runner", "eagle3cli.training.trainer", "eagle3cli.target.spec", "eagle3cli.cli.main"} <= set(IMPORTS)
    assert "eagle3cli.target.spec" in project_imports("eagle3cli.dump.target")  # module-level import
    assert "eagle3cli.target.loading" in project_imports("eagle3cli.training.online")  # function-local import


def test_no_stage_imports_another_stage() -> None:
    def crosses(module: str, name: str) -> bool:
        source, target = package_of(module), package_of(name)
        if source not in STAGES or target not in STAGES or source == target:
            return False
        return not (source == "training" and name in DUMP_FORMAT)

    assert broken(crosses) == []


def test_nothing_below_the_stages_imports_a_stage_or_the_cli() -> None:
    def upward(module: str, name: str) -> bool:
        return package_of(module) not in (*STAGES, "cli", "__main__") and package_of(name) in (*STAGES, "cli")

    assert broken(upward) == []


def test_the_decoder_core_imports_only_torch_and_the_draft() -> None:
    adapters = ("eagle3cli.decoding.target", "eagle3cli.decoding.fused_target")  # from stock HF models to TargetModel
    core = [module for module in IMPORTS if module.startswith("eagle3cli.decoding") and module not in adapters]
    assert "eagle3cli.decoding.generate" in core
    outside = {
        f"{module} imports {name}" for module in core for name in IMPORTS[module]
        if name.split(".")[0] not in ("torch", "__future__", *sys.stdlib_module_names)
        and not name.startswith(DECODER_CORE_ALLOWED)
    }
    assert outside == set()


def test_the_draft_model_imports_no_user_of_it() -> None:
    assert broken(lambda module, name: package_of(module) == "draft"
                  and package_of(name) in ("training", "decoding", "bench", "dump", "serving", "cli")) == []


@pytest.mark.parametrize("bottom", ["eagle3cli.config", "eagle3cli.errors"])
def test_bottom_modules_import_nothing_of_the_project(bottom: str) -> None:
    assert project_imports(bottom) == set()


def test_only_the_cli_imports_typer_or_rich() -> None:
    users = {module for module, names in IMPORTS.items() if any(name.split(".")[0] in ("typer", "rich") for name in names)}
    assert users and all(module.startswith("eagle3cli.cli") for module in users)
