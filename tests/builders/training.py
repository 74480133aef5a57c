"""Tiny drafts and synthetic target batches for the training tests (no target model needed)."""

from __future__ import annotations

import torch

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import build_vocab_map
from eagle3cli.training.step import TargetBatch

VOCAB_SIZE = 48
DRAFT_VOCAB_SIZE = 40
TARGET_HIDDEN = 24


def tiny_draft_config(**overrides) -> DraftConfig:
    fields = dict(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=256,
        vocab_size=VOCAB_SIZE,
        draft_vocab_size=DRAFT_VOCAB_SIZE,
        target_hidden_size=TARGET_HIDDEN,
        aux_layer_ids=(1, 2, 3),
    )
    return DraftConfig(**{**fields, **overrides})


def tiny_draft(seed: int = 0, dtype: torch.dtype = torch.float32) -> Eagle3DraftModel:
    """A random draft whose vocab map keeps the first DRAFT_VOCAB_SIZE - 1 ids and the last id."""
    torch.manual_seed(seed)
    draft = Eagle3DraftModel(tiny_draft_config())
    with torch.no_grad():
        draft.embed_tokens.weight.normal_()
    counts = torch.zeros(VOCAB_SIZE, dtype=torch.int64)
    counts[: DRAFT_VOCAB_SIZE - 1] = 10
    counts[-1] = 10
    vocab_map = build_vocab_map(counts, DRAFT_VOCAB_SIZE)
    draft.set_vocab_map(vocab_map.d2t, vocab_map.t2d)
    return draft.to(dtype)


def random_sample(length: int, seed: int, dtype: torch.dtype = torch.float32) -> TargetBatch:
    """One unpadded sample: random ids, a loss mask on the second half, random target states."""
    generator = torch.Generator().manual_seed(seed)
    loss_mask = torch.zeros(1, length, dtype=torch.bool)
    loss_mask[:, length // 3 :] = True
    return TargetBatch(
        input_ids=torch.randint(0, VOCAB_SIZE, (1, length), generator=generator),
        attention_mask=torch.ones(1, length, dtype=torch.bool),
        loss_mask=loss_mask,
        aux_hidden=torch.randn(1, length, 3 * TARGET_HIDDEN, generator=generator, dtype=dtype),
        last_hidden=torch.randn(1, length, TARGET_HIDDEN, generator=generator, dtype=dtype),
    )


def pad_batch(samples: list[TargetBatch], length: int, seed: int = 123) -> TargetBatch:
    """Right-pad samples to ``length`` with random junk (ids, states) and mask 0, then stack."""
    generator = torch.Generator().manual_seed(seed)
    padded = []
    for sample in samples:
        extra = length - sample.input_ids.shape[1]
        junk = random_sample(extra, int(torch.randint(0, 10**6, (1,), generator=generator)), sample.aux_hidden.dtype)
        padded.append(
            TargetBatch(
                input_ids=torch.cat([sample.input_ids, junk.input_ids], 1),
                attention_mask=torch.cat([sample.attention_mask, torch.zeros(1, extra, dtype=torch.bool)], 1),
                loss_mask=torch.cat([sample.loss_mask, torch.zeros(1, extra, dtype=torch.bool)], 1),
                aux_hidden=torch.cat([sample.aux_hidden, junk.aux_hidden], 1),
                last_hidden=torch.cat([sample.last_hidden, junk.last_hidden], 1),
            )
        )
    fields = ("input_ids", "attention_mask", "loss_mask", "aux_hidden", "last_hidden")
    return TargetBatch(**{name: torch.cat([getattr(s, name) for s in padded]) for name in fields})


CYCLE = ("red", "blue", "green", "sea", "fox", "dog", "sun", "day")


def cycle_conversation(index: int, start: int, length: int = 12) -> dict:
    """A conversation whose answer is a deterministic function of the prompt: the word cycle
    from the named word on (each word fixes the next, so a tiny model learns it quickly)."""
    answer = " ".join(CYCLE[(start + step) % len(CYCLE)] for step in range(length))
    return {
        "id": f"cycle-{index}",
        "conversations": [
            {"role": "user", "content": f"Continue the cycle from {CYCLE[start]}."},
            {"role": "assistant", "content": answer},
        ],
    }


def write_cycle_data(path, num_records: int, *, first_index: int = 0) -> None:
    import json

    with open(path, "w", encoding="utf-8") as handle:
        for index in range(first_index, first_index + num_records):
            handle.write(json.dumps(cycle_conversation(index, index % len(CYCLE), 10 + index % 5)) + "\n")


def fit_target_to_cycle(model, tokenizer, *, num_steps: int = 80, seed: int = 0) -> None:
    """A few Adam steps of language modelling on cycle conversations, so the target's own
    predictions are the cycle (a random target's are near-uniform: nothing to learn from)."""
    from eagle3cli.chat_template import tokenize_conversation
    from eagle3cli.data.records import Conversation, Turn

    rows = []
    for index in range(len(CYCLE)):
        record = cycle_conversation(index, index, 10)
        conversation = Conversation(record["id"], tuple(Turn(t["role"], t["content"]) for t in record["conversations"]))
        rows.append(tokenize_conversation(tokenizer, conversation, template="qwen3", max_length=256).input_ids)
    length = max(len(row) for row in rows)
    input_ids = torch.tensor([row + [row[-1]] * (length - len(row)) for row in rows])
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(num_steps):
        loss = model(input_ids=input_ids, labels=input_ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def cycle_target_dir(tmp_path_factory) -> "Path":
    """A tiny qwen3 target fitted to the cycle data, saved once per test session."""
    from pathlib import Path


    from builders.models import build_tiny_target
    from builders.tokenizers import build_qwen3_tokenizer

    directory = Path(tmp_path_factory.getbasetemp()) / "cycle_target"
    if (directory / "model.safetensors").is_file():
        return directory
    tokenizer = build_qwen3_tokenizer()
    model = build_tiny_target("qwen3", len(tokenizer))
    fit_target_to_cycle(model, tokenizer)
    staging = directory.with_name("cycle_target.tmp")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(directory)
    return directory


def torchrun_eagle3(args: list[str], num_processes: int = 2) -> str:
    """``eagle3 ARGS`` in ``num_processes`` CPU processes (torchrun, gloo, one thread each);
    asserts it succeeded and returns its output."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(num_processes),
               "-m", "eagle3cli", *args]
    result = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def single_thread_torch():
    """Fixture body: one intra-op thread. Tiny models run several times faster that way than
    with two threads spinning against each other (and against other processes)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
