"""A real HTTP server on loopback that speaks just enough of the OpenAI API for ``eagle3 sample``.

It answers ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(the reply's content as the completion's text); a ``behaviour`` callable
chooses, per request, between a normal reply and the faults that are hard to cause with vLLM:
an HTTP error status, a slow reply, a malformed body, or a dropped connection. The default
reply is deterministic and shows what the server saw, so tests can check the history that was
replayed: ``"answer N to: <last user message>"`` (N = user turns so far).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    content: str
    finish_reason: str = "stop"
    delay_s: float = 0.0
    reasoning: str | None = None


@dataclass(frozen=True)
class Status:
    code: int
    body: str = '{"error": "fake failure"}'


@dataclass(frozen=True)
class Malformed:
    body: bytes = b'{"choices": [{"message": '


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


Action = Reply | Status | Malformed | Drop
Behaviour = Callable[[dict[str, Any], int], Action]


def default_reply(body: dict[str, Any], _: int) -> Action:
    """``answer N to: <last user message>``; ``length`` when the message says LONG."""
    users = [message["content"] for message in body["messages"] if message["role"] == "user"]
    finish_reason = "length" if "LONG" in users[-1] else "stop"
    return Reply(f"answer {len(users)} to: {users[-1]}", finish_reason)


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer() as server:``; ``server.url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, model: str = "tiny-target", behaviour: Behaviour = default_reply, port: int = 0) -> None:
        self.model = model
        self.behaviour = behaviour
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a killed server would."""
        with self.lock:  # a reply thread and the test may both stop it
            server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self.lock:
            for connection in list(self._connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024  # many clients connect at once; the default backlog of 5 resets them


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenAIServer

    def setup(self) -> None:
        super().setup()
        with self.fake.lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            return self._send(404, b'{"error": "not found"}')
        self._send(200, json.dumps({"object": "list", "data": [{"id": self.fake.model, "object": "model"}]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["_authorization"] = self.headers.get("Authorization")
        body["_path"] = self.path
        with self.fake.lock:
            self.fake.requests.append(body)
            number = len(self.fake.requests)
        action = self.fake.behaviour(body, number)
        try:
            self._act(action, body)
        except OSError:
            self.close_connection = True

    def _act(self, action: Action, body: dict[str, Any]) -> None:
        if isinstance(action, Drop):
            self.close_connection = True
        elif isinstance(action, Status):
            self._send(action.code, action.body.encode())
        elif isinstance(action, Malformed):
            self._send(200, action.body)
        else:
            time.sleep(action.delay_s)
            self._send(200, json.dumps(_completion(action, body)).encode())

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    if body["_path"] == "/v1/completions":
        return {"id": "cmpl-fake", "object": "text_completion", "model": body["model"],
                "choices": [{"index": 0, "text": reply.content, "finish_reason": reply.finish_reason}]}
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(reply.content.split()), "total_tokens": 1},
    }


def free_consecutive_ports(count: int) -> int:
    """A base port with ``count`` free loopback ports from it (free when checked; bind soon after)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65536 and all(_port_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError("no free consecutive ports")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
