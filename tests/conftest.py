"""Shared fixtures: tiny tokenizers and tiny targets of each supported family."""

from builders.model_fixtures import *  # noqa: F401,F403
from builders.tokenizer_fixtures import *  # noqa: F401,F403
