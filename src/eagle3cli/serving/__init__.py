"""Serving wing: start vLLM OpenAI servers and regenerate chat data through them.

A leaf of the project (HTTP and subprocesses): nothing in the model, training or decoder
path imports it.

- :mod:`~eagle3cli.serving.launcher` — ``eagle3 serve``: one vLLM server per GPU group.
- :mod:`~eagle3cli.serving.pool` — the servers a run talks to: least-outstanding-work
  choice, dead servers taken out of rotation and probed back in.
- :mod:`~eagle3cli.serving.client` — one chat completion with retries, backoff and jitter.
- :mod:`~eagle3cli.serving.regenerate` — replay a conversation turn by turn.
- :mod:`~eagle3cli.serving.shards` — shards by input index range, sidecars, exact resume.
- :mod:`~eagle3cli.serving.sampler` — ``eagle3 sample``: all of the above over a dataset.
"""
