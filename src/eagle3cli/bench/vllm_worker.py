"""The vLLM side of ``eagle3 bench --backend vllm``: one offline ``vllm.LLM`` answering requests.

Runs as a script under the vLLM interpreter (vLLM pins its own torch and transformers), so it
imports only the standard library and vLLM — nothing from ``eagle3cli``. Protocol, one JSON
object per line:

1. stdin: ``{"engine": {...}}`` — keyword arguments of ``vllm.LLM`` (``model``, ``dtype``,
   ``speculative_config``, ...). stdout: ``{"ready": true, "vllm_version": ...}``.
2. stdin: ``{"prompt_token_ids": [...], "sampling": {...}}`` — ``SamplingParams`` fields.
   stdout: ``{"token_ids", "finish_reason", "wall_time", "spec"}``, where ``spec`` holds what
   this request added to vLLM's speculative-decoding counters (``num_drafts``,
   ``num_draft_tokens``, ``num_accepted_tokens``, ``accepted_per_position``).
3. EOF on stdin: exit. Any failure: ``{"error": "..."}`` and exit code 1.

Replies go to the original stdout; everything vLLM prints is sent to stderr (the log).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, TextIO

COUNTERS = {
    "vllm:spec_decode_num_drafts": "num_drafts",
    "vllm:spec_decode_num_draft_tokens": "num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "num_accepted_tokens",
}
PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos"


def reply_channel() -> TextIO:
    """The original stdout for replies; fd 1 (inherited by vLLM's engine process) becomes stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


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


def serve(requests: TextIO, replies: TextIO) -> None:
    import vllm

    engine = json.loads(requests.readline())["engine"]
    llm = vllm.LLM(**engine, disable_log_stats=False)  # metrics need stats logging on
    replies.write(json.dumps({"ready": True, "vllm_version": vllm.__version__}) + "\n")
    for line in requests:
        if line.strip():
            replies.write(json.dumps(answer(llm, json.loads(line))) + "\n")


def main() -> int:
    replies = reply_channel()
    try:
        serve(sys.stdin, replies)
    except Exception as error:  # reported to the parent, which raises it as an Eagle3Error
        traceback.print_exc()
        replies.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
