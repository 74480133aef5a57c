"""Training checkpoints: a draft checkpoint that ``eagle3 inspect`` accepts, plus the full
training state for an exact resume.

::

    OUTPUT/checkpoints/step-00000120/
      config.json, model.safetensors   the draft (vLLM/SGLang format, no embedding)
      training_state/                  accelerate save_state: weights, optimizer, scheduler, RNG per process
      trainer_state.json               step, data position, best eval metric (written last)
    OUTPUT/best/                       the draft with the best eval sim_accept_len (+ eval_metrics.json)
    OUTPUT/final/                      the draft after the last step

A checkpoint is written into ``.step-XXXXXXXX.tmp`` and renamed when complete, so a run
killed mid-save leaves no half checkpoint: resume takes the newest complete one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from eagle3cli.draft.checkpoint import save_checkpoint
from eagle3cli.draft.config import DraftConfig
from eagle3cli.fileio import atomic_write_json, writing

CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINING_STATE_DIR = "training_state"
BEST_DIR = "best"
FINAL_DIR = "final"
DRAFT_PREFIX = "draft."  # the training module holds the draft as ``.draft``


@dataclass
class TrainerState:
    """What besides weights/optimizer/scheduler/RNG a resume needs."""

    global_step: int = 0
    epoch: int = 0
    micro_batch: int = 0  # micro-batches of ``epoch`` already consumed
    best_sim_accept_len: float | None = None
    best_step: int | None = None
    epoch_data: list[Any] | None = None  # a growing source's samples of ``epoch`` (its shards)

    @classmethod
    def read(cls, path: Path) -> TrainerState:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def step_dir(output_dir: Path, step: int) -> Path:
    return output_dir / CHECKPOINTS_DIR / f"step-{step:08d}"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    root = output_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [path for path in root.glob("step-*") if (path / TRAINER_STATE_FILE).is_file()]
    return sorted(found, key=lambda path: int(path.name.removeprefix("step-")))


def draft_state_dict(module_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The draft's checkpoint keys from the training module's full state dict."""
    return {key.removeprefix(DRAFT_PREFIX): value for key, value in module_state.items() if key.startswith(DRAFT_PREFIX)}


def write_draft(directory: Path, module_state: dict[str, torch.Tensor], config: DraftConfig, extra: dict[str, Any] | None = None) -> None:
    """A draft checkpoint folder (replaced as a whole when it exists)."""
    staging = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, draft_state_dict(module_state), config)
    for name, data in (extra or {}).items():
        atomic_write_json(staging / name, data)
    with writing(directory):
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)


def staging_dir(output_dir: Path, step: int) -> Path:
    final = step_dir(output_dir, step)
    return final.with_name(f".{final.name}.tmp")


def begin_step_checkpoint(output_dir: Path, step: int) -> Path:
    """Process 0: an empty staging folder for the checkpoint of ``step``."""
    staging = staging_dir(output_dir, step)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def finish_step_checkpoint(
    output_dir: Path, step: int, module_state: dict[str, torch.Tensor], config: DraftConfig, state: TrainerState, *, keep: int | None
) -> Path:
    """Process 0, after every process saved its training state: the draft, the trainer state
    (last), the rename into place, and the removal of checkpoints beyond ``keep``."""
    staging = staging_dir(output_dir, step)
    save_checkpoint(staging, draft_state_dict(module_state), config)
    atomic_write_json(staging / TRAINER_STATE_FILE, asdict(state))
    final = step_dir(output_dir, step)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    if keep is not None:
        for old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_incomplete(output_dir: Path) -> None:
    """Delete what a run killed mid-save left: staging folders and step folders without their
    trainer state (which is written last)."""
    root = output_dir / CHECKPOINTS_DIR
    leftovers = [*root.glob(".step-*.tmp"), *(path for path in root.glob("step-*") if not (path / TRAINER_STATE_FILE).is_file())]
    leftovers += [output_dir / f".{name}.tmp" for name in (BEST_DIR, FINAL_DIR)]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def remove_run_outputs(output_dir: Path) -> None:
    """``--no-resume``: forget earlier checkpoints, best/, final/, metrics and the vocab map."""
    from eagle3cli.draft.vocab import VOCAB_MAP_FILE

    for name in (CHECKPOINTS_DIR, BEST_DIR, FINAL_DIR):
        shutil.rmtree(output_dir / name, ignore_errors=True)
    for name in (VOCAB_MAP_FILE, "metrics.jsonl", "run.json"):
        (output_dir / name).unlink(missing_ok=True)
