"""vLLM side of ``dump-hidden --backend vllm``, imported by vLLM's engine (``kv_connector_module_path``).

vLLM's ``extract_hidden_states`` method keeps the requested layers' states of every token in a
cache laid out like a KV cache, and its ``ExampleHiddenStatesConnector`` writes each finished
request's states to ``<shared_storage_path>/<request id>.safetensors`` (``hidden_states``
``[tokens, layers, hidden]``, ``token_ids``), guarded by an exclusive lock on ``<file>.lock``
until the file is whole. Its write path assumes CUDA (a pinned host buffer, a copy stream and
an event it polls), which fails on vLLM's CPU build (measured on 0.32: ``pin_memory`` raises).
:class:`Eagle3HiddenStatesConnector` keeps the parent's behaviour on accelerators and, when
the cache lives in host memory, gathers the request's slots and writes the file at once.

Imports vLLM, torch and safetensors only (it runs under vLLM's interpreter).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors.torch import save_file
from vllm.distributed.kv_transfer.kv_connector.v1.example_hidden_states_connector import (
    ExampleHiddenStatesConnector,
    extract_from_kv_cache,
)


class WrittenAlready:
    """What the parent polls for a request's device-to-host copy: on a CPU the file is written
    before the poll, so the copy is always complete."""

    def query(self) -> bool:
        return True


class Eagle3HiddenStatesConnector(ExampleHiddenStatesConnector):
    """``ExampleHiddenStatesConnector`` that also writes from a host-memory cache (vLLM on CPU)."""

    def _submit_async_write(self, pending: Any) -> None:
        cache = self._kv_cache
        if cache is None or cache.device.type != "cpu":
            super()._submit_async_write(pending)
            return
        if not self._is_tp_rank_zero:
            return
        block_size = self._block_size
        blocks = torch.tensor(pending.block_ids, dtype=torch.long)
        slots = (blocks[:, None] * block_size + torch.arange(block_size)[None, :]).flatten()
        states = extract_from_kv_cache(cache, slots, pending.token_ids.shape[0])
        os.makedirs(os.path.dirname(pending.filename), exist_ok=True)
        lock = self._lock_fds.pop(pending.req_id, None)
        try:
            save_file({"hidden_states": states.contiguous(), "token_ids": pending.token_ids.clone()}, pending.filename)
        finally:
            if lock is not None:
                os.close(lock)  # readers blocked on the lock may now read the whole file
        self._req_copy_events[pending.req_id] = WrittenAlready()
