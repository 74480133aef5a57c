"""A target with a known greedy continuation and a draft with known predictions, by construction.

**Target** (Qwen3 or Llama, hidden 128, head_dim 32 — vLLM's CPU attention has no kernel for 16):
every decoder layer writes nothing into the residual stream (``o_proj`` and ``down_proj`` are
zero), so each hidden state — all of HF's ``hidden_states[k]`` — is the token's embedding
``E[t]``. Embedding rows have RMS 1 (dims ``0..H-2`` random, dim ``H-1`` a constant 1, used
below as a bias unit), so the final norm leaves them unchanged, and ``lm_head`` row ``s`` is
the sum of ``E[t]`` over the tokens ``t`` with ``next_token[t] = s`` (bias dim zeroed). The
logit of the right token is ``|E[t]|² ≈ 127``, every other one a near-orthogonal dot
product, so greedy decoding follows ``next_token`` whatever the context. ``next_token`` maps
every token into the *cycle set* (ids not divisible by 4, special tokens excluded) and is one
random cycle on that set.

**Draft** (EAGLE-3 layout, draft vocabulary = the cycle set, so every ``d2t`` offset is
non-zero: id 0 is excluded and offsets never decrease): ``fc`` averages the three captured
states, giving ``h = E[t_i]`` for position ``i``; attention writes nothing (``o_proj = 0``);
the MLP has one neuron per target token ``u`` that fires only on ``E[u]`` (gate
``α · (cos(E[u], x) - τ)`` thresholded through the bias unit; ``silu`` of a large negative
value is ~0) and whose down column adds ``E[next_token[u]] - E[u]``, so the layer output is
``E[next_token[t_i]] = E[t_{i+1}]``; the draft ``lm_head`` is the target's rows of the cycle
set. So step 0 predicts ``t_{i+2} = next_token[t_{i+1}]``, and each later step — whose hidden
input is the previous layer output — advances the cycle once more: every proposal is the
target's own next choice, *if* the engine maps draft ids through ``d2t``. With ``d2t`` zeroed
draft id ``i`` is proposed as target id ``i``, never the right token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from builders.models import tiny_config_kwargs
from eagle3cli.draft.checkpoint import save_draft_model
from eagle3cli.draft.derive import derive_draft_config
from eagle3cli.target.spec import read_target_config
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import VocabMap, vocab_map_from_target_ids

CycleFamily = Literal["qwen3", "llama"]
HIDDEN_SIZE = 128
HEAD_DIM = 32
GATE_SCALE = 100.0  # α: a matched neuron gets silu(α (1 - τ)) = 30, any other one silu(<= -20) ~ -4e-8
GATE_THRESHOLD = 0.7  # τ: above the largest cosine between two embeddings (checked in cycle_embeddings)


@dataclass(frozen=True)
class CycleTarget:
    """What the crafted target does: ``next_token[t]`` is its greedy choice after token ``t``."""

    directory: Path
    embeddings: torch.Tensor  # [vocab, H], rows of RMS 1
    next_token: torch.Tensor  # [vocab] int64, values in cycle_ids
    cycle_ids: torch.Tensor  # [draft_vocab] ascending: the draft vocabulary

    def greedy_continuation(self, last_token: int, num_tokens: int) -> list[int]:
        tokens = [int(self.next_token[last_token])]
        while len(tokens) < num_tokens:
            tokens.append(int(self.next_token[tokens[-1]]))
        return tokens


def cycle_ids_for(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Token ids not divisible by 4 and not special, ascending."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([t for t in range(len(tokenizer)) if t % 4 and t not in special], dtype=torch.int64)


def cycle_embeddings(vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """``[vocab, H]``: random unit directions scaled to RMS 1 over ``H - 1`` dims, plus a bias dim of 1."""
    directions = torch.randn(vocab_size, HIDDEN_SIZE - 1, generator=generator)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    cosines = directions @ directions.T - 2 * torch.eye(vocab_size)
    assert float(cosines.max()) < GATE_THRESHOLD - 0.2, "embeddings too similar for the draft's neurons"
    return torch.cat([directions * (HIDDEN_SIZE - 1) ** 0.5, torch.ones(vocab_size, 1)], dim=-1)


def cycle_next_token(vocab_size: int, cycle_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random cycle over ``cycle_ids``; every other token leads to a random member of it."""
    next_token = cycle_ids[torch.randint(len(cycle_ids), (vocab_size,), generator=generator)]
    order = cycle_ids[torch.randperm(len(cycle_ids), generator=generator)]
    next_token[order] = order.roll(-1)
    return next_token


def build_cycle_target_model(family: CycleFamily, embeddings: torch.Tensor, next_token: torch.Tensor) -> PreTrainedModel:
    """The float32 target whose layers are no-ops and whose ``lm_head`` reads ``next_token`` off ``E``."""
    vocab_size = embeddings.shape[0]
    kwargs = {**tiny_config_kwargs(vocab_size), "hidden_size": HIDDEN_SIZE, "head_dim": HEAD_DIM}
    model = Qwen3ForCausalLM(Qwen3Config(**kwargs)) if family == "qwen3" else LlamaForCausalLM(LlamaConfig(**kwargs))
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(embeddings)
        model.lm_head.weight.copy_(cycle_lm_head(embeddings, next_token))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model.eval()


def cycle_lm_head(embeddings: torch.Tensor, next_token: torch.Tensor) -> torch.Tensor:
    """``[vocab, H]``: row ``s`` sums the embeddings of the tokens that lead to ``s`` (bias dim zeroed,
    or it would favour tokens with many predecessors)."""
    lm_head = torch.zeros_like(embeddings).index_add_(0, next_token, embeddings)
    lm_head[:, -1] = 0
    return lm_head


def save_cycle_target(directory: Path, family: CycleFamily, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> CycleTarget:
    """Build, check (HF greedy choice == ``next_token`` for every token) and save the target."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab_size = len(tokenizer)
    cycle_ids = cycle_ids_for(tokenizer)
    embeddings = cycle_embeddings(vocab_size, generator)
    next_token = cycle_next_token(vocab_size, cycle_ids, generator)
    model = build_cycle_target_model(family, embeddings, next_token)
    with torch.no_grad():
        choices = model(torch.arange(vocab_size)[:, None]).logits[:, -1].argmax(-1)  # [vocab]
    assert torch.equal(choices, next_token), "the crafted target does not follow its cycle"
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return CycleTarget(directory, embeddings, next_token, cycle_ids)


def build_cycle_draft(target: CycleTarget) -> Eagle3DraftModel:
    """The draft that proposes ``next_token`` steps (see the module docstring), with the real vocab map."""
    vocab_size = target.embeddings.shape[0]
    config = derive_draft_config(read_target_config(target.directory), draft_vocab_size=len(target.cycle_ids))
    config = dataclasses.replace(config, intermediate_size=vocab_size)  # one MLP neuron per target token
    model = Eagle3DraftModel(config).eval()
    embeddings, next_token = target.embeddings, target.next_token
    similarity = torch.cat([embeddings[:, :-1] / (HIDDEN_SIZE - 1), -GATE_THRESHOLD * torch.ones(vocab_size, 1)], -1)
    matched_activation = torch.nn.functional.silu(torch.tensor(GATE_SCALE * (1 - GATE_THRESHOLD)))
    bias_unit = torch.zeros(vocab_size, HIDDEN_SIZE)
    bias_unit[:, -1] = 1
    with torch.no_grad():
        model.embed_tokens.weight.copy_(embeddings)
        model.fc.weight.copy_(torch.cat([torch.eye(HIDDEN_SIZE)] * 3, dim=1) / 3)  # [H, 3H]: mean of the 3 states
        model.midlayer.self_attn.o_proj.weight.zero_()
        model.midlayer.mlp.gate_proj.weight.copy_(GATE_SCALE * similarity)  # [vocab, H]
        model.midlayer.mlp.up_proj.weight.copy_(bias_unit)  # [vocab, H]: 1 for every neuron
        model.midlayer.mlp.down_proj.weight.copy_((embeddings[next_token] - embeddings).T / matched_activation)
        model.lm_head.weight.copy_(cycle_lm_head(embeddings, next_token)[target.cycle_ids])
    vocab_map = vocab_map_from_target_ids(target.cycle_ids, vocab_size)
    model.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return model


def with_fc_norm(draft: Eagle3DraftModel, seed: int = 0) -> Eagle3DraftModel:
    """The same draft with ``fc_norm``, built so the norms must be applied: their weights are
    ``(3, 0, 0)`` (embedding rows have RMS 1, so the first state becomes ``3 E``, the others
    vanish) and ``fc`` is ``[I / 3, R, R']`` with random ``R, R'``: with the norms the fused
    state is ``E`` as before; an engine that skipped them would add ``(R + R') E``."""
    config = dataclasses.replace(draft.config, fc_norm=True)
    model = Eagle3DraftModel(config).eval()
    model.load_state_dict(draft.state_dict(), strict=False)
    hidden = config.hidden_size
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm, scale in zip(model.fc_norm, (3.0, 0.0, 0.0)):
            norm.weight.fill_(scale)
        model.fc.weight.copy_(torch.cat([torch.eye(hidden) / 3, torch.randn(hidden, 2 * hidden, generator=generator)], dim=1))
    return model


def zero_offset_vocab_map(draft_vocab_size: int, vocab_size: int) -> VocabMap:
    """A valid map that sends draft id ``i`` to target id ``i`` (what an engine does without ``d2t``)."""
    return vocab_map_from_target_ids(torch.arange(draft_vocab_size), vocab_size)


def save_cycle_drafts(directory: Path, target: CycleTarget) -> tuple[Path, Path]:
    """The draft with its real vocab map and the same weights with ``d2t`` zeroed, saved by the project's saver."""
    draft = build_cycle_draft(target)
    good = save_draft_model(directory / "draft", draft)
    zeroed = zero_offset_vocab_map(draft.config.draft_vocab_size, draft.config.vocab_size)
    draft.set_vocab_map(zeroed.d2t, zeroed.t2d)
    return good, save_draft_model(directory / "draft-zero-d2t", draft)
