"""The loss-masked token counts of a dump (its vocab map is built from them), summed over its shards.

Each shard stores the counts of its own samples (``loss_token_ids``/``loss_token_counts``),
so the map built at the end of a run is the same whether the shards were written in one run,
across resumes, or by several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

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
