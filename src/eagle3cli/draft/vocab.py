"""The draft↔target vocabulary map, built once from loss-masked token counts and then frozen.

The draft predicts over the ``draft_vocab_size`` most frequent target tokens, in ascending
target-id order. ``d2t [draft_vocab] int64`` holds offsets (``target id = i + d2t[i]``, what
vLLM and SGLang read); ``t2d [vocab] bool`` marks the target ids in the draft vocabulary.
``vocab_map.safetensors`` (keys ``d2t``, ``t2d``) carries the map from dump to training, so
resume and fine-tune reuse it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write

logger = logging.getLogger(__name__)

VOCAB_MAP_FILE = "vocab_map.safetensors"


@dataclass(frozen=True)
class VocabMap:
    """``d2t`` offsets ``[draft_vocab] int64`` and membership ``t2d [vocab] bool``."""

    d2t: torch.Tensor
    t2d: torch.Tensor

    @property
    def draft_vocab_size(self) -> int:
        return self.d2t.numel()

    @property
    def vocab_size(self) -> int:
        return self.t2d.numel()


def build_vocab_map(token_counts: torch.Tensor, draft_vocab_size: int) -> VocabMap:
    """Keep the ``draft_vocab_size`` most counted target ids (ties: lower id first).

    ``token_counts [vocab]`` are integer counts of loss-masked target tokens. With fewer
    distinct tokens than ``draft_vocab_size`` the rest is padded with the lowest unused ids
    (a warning says how many).
    """
    if token_counts.dim() != 1 or token_counts.dtype.is_floating_point or token_counts.dtype == torch.bool:
        raise Eagle3Error(f"token counts must be a 1-D integer tensor, got {token_counts.dtype} {list(token_counts.shape)}")
    vocab_size = token_counts.numel()
    if not 0 < draft_vocab_size <= vocab_size:
        raise Eagle3Error(f"draft_vocab_size {draft_vocab_size} must be in 1..{vocab_size} (the target vocabulary)")
    if bool((token_counts < 0).any()):
        raise Eagle3Error("token counts must not be negative")
    num_seen = int((token_counts > 0).sum())
    if num_seen < draft_vocab_size:
        logger.warning(
            "only %d distinct tokens were counted for a draft vocabulary of %d; padding with the %d lowest unused ids",
            num_seen, draft_vocab_size, draft_vocab_size - num_seen,
        )
    # A stable descending sort keeps equal counts (zeros included) in ascending id order.
    order = torch.sort(token_counts.to(torch.int64), descending=True, stable=True).indices
    target_ids = order[:draft_vocab_size].sort().values  # [draft_vocab]
    return vocab_map_from_target_ids(target_ids, vocab_size)


def vocab_map_from_target_ids(target_ids: torch.Tensor, vocab_size: int) -> VocabMap:
    """The map for an ascending list of distinct target ids."""
    target_ids = target_ids.to(torch.int64)
    d2t = target_ids - torch.arange(target_ids.numel(), dtype=torch.int64)
    t2d = torch.zeros(vocab_size, dtype=torch.bool)
    t2d[target_ids] = True
    return VocabMap(d2t=d2t, t2d=t2d)


def vocab_map_problems(d2t: torch.Tensor, t2d: torch.Tensor, *, vocab_size: int, draft_vocab_size: int) -> list[str]:
    """Every way ``d2t``/``t2d`` fail to be a map of ``draft_vocab_size`` ids into ``vocab_size``."""
    problems = []
    if d2t.dtype != torch.int64 or list(d2t.shape) != [draft_vocab_size]:
        problems.append(f"d2t must be int64 [{draft_vocab_size}], got {dtype_name(d2t.dtype)} {list(d2t.shape)}")
    if t2d.dtype != torch.bool or list(t2d.shape) != [vocab_size]:
        problems.append(f"t2d must be bool [{vocab_size}], got {dtype_name(t2d.dtype)} {list(t2d.shape)}")
    if problems:
        return problems
    target_ids = torch.arange(draft_vocab_size, dtype=torch.int64) + d2t
    if bool((target_ids < 0).any()) or bool((target_ids >= vocab_size).any()):
        problems.append(f"d2t maps draft ids outside the target vocabulary [0, {vocab_size})")
    elif bool((target_ids[1:] <= target_ids[:-1]).any()):
        problems.append("d2t target ids are not strictly increasing (a target token is mapped twice)")
    elif not bool(t2d[target_ids].all()):
        problems.append("t2d does not mark every target id that d2t maps to")
    if int(t2d.sum()) != draft_vocab_size:
        problems.append(f"t2d marks {int(t2d.sum())} target ids, expected draft_vocab_size {draft_vocab_size}")
    return problems


def dtype_name(dtype: torch.dtype) -> str:
    """``int64`` for ``torch.int64``: the name users see in messages."""
    return str(dtype).removeprefix("torch.")


def save_vocab_map(path: Path, vocab_map: VocabMap) -> None:
    """Write ``vocab_map`` as safetensors (``d2t``, ``t2d``), atomically."""
    from safetensors.torch import save

    tensors = {"d2t": vocab_map.d2t.contiguous().cpu(), "t2d": vocab_map.t2d.contiguous().cpu()}
    data = save(tensors, metadata={"format": "pt"})
    atomic_write(Path(path), lambda handle: handle.write(data))


def load_vocab_map(path: Path, *, vocab_size: int | None = None, draft_vocab_size: int | None = None) -> VocabMap:
    """Read a vocabulary map, checked (and against the given sizes when passed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise Eagle3Error(f"vocabulary map {path} does not exist")
    try:
        tensors = load_file(path)
    except SafetensorError as error:
        raise Eagle3Error(f"vocabulary map {path} is not a readable safetensors file: {error}") from error
    missing = [key for key in ("d2t", "t2d") if key not in tensors]
    if missing:
        raise Eagle3Error(f"vocabulary map {path} lacks {', '.join(missing)}")
    d2t, t2d = tensors["d2t"], tensors["t2d"]
    problems = vocab_map_problems(
        d2t,
        t2d,
        vocab_size=t2d.numel() if vocab_size is None else vocab_size,
        draft_vocab_size=d2t.numel() if draft_vocab_size is None else draft_vocab_size,
    )
    if problems:
        raise Eagle3Error(f"invalid vocabulary map {path}: " + "; ".join(problems))
    return VocabMap(d2t=d2t, t2d=t2d)
