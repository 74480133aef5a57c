"""Tokens/s of ``eagle3 sample`` against a plain concurrent client on the same vLLM server.

Both send the same single-turn prompts with the same settings (temperature 0, so the answers
and their token counts are identical) at the same concurrency; the runs alternate
(plain, sample, plain, sample, ...) so server warm-up and caching favour neither. The goal is
``sample`` at >= 90% of the plain client's tokens/s.

    # an existing server
    python benchmarks/sample_throughput.py --server-url http://127.0.0.1:6000
    # or start one (CPU build: float32, eager)
    python benchmarks/sample_throughput.py --target-model DIR --vllm-python .venv-vllm/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from eagle3cli.config import SampleConfig, ServeConfig
from eagle3cli.serving.launcher import ServerGroup, plan_servers
from eagle3cli.serving.pool import choose_model, find_servers
from eagle3cli.serving.sampler import sample

TOPICS = ["the sea", "speculative decoding", "Paris", "a quick brown fox", "prime numbers", "tea", "trains", "rain"]


def prompts(num_records: int) -> list[str]:
    return [f"Write a few sentences about {TOPICS[index % len(TOPICS)]} (request {index})." for index in range(num_records)]


async def plain_client(url: str, model: str, questions: list[str], max_tokens: int, concurrency: int) -> float:
    """Tokens/s of a bare asyncio + httpx client: a semaphore, one POST per prompt, no bookkeeping."""
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:

        async def one(question: str) -> int:
            async with slots:
                body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                        "temperature": 0.0, "top_p": 1.0, "chat_template_kwargs": {"enable_thinking": False}}
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                return response.json()["usage"]["completion_tokens"]

        started = time.monotonic()
        tokens = await asyncio.gather(*(one(question) for question in questions))
        return sum(tokens) / (time.monotonic() - started)


def eagle3_sample(url: str, questions: list[str], max_tokens: int, concurrency: int, workdir: Path, run: int) -> float:
    data = workdir / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "conversations": [{"from": "human", "value": q}]}) + "\n"
                            for i, q in enumerate(questions)))
    config = SampleConfig(data=str(data), output_dir=workdir / f"run-{run}", server_urls=[url],
                          max_tokens=max_tokens, concurrency=concurrency, temperature=0.0)
    return sample(config).tokens_per_s


async def served_model(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return choose_model(await find_servers(client, [url], "", 0, None), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", help="An OpenAI-compatible server to use (else one is started).")
    parser.add_argument("--target-model", help="Model to serve when no --server-url is given.")
    parser.add_argument("--vllm-python", default=os.environ.get("EAGLE3_VLLM_PYTHON", ".venv-vllm/bin/python"))
    parser.add_argument("--port", type=int, default=6100)
    parser.add_argument("--num-records", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.server_url is None and args.target_model is None:
        parser.error("give --server-url or --target-model")

    group = None
    url = args.server_url
    if url is None:
        config = ServeConfig(target_model=args.target_model, base_port=args.port, dtype="float32", max_model_len=2048,
                             log_dir=tempfile.mkdtemp(prefix="vllm-bench-logs-"), extra_args=["--enforce-eager"])
        group = ServerGroup(plan_servers(config, args.vllm_python, []), config.host, Path(config.log_dir))
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        group.start()
        group.wait_ready(600)
        url = f"http://127.0.0.1:{args.port}"
    try:
        questions = prompts(args.num_records)
        model = asyncio.run(served_model(url))
        asyncio.run(plain_client(url, model, questions[:8], args.max_tokens, 8))  # warm-up
        plain, sampled = [], []
        with tempfile.TemporaryDirectory() as workdir:
            for run in range(args.repeats):
                plain.append(asyncio.run(plain_client(url, model, questions, args.max_tokens, args.concurrency)))
                sampled.append(eagle3_sample(url, questions, args.max_tokens, args.concurrency, Path(workdir), run))
                print(f"run {run}: plain {plain[-1]:.1f} tok/s, eagle3 sample {sampled[-1]:.1f} tok/s", flush=True)
        ratio = statistics.mean(sampled) / statistics.mean(plain)
        print(f"eagle3 sample reaches {ratio:.1%} of the plain client's tokens/s "
              f"({args.num_records} prompts, {args.max_tokens} max tokens, concurrency {args.concurrency}); goal >= 90%")
    finally:
        if group is not None:
            group.stop()


if __name__ == "__main__":
    main()
