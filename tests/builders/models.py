"""Tiny random-init targets of the supported families, saved as HF model directories.

Every builder takes the vocabulary size (``len(tokenizer)``) so a tiny model and a
locally built tokenizer fit together; weights are seeded, so a directory is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from transformers import (
    HunYuanDenseV1Config,
    HunYuanDenseV1ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen3Config,
    Qwen3ForCausalLM,
)

Family = Literal["qwen3", "llama", "hunyuan"]
FAMILIES: tuple[Family, ...] = ("qwen3", "llama", "hunyuan")


def tiny_config_kwargs(vocab_size: int, num_hidden_layers: int = 4) -> dict:
    """Shape shared by all tiny targets (hidden 64, 4 heads, 2 kv heads)."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )


def build_tiny_target(
    family: Family, vocab_size: int, *, num_hidden_layers: int = 4, seed: int = 0
) -> PreTrainedModel:
    """A float32, eval-mode, random-init causal LM of the given family."""
    torch.manual_seed(seed)
    kwargs = tiny_config_kwargs(vocab_size, num_hidden_layers)
    if family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**kwargs))
    elif family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**kwargs))
    elif family == "hunyuan":
        model = HunYuanDenseV1ForCausalLM(HunYuanDenseV1Config(**kwargs))
    else:
        raise ValueError(f"unknown family {family!r}")
    return model.eval()


def save_tiny_target(
    directory: Path, family: Family, tokenizer, *, num_hidden_layers: int = 4, seed: int = 0
) -> Path:
    """Build a tiny target sized to ``tokenizer`` and save model + tokenizer to ``directory``."""
    model = build_tiny_target(family, len(tokenizer), num_hidden_layers=num_hidden_layers, seed=seed)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_brief_target(source_dir: Path, directory: Path, stop_token_id: int) -> Path:
    """A copy of the tiny target at ``source_dir`` whose next token is always ``stop_token_id``
    (every answer ends at once, also when sampling): the layers write nothing into the residual
    stream, every token embeds to one vector, and ``lm_head`` gives the stop token a logit of
    50 and every other token 0."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source_dir)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = model.get_input_embeddings().weight
        embedding.copy_(embedding[1].expand_as(embedding))
        final = model.model.norm(embedding[:1])[0]  # [hidden]: the final state at every position
        head = model.get_output_embeddings().weight
        head.zero_()
        head[stop_token_id] = final * 50 / final.dot(final)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source_dir).save_pretrained(directory)
    return directory
