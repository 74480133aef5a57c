"""``eagle3 convert``: a draft of any layout → ``eagle3``, ``speculators`` or ``modelopt``, losslessly.

The source is read and checked as any stage reads it (:func:`~eagle3cli.draft.checkpoint.read_checkpoint`);
values the destination needs and the source lacks come from the target's config; the result
is written into a staging folder, read back and compared tensor for tensor (same keys, dtypes
and values) and field for field before it replaces the output folder.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eagle3cli.draft.checkpoint import read_checkpoint, save_checkpoint
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.config_json import draft_config_problems
from eagle3cli.draft.derive import draft_target_problems
from eagle3cli.draft.layouts import DESCRIPTIONS, WRITABLE_LAYOUTS, detect_layout, write_layout
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import prepare_output_dir, staged_directory

logger = logging.getLogger(__name__)
# Layouts vLLM 0.32 reads right as they are; the others name capture layers it does not read
# (or reads one layer early), so they are served through an eagle3 conversion.
VLLM_NATIVE_LAYOUTS = ("eagle3", "speculators")


@dataclass
class Conversion:
    """What :func:`convert_draft` did."""

    source_layout: str
    output_dir: Path
    num_tensors: int
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def convert_draft(
    source: Path,
    layout: str,
    output_dir: Path,
    *,
    target_config: Mapping[str, Any] | None = None,
    target_name: str | None = None,
    speculative_tokens: int = 3,
    overwrite: bool = False,
) -> Conversion:
    """Convert the draft in ``source`` to ``layout`` in ``output_dir`` (appears complete or not at all).

    ``target_name`` (a hub id or folder) is what the speculators layout records as its
    verifier; without it a speculators source keeps its own.
    """
    if layout not in WRITABLE_LAYOUTS:
        raise Eagle3Error(f"cannot write the {layout!r} layout", hint=f"choose one of {', '.join(WRITABLE_LAYOUTS)}")
    source, output_dir = Path(source), Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise Eagle3Error(f"{output_dir} already exists", hint="pass --overwrite to replace it, or another --output-dir")
    inside = (output_dir.resolve(), source.resolve())
    if inside[0] == inside[1] or inside[0] in inside[1].parents or inside[1] in inside[0].parents:
        raise Eagle3Error(f"--output-dir {output_dir} holds or is inside the source {source}", hint="write the converted draft elsewhere")
    config, tensors, read = read_checkpoint(source, target_config=target_config)
    if target_config is not None:
        problems = draft_config_problems(config) + draft_target_problems(config, target_config, has_embed="embed_tokens.weight" in tensors)
        if problems:
            raise Eagle3Error(f"draft {source} does not fit the target: " + "; ".join(problems))
    verifier = _verifier(read.source_config, target_name, target_config)
    prepare_output_dir(output_dir.parent, "--output-dir's parent")
    with staged_directory(output_dir) as staging:
        if layout == "eagle3":
            save_checkpoint(staging, tensors, config)
        else:
            write_layout(staging, layout, config, tensors, verifier=verifier, speculative_tokens=speculative_tokens)
        check_round_trip(staging, config, tensors, target_config)
    return Conversion(read.layout, output_dir, len(tensors), read.notes, read.warnings)


def _verifier(source_config: Mapping[str, Any], target_name: str | None, target_config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The speculators ``verifier`` entry: the named target, else a speculators source's own."""
    if target_name is not None:
        architectures = list((target_config or {}).get("architectures") or [])
        return {"name_or_path": target_name, "architectures": architectures}
    speculators = source_config.get("speculators_config")
    verifier = speculators.get("verifier") if isinstance(speculators, Mapping) else None
    return dict(verifier) if isinstance(verifier, Mapping) and verifier.get("name_or_path") else None


def check_round_trip(directory: Path, config: DraftConfig, tensors: Mapping[str, torch.Tensor],
                     target_config: Mapping[str, Any] | None) -> None:
    """Read the written draft back and require the same config and bit-identical tensors."""
    written_config, written, _ = read_checkpoint(directory, target_config=target_config)
    differences = [key for key in sorted(set(tensors) | set(written))
                   if key not in tensors or key not in written or tensors[key].dtype != written[key].dtype
                   or not torch.equal(tensors[key], written[key])]
    if dataclasses.replace(written_config, extra={}) != dataclasses.replace(config, extra={}):
        differences.append("config")
    if differences:  # a bug in a writer, not in the user's data: the source was checked
        raise Eagle3Error(f"the converted draft does not read back as the source: {', '.join(differences)} differ")


@contextmanager
def vllm_loadable(draft_dir: Path, target: str | Path, scratch: Path) -> Iterator[Path]:
    """``draft_dir`` itself when vLLM reads its layout right, else its eagle3 conversion in a
    temporary folder under ``scratch`` (removed afterwards)."""
    from eagle3cli.target.spec import read_target_config

    layout = detect_layout(draft_dir)
    if layout is None or layout in VLLM_NATIVE_LAYOUTS:
        yield draft_dir
        return
    with tempfile.TemporaryDirectory(prefix=".draft-eagle3.", dir=prepare_output_dir(scratch, "the vLLM log folder")) as folder:
        converted = convert_draft(draft_dir, "eagle3", Path(folder) / "draft", target_config=read_target_config(target))
        logger.info("vLLM gets %s (%s) converted to the eagle3 layout in %s", draft_dir, DESCRIPTIONS[layout], converted.output_dir)
        yield converted.output_dir
