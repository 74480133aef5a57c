"""The OpenAI-compatible servers a run talks to.

Each request goes to the live server with the least outstanding work (estimated tokens of
the requests it is serving), so a server stuck on long answers gets fewer new ones. A server
that refuses connections, or fails several requests in a row, is taken out of rotation; a
background prober asks its ``/v1/models`` every ``probe_interval_s`` and puts it back when it
answers. When no server is live, requests wait; after ``down_timeout_s`` without any live
server the pool gives up and every waiting request raises :class:`ServersDown`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from eagle3cli.errors import Eagle3Error

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
MAX_PROBED_SERVERS = 256
MAX_CONSECUTIVE_FAILURES = 3


class ServersDown(Exception):
    """No server has been live for the pool's ``down_timeout_s``."""


@dataclass
class Server:
    """One server: its base URL (``http://host:port``) and what the pool knows of it."""

    url: str
    outstanding_work: int = 0
    num_in_flight: int = 0
    alive: bool = True
    consecutive_failures: int = 0


class ServerPool:
    """Choose servers by least outstanding work; take dead ones out and probe them back in."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        urls: list[str],
        *,
        down_timeout_s: float,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.servers = [Server(url) for url in urls]
        self.down_timeout_s = down_timeout_s
        self.probe_interval_s = probe_interval_s
        self.clock = clock
        self.down_since: float | None = None
        self.gave_up = False
        self._any_alive = asyncio.Event()
        self._any_alive.set()

    async def acquire(self, work: int) -> Server:
        """The live server with the least outstanding work, ``work`` added to it; waits while none is live."""
        while True:
            if self.gave_up:
                raise ServersDown(self.down_message())
            alive = [server for server in self.servers if server.alive]
            if alive:
                server = min(alive, key=lambda server: (server.outstanding_work, server.num_in_flight))
                server.outstanding_work += work
                server.num_in_flight += 1
                return server
            await self._wait_for_live_server()

    def release(self, server: Server, work: int, *, ok: bool, dead: bool = False) -> None:
        """Return ``work`` to ``server``; count a failure, and take it out when ``dead`` or failing repeatedly."""
        server.outstanding_work -= work
        server.num_in_flight -= 1
        if ok:
            server.consecutive_failures = 0
            return
        server.consecutive_failures += 1
        if dead or server.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            self.mark_dead(server)

    def mark_dead(self, server: Server) -> None:
        if not server.alive:
            return
        server.alive = False
        logger.warning("server %s taken out of rotation", server.url)
        if not any(other.alive for other in self.servers):
            self.down_since = self.clock()
            self._any_alive.clear()

    def mark_alive(self, server: Server) -> None:
        if server.alive:
            return
        server.alive = True
        server.consecutive_failures = 0
        self.down_since = None
        self._any_alive.set()
        logger.warning("server %s is back in rotation", server.url)

    async def run_prober(self) -> None:
        """Forever: probe the dead servers every ``probe_interval_s``; revive those that answer."""
        while True:
            await asyncio.sleep(self.probe_interval_s)
            dead = [server for server in self.servers if not server.alive]
            answers = await asyncio.gather(*(list_models(self.client, server.url) for server in dead))
            for server, models in zip(dead, answers):
                if models is not None:
                    self.mark_alive(server)

    async def _wait_for_live_server(self) -> None:
        assert self.down_since is not None
        remaining = self.down_timeout_s - (self.clock() - self.down_since)
        if remaining <= 0:
            self.gave_up = True
            return
        try:
            await asyncio.wait_for(self._any_alive.wait(), timeout=remaining)
        except asyncio.TimeoutError:
            pass

    def down_message(self) -> str:
        urls = ", ".join(server.url for server in self.servers)
        return f"no server answered for {self.down_timeout_s:g} s ({urls})"


async def list_models(client: httpx.AsyncClient, url: str) -> list[str] | None:
    """The model ids ``url/v1/models`` lists, or ``None`` when the server does not answer properly."""
    try:
        response = await client.get(f"{url}/v1/models", timeout=PROBE_TIMEOUT_S)
        response.raise_for_status()
        return [str(model["id"]) for model in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


async def find_servers(
    client: httpx.AsyncClient, urls: list[str], host: str, base_port: int, num_servers: int | None
) -> dict[str, list[str]]:
    """Map each server URL to the models it lists.

    Explicit ``urls`` (or ``num_servers`` ports from ``base_port``) must all answer; otherwise
    ports ``base_port + i`` are probed until one does not answer.
    """
    if urls or num_servers is not None:
        expected = [url.rstrip("/").removesuffix("/v1") for url in urls]
        expected = expected or [f"http://{host}:{base_port + i}" for i in range(num_servers or 0)]
        answers = await asyncio.gather(*(list_models(client, url) for url in expected))
        missing = [url for url, models in zip(expected, answers) if models is None]
        if missing:
            raise Eagle3Error(
                f"no answer from {', '.join(missing)} at /v1/models",
                hint="start the servers (eagle3 serve --target-model M), or leave those out",
            )
        return dict(zip(expected, answers))  # type: ignore[arg-type]
    return await _probe_ports(client, host, base_port)


async def _probe_ports(client: httpx.AsyncClient, host: str, base_port: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for port in range(base_port, min(base_port + MAX_PROBED_SERVERS, 65536)):
        url = f"http://{host}:{port}"
        models = await list_models(client, url)
        if models is None:
            break
        found[url] = models
    if not found:
        raise Eagle3Error(
            f"no OpenAI-compatible server answers at http://{host}:{base_port}/v1/models",
            hint=f"start them with eagle3 serve --target-model M --base-port {base_port}, or give --server-url",
        )
    return found


def choose_model(models_by_url: dict[str, list[str]], model: str | None) -> str:
    """The served model name: ``model`` if every server lists it, else the single one they list."""
    if model is None:
        first_url, first_models = next(iter(models_by_url.items()))
        if len(first_models) != 1:
            listed = ", ".join(first_models) or "none"
            raise Eagle3Error(f"{first_url} serves {listed}", hint="choose the model with --model")
        model = first_models[0]
    for url, models in models_by_url.items():
        if model not in models:
            raise Eagle3Error(
                f"{url} does not serve model '{model}' (it lists: {', '.join(models) or 'none'})",
                hint="pass the served model name with --model, or point at servers of one model",
            )
    return model
