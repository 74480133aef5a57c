"""``bench --backend vllm``'s engine: the bench worker (``vllm_side/bench_worker.py``) under vLLM's
interpreter (:class:`~eagle3cli.vllm_process.VllmWorker`), and its acceptance counters. Each
answer carries what the request added to vLLM's speculative-decoding counters
(:class:`SpecCounters`), read from ``LLM.get_metrics()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from eagle3cli.vllm_process import VLLM_SIDE, VllmWorker

BENCH_WORKER = VLLM_SIDE / "bench_worker.py"


@dataclass(frozen=True)
class SpecCounters:
    """vLLM's speculative-decoding counters over some requests.

    ``accepted_per_position[i]``: drafts whose first ``i + 1`` tokens were all accepted (a
    chain is accepted as a prefix, so this also counts the drafts that accepted more).
    """

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpecCounters:
        return cls(
            data["num_drafts"], data["num_draft_tokens"], data["num_accepted_tokens"], tuple(data["accepted_per_position"])
        )

    def __add__(self, other: SpecCounters) -> SpecCounters:
        per_position = zip_longest(self.accepted_per_position, other.accepted_per_position, fillvalue=0)
        return SpecCounters(self.num_drafts + other.num_drafts, self.num_draft_tokens + other.num_draft_tokens,
                            self.num_accepted_tokens + other.num_accepted_tokens, tuple(a + b for a, b in per_position))

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens over proposed draft tokens (0 without drafts)."""
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """τ: tokens per verification step, ``1 + accepted / drafts`` (0 without drafts)."""
        return 1 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 0.0

    @property
    def acceptance_by_position(self) -> list[float]:
        """Fraction of drafts that accepted at least ``i + 1`` tokens."""
        return [count / self.num_drafts for count in self.accepted_per_position] if self.num_drafts else []

    def accept_lengths(self) -> list[int]:
        """Tokens per verification step (accepted + 1), one entry per draft, rebuilt from the
        per-position counts. vLLM does not report the order of steps, so they come sorted."""
        at_least = [self.num_drafts, *self.accepted_per_position, 0]  # drafts accepting >= j tokens
        lengths: list[int] = []
        for accepted in range(len(at_least) - 1):
            lengths += [accepted + 1] * (at_least[accepted] - at_least[accepted + 1])
        return lengths

    def figures(self) -> dict[str, Any]:
        """The counters and the rates derived from them, for ``summary.json``."""
        return asdict(self) | {"accepted_per_position": list(self.accepted_per_position), "acceptance_rate": self.acceptance_rate,
                               "mean_acceptance_length": self.mean_acceptance_length,
                               "acceptance_by_position": self.acceptance_by_position}


@dataclass(frozen=True)
class VllmGeneration:
    """One request's answer: generated ids (a stop token included), time inside vLLM, counters."""

    token_ids: list[int]
    finish_reason: str | None
    wall_time: float
    spec: SpecCounters = field(default_factory=SpecCounters)


class VllmEngine(VllmWorker):
    """The bench worker: :meth:`generate` answers one prompt."""

    def __init__(self, python: str, engine_args: Mapping[str, Any], *, log_path: Path,
                 env: Mapping[str, str] | None = None, ready_timeout_s: float = 1800.0, cpu: bool = False) -> None:
        super().__init__(python, engine_args, log_path=log_path, env=env, ready_timeout_s=ready_timeout_s, worker=BENCH_WORKER, cpu=cpu)

    def generate(self, prompt_token_ids: Sequence[int], sampling: Mapping[str, Any], *, timeout_s: float = 3600.0) -> VllmGeneration:
        """Answer one prompt (bench worker); ``sampling`` are ``vllm.SamplingParams`` fields."""
        reply = self.request({"prompt_token_ids": list(prompt_token_ids), "sampling": dict(sampling)}, timeout_s=timeout_s)
        return VllmGeneration(reply["token_ids"], reply["finish_reason"], reply["wall_time"], SpecCounters.from_json(reply["spec"]))
