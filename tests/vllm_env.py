"""The vLLM side of the integration tests: its venv, a target it can serve, a server handle.

vLLM's CPU build pins its own torch and transformers, so it lives in ``.venv-vllm`` (built by
``scripts/setup_vllm_venv.sh``; CI builds it) or wherever ``$EAGLE3_VLLM_PYTHON`` points.
Without it the tests skip — unless ``EAGLE3_REQUIRE_VLLM=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from builders.fake_openai import free_consecutive_ports
from builders.models import tiny_config_kwargs

REPOSITORY = Path(__file__).resolve().parent.parent
REQUIRE_VLLM_ENV = "EAGLE3_REQUIRE_VLLM"
# Small KV cache, no HF hub access; bf16 gives garbage on this CPU build, so float32 everywhere.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
MAX_MODEL_LEN = 1024
READY_TIMEOUT_S = 300


def find_vllm_python() -> str | None:
    """``$EAGLE3_VLLM_PYTHON`` or ``.venv-vllm/bin/python``, if it can import vllm."""
    candidates = [os.environ.get("EAGLE3_VLLM_PYTHON"), str(REPOSITORY / ".venv-vllm" / "bin" / "python")]
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run([python, "-c", check], check=False).returncode == 0:
            return python
    return None


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = find_vllm_python()
    if python is None:
        reason = "no vLLM venv: run scripts/setup_vllm_venv.sh (builds .venv-vllm) or set EAGLE3_VLLM_PYTHON"
        if os.environ.get(REQUIRE_VLLM_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_VLLM_ENV}=1)")
        pytest.skip(reason)
    return python


def save_vllm_target(directory: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    """A tiny random Qwen3 that vLLM's CPU attention accepts (head_dim 32: it has no kernel for 16)."""
    torch.manual_seed(0)
    config = Qwen3Config(**{**tiny_config_kwargs(len(tokenizer)), "hidden_size": 128, "head_dim": 32})
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    Qwen3ForCausalLM(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


class ServeProcess:
    """``eagle3 serve`` over the real vLLM, in a subprocess; restartable, killable."""

    def __init__(self, vllm_python: str, target: Path, log_dir: Path, max_model_len: int = MAX_MODEL_LEN) -> None:
        self.vllm_python = vllm_python
        self.target = target
        self.log_dir = log_dir
        self.max_model_len = max_model_len
        self.base_port = free_consecutive_ports(1)
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> float:
        """Start and wait for the endpoint line; returns the seconds it took."""
        started = time.monotonic()
        command = [
            sys.executable, "-m", "eagle3cli", "serve", "--target-model", str(self.target),
            "--base-port", str(self.base_port), "--dtype", "float32", "--max-model-len", str(self.max_model_len),
            "--vllm-python", self.vllm_python, "--log-dir", str(self.log_dir),
            "--ready-timeout", str(READY_TIMEOUT_S), "--", "--enforce-eager",
        ]
        self.process = subprocess.Popen(
            command, env={**os.environ, **VLLM_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().strip()
        if not self.endpoint:
            self.process.wait()
            pytest.fail(f"eagle3 serve did not start: {self.process.stderr.read() if self.process.stderr else ''}")
        return time.monotonic() - started

    def kill_servers(self) -> None:
        """SIGKILL every vLLM server process tree under ``eagle3 serve`` (a crash, not a shutdown)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for child in children:
            os.killpg(int(child), signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM ``eagle3 serve`` (a clean shutdown); returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
