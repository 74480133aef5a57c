"""One offline vLLM engine in a subprocess under the vLLM interpreter, and its acceptance counters.

vLLM pins its own torch and transformers, so it runs in its own venv: :class:`VllmEngine`
starts a worker script of :mod:`eagle3cli.vllm_side` there (``bench_worker.py`` by default;
in its own process group, its output in a log file) and talks JSON lines with it. Each answer carries what the request added to vLLM's
speculative-decoding counters (:class:`SpecCounters`), read from ``LLM.get_metrics()``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error

VLLM_SIDE = Path(__file__).resolve().parent.parent / "vllm_side"
BENCH_WORKER = VLLM_SIDE / "bench_worker.py"
LOG_TAIL_LINES = 30
STOP_GRACE_S = 30.0


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
        width = max(len(self.accepted_per_position), len(other.accepted_per_position))
        mine, theirs = (list(c.accepted_per_position) + [0] * width for c in (self, other))
        return SpecCounters(
            self.num_drafts + other.num_drafts,
            self.num_draft_tokens + other.num_draft_tokens,
            self.num_accepted_tokens + other.num_accepted_tokens,
            tuple(a + b for a, b in zip(mine[:width], theirs[:width])),
        )

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
        return {
            "num_drafts": self.num_drafts,
            "num_draft_tokens": self.num_draft_tokens,
            "num_accepted_tokens": self.num_accepted_tokens,
            "accepted_per_position": list(self.accepted_per_position),
            "acceptance_rate": self.acceptance_rate,
            "mean_acceptance_length": self.mean_acceptance_length,
            "acceptance_by_position": self.acceptance_by_position,
        }


@dataclass(frozen=True)
class VllmGeneration:
    """One request's answer: generated ids (a stop token included), time inside vLLM, counters."""

    token_ids: list[int]
    finish_reason: str | None
    wall_time: float
    spec: SpecCounters = field(default_factory=SpecCounters)


class VllmEngine:
    """A ``vllm.LLM(**engine_args)`` in a worker subprocess: :meth:`start`, :meth:`wait_ready`,
    :meth:`generate` any number of times, :meth:`close` (or use it as a context manager, which
    does all but generate)."""

    def __init__(
        self,
        python: str,
        engine_args: Mapping[str, Any],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 1800.0,
        worker: Path = BENCH_WORKER,
    ) -> None:
        self.python = python
        self.engine_args = dict(engine_args)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        # vLLM's engine processes import worker-side modules (a KV connector) from the worker's folder
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(VLLM_SIDE), self.env.get("PYTHONPATH")]))
        self.worker = worker
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.vllm_version = ""
        self.startup_seconds = 0.0
        self._started_at = 0.0

    def __enter__(self) -> VllmEngine:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch the worker and send it the engine arguments (returns at once; vLLM loads meanwhile)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, str(self.worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                text=True, env=self.env, start_new_session=True,
            )
        self._send({"engine": self.engine_args})

    def wait_ready(self) -> None:
        """Block until the engine has loaded; a failure or ``ready_timeout_s`` raises with the log's last lines."""
        reply = self._receive(self.ready_timeout_s, "to load")
        self.vllm_version = reply.get("vllm_version", "")
        self.startup_seconds = time.monotonic() - self._started_at

    def request(self, message: Mapping[str, Any], *, timeout_s: float = 3600.0) -> dict[str, Any]:
        """Send one request line to the worker and return its reply."""
        self._send(message)
        return self._receive(timeout_s, "to answer")

    def generate(self, prompt_token_ids: Sequence[int], sampling: Mapping[str, Any], *, timeout_s: float = 3600.0) -> VllmGeneration:
        """Answer one prompt (bench worker); ``sampling`` are ``vllm.SamplingParams`` fields."""
        reply = self.request({"prompt_token_ids": list(prompt_token_ids), "sampling": dict(sampling)}, timeout_s=timeout_s)
        return VllmGeneration(reply["token_ids"], reply["finish_reason"], reply["wall_time"], SpecCounters.from_json(reply["spec"]))

    def close(self) -> None:
        """End the worker: EOF lets vLLM shut down; after a grace period its process group is killed."""
        if self.process is None:
            return
        process, self.process = self.process, None
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(process)

    def _send(self, message: Mapping[str, Any]) -> None:
        process = self._running()
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            raise self._failure("exited") from None

    def _receive(self, timeout_s: float, purpose: str) -> dict[str, Any]:
        process = self._running()
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            _kill_group(process)
            raise self._failure(f"took more than {timeout_s:.0f} s {purpose}")
        line = process.stdout.readline()
        reply = json.loads(line) if line.strip() else {"error": "exited without a reply"}
        if "error" in reply:
            raise self._failure(reply["error"])
        return reply

    def _running(self) -> subprocess.Popen[str]:
        if self.process is None:
            raise Eagle3Error("the vLLM engine is not running (start() it first)")
        return self.process

    def _failure(self, what: str) -> Eagle3Error:
        tail = _log_tail(self.log_path)
        self.close()
        return Eagle3Error(f"vLLM ({self.python}) {what}; last lines of {self.log_path}:\n{tail}")


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the worker's process group (vLLM's engine processes included) and reap the worker."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])
