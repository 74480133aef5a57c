"""What `train offline --verify-shards` costs: sha256 throughput over dump shards on this machine,
and the fraction of a training epoch it takes for a given draft training rate.

Both the hashing time and the epoch time scale with the dump's tokens, so the fraction is
bytes/token x training tokens/s / hash bytes/s, whatever the dump's size. The defaults in
``eagle3cli.training.offline`` (HASH_BYTES_PER_S, TRAIN_TOKENS_PER_S) come from this script
and from the training throughputs in RESULTS.md.

    python benchmarks/verify_shards.py                      # a synthetic 512 MB shard
    python benchmarks/verify_shards.py --dump runs/hidden   # a real dump's shards
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from eagle3cli.dump.shard_file import sha256_file


def hash_rates(paths: list[Path], rounds: int) -> list[float]:
    """Bytes per second of ``sha256_file`` over ``paths``, one figure per round (files in page cache after round 1)."""
    total = sum(path.stat().st_size for path in paths)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for path in paths:
            sha256_file(path)
        rates.append(total / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", type=Path, help="a dump-hidden output folder (default: a synthetic file)")
    parser.add_argument("--size-mb", type=int, default=512, help="size of the synthetic file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bytes-per-token", type=float, nargs="+", default=[4 * 576 * 2 + 5, 4 * 4096 * 2 + 5],
                        help="dump bytes per token to report (default: SmolLM2 and an 8B target, bf16)")
    parser.add_argument("--train-tokens-per-s", type=float, nargs="+", default=[370.0, 20_000.0],
                        help="draft training rates to report (default: 2 CPU cores / SmolLM2, one H200 / 8B draft)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.dump is not None:
            paths = sorted((args.dump / "shards").glob("shard-*.safetensors"))
        else:
            paths = [Path(scratch) / "synthetic.bin"]
            paths[0].write_bytes(os.urandom(args.size_mb << 20))
        rates = hash_rates(paths, args.rounds)
    print(f"sha256 over {len(paths)} file(s): median {statistics.median(rates) / 1e9:.2f} GB/s "
          f"(min {min(rates) / 1e9:.2f}, max {max(rates) / 1e9:.2f}, {args.rounds} rounds)")
    rate = statistics.median(rates)
    for bytes_per_token in args.bytes_per_token:
        for train_rate in args.train_tokens_per_s:
            fraction = bytes_per_token * train_rate / rate
            print(f"  {bytes_per_token:8.0f} B/token, training {train_rate:8.0f} tok/s: verifying costs {fraction:7.1%} of an epoch")


if __name__ == "__main__":
    main()
