"""The vLLM side of ``eagle3 bench --backend vllm``: one offline ``vllm.LLM`` answering requests.

Runs under the vLLM interpreter (see :mod:`eagle3_worker_protocol`: the engine line first).
Requests: ``{"prompt_token_ids": [...], "sampling": {...}}`` (``SamplingParams`` fields);
replies: ``{"token_ids", "finish_reason", "wall_time", "spec"}``, where ``spec`` holds what
this request added to vLLM's speculative-decoding counters (``num_drafts``,
``num_draft_tokens``, ``num_accepted_tokens``, ``accepted_per_position``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from eagle3_worker_protocol import run_worker

COUNTERS = {
    "vllm:spec_decode_num_drafts": "num_drafts",
    "vllm:spec_decode_num_draft_tokens": "num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "num_accepted_tokens",
}
PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos"


def spec_counters(llm: Any) -> dict[str, Any]:
    """vLLM's cumulative speculative-decoding counters, summed over engines (zeros without a draft)."""
    from vllm.v1.metrics.reader import Counter, Vector

    counters: dict[str, Any] = dict.fromkeys(COUNTERS.values(), 0)
    counters["accepted_per_position"] = []
    for metric in llm.get_metrics():
        if isinstance(metric, Counter) and metric.name in COUNTERS:
            counters[COUNTERS[metric.name]] += metric.value
        elif isinstance(metric, Vector) and metric.name == PER_POSITION:
            per_position = counters["accepted_per_position"]
            per_position += [0] * (len(metric.values) - len(per_position))
            for position, value in enumerate(metric.values):
                per_position[position] += value
    return counters


def counter_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    delta = {name: after[name] - before[name] for name in COUNTERS.values()}
    previous = before["accepted_per_position"] + [0] * len(after["accepted_per_position"])
    delta["accepted_per_position"] = [value - previous[i] for i, value in enumerate(after["accepted_per_position"])]
    return delta


def answer(llm: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Generate for one prompt; time it and attribute the counter increase to it."""
    from vllm import SamplingParams

    params = SamplingParams(**request["sampling"])
    before = spec_counters(llm)
    started = time.perf_counter()
    output = llm.generate([{"prompt_token_ids": request["prompt_token_ids"]}], params, use_tqdm=False)[0]
    wall_time = time.perf_counter() - started
    completion = output.outputs[0]
    return {
        "token_ids": list(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "wall_time": wall_time,
        "spec": counter_delta(spec_counters(llm), before),
    }


def make_engine(engine_args: dict[str, Any]) -> Any:
    import vllm

    return vllm.LLM(**engine_args, disable_log_stats=False)  # metrics need stats logging on


if __name__ == "__main__":
    sys.exit(run_worker(make_engine, answer))
