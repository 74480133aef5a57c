"""``eagle3 serve``: one vLLM OpenAI-compatible server per GPU group.

Server ``i`` gets GPUs ``[i * g, (i + 1) * g)`` of the visible ones (``CUDA_VISIBLE_DEVICES``
or ``nvidia-smi -L``) and port ``base_port + i``; without GPUs (vLLM's CPU build) the servers
share the machine. Each server runs in its own process group with its stdout and stderr in
one log file. :func:`serve` waits until every server answers ``/v1/models`` (reporting the
log's last lines if one exits or the wait times out), reports the endpoints, and on Ctrl-C,
SIGTERM or the death of any server stops them all: SIGTERM to each group, SIGKILL after a
grace period.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eagle3cli.config import ServeConfig
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import prepare_output_dir
from eagle3cli.vllm_process import (
    STOP_GRACE_S,
    cpu_chunked_prefill_off,
    cpu_vllm_env,
    log_tail,
    resolve_vllm_python,
    signal_group,
)

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
POLL_INTERVAL_S = 1.0


@dataclass
class ServerProcess:
    """One planned (then started) vLLM server."""

    index: int
    port: int
    command: list[str]
    gpus: list[str] = field(default_factory=list)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        if self.gpus:
            return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
        return cpu_vllm_env(os.environ)  # all cores (1.6x tokens/s on 2 cores), no failing compile-cache load


def visible_gpus() -> list[str]:
    """GPU ids to split into groups: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [gpu.strip() for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(index) for index, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


def plan_servers(config: ServeConfig, python: str, gpus: list[str]) -> list[ServerProcess]:
    """Command, port and GPU group of every server (nothing is started)."""
    group = config.gpus_per_server
    if gpus and len(gpus) < group:
        raise Eagle3Error(f"{len(gpus)} GPU(s) visible, fewer than --gpus-per-server {group}")
    num_servers = config.num_servers or (len(gpus) // group if gpus else 1)
    if gpus and num_servers * group > len(gpus):
        raise Eagle3Error(
            f"{num_servers} servers x {group} GPU(s) need {num_servers * group} GPUs; {len(gpus)} are visible",
            hint="lower --num-servers or --gpus-per-server, or set CUDA_VISIBLE_DEVICES",
        )
    return [
        ServerProcess(
            index=index,
            port=config.base_port + index,
            command=server_command(config, python, config.base_port + index, tensor_parallel=group if gpus else 1, cpu=not gpus),
            gpus=gpus[index * group:(index + 1) * group],
        )
        for index in range(num_servers)
    ]


def server_command(config: ServeConfig, python: str, port: int, *, tensor_parallel: int = 1, cpu: bool = False) -> list[str]:
    """The vLLM OpenAI server command line of one server. On vLLM's CPU build chunked prefill
    is turned off unless the extra arguments name it (:func:`cpu_chunked_prefill_off`)."""
    command = [python, "-m", VLLM_SERVER_MODULE, "--model", config.target_model, "--host", config.host,
               "--port", str(port), "--dtype", config.dtype]
    if config.max_model_len is not None:
        command += ["--max-model-len", str(config.max_model_len)]
    if tensor_parallel > 1 and not any(arg.split("=", 1)[0] in ("--tensor-parallel-size", "-tp") for arg in config.extra_args):
        command += ["--tensor-parallel-size", str(tensor_parallel)]
    if config.speculative_config is not None:
        command += ["--speculative-config", json.dumps(config.speculative_config)]
    if cpu and cpu_chunked_prefill_off(config.extra_args):
        command += ["--no-enable-chunked-prefill"]
    return command + list(config.extra_args)


def probe_host(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise Eagle3Error(f"cannot listen on {host}:{port} ({error.strerror})", hint="choose another --base-port") from None


class ServerGroup:
    """Start, watch and stop a planned group of servers."""

    def __init__(self, servers: list[ServerProcess], host: str, log_dir: Path) -> None:
        self.servers = servers
        self.host = host
        self.log_dir = Path(log_dir)

    def endpoints(self) -> list[str]:
        return [f"http://{probe_host(self.host)}:{server.port}/v1" for server in self.servers]

    def start(self) -> None:
        for server in self.servers:
            check_port_free(self.host, server.port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            server.log_path = self.log_dir / f"server-{server.index}-port-{server.port}.log"
            with server.log_path.open("wb") as log:  # own session: its whole process tree can be signalled
                try:
                    server.process = subprocess.Popen(server.command, env=server.env(), stdin=subprocess.DEVNULL, stdout=log,
                                                      stderr=subprocess.STDOUT, start_new_session=True)
                except OSError as error:
                    raise Eagle3Error(f"cannot start {server.command[0]}: {error}") from None

    def wait_ready(self, timeout_s: float, *, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        """Return when every server answers ``/v1/models``; raise with the log tail if one cannot."""
        deadline = time.monotonic() + timeout_s
        waiting = list(self.servers)
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                self.check_alive()
                waiting = [server for server in waiting if not self._answers(client, server)]
                if waiting and time.monotonic() > deadline:
                    server = waiting[0]
                    raise Eagle3Error(
                        f"vLLM server {server.index} (port {server.port}) not ready after {timeout_s:g} s"
                        + _log_tail(server),
                        hint="see the log; raise --ready-timeout for a large model",
                    )
                if waiting:
                    time.sleep(poll_interval_s)

    def check_alive(self) -> None:
        """Raise, with the log tail, if any server process has exited."""
        for server in self.servers:
            assert server.process is not None
            code = server.process.poll()
            if code is not None:
                raise Eagle3Error(f"vLLM server {server.index} (port {server.port}) exited with code {code}" + _log_tail(server))

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every server's process group; SIGKILL what is left after ``grace_s``."""
        started = [server.process for server in self.servers if server.process is not None]
        for process in started:
            signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in started:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            signal_group(process, signal.SIGKILL)
            process.wait()

    def _answers(self, client: httpx.Client, server: ServerProcess) -> bool:
        try:
            return client.get(f"http://{probe_host(self.host)}:{server.port}/v1/models").status_code == 200
        except httpx.HTTPError:
            return False


class StopRequested(Exception):
    """SIGTERM arrived."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`StopRequested` in the main thread, for a clean shutdown."""

    def handler(signum: int, frame: object) -> None:
        raise StopRequested()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    config: ServeConfig,
    *,
    on_ready: Callable[[list[str]], None],
    on_status: Callable[[str], None] = lambda _: None,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> None:
    """Start the servers, call ``on_ready(endpoints)``, then hold them until Ctrl-C or SIGTERM.

    Raises :class:`Eagle3Error` if a server fails to start or dies; all are stopped either way.
    """
    log_dir = prepare_output_dir(config.log_dir, "--log-dir")
    python = resolve_vllm_python(config.vllm_python)
    with sigterm_raises():
        try:
            with served_draft(config, log_dir) as config:  # the servers stop before a converted draft is removed
                group = ServerGroup(plan_servers(config, python, visible_gpus()), config.host, log_dir)
                try:
                    group.start()
                    on_status(f"started {len(group.servers)} vLLM server(s); logs in {group.log_dir}")
                    group.wait_ready(config.ready_timeout, poll_interval_s=poll_interval_s)
                    on_ready(group.endpoints())
                    while True:
                        group.check_alive()
                        time.sleep(poll_interval_s)
                except (KeyboardInterrupt, StopRequested):
                    on_status("stopping the servers")
                finally:
                    group.stop()
        except (KeyboardInterrupt, StopRequested):  # while the draft was being converted: no server yet
            on_status("stopped before any server started")


@contextmanager
def served_draft(config: ServeConfig, scratch: Path) -> Iterator[ServeConfig]:
    """``config`` with its ``--speculative-config`` draft in a layout vLLM reads right: a local
    draft of another layout (EAGLE, AngelSlim, ModelOpt) is converted to eagle3 for the servers' lifetime."""
    model = (config.speculative_config or {}).get("model")
    if not isinstance(model, str) or not Path(model).is_dir():
        yield config
        return
    from eagle3cli.draft.convert import vllm_loadable

    with vllm_loadable(Path(model), config.target_model, scratch) as served:
        yield config.model_copy(update={"speculative_config": {**(config.speculative_config or {}), "model": str(served)}})


def _log_tail(server: ServerProcess) -> str:
    if server.log_path is None or not server.log_path.exists():
        return ""
    return f"; last lines of {server.log_path}:\n" + log_tail(server.log_path)
