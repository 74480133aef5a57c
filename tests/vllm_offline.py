"""Offline vLLM engines for the tests, set up to start fast on a 2-core CPU.

The engine runs in the worker process itself (no engine-core or executor subprocess, each of
which re-imports vLLM: ~19 s to ready instead of ~55-80 s) with unbound OpenMP threads, in
eager mode. Timings under these settings jitter; the tests assert outputs and acceptance only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eagle3cli.bench.vllm_engine import VllmEngine
from vllm_env import VLLM_ENV

FAST_ENGINE_ENV = {**VLLM_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
FAST_ENGINE_ARGS = {"enforce_eager": True, "distributed_executor_backend": "uni"}
MAX_MODEL_LEN = 1024


def speculative_config(draft: Path, num_speculative_tokens: int) -> dict[str, Any]:
    return {"method": "eagle3", "model": str(draft), "num_speculative_tokens": num_speculative_tokens}


def offline_engine(vllm_python: str, target: Path, log_path: Path, *, draft: Path | None = None, k: int = 3) -> VllmEngine:
    """A float32 greedy-ready engine on ``target`` (with the EAGLE-3 ``draft`` if given); not started."""
    arguments: dict[str, Any] = {"model": str(target), "dtype": "float32", "max_model_len": MAX_MODEL_LEN, "seed": 0}
    if draft is not None:
        arguments["speculative_config"] = speculative_config(draft, k)
    return VllmEngine(vllm_python, arguments | FAST_ENGINE_ARGS, log_path=log_path, env=FAST_ENGINE_ENV, ready_timeout_s=300)
