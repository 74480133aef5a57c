"""Shared builders for the decoder tests: random and "echo" drafts for tiny HF targets, and
fixed-logit (Markov) fake target/draft models. No tests here."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from builders.models import build_tiny_target
from eagle3cli.decoding.state import TargetOutput
from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.model import Eagle3DraftModel


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run fastest on one thread (and do not fight parallel test runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def draft_config_for(target: nn.Module, draft_vocab_size: int, aux_layer_ids=(1, 2, 3)) -> DraftConfig:
    """A draft shaped to ``target`` (same hidden size, so the target's embedding fits)."""
    config = target.config
    return DraftConfig(
        hidden_size=config.hidden_size,
        intermediate_size=2 * config.hidden_size,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=2048,
        vocab_size=config.vocab_size,
        draft_vocab_size=draft_vocab_size,
        target_hidden_size=config.hidden_size,
        aux_layer_ids=tuple(aux_layer_ids),
    )


def random_vocab_map(vocab_size: int, draft_vocab_size: int, generator: torch.Generator):
    """A random draft vocabulary: ``d2t [draft_vocab]`` offsets and ``t2d [vocab]`` membership."""
    target_ids = torch.randperm(vocab_size, generator=generator)[:draft_vocab_size].sort().values
    t2d = torch.zeros(vocab_size, dtype=torch.bool)
    t2d[target_ids] = True
    return target_ids - torch.arange(draft_vocab_size), t2d


def random_draft(target: nn.Module, draft_vocab_size: int, *, seed: int = 0, aux_layer_ids=(1, 2, 3)) -> Eagle3DraftModel:
    """A random-init draft with a random vocabulary map and the target's embedding."""
    torch.manual_seed(seed)
    draft = Eagle3DraftModel(draft_config_for(target, draft_vocab_size, aux_layer_ids)).eval()
    generator = torch.Generator().manual_seed(seed)
    draft.set_vocab_map(*random_vocab_map(target.config.vocab_size, draft_vocab_size, generator))
    draft.embed_tokens.weight.data.copy_(target.get_input_embeddings().weight)
    return draft


def echo_target_and_draft(family: str, vocab_size: int, *, seed: int = 0):
    """A tiny target whose last decoder layer is the identity, and a draft whose first step
    reproduces the target's logits exactly (it reads the last layer's input, passes it
    through an identity layer and applies the target's norm and head). Deeper draft steps
    repeat the same guess, so acceptance is high but not total."""
    target = build_tiny_target(family, vocab_size, seed=seed)
    last = len(target.model.layers) - 1
    target.model.layers[last].self_attn.o_proj.weight.data.zero_()
    target.model.layers[last].mlp.down_proj.weight.data.zero_()
    draft = random_draft(target, vocab_size, seed=seed, aux_layer_ids=(1, 2, last))
    draft.set_vocab_map(torch.zeros(vocab_size, dtype=torch.long), torch.ones(vocab_size, dtype=torch.bool))
    hidden = target.config.hidden_size
    draft.fc.weight.data.zero_()
    draft.fc.weight.data[:, 2 * hidden :] = torch.eye(hidden)
    draft.midlayer.self_attn.o_proj.weight.data.zero_()
    draft.midlayer.mlp.down_proj.weight.data.zero_()
    draft.norm.weight.data.copy_(target.model.norm.weight)
    draft.lm_head.weight.data.copy_(target.lm_head.weight)
    return target, draft


class MarkovTarget:
    """A fake target whose logits depend on the current token only: ``table [V, V]``."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def forward(self, input_ids, position_ids, mask, cache, *, last_logits_only=False) -> TargetOutput:
        logits = self.table[input_ids]  # [1, T, V]
        aux = torch.zeros(*input_ids.shape, 3)
        return TargetOutput(logits, aux, (cache or 0) + input_ids.shape[1])

    def keep(self, cache: Any, start: int, positions: torch.Tensor) -> Any:
        return start + positions.numel()

    def crop(self, cache: Any, length: int) -> Any:
        return None if cache is None else min(cache, length)


class MarkovDraft(nn.Module):
    """A fake draft proposing from ``table [V, V]`` of logits given the current token.

    Hidden states are one-hot tokens: the layer passes the input embedding through, so the
    output at a node is its token, and ``logits`` reads the table row.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        vocab_size = table.shape[0]
        self.table = nn.Parameter(table.float(), requires_grad=False)
        self.config = DraftConfig(
            hidden_size=vocab_size, intermediate_size=1, num_attention_heads=1, num_key_value_heads=1,
            head_dim=1, rms_norm_eps=1e-6, rope_theta=1.0, max_position_embeddings=4096,
            vocab_size=vocab_size, draft_vocab_size=vocab_size, target_hidden_size=1, aux_layer_ids=(0, 0, 0),
        )

    def embed(self, input_ids):
        return nn.functional.one_hot(input_ids, self.table.shape[0]).float()

    def fuse(self, aux_hidden):
        return torch.zeros(*aux_hidden.shape[:2], self.table.shape[0])

    def layer(self, input_embeds, hidden, position_ids, attend):
        qkv = torch.zeros(1, 1, input_embeds.shape[1], 1)
        attend(qkv, qkv, qkv)
        return input_embeds

    def logits(self, hidden):
        return hidden @ self.table

    def to_target_ids(self, draft_ids):
        return draft_ids


class OracleDraft(nn.Module):
    """Wraps a real draft; its layers and caches run for real, but its logits know the
    target's greedy continuation: at draft position ``p`` (which predicts sequence token
    ``p + 2``) the true token gets ``boost`` over seeded noise. The position travels as an
    extra channel of the hidden state. ``boost`` large → a perfect draft; moderate → the
    true token is often not the top candidate, so accepted paths wander through the tree."""

    def __init__(self, real: Eagle3DraftModel, sequence: torch.Tensor, boost: float, seed: int = 0) -> None:
        super().__init__()
        self.real = real
        self.config = real.config
        self.sequence = sequence
        self.boost = boost
        generator = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(sequence.numel() + 64, real.config.vocab_size, generator=generator)

    def embed(self, input_ids):
        return self.real.embed(input_ids)

    def fuse(self, aux_hidden):
        return self.real.fuse(aux_hidden)

    def layer(self, input_embeds, hidden, position_ids, attend):
        out = self.real.layer(input_embeds, hidden[..., : self.config.hidden_size], position_ids, attend)
        position = position_ids.expand(out.shape[0], -1)[..., None].to(out.dtype)
        return torch.cat([out, position], dim=-1)

    def logits(self, hidden):
        positions = hidden[..., -1].long()  # [B, T]
        logits = self.noise[positions].clone()
        targets = positions + 2
        known = targets < self.sequence.numel()
        true_tokens = self.sequence[targets.clamp(max=self.sequence.numel() - 1)]
        logits.scatter_add_(-1, true_tokens[..., None], (self.boost * known.float())[..., None])
        return logits

    def to_target_ids(self, draft_ids):
        return draft_ids


def naive_greedy(model: nn.Module, input_ids: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Greedy continuation by full re-computation (no cache): the reference of references."""
    sequence = input_ids.clone()
    with torch.no_grad():
        for _ in range(num_tokens):
            logits = model(input_ids=sequence[None], use_cache=False).logits[0, -1]
            sequence = torch.cat([sequence, logits.argmax().reshape(1)])
    return sequence[input_ids.numel() :]


def prompt(seed: int, length: int, vocab_size: int) -> torch.Tensor:
    return torch.randint(0, vocab_size, (length,), generator=torch.Generator().manual_seed(seed))
