"""Decoding hyper-parameters (one frozen dataclass, shared by speculative and baseline decoding)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodingConfig:
    """How to draft, verify and stop.

    ``total_token``, ``depth`` and ``top_k`` mean what they mean in EAGLE's ``topK_genrate``
    (which AngelSlim's benchmark runs): the tree has ``total_token`` nodes, root included; the
    root's top-k is followed by ``depth`` expansions, so a tree has ``depth + 1`` draft levels
    and a perfect chain draft (``top_k = 1``) commits ``depth + 2`` tokens per target forward.
    ``temperature = 0`` is greedy decoding; ``top_p`` applies only when sampling.
    ``compile_draft`` runs each draft level through ``torch.compile`` (static shapes: the whole
    draft cache under a padded mask; CUDA graphs on CUDA).
    """

    total_token: int = 60
    depth: int = 5
    top_k: int = 10
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()
    compile_draft: bool = False

    def __post_init__(self) -> None:
        checks = {
            "total_token must be at least 2 (the root and one draft token)": self.total_token >= 2,
            "depth must be at least 0": self.depth >= 0,
            "top_k must be at least 1": self.top_k >= 1,
            "temperature must be >= 0": self.temperature >= 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "max_new_tokens must be at least 1": self.max_new_tokens >= 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("; ".join(failed))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))

    @property
    def num_draft_levels(self) -> int:
        """Draft tokens on the longest root-to-leaf path: the root's top-k plus ``depth`` expansions."""
        return self.depth + 1

    @property
    def max_step_tokens(self) -> int:
        """Most tokens one step commits: every draft level accepted, plus the target's bonus token."""
        return self.num_draft_levels + 1

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (``temperature == 0``)."""
        return self.temperature == 0
