"""One chat completion against the server pool, with retries.

Timeouts, connection errors, 408/429/5xx answers and malformed bodies are retried after an
exponential backoff with jitter (so a crowd of failed requests does not come back in one
wave), each attempt on the server the pool chooses then. Other 4xx answers (a prompt longer
than the context, a wrong model name) fail at once: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from eagle3cli.serving.pool import Server, ServerPool

MAX_BACKOFF_S = 60.0
RETRY_STATUSES = frozenset({408, 429})
ERROR_EXCERPT_CHARS = 300
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class SamplingParams:
    """What every request of one record is sampled with; stored with the record."""

    model: str
    temperature: float
    top_p: float
    max_tokens: int
    enable_thinking: bool = False
    seed: int | None = None  # the server's sampling seed: a record regenerates the same way every time

    def request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "chat_template_kwargs": {"enable_thinking": self.enable_thinking},
        }
        return body if self.seed is None else body | {"seed": self.seed}

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "seed" or value is not None}


@dataclass(frozen=True)
class ChatReply:
    """The assistant message of one completion, why it ended, and its length in tokens."""

    content: str
    finish_reason: str
    num_tokens: int


class RequestFailed(Exception):
    """A request that failed for good: not retryable, or out of retries."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AttemptFailed(Exception):
    """One failed attempt; ``retryable`` and whether the server looks ``dead``."""

    def __init__(self, reason: str, *, retryable: bool = True, dead: bool = False) -> None:
        self.reason = reason
        self.retryable = retryable
        self.dead = dead
        super().__init__(reason)


@dataclass(frozen=True)
class RetryPolicy:
    """``num_retries`` retries; delay ``backoff_s * 2**retry`` (capped), minus up to half of it at random."""

    num_retries: int
    backoff_s: float
    rng: random.Random

    def delay(self, retry: int) -> float:
        full = min(MAX_BACKOFF_S, self.backoff_s * 2**retry)
        return full * (1 - 0.5 * self.rng.random())


class ChatClient:
    """``/v1/chat/completions`` over a :class:`ServerPool`, retried per :class:`RetryPolicy`."""

    def __init__(
        self,
        pool: ServerPool,
        policy: RetryPolicy,
        *,
        request_timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.request_timeout_s = request_timeout_s
        self.sleep = sleep

    @property
    def gave_up(self) -> bool:
        """Whether no server answered for too long (the run stops; a rerun resumes)."""
        return self.pool.gave_up

    def down_message(self) -> str:
        return self.pool.down_message()

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> ChatReply:
        """The reply to ``messages``; raises :class:`RequestFailed` or ``ServersDown``."""
        body = params.request_body(messages)
        work = sum(len(message["content"]) for message in messages) // CHARS_PER_TOKEN + params.max_tokens
        for attempt in range(self.policy.num_retries + 1):
            if attempt:
                await self.sleep(self.policy.delay(attempt - 1))
            server = await self.pool.acquire(work)
            try:
                reply = await self._attempt(server, body)
            except AttemptFailed as failure:
                self.pool.release(server, work, ok=not failure.retryable, dead=failure.dead)
                if not failure.retryable:
                    raise RequestFailed(failure.reason) from None
                reason = failure.reason
                continue
            except BaseException:
                self.pool.release(server, work, ok=True)
                raise
            self.pool.release(server, work, ok=True)
            return reply
        raise RequestFailed(f"{reason} (after {self.policy.num_retries + 1} attempts)")

    async def _attempt(self, server: Server, body: dict[str, Any]) -> ChatReply:
        url = f"{server.url}/v1/chat/completions"
        try:
            response = await self.pool.client.post(url, json=body, timeout=self.request_timeout_s)
        except httpx.TimeoutException as error:
            dead = isinstance(error, httpx.ConnectTimeout)
            raise AttemptFailed(f"{server.url}: no reply within {self.request_timeout_s:g} s", dead=dead) from None
        except httpx.TransportError as error:
            raise AttemptFailed(f"{server.url}: connection error ({type(error).__name__}: {error})", dead=True) from None
        if response.status_code >= 400:
            excerpt = response.text[:ERROR_EXCERPT_CHARS].strip()
            retryable = response.status_code in RETRY_STATUSES or response.status_code >= 500
            raise AttemptFailed(f"{server.url}: HTTP {response.status_code}: {excerpt}", retryable=retryable)
        return parse_reply(server.url, response)


def parse_reply(url: str, response: httpx.Response) -> ChatReply:
    """The first choice of a chat completion; a reasoning field is put back as a ``<think>`` block."""
    try:
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content") or ""
        finish_reason = choice["finish_reason"]
        usage = data.get("usage") or {}
        num_tokens = int(usage.get("completion_tokens") or 0)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        excerpt = response.text[:ERROR_EXCERPT_CHARS].strip()
        raise AttemptFailed(f"{url}: malformed reply ({type(error).__name__}: {error}): {excerpt!r}") from None
    if not isinstance(content, str) or not isinstance(finish_reason, str) or finish_reason == "abort":
        raise AttemptFailed(f"{url}: reply without text or with finish_reason {finish_reason!r}")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip():
        content = f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"
    return ChatReply(content=content, finish_reason=finish_reason, num_tokens=num_tokens)
