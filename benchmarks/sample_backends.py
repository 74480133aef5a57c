"""Regeneration tokens/s of ``eagle3 sample`` on one machine: the vLLM backend (one server, the
CPU settings that measured fastest) against the in-process ``--backend hf`` at several batch
sizes, on the same records with the same settings (temperature 0, max tokens).

Each configuration runs ``--repeats`` times, alternating; the vLLM server is started once
(its start-up is not counted) and stays up between its runs. The figure is generated tokens
(``summary.tokens_per_s``) per second of the whole run: prompt prefill and multi-turn
history included, as a user's regeneration pays them.

    python benchmarks/sample_backends.py --target-model runs/smollm2-quickstart/target \\
        --data runs/smollm2-quickstart/corpus/prompts.jsonl --num-records 96 --max-tokens 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from eagle3cli.config import SampleConfig, ServeConfig
from eagle3cli.serving.launcher import ServerGroup, plan_servers
from eagle3cli.serving.sampler import sample


def run_sample(args: argparse.Namespace, output_dir: Path, **backend: object) -> float:
    config = SampleConfig(data=str(args.data), output_dir=output_dir, num_samples=args.num_records,
                          max_tokens=args.max_tokens, temperature=0.0, **backend)
    summary = sample(config)
    return summary.tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="chat records (e.g. the corpus builder's prompts.jsonl)")
    parser.add_argument("--num-records", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="64,128", help="hf backend batch sizes, comma-separated")
    parser.add_argument("--concurrency", type=int, default=64, help="vLLM backend: records in flight")
    parser.add_argument("--vllm-python", default=os.environ.get("EAGLE3_VLLM_PYTHON", ".venv-vllm/bin/python"))
    parser.add_argument("--no-vllm", action="store_true", help="measure the hf backend only")
    parser.add_argument("--port", type=int, default=6100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    group = None
    if not args.no_vllm:
        config = ServeConfig(target_model=str(args.target_model), base_port=args.port, dtype="float32",
                             max_model_len=4096, log_dir=tempfile.mkdtemp(prefix="vllm-bench-logs-"))
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
        group = ServerGroup(plan_servers(config, args.vllm_python, []), config.host, Path(config.log_dir))
        group.start()
        group.wait_ready(900)
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for repeat in range(args.repeats):
                if group is not None:
                    url = f"http://127.0.0.1:{args.port}"
                    rate = run_sample(args, Path(workdir) / f"vllm-{repeat}", server_urls=[url], concurrency=args.concurrency)
                    results.setdefault(f"vllm (1 server, float32, concurrency {args.concurrency})", []).append(rate)
                    print(f"round {repeat}: vllm {rate:.1f} tok/s", flush=True)
                for batch_size in (int(value) for value in args.batch_sizes.split(",")):
                    rate = run_sample(args, Path(workdir) / f"hf-{batch_size}-{repeat}", backend="hf",
                                      target_model=str(args.target_model), batch_size=batch_size)
                    results.setdefault(f"hf (in process, dtype auto, batch {batch_size})", []).append(rate)
                    print(f"round {repeat}: hf batch {batch_size} {rate:.1f} tok/s", flush=True)
    finally:
        if group is not None:
            group.stop()
    print(f"\n{args.num_records} records of {args.data}, max {args.max_tokens} tokens, temperature 0")
    for name, rates in results.items():
        spread = f"{min(rates):.1f}-{max(rates):.1f}" if len(rates) > 1 else f"{rates[0]:.1f}"
        print(f"{name}: mean {statistics.mean(rates):.1f} tok/s (runs {spread})")


if __name__ == "__main__":
    main()
