"""The speculative decoder: EAGLE-2 dynamic trees, lossless verification, cache compaction.

The core (``config``, ``state``, ``tree``, ``verify``, ``generate``) imports only torch and
the draft model's attention cache; ``target`` adapts a stock Hugging Face model.
"""

from eagle3cli.decoding.config import DecodingConfig
from eagle3cli.decoding.generate import Generation, GenerationStats, baseline_generate, generate, speculative_generate

__all__ = ["DecodingConfig", "Generation", "GenerationStats", "baseline_generate", "generate", "speculative_generate"]
