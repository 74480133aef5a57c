"""The draft to train: its config, frozen vocabulary map, the target's frozen embedding, and
optionally the weights of an existing draft (``--init-draft``).

The vocabulary map is computed once and frozen: a run writes ``OUTPUT/vocab_map.safetensors``
(process 0) before the first step, and every later use — other processes, a resume, a
fine-tune from the checkpoint — reads it back instead of recounting.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import VOCAB_MAP_FILE, VocabMap, load_vocab_map, save_vocab_map
from eagle3cli.errors import Eagle3Error

logger = logging.getLogger(__name__)


class FrozenEmbedding(nn.Module):
    """The target's input embedding as a non-persistent buffer: never trained, never saved
    (the engines reuse the target's), never gradient-synchronised."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach(), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


def build_draft(
    config: DraftConfig, vocab_map: VocabMap, embed_tokens: torch.Tensor, *, seed: int, init: Eagle3DraftModel | None = None,
    target_head: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Eagle3DraftModel:
    """A freshly initialised (seeded) draft, or one with the weights of ``init`` (an
    ``--init-draft`` read by :func:`load_init_draft`), with the map and embedding installed.

    ``target_head = (the target's lm_head rows of the draft tokens [draft_vocab, Ht], its final
    norm [Ht])`` (checked by :func:`check_head_init`): the draft's ``lm_head`` and ``norm`` start
    as those, so a draft hidden state equal to the target's final one starts with the target's
    draft-vocabulary logits.
    """
    check_embedding(embed_tokens, config)
    torch.manual_seed(seed)
    draft = Eagle3DraftModel(config)
    if init is not None:
        draft.load_state_dict(init_weights(init), strict=False)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    if target_head is not None:
        init_head(draft, *target_head)
    draft.embed_tokens = FrozenEmbedding(embed_tokens)
    return draft


def check_head_init(config: DraftConfig, final_norm: torch.Tensor | None) -> None:
    """``--init-head-from-target`` needs equal hidden sizes and the target's final norm."""
    if config.hidden_size != config.target_hidden_size or final_norm is None:
        raise Eagle3Error(
            f"--init-head-from-target needs the draft's hidden size ({config.hidden_size}) to equal the target's "
            f"({config.target_hidden_size}) and the target's final norm",
            hint="leave --init-head-from-target out for this draft config",
        )


def init_head(draft: Eagle3DraftModel, draft_rows: torch.Tensor, final_norm: torch.Tensor) -> None:
    """``--init-head-from-target``: copy the target's head rows of the draft tokens and its final norm."""
    with torch.no_grad():
        draft.lm_head.weight.copy_(draft_rows.to(draft.lm_head.weight))
        draft.norm.weight.copy_(final_norm.to(draft.norm.weight))


def check_embedding(embed_tokens: torch.Tensor, config: DraftConfig) -> None:
    expected = (config.vocab_size, config.hidden_size)
    if tuple(embed_tokens.shape) != expected:
        raise Eagle3Error(
            f"the target embedding has shape {list(embed_tokens.shape)}, the draft needs {list(expected)}",
            hint="check --embed-key and that the draft config belongs to this target",
        )


def init_draft_config(directory: Path, target_config: Mapping[str, Any], draft_vocab_size: int | None = None) -> DraftConfig:
    """The draft config of a fine-tune without ``--draft-config``: the ``--init-draft``'s own
    (any layout), checked against the target."""
    from eagle3cli.draft.checkpoint import read_checkpoint
    from eagle3cli.draft.derive import check_draft_against_target

    config, _, _ = read_checkpoint(directory, target_config=target_config)
    if draft_vocab_size is not None:
        config = dataclasses.replace(config, draft_vocab_size=draft_vocab_size)
    check_draft_against_target(config, target_config)
    return config


def load_init_draft(
    directory: Path, config: DraftConfig, target_config: Mapping[str, Any] | None = None, embed_tokens: torch.Tensor | None = None,
) -> Eagle3DraftModel:
    """An existing draft checkpoint (any layout), checked to fit this run's ``config``. Its
    embedding is ``embed_tokens`` when given (the target's, shared, not copied: the run trains
    with the target's embedding anyway), so a checkpoint without one loads without a warning."""
    from eagle3cli.draft.checkpoint import load_checkpoint

    shared = None if embed_tokens is None else torch.nn.Embedding.from_pretrained(embed_tokens, freeze=True)
    source = load_checkpoint(directory, embed_tokens=shared, target_config=target_config)
    if (source.config.aux_layer_ids, source.config.hidden_size, source.config.vocab_size, source.config.fc_norm) != (
        config.aux_layer_ids, config.hidden_size, config.vocab_size, config.fc_norm,
    ) or source.config.draft_vocab_size != config.draft_vocab_size:
        raise Eagle3Error(
            f"--init-draft {directory} does not fit this run's draft config "
            f"(capture layers {list(source.config.aux_layer_ids)} vs {list(config.aux_layer_ids)}, "
            f"draft vocab {source.config.draft_vocab_size} vs {config.draft_vocab_size}, "
            f"fc_norm {source.config.fc_norm} vs {config.fc_norm})",
            hint="drop --draft-config, --draft-vocab-size and --fc-norm: a fine-tune takes the checkpoint's own",
        )
    return source


def init_weights(source: Eagle3DraftModel) -> dict[str, torch.Tensor]:
    """The trainable weights of an ``--init-draft`` (:func:`load_init_draft`)."""
    return {key: value for key, value in source.state_dict().items() if not key.startswith("embed_tokens")}


def init_vocab_map(source: Eagle3DraftModel) -> VocabMap:
    """The frozen map of an ``--init-draft`` (:func:`load_init_draft`)."""
    return VocabMap(d2t=source.d2t.clone(), t2d=source.t2d.clone())


def shared_vocab_map(output_dir: Path, config: DraftConfig, accelerator: Any, compute: Callable[[], VocabMap]) -> VocabMap:
    """The run's frozen vocabulary map: read from ``output_dir`` when a previous run wrote it,
    else computed by process 0 only, written, and read back by every process."""
    path = output_dir / VOCAB_MAP_FILE
    if not path.is_file() and accelerator.is_main_process:
        vocab_map = compute()
        save_vocab_map(path, vocab_map)
        logger.info("vocabulary map of %d draft tokens written to %s", vocab_map.draft_vocab_size, path)
    accelerator.wait_for_everyone()
    return load_vocab_map(path, vocab_size=config.vocab_size, draft_vocab_size=config.draft_vocab_size)
