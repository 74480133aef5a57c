"""The chat client and server pool against a real loopback HTTP server: retries, faults, rotation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from builders.fake_openai import Drop, FakeOpenAIServer, Malformed, Reply, Status, default_reply, free_consecutive_ports
from eagle3cli.errors import Eagle3Error
from eagle3cli.serving.client import ChatClient, RequestFailed, RetryPolicy, SamplingParams
from eagle3cli.serving.pool import ServerPool, ServersDown, choose_model, find_servers

T = TypeVar("T")
PARAMS = SamplingParams(model="tiny-target", temperature=0.0, top_p=1.0, max_tokens=16)
MESSAGES = [{"role": "user", "content": "Hi"}]


def run_with_client(urls: list[str], body: Callable[[ChatClient, list[float]], Awaitable[T]], **options: Any) -> T:
    """Run ``body(client, delays)``; the retry sleeps are recorded in ``delays``, not slept."""

    async def main() -> T:
        delays: list[float] = []

        async def no_sleep(seconds: float) -> None:
            delays.append(seconds)

        async with httpx.AsyncClient() as http:
            pool = ServerPool(
                http, urls, down_timeout_s=options.pop("down_timeout_s", 5.0),
                probe_interval_s=options.pop("probe_interval_s", 0.05),
            )
            policy = RetryPolicy(options.pop("num_retries", 3), 1.0, random.Random(0))
            client = ChatClient(pool, policy, request_timeout_s=options.pop("request_timeout_s", 5.0), sleep=no_sleep)
            prober = asyncio.create_task(pool.run_prober())
            try:
                return await body(client, delays)
            finally:
                prober.cancel()

    return asyncio.run(main())


def failing_first(count: int, action: Any) -> Callable[[dict[str, Any], int], Any]:
    return lambda body, number: action if number <= count else default_reply(body, number)


def test_5xx_is_retried_with_growing_jittered_backoff() -> None:
    with FakeOpenAIServer(behaviour=failing_first(3, Status(503))) as server:
        reply, delays = run_with_client([server.url], lambda client, delays: _complete_and(client, delays))
        assert len(server.chat_requests()) == 4
    assert reply.content == "answer 1 to: Hi" and reply.finish_reason == "stop" and reply.num_tokens == 4
    assert len(delays) == 3
    for retry, delay in enumerate(delays):
        assert 0.5 * 2**retry <= delay <= 2**retry


async def _complete_and(client: ChatClient, delays: list[float]) -> tuple[Any, list[float]]:
    return await client.complete(MESSAGES, PARAMS), delays


@pytest.mark.parametrize("fault", [Malformed(), Malformed(b"not json at all"), Status(429), Drop()], ids=repr)
def test_faults_are_retried(fault: Any) -> None:
    with FakeOpenAIServer(behaviour=failing_first(1, fault)) as server:
        reply = run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS))
        assert len(server.chat_requests()) == 2
    assert reply.content == "answer 1 to: Hi"


def test_slow_reply_times_out_and_is_retried() -> None:
    slow_first = failing_first(1, Reply("too late", delay_s=1.5))
    with FakeOpenAIServer(behaviour=slow_first) as server:
        reply = run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS), request_timeout_s=0.3)
    assert reply.content == "answer 1 to: Hi"


def test_client_error_fails_at_once_with_the_servers_message() -> None:
    too_long = Status(400, '{"error": "prompt is longer than the maximum context length"}')
    with FakeOpenAIServer(behaviour=lambda body, number: too_long) as server:
        with pytest.raises(RequestFailed, match="HTTP 400.*maximum context length"):
            run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS))
        assert len(server.chat_requests()) == 1


def test_out_of_retries_names_the_last_reason() -> None:
    with FakeOpenAIServer(behaviour=lambda body, number: Status(500)) as server:
        with pytest.raises(RequestFailed, match=r"HTTP 500.*\(after 3 attempts\)"):
            run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS), num_retries=2)


def test_request_body_carries_sampling_params_and_thinking_switch() -> None:
    params = SamplingParams(model="tiny-target", temperature=0.7, top_p=0.9, max_tokens=32, enable_thinking=True)
    with FakeOpenAIServer() as server:
        run_with_client([server.url], lambda client, _: client.complete(MESSAGES, params))
        (body,) = server.chat_requests()
    assert body["model"] == "tiny-target" and body["messages"] == MESSAGES
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 32)
    assert body["chat_template_kwargs"] == {"enable_thinking": True}


def test_reasoning_field_becomes_a_think_block() -> None:
    thinking = lambda body, number: Reply("It is 4.", reasoning="2 + 2 = 4\n")  # noqa: E731
    with FakeOpenAIServer(behaviour=thinking) as server:
        reply = run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS))
    assert reply.content == "<think>\n2 + 2 = 4\n</think>\n\nIt is 4."


def test_dead_server_leaves_rotation_and_requests_go_to_the_live_one() -> None:
    with FakeOpenAIServer(behaviour=lambda body, number: Drop()) as dropping, FakeOpenAIServer() as healthy:
        async def body(client: ChatClient, _: list[float]) -> list[Any]:
            replies = await asyncio.gather(*(client.complete(MESSAGES, PARAMS) for _ in range(10)))
            dead = [server.url for server in client.pool.servers if not server.alive]
            return [replies, dead]

        replies, dead = run_with_client([dropping.url, healthy.url], body, probe_interval_s=60.0)
        assert len(replies) == 10 and dead == [dropping.url]
        assert len(healthy.chat_requests()) == 10
        assert 1 <= len(dropping.chat_requests()) <= 5  # only what it got before it was taken out


def test_stopped_server_is_probed_back_into_rotation() -> None:
    server = FakeOpenAIServer().start()

    async def body(client: ChatClient, _: list[float]) -> Any:
        await client.complete(MESSAGES, PARAMS)
        server.stop()
        restart = asyncio.get_running_loop().run_in_executor(None, _restart_after, server, 0.5)
        reply = await client.complete(MESSAGES, PARAMS)  # waits for the restarted server
        await restart
        return reply

    try:
        reply = run_with_client([server.url], body, num_retries=10)
    finally:
        server.stop()
    assert reply.content == "answer 1 to: Hi"


def _restart_after(server: FakeOpenAIServer, seconds: float) -> None:
    import time

    time.sleep(seconds)
    server.start()


def test_pool_gives_up_when_no_server_answers_for_the_timeout() -> None:
    server = FakeOpenAIServer().start()
    server.stop()
    with pytest.raises(ServersDown, match="no server answered for 0.3 s"):
        run_with_client([server.url], lambda client, _: client.complete(MESSAGES, PARAMS), down_timeout_s=0.3)


def test_pool_chooses_the_server_with_least_outstanding_work() -> None:
    async def main() -> list[str]:
        async with httpx.AsyncClient() as http:
            pool = ServerPool(http, ["http://a", "http://b", "http://c"], down_timeout_s=1.0)
            first = await pool.acquire(1000)  # a: 1000
            second = await pool.acquire(10)  # b: 10
            third = await pool.acquire(20)  # c: 20
            fourth = await pool.acquire(5)  # b: 15
            pool.release(first, 1000, ok=True)
            fifth = await pool.acquire(5)  # a: 5
            return [server.url for server in (first, second, third, fourth, fifth)]

    assert asyncio.run(main()) == ["http://a", "http://b", "http://c", "http://b", "http://a"]


def test_repeated_failures_take_a_server_out() -> None:
    async def main() -> list[bool]:
        async with httpx.AsyncClient() as http:
            pool = ServerPool(http, ["http://a", "http://b"], down_timeout_s=1.0)
            alive = []
            for _ in range(3):
                server = pool.servers[0]
                server.num_in_flight += 1
                pool.release(server, 0, ok=False)
                alive.append(server.alive)
            return alive

    assert asyncio.run(main()) == [True, True, False]


def test_servers_are_found_by_probing_ports_until_one_does_not_answer() -> None:
    base = free_consecutive_ports(2)
    with FakeOpenAIServer(port=base), FakeOpenAIServer(port=base + 1):
        found = asyncio.run(_find([], base, None))
    assert found == {f"http://127.0.0.1:{base}": ["tiny-target"], f"http://127.0.0.1:{base + 1}": ["tiny-target"]}


def test_explicit_servers_must_all_answer() -> None:
    base = free_consecutive_ports(2)
    with FakeOpenAIServer(port=base):
        with pytest.raises(Eagle3Error, match=f"no answer from http://127.0.0.1:{base + 1}"):
            asyncio.run(_find([], base, 2))
        assert list(asyncio.run(_find([f"http://127.0.0.1:{base}/v1/"], 1, None))) == [f"http://127.0.0.1:{base}"]


def test_no_server_at_all_says_how_to_start_one() -> None:
    base = free_consecutive_ports(1)
    with pytest.raises(Eagle3Error, match="eagle3 serve"):
        asyncio.run(_find([], base, None))


async def _find(urls: list[str], base_port: int, num_servers: int | None) -> dict[str, list[str]]:
    async with httpx.AsyncClient() as http:
        return await find_servers(http, urls, "127.0.0.1", base_port, num_servers)


def test_model_is_discovered_or_checked() -> None:
    assert choose_model({"http://a": ["m"], "http://b": ["m", "n"]}, None) == "m"
    assert choose_model({"http://a": ["m", "n"]}, "n") == "n"
    with pytest.raises(Eagle3Error, match="choose the model with --model"):
        choose_model({"http://a": ["m", "n"]}, None)
    with pytest.raises(Eagle3Error, match="http://b does not serve model 'm'"):
        choose_model({"http://a": ["m"], "http://b": ["n"]}, None)
