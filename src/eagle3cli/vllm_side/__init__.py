"""Scripts that run under vLLM's own interpreter (vLLM pins its own torch and transformers, so
it lives in another venv): they import the standard library, vLLM, torch and safetensors,
never ``eagle3cli``. :class:`eagle3cli.vllm_process.VllmWorker` starts one of the workers
with this folder first on ``sys.path`` and talks JSON lines with it
(:mod:`eagle3_worker_protocol`).

- ``bench_worker.py``: ``bench --backend vllm`` (generation with vLLM's speculative decoding).
- ``dump_worker.py``: ``dump-hidden --backend vllm`` (states through ``extract_hidden_states``),
  with ``eagle3_states_connector.py`` imported by vLLM's engine.
"""
