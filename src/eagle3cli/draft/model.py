"""The EAGLE-3 draft model (paper's forward, vLLM/SGLang parameter names).

``fc(concat(low, mid, high)) → h``; the decoder layer's attention takes
``concat(input_layernorm(embed(tokens)), hidden_norm(h))`` (q/k/v over ``2H``), adds the
residual ``h``, then post-attention norm, SwiGLU MLP and residual; ``norm`` and ``lm_head``
give logits over the draft vocabulary. From the second draft step on, the layer's own
output (before ``norm``) replaces ``fc(...)``.

With ``fc_norm`` in the config each captured state is RMS-normalised before ``fc`` (vLLM's
``fc_norm``, keys ``fc_norm.{0,1,2}.weight``).

Parameter names equal the checkpoint keys (``fc``, ``midlayer.*``, ``norm``, ``lm_head``,
buffers ``d2t``/``t2d``, optional ``embed_tokens``), so saving needs no renaming table.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

from eagle3cli.draft.attention import AttendFn, causal_attention
from eagle3cli.draft.config import DraftConfig


def llama_config_for(config: DraftConfig) -> LlamaConfig:
    """The equivalent one-layer ``LlamaConfig`` (used for RoPE and the MLP)."""
    names = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
             "rope_theta", "rope_scaling", "max_position_embeddings", "vocab_size", "hidden_act")
    return LlamaConfig(**{name: getattr(config, name) for name in names}, num_hidden_layers=1)


class DraftAttention(nn.Module):
    """Attention whose q/k/v read ``2 * hidden`` features (embedding ⊕ fused hidden state)."""

    def __init__(self, config: DraftConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        inputs = 2 * config.hidden_size
        self.q_proj = nn.Linear(inputs, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(inputs, self.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(inputs, self.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self, features: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: AttendFn
    ) -> torch.Tensor:
        batch, seq, _ = features.shape  # [B, T, 2H]
        query = self.q_proj(features).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(features).view(batch, seq, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(features).view(batch, seq, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        output = attend(query, key, value)  # [B, heads, T, D]
        return self.o_proj(output.transpose(1, 2).reshape(batch, seq, -1))


class DraftDecoderLayer(nn.Module):
    """The single decoder layer (checkpoint prefix ``midlayer.``)."""

    def __init__(self, config: DraftConfig) -> None:
        super().__init__()
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.hidden_norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = DraftAttention(config)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = LlamaMLP(llama_config_for(config))

    def forward(
        self,
        input_embeds: torch.Tensor,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attend: AttendFn,
    ) -> torch.Tensor:
        features = torch.cat([self.input_layernorm(input_embeds), self.hidden_norm(hidden)], dim=-1)
        hidden = hidden + self.self_attn(features, cos, sin, attend)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class Eagle3DraftModel(nn.Module):
    """The draft: ``embed``, ``fuse``, ``layer`` (one step, attention pluggable), ``logits``."""

    def __init__(self, config: DraftConfig, embed_tokens: nn.Embedding | None = None) -> None:
        """``embed_tokens``: a loaded target's embedding to share (none is allocated then)."""
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens if embed_tokens is not None else nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)
        self.fc = nn.Linear(3 * config.target_hidden_size, config.hidden_size, bias=False)
        self.fc_norm = None
        if config.fc_norm:
            self.fc_norm = nn.ModuleList(LlamaRMSNorm(config.target_hidden_size, eps=config.rms_norm_eps) for _ in range(3))
        self.midlayer = DraftDecoderLayer(config)
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.draft_vocab_size, bias=False)
        self.register_buffer("d2t", torch.zeros(config.draft_vocab_size, dtype=torch.int64))
        self.register_buffer("t2d", torch.zeros(config.vocab_size, dtype=torch.bool))
        self.rotary = LlamaRotaryEmbedding(llama_config_for(config))

    def set_vocab_map(self, d2t: torch.Tensor, t2d: torch.Tensor) -> None:
        """Install the draft↔target vocabulary map (``target id = i + d2t[i]``)."""
        self.d2t.copy_(d2t)
        self.t2d.copy_(t2d)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Target-vocabulary ids ``[B, T]`` → embeddings ``[B, T, H]`` (the target's, frozen)."""
        return self.embed_tokens(input_ids)

    def fuse(self, aux_hidden: torch.Tensor) -> torch.Tensor:
        """Three concatenated target states ``[B, T, 3 * Ht]`` → ``[B, T, H]`` (each state
        RMS-normalised first when the config has ``fc_norm``)."""
        if self.fc_norm is not None:
            states = aux_hidden.chunk(len(self.fc_norm), dim=-1)
            aux_hidden = torch.cat([norm(state) for norm, state in zip(self.fc_norm, states)], dim=-1)
        return self.fc(aux_hidden)

    def layer(
        self,
        input_embeds: torch.Tensor,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        attend: AttendFn = causal_attention,
    ) -> torch.Tensor:
        """One draft step: ``[B, T, H]`` embeddings and hidden states → the layer output
        ``[B, T, H]`` (pre-``norm``; fed back as ``hidden`` for the next step)."""
        cos, sin = self.rotary(hidden, position_ids)
        return self.midlayer(input_embeds, hidden, cos, sin, attend)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Layer output ``[B, T, H]`` → draft-vocabulary logits ``[B, T, draft_vocab]``, in the
        head's dtype (inference may keep the head, the largest matrix, in lower precision)."""
        return self.lm_head(self.norm(hidden).to(self.lm_head.weight.dtype))

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary ids → target-vocabulary ids."""
        return draft_ids + self.d2t[draft_ids]
