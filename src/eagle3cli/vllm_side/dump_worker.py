"""The vLLM side of ``dump-hidden --backend vllm``: one offline ``vllm.LLM`` that hands out
the target's hidden states through the ``extract_hidden_states`` speculative method.

Runs under the vLLM interpreter (see :mod:`eagle3_worker_protocol`: the engine line first,
whose arguments name the speculative and KV-transfer configs; vLLM's engine imports
:mod:`eagle3_states_connector` from this folder). Requests: ``{"prompts": [[token ids], ...]}``,
each sample whole (prompt and answer) as one prompt, one token generated; replies:
``{"paths": [...]}``, the states file of each prompt in order, each whole (its writer's lock
released) when the reply is sent.
"""

from __future__ import annotations

import fcntl
import sys
from typing import Any

from eagle3_worker_protocol import run_worker


MAX_IDLE_STEPS = 1000


def wait_until_written(llm: Any, path: str) -> None:
    """Return once the states file at ``path`` is whole: its writer holds an exclusive lock on
    ``path + ".lock"`` until then. The connector writes a request's file one engine step after
    the request finished; an engine in another process steps by itself, one in this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) only when stepped, so it is stepped here."""
    from vllm.v1.engine.core_client import InprocClient

    with open(path + ".lock") as lock:
        if not isinstance(llm.llm_engine.engine_core, InprocClient):
            fcntl.flock(lock, fcntl.LOCK_SH)
            return
        for _ in range(MAX_IDLE_STEPS):
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                llm.llm_engine.step()
    raise RuntimeError(f"{path} was not written after {MAX_IDLE_STEPS} engine steps")


def make_engine(engine_args: dict[str, Any]) -> Any:
    import vllm

    return vllm.LLM(**engine_args)


def answer(llm: Any, request: dict[str, Any]) -> dict[str, Any]:
    """One forward per prompt (and one generated token); the states file of each."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": prompt} for prompt in request["prompts"]], params, use_tqdm=False)
    paths = []
    for output in outputs:
        path = (output.kv_transfer_params or {}).get("hidden_states_path")
        if path is None:
            raise RuntimeError(f"vLLM returned no hidden_states_path for request {output.request_id}")
        wait_until_written(llm, path)
        paths.append(path)
    return {"paths": paths}


if __name__ == "__main__":
    sys.exit(run_worker(make_engine, answer))
