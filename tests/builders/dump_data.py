"""Helpers of the dump-hidden tests: chat data of many records, configs per family, and
the plain-forward reference the dumped states are compared with."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from eagle3cli.config import DumpHiddenConfig

# The chat template each tiny target is used with (see model_fixtures.py).
TEMPLATES = {"qwen3": "qwen3", "llama": "auto", "hunyuan_v1_dense": "hunyuan"}
WORDS = (
    "draft target token accept verify tree cache layer hidden state model answer question "
    "speculative decoding fast small large forward pass every step output greedy sample"
).split()


def template_of(target_dir: Path) -> str:
    """The chat template of a tiny target directory, from its ``model_type``."""
    model_type = json.loads((Path(target_dir) / "config.json").read_text())["model_type"]
    return TEMPLATES[model_type]


def sentence(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(num_words)).capitalize() + "."


def write_chat_records(path: Path, num_records: int, *, seed: int = 0) -> Path:
    """``num_records`` ShareGPT records of varied lengths (some two-exchange), ids ``rec-i``."""
    rng = random.Random(seed)
    with Path(path).open("w", encoding="utf-8") as handle:
        for index in range(num_records):
            turns = []
            for _ in range(1 + index % 2):
                turns.append({"from": "human", "value": sentence(rng, rng.randint(3, 12))})
                turns.append({"from": "gpt", "value": sentence(rng, rng.randint(4, 30))})
            handle.write(json.dumps({"id": f"rec-{index}", "conversations": turns}) + "\n")
    return Path(path)


def dump_config(data: Path, target_dir: Path, output_dir: Path, **overrides: Any) -> DumpHiddenConfig:
    """A float32 CPU dump config for a tiny target (its family's template)."""
    values: dict[str, Any] = dict(
        data=str(data),
        target_model=str(target_dir),
        output_dir=str(output_dir),
        chat_template=template_of(target_dir),
        dtype="float32",
        device="cpu",
        shard_size=3,
        draft_vocab_size=64,
    )
    values.update(overrides)
    return DumpHiddenConfig(**values)


def reference_states(model: torch.nn.Module, input_ids: torch.Tensor, aux_layer_ids: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(aux_hidden [T, 3H], last_hidden [T, H])`` from a plain ``output_hidden_states`` forward.

    HF's ``hidden_states[k]`` is the input of layer ``k``; its last entry is after the final norm.
    """
    with torch.inference_mode():
        output = model(input_ids[None].long(), output_hidden_states=True)
    aux_hidden = torch.cat([output.hidden_states[k][0] for k in aux_layer_ids], dim=-1)
    return aux_hidden, output.hidden_states[-1][0]
