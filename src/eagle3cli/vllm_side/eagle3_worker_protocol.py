"""The JSON-lines protocol every worker here speaks with its parent (vLLM-side, stdlib only).

The first line from the parent is ``{"engine": {...}}`` (``vllm.LLM`` keyword arguments), the
reply ``{"ready": true, "vllm_version": ...}``; then one reply line per request line, until EOF
on stdin. A failure is replied as ``{"error": "..."}`` (the traceback goes to stderr, the log)
and the worker exits with code 1. vLLM's own output goes to stderr too.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO


def reply_channel() -> TextIO:
    """The original stdout for replies; fd 1 (inherited by vLLM's processes) becomes stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def run_worker(make_engine: Callable[[dict[str, Any]], Any], answer: Callable[[Any, dict[str, Any]], dict[str, Any]]) -> int:
    """Serve the protocol on stdin/stdout: ``make_engine(engine_args)`` once, then
    ``answer(engine, request)`` per request line. Returns the exit code."""
    replies = reply_channel()
    try:
        import vllm

        engine = make_engine(json.loads(sys.stdin.readline())["engine"])
        replies.write(json.dumps({"ready": True, "vllm_version": vllm.__version__}) + "\n")
        for line in sys.stdin:
            if line.strip():
                replies.write(json.dumps(answer(engine, json.loads(line))) + "\n")
    except Exception as error:  # reported to the parent, which raises it as an Eagle3Error
        traceback.print_exc()
        replies.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        return 1
    return 0
