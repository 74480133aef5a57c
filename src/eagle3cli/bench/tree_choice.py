"""``--total-token/--depth/--top-k auto``: pick the draft tree by measuring it.

What tree pays depends on the machine (how much more a verify of N nodes costs than one
token, what a draft level costs) and on the draft (how deep it is accepted). EAGLE's own
``total_token=-1`` times target forwards of a few sizes; here each candidate tree decodes the
first turn of the warm-up question for real and the fastest (tokens/s, τ and step cost in one
figure) wins. The choice is cached per target, draft, device, dtype and temperature
(``$EAGLE3_CACHE_DIR``, else ``~/.cache/eagle3``), so later runs start without calibrating.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eagle3cli.config import BenchConfig
from eagle3cli.fileio import atomic_write_json

Tree = tuple[int, int, int]  # total_token, depth, top_k (EAGLE's meaning)
# Candidates: small trees for CPUs (a verify of 4 / 16 / 60 nodes costs ~1.3 / 1.7 / 3.1
# one-token forwards there, see RESULTS.md "Column-major weights for CPU decoding"),
# EAGLE-sized ones for GPUs.
CPU_TREES: tuple[Tree, ...] = ((4, 2, 1), (8, 3, 2), (16, 3, 4), (32, 4, 8), (60, 5, 10))
GPU_TREES: tuple[Tree, ...] = ((32, 4, 8), (48, 5, 8), (60, 5, 10), (80, 6, 10))
CALIBRATION_TOKENS = 64
CACHE_FILE = "auto_trees.json"


@dataclass(frozen=True)
class TreeChoice:
    """The chosen tree and every candidate's measured tokens/s (or where it came from)."""

    tree: Tree
    tokens_per_s: dict[str, float]
    cached: bool

    def describe(self) -> str:
        chosen = "/".join(map(str, self.tree))
        if self.cached:
            return f"auto tree {chosen} (total/depth/top-k), measured earlier on this machine ({cache_path()})"
        measured = ", ".join(f"{name} {speed:.1f}" for name, speed in self.tokens_per_s.items())
        return f"auto tree {chosen} (total/depth/top-k): the fastest on the warm-up question (tok/s: {measured})"


def is_auto(config: BenchConfig) -> bool:
    return "auto" in (config.total_token, config.depth, config.top_k)


def candidates(config: BenchConfig, on_gpu: bool) -> list[Tree]:
    """The candidate trees that agree with the values given explicitly."""
    fixed = (config.total_token, config.depth, config.top_k)
    pool = GPU_TREES if on_gpu else CPU_TREES
    chosen = [tree for tree in pool if all(value == "auto" or value == part for value, part in zip(fixed, tree))]
    if chosen:
        return chosen
    # Every value the user fixed is kept; the others come from the first candidate.
    return [tuple(part if value == "auto" else int(value) for value, part in zip(fixed, pool[0]))]  # type: ignore[misc]


def cache_path() -> Path:
    root = os.environ.get("EAGLE3_CACHE_DIR") or Path.home() / ".cache" / "eagle3"
    return Path(root) / CACHE_FILE


def cache_key(config: BenchConfig, facts: dict[str, Any]) -> str:
    """What makes a tree choice valid: target, draft, device, dtypes, sampling and the candidates."""
    identity = {key: facts[key] for key in sorted(facts)} | {
        "temperature": config.temperature, "fixed": [config.total_token, config.depth, config.top_k],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def choose_tree(
    config: BenchConfig, facts: dict[str, Any], on_gpu: bool, measure: Callable[[BenchConfig], float]
) -> TreeChoice:
    """The cached choice for this setup, else each candidate measured with ``measure(config)``
    (tokens/s; after one untimed run, which pays the one-time costs) and the fastest stored."""
    key = cache_key(config, facts)
    cache = read_cache()
    if key in cache:
        return TreeChoice(tuple(cache[key]["tree"]), cache[key]["tokens_per_s"], cached=True)  # type: ignore[arg-type]
    trees = candidates(config, on_gpu)
    measure(with_tree(config, trees[0]))
    speeds = {tree: measure(with_tree(config, tree)) for tree in trees}
    best = max(speeds, key=speeds.__getitem__)
    table = {"/".join(map(str, tree)): speed for tree, speed in speeds.items()}
    atomic_write_json(cache_path(), cache | {key: {"tree": list(best), "tokens_per_s": table, "facts": facts}})
    return TreeChoice(best, table, cached=False)


def with_tree(config: BenchConfig, tree: Tree) -> BenchConfig:
    total_token, depth, top_k = tree
    return config.model_copy(update={"total_token": total_token, "depth": depth, "top_k": top_k})
