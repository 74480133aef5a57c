"""The draft model's configuration (the fields of the checkpoint's ``config.json``).

Capture layer ids are kept in **vLLM numbering**: id ``k`` is HF ``hidden_states[k]``, the
input of decoder layer ``k`` (``hidden_states[0]`` is the embedding output). SGLang numbers
the same state as the output of layer ``k - 1``; :attr:`DraftConfig.sglang_layer_ids`
converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DraftConfig:
    """Shape of an EAGLE-3 draft (one Llama decoder layer fed by three target layers)."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    vocab_size: int
    draft_vocab_size: int
    target_hidden_size: int
    aux_layer_ids: tuple[int, int, int]
    rope_scaling: dict[str, Any] | None = None
    hidden_act: str = "silu"
    # One RMSNorm per captured state before ``fc`` (vLLM's ``fc_norm``; the captured layers'
    # scales differ by ~25x in small targets). Off: the EAGLE-3 paper's draft.
    fc_norm: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sglang_layer_ids(self) -> tuple[int, ...]:
        """The capture layers in SGLang numbering (output of layer ``k - 1``)."""
        return tuple(layer_id - 1 for layer_id in self.aux_layer_ids)
