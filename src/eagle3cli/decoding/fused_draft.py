"""The draft's decoder layer for decoding on a CPU, in fewer calls.

Drafting runs the draft's one layer once per tree level and once more to feed the accepted
tokens, over one to a few rows each time, so its per-call glue (the norms as modules, the three
q/k/v and two gate/up products, RoPE on queries and keys apart) costs about as much as its
products. :class:`FusedDraftLayer` computes the same layer from the same weights with q/k/v
stacked into one matrix and gate/up into one, RoPE over query and key heads together and the
norms through :func:`~eagle3cli.decoding.fused_ops.rms_norm` — the same bits as the layer it
replaces (tested) — and :func:`fuse_draft_layer` puts it in a loaded draft for inference.
"""

from __future__ import annotations

import torch
from torch import nn

from eagle3cli.decoding.fused_ops import rms_norm, rotated_heads, stacked
from eagle3cli.draft.attention import AttendFn
from eagle3cli.draft.model import DraftDecoderLayer, Eagle3DraftModel


class FusedDraftLayer(nn.Module):
    """:class:`~eagle3cli.draft.model.DraftDecoderLayer`'s forward from its weights, q/k/v and gate/up stacked."""

    def __init__(self, layer: DraftDecoderLayer) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.input_layernorm, self.hidden_norm = layer.input_layernorm, layer.hidden_norm
        self.post_attention_layernorm = layer.post_attention_layernorm
        self.qkv = stacked([attention.q_proj, attention.k_proj, attention.v_proj])
        self.o_proj = attention.o_proj
        self.gate_up = stacked([mlp.gate_proj, mlp.up_proj])
        self.down_proj = mlp.down_proj
        self.act_fn = mlp.act_fn
        self.head_dim = attention.head_dim
        self.num_query, self.num_qk = attention.num_heads, attention.num_heads + attention.num_key_value_heads
        self.intermediate = mlp.gate_proj.out_features

    def forward(
        self, input_embeds: torch.Tensor, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: AttendFn
    ) -> torch.Tensor:
        """As the draft layer's: ``[B, T, H]`` embeddings and hidden states, ``cos/sin [B, T, D]`` → ``[B, T, H]``."""
        features = torch.cat([rms_norm(input_embeds, self.input_layernorm), rms_norm(hidden, self.hidden_norm)], dim=-1)
        batch, length = features.shape[:2]
        heads = self.qkv.forward(features).view(batch, length, -1, self.head_dim)  # [B, T, q + k + v heads, D]
        query, key, value = rotated_heads(heads, self.num_query, self.num_qk, cos[:, :, None], sin[:, :, None])
        output = attend(query, key, value)  # [B, heads, T, D]
        hidden = hidden + self.o_proj.forward(output.transpose(1, 2).reshape(batch, length, -1))
        gate, up = self.gate_up.forward(rms_norm(hidden, self.post_attention_layernorm)).split(self.intermediate, dim=-1)
        return hidden + self.down_proj.forward(self.act_fn.forward(gate) * up)


def fuse_draft_layer(draft: Eagle3DraftModel) -> None:
    """Replace ``draft``'s decoder layer by a :class:`FusedDraftLayer` of the same weights, in
    place (for decoding only: the layer's parameter names change, so save the draft before)."""
    if not isinstance(draft.midlayer, FusedDraftLayer):
        draft.midlayer = FusedDraftLayer(draft.midlayer)
