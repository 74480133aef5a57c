"""The speculative decoder: EAGLE-2 dynamic trees, lossless verification, cache compaction.

The core (``config``, ``state``, ``tree``, ``verify``, ``generate``) imports only torch and
the draft model's attention cache; ``target`` adapts a stock Hugging Face model.
"""

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.generate import (
    Generation,
    GenerationStats,
    Step,
    baseline_generate,
    decode_steps,
    generate,
    speculative_generate,
)
from eagle3cli.decoding.state import DecodingState

__all__ = [
    "DecodingConfig",
    "DecodingState",
    "Generation",
    "GenerationStats",
    "Step",
    "baseline_generate",
    "decode_steps",
    "generate",
    "speculative_generate",
]
