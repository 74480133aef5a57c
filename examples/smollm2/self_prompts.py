"""Prompts written by the target itself: an instruct model, given its chat template up to where
a user's words begin, writes a user turn (the idea of Magpie, Xu et al. 2024).

    python examples/smollm2/self_prompts.py --server-url http://127.0.0.1:6124 --target runs/target \\
        --output runs/self/prompts.jsonl --num-prompts 4000 --exclude runs/corpus/prompts.jsonl

The prompt corpus of ``build_prompt_corpus.py`` is mostly written from templates; these prompts
come from what the target thinks users ask, in the target's own distribution. Each request sends
the rendered template prefix (system turn included, as the template writes it) to the server's
``/v1/completions`` with its own seed — one completion per request: vLLM gives all ``n``
completions of a seeded request the same seed, hence the same text — and keeps completions that
ended on the end-of-turn token.
Kept are user turns of 3 words or more, once each (normalised text), that duplicate no benchmark
question (``decontamination``: the bundled benchmark files) and no prompt of ``--exclude``.
Records are ``{"id": "self-NNNNN", "conversations": [{"role": "user", "content": ...}]}``, the
format ``eagle3 sample`` reads; ``<output>.report.json`` counts what was dropped and why. The
output is written atomically at the end; the same server, seed and settings give the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import httpx
from decontamination import BenchIndex, bench_files, load_bench_index, normalise
from rich.progress import Progress

from eagle3cli.bench.questions import bundled_questions_dir
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write_json, atomic_write_text
from eagle3cli.target.hub import load_tokenizer

MARKER = "\x00USER\x00"


def user_prefix(tokenizer) -> tuple[str, str]:
    """The chat template rendered up to where a user turn's text begins, and the text that ends a turn."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": MARKER}], tokenize=False)
    if MARKER not in rendered:
        raise Eagle3Error("the chat template does not show the user's text", hint="use a target with a chat template")
    prefix, suffix = rendered.split(MARKER, 1)
    end = suffix.strip().split("\n")[0] or tokenizer.eos_token
    return prefix, end


def user_texts(path: Path) -> set[str]:
    """Normalised user turns of a records file (prompts already in another corpus)."""
    texts = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.update(normalise(turn["content"]) for turn in json.loads(line)["conversations"] if turn["role"] == "user")
    return texts


def write_prompts(kept: list[dict], counts: Counter, args: argparse.Namespace) -> None:
    """``kept`` to ``args.output`` and the settings and counts to ``<output>.report.json``, each
    atomically; one summary line to stdout."""
    atomic_write_text(args.output, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in kept))
    atomic_write_json(args.output.with_name(args.output.name + ".report.json"), {"settings": {k: str(v) for k, v in vars(args).items()}, "counts": dict(counts)})
    print(f"{len(kept)} prompts → {args.output}; " + ", ".join(f"{name} {count}" for name, count in counts.items()))


async def complete(client: httpx.AsyncClient, model: str, prefix: str, end: str, args: argparse.Namespace, seed: int) -> list[dict]:
    body = {"model": model, "prompt": prefix, "max_tokens": args.max_tokens, "temperature": args.temperature,
            "top_p": args.top_p, "seed": seed, "stop": [end]}
    response = await client.post("/v1/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"]


async def completions(args: argparse.Namespace, prefix: str, end: str) -> list[dict]:
    """One completion per request, in request order (so the output does not depend on timing)."""
    async with httpx.AsyncClient(base_url=args.server_url, timeout=600) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        semaphore = asyncio.Semaphore(args.concurrency)

        async def one(request: int) -> tuple[int, list[dict]]:
            async with semaphore:
                return request, await complete(client, model, prefix, end, args, args.seed * 1_000_003 + request)

        results: dict[int, list[dict]] = {}
        with Progress() as progress:
            task = progress.add_task("self prompts", total=args.max_requests)
            for finished in asyncio.as_completed([one(request) for request in range(args.max_requests)]):
                request, choices = await finished
                results[request] = choices
                progress.advance(task)
    return [choice for request in sorted(results) for choice in results[request]]


def select(choices: list[dict], index: BenchIndex, seen: set[str], limit: int) -> tuple[list[dict], Counter]:
    """The records kept from ``choices`` (at most ``limit``) and why the others were dropped."""
    counts: Counter = Counter()
    kept: list[dict] = []
    for choice in choices:
        counts["generated"] += 1
        text = choice["text"].strip()
        key = normalise(text)
        if choice.get("finish_reason") != "stop":
            counts["unfinished"] += 1
        elif len(key.split()) < 3:
            counts["under 3 words"] += 1
        elif key in seen:
            counts["repeats"] += 1
        elif index.find(text) is not None:
            counts["benchmark duplicates"] += 1
        elif len(kept) < limit:
            seen.add(key)
            kept.append({"id": f"self-{len(kept):05d}", "conversations": [{"role": "user", "content": text}]})
        else:
            counts["over the limit"] += 1
    counts["kept"] = len(kept)
    return kept, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", required=True, help="an OpenAI-compatible server running the target (eagle3 serve)")
    parser.add_argument("--target", type=Path, required=True, help="the target's directory (its tokenizer's chat template)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--num-prompts", type=int, default=4000, help="most prompts kept")
    parser.add_argument("--max-requests", type=int, default=None, help="requests sent, one completion each (default: 2 x num-prompts)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=160, help="longest user turn, in tokens")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="records files whose user turns are not repeated")
    parser.add_argument("--bench-dir", type=Path, default=bundled_questions_dir())
    args = parser.parse_args()
    if args.max_requests is None:
        args.max_requests = 2 * args.num_prompts
    try:
        prefix, end = user_prefix(load_tokenizer(str(args.target)))
        index = load_bench_index(bench_files(args.bench_dir))
        seen = set().union(*(user_texts(path) for path in args.exclude))
        kept, counts = select(asyncio.run(completions(args, prefix, end)), index, seen, args.num_prompts)
    except (Eagle3Error, httpx.HTTPError, OSError) as error:
        sys.exit(f"error: {error}")
    write_prompts(kept, counts, args)


if __name__ == "__main__":
    main()
