"""The vocab map of a dump, built from every shard's loss-masked token counts.

Each shard stores the counts of its own samples (``loss_token_ids``/``loss_token_counts``),
so the map built at the end of a run is the same whether the shards were written in one run,
across resumes, or by several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from eagle3cli.draft.vocab import VOCAB_MAP_FILE, VocabMap, build_vocab_map, save_vocab_map
from eagle3cli.dump.manifest import ShardRecord
from eagle3cli.errors import Eagle3Error


def total_loss_token_counts(directory: Path, records: Sequence[ShardRecord], vocab_size: int) -> torch.Tensor:
    """``[vocab] int64``: loss-masked token counts summed over the shards (only those tensors are read)."""
    from safetensors import safe_open

    counts = torch.zeros(vocab_size, dtype=torch.int64)
    for record in records:
        path = Path(directory) / record.file
        with safe_open(path, framework="pt") as handle:
            token_ids = handle.get_tensor("loss_token_ids")
            token_counts = handle.get_tensor("loss_token_counts")
        if token_ids.numel() and int(token_ids.max()) >= vocab_size:
            raise Eagle3Error(
                f"shard {path} counts token id {int(token_ids.max())}, outside the target vocabulary of {vocab_size}"
            )
        counts.index_add_(0, token_ids, token_counts)
    return counts


def write_vocab_map(
    directory: Path, records: Sequence[ShardRecord], *, vocab_size: int, draft_vocab_size: int
) -> VocabMap:
    """Build the map from all shards' counts and save it as ``vocab_map.safetensors``."""
    vocab_map = build_vocab_map(total_loss_token_counts(directory, records, vocab_size), draft_vocab_size)
    save_vocab_map(Path(directory) / VOCAB_MAP_FILE, vocab_map)
    return vocab_map
