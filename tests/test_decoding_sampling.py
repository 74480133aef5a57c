"""T > 0: speculative sampling draws from exactly the target's distribution.

A tiny HF target over an 8-token vocabulary (head scaled up so its distributions are
peaked and context-dependent) and a random draft with a 6-token draft vocabulary. Thousands
of seeded speculative draws of three tokens are compared, by chi-square, with the exact
target-only distribution obtained by enumerating every continuation.
"""

from __future__ import annotations

import math

import pytest
import torch

from builders.models import build_tiny_target
from builders.decoding import prompt, random_draft, single_thread  # noqa: F401
from eagle3cli.decoding import DecodingConfig, speculative_generate
from eagle3cli.decoding.target import HFTarget
from eagle3cli.decoding.verify import sampling_probs

V = 8
Z_999 = 3.0902  # standard normal quantile at 0.999


def chi_square_limit(dof: int) -> float:
    """χ² quantile at 0.999 (Wilson–Hilferty; within 1% for dof ≥ 3)."""
    scale = 2.0 / (9.0 * dof)
    return dof * (1.0 - scale + Z_999 * math.sqrt(scale)) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Statistic and degrees of freedom; bins expecting < 5 draws are pooled into one."""
    expected = probs.flatten() * counts.sum()
    counts = counts.flatten().float()
    small = expected < 5
    expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    counts = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    keep = expected > 0
    statistic = (((counts - expected) ** 2) / expected)[keep].sum().item()
    return statistic, int(keep.sum()) - 1


@torch.no_grad()
def _exact_distributions(model, input_ids, config):
    """Target-only sampling: ``P(y1, y2) [V, V]`` and ``P(y3) [V]`` by enumeration."""

    def next_probs(contexts):  # [B, T] → [B, V]
        logits = model(input_ids=contexts, use_cache=False).logits[:, -1]
        return sampling_probs(logits, config.temperature, config.top_p)

    first = next_probs(input_ids[None])[0]  # [V]
    one = torch.cat([input_ids.expand(V, -1), torch.arange(V)[:, None]], dim=1)  # [V, T + 1]
    pair = first[:, None] * next_probs(one)  # [V, V]
    grid = torch.cartesian_prod(torch.arange(V), torch.arange(V))  # [V * V, 2]
    two = torch.cat([input_ids.expand(V * V, -1), grid], dim=1)
    third = (pair.reshape(-1, 1) * next_probs(two)).sum(dim=0)  # [V]
    return pair, third


def _models():
    model = build_tiny_target("qwen3", V, num_hidden_layers=2, seed=5)
    model.lm_head.weight.data *= 8.0
    draft = random_draft(model, 6, seed=5, aux_layer_ids=(0, 1, 1))
    draft.lm_head.weight.data *= 8.0
    return model, draft, HFTarget(model, draft.config.aux_layer_ids)


@pytest.mark.parametrize(
    "temperature, top_p, draws",
    [(1.0, 1.0, 1200), (0.7, 0.8, 1000)],
)
def test_speculative_sampling_matches_target_sampling(temperature, top_p, draws):
    model, draft, target = _models()
    config = DecodingConfig(top_k=3, depth=3, total_token=10, temperature=temperature, top_p=top_p, max_new_tokens=3)
    input_ids = prompt(21, 5, V)
    generator = torch.Generator().manual_seed(22)
    pairs, thirds, accept_lengths = torch.zeros(V, V), torch.zeros(V), []
    for _ in range(draws):
        result = speculative_generate(target, draft, input_ids, config, generator=generator)
        first, second, third = result.tokens.tolist()
        pairs[first, second] += 1
        thirds[third] += 1
        accept_lengths += result.stats.accept_lengths
    assert sum(length > 1 for length in accept_lengths) > 0.1 * len(accept_lengths)  # proposals do get accepted
    exact_pairs, exact_thirds = _exact_distributions(model, input_ids, config)
    for counts, probs in [(pairs, exact_pairs), (thirds, exact_thirds)]:
        statistic, dof = chi_square(counts, probs)
        assert statistic < chi_square_limit(dof), (statistic, dof)
