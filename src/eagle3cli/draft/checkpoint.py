"""The draft checkpoint: ``model.safetensors`` + ``config.json``, as vLLM and SGLang load it.

The key set and shapes below are the contract (DESIGN "Draft checkpoint"). Engines load a
missing weight as uninitialised memory and a missing ``d2t`` as zero offsets without a word,
so saving refuses any missing or unknown key, and loading / :func:`inspect_checkpoint` check
keys, shapes, dtypes, the vocabulary map and the config before anything runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.config_json import draft_config_from_json, parse_draft_config, read_draft_config, read_json, write_draft_config
from eagle3cli.draft.derive import draft_target_problems, draft_target_warnings
from eagle3cli.draft.layouts import LayoutRead, detect_layout, foreign_to_every_layout, no_layout_message, read_layout, read_safetensors
from eagle3cli.draft.model import Eagle3DraftModel
from eagle3cli.draft.vocab import dtype_name, vocab_map_problems
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write
from eagle3cli.target.weights import suggest_key

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EMBED_KEY = "embed_tokens.weight"
VOCAB_MAP_KEYS = ("d2t", "t2d")  # checked by ``vocab_map_problems`` (dtype, shape, values)
FC_NORM_KEYS = tuple(f"fc_norm.{index}.weight" for index in range(3))  # with ``fc_norm`` in the config


def checkpoint_shapes(config: DraftConfig, *, include_embed: bool = False) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key and its shape, in file order (``embed_tokens.weight`` only if asked)."""
    hidden, inputs = config.hidden_size, 2 * config.hidden_size  # q/k/v read embedding ⊕ hidden
    query = config.num_attention_heads * config.head_dim
    key_value = config.num_key_value_heads * config.head_dim
    intermediate = config.intermediate_size
    shapes = {
        "fc.weight": (hidden, 3 * config.target_hidden_size),
        "midlayer.input_layernorm.weight": (hidden,),
        "midlayer.hidden_norm.weight": (hidden,),
        "midlayer.self_attn.q_proj.weight": (query, inputs),
        "midlayer.self_attn.k_proj.weight": (key_value, inputs),
        "midlayer.self_attn.v_proj.weight": (key_value, inputs),
        "midlayer.self_attn.o_proj.weight": (hidden, query),
        "midlayer.post_attention_layernorm.weight": (hidden,),
        "midlayer.mlp.gate_proj.weight": (intermediate, hidden),
        "midlayer.mlp.up_proj.weight": (intermediate, hidden),
        "midlayer.mlp.down_proj.weight": (hidden, intermediate),
        "norm.weight": (hidden,),
        "lm_head.weight": (config.draft_vocab_size, hidden),
        "d2t": (config.draft_vocab_size,),
        "t2d": (config.vocab_size,),
    }
    if config.fc_norm:
        shapes.update({key: (config.target_hidden_size,) for key in FC_NORM_KEYS})
    if include_embed:
        shapes[EMBED_KEY] = (config.vocab_size, hidden)
    return shapes


def _placeholder_config() -> DraftConfig:
    sizes = dict.fromkeys(
        ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
         "max_position_embeddings", "vocab_size", "draft_vocab_size", "target_hidden_size"),
        1,
    )
    return DraftConfig(**sizes, rms_norm_eps=1e-6, rope_theta=1.0, aux_layer_ids=(1, 2, 3))


# The key set does not depend on sizes, so any config names it (for key checks without a config).
REQUIRED_KEYS = tuple(checkpoint_shapes(_placeholder_config()))


def key_problems(keys: list[str], config: DraftConfig | None = None) -> list[str]:
    """Missing required keys, then unknown keys (with the likely intended name); the
    ``fc_norm`` keys are required with a config that has it, allowed without a config."""
    required = list(REQUIRED_KEYS) if config is None else list(checkpoint_shapes(config))
    allowed = [*required, EMBED_KEY, *(FC_NORM_KEYS if config is None else ())]
    missing = [key for key in required if key not in keys]
    problems = [f"missing tensor '{key}'" for key in missing]
    for key in sorted(set(keys) - set(allowed)):
        suggestion = suggest_key(key, missing) or suggest_key(key, allowed)
        problems.append(f"unknown tensor '{key}'" + (f" (did you mean '{suggestion}'?)" if suggestion else ""))
    return problems


def tensor_problems(tensors: Mapping[str, torch.Tensor], config: DraftConfig | None) -> list[str]:
    """Every problem of a checkpoint state dict: keys; with a config, shapes, dtypes, values and the vocab map."""
    problems = key_problems(list(tensors), config)
    if config is None:
        return problems
    for key, shape in checkpoint_shapes(config, include_embed=True).items():
        if key in tensors and key not in VOCAB_MAP_KEYS:
            problems += single_tensor_problems(key, tensors[key], shape)
    if all(key in tensors for key in VOCAB_MAP_KEYS):
        problems += vocab_map_problems(
            tensors["d2t"], tensors["t2d"], vocab_size=config.vocab_size, draft_vocab_size=config.draft_vocab_size
        )
    return problems


def single_tensor_problems(key: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> list[str]:
    """Shape, floating dtype and finite values of one weight."""
    problems = []
    if tuple(tensor.shape) != shape:
        problems.append(f"tensor '{key}' has shape {list(tensor.shape)}, expected {list(shape)}")
    if not tensor.dtype.is_floating_point:
        problems.append(f"tensor '{key}' has dtype {dtype_name(tensor.dtype)}, expected a floating-point dtype")
    elif not bool(torch.isfinite(tensor).all()):
        problems.append(f"tensor '{key}' holds NaN or infinite values")
    return problems


def save_checkpoint(directory: Path, state_dict: Mapping[str, torch.Tensor], config: DraftConfig) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each atomically),
    then read them back as the engines would.

    Refuses (naming every problem) a state dict with a missing or unknown key, a wrong shape
    or dtype, or an invalid vocabulary map. ``embed_tokens.weight`` is written if present.
    """
    from safetensors.torch import save

    directory = Path(directory)
    problems = tensor_problems(state_dict, config)
    if problems:
        raise Eagle3Error(f"refusing to write a draft checkpoint to {directory}: " + "; ".join(problems))
    order = list(checkpoint_shapes(config, include_embed=True))
    tensors = {key: state_dict[key].detach().cpu().contiguous() for key in order if key in state_dict}
    data = save(tensors, metadata={"format": "pt"})
    atomic_write(directory / WEIGHTS_FILE, lambda handle: handle.write(data))
    write_draft_config(directory / CONFIG_FILE, config)
    problems = inspect_checkpoint(directory).problems
    if problems:  # a bug in this module, not in the caller's data: the state dict was checked
        raise Eagle3Error(f"draft checkpoint {directory} does not read back: " + "; ".join(problems))
    return directory


def save_draft_model(directory: Path, model: Eagle3DraftModel, *, save_embed: bool = False) -> Path:
    """Save a draft model; its embedding (the target's) only with ``save_embed``."""
    state_dict = model.state_dict()
    if not save_embed:
        del state_dict[EMBED_KEY]
    return save_checkpoint(directory, state_dict, model.config)


def read_checkpoint(directory: Path, *, target_config: Mapping[str, Any] | None = None) -> tuple[DraftConfig, dict[str, torch.Tensor], LayoutRead]:
    """A checked draft of any layout (see :mod:`eagle3cli.draft.layouts`): its config and
    tensors under the project's keys, in their stored dtypes. ``target_config`` fills what a
    layout leaves out (default capture layers, vocabulary size)."""
    directory = Path(directory)
    if foreign_to_every_layout(directory):
        raise Eagle3Error(no_layout_message(directory))
    if detect_layout(directory) in (None, "eagle3"):  # the project's layout, strictly: every problem named
        config = read_draft_config(directory / CONFIG_FILE)
        tensors = read_safetensors(directory / WEIGHTS_FILE)
        read = LayoutRead("eagle3", {}, tensors, source_config=read_json(directory / CONFIG_FILE))
    else:
        read = read_layout(directory, target_config=target_config)
        config, tensors = draft_config_from_json(read.config, source=str(directory / CONFIG_FILE)), read.tensors
    problems = tensor_problems(tensors, config)
    if problems:
        raise Eagle3Error(f"invalid draft checkpoint {directory}: " + "; ".join(problems))
    return config, tensors, read


def load_checkpoint(directory: Path, *, embed_tokens: torch.Tensor | None = None,
                    target_config: Mapping[str, Any] | None = None) -> Eagle3DraftModel:
    """Load and check a draft checkpoint of any layout; the model comes back in float32 with
    d2t/t2d installed.

    The embedding is the checkpoint's when it has one, else ``embed_tokens`` (the target's,
    see :func:`eagle3cli.target.weights.read_embed_tokens`); with neither it stays unset (a
    warning says so) and must be installed before use.
    """
    directory = Path(directory)
    config, tensors, _ = read_checkpoint(directory, target_config=target_config)
    return build_draft(config, tensors, directory, embed_tokens=embed_tokens)


def build_draft(config: DraftConfig, tensors: Mapping[str, torch.Tensor], directory: Path, *,
                embed_tokens: torch.Tensor | torch.nn.Embedding | None = None) -> Eagle3DraftModel:
    """The draft model of checked ``tensors`` (read from ``directory``), as :func:`load_checkpoint`;
    an ``nn.Embedding`` (a loaded target's) is shared, not copied, in place of the checkpoint's own."""
    shared = embed_tokens if isinstance(embed_tokens, torch.nn.Embedding) else None
    model = Eagle3DraftModel(config, embed_tokens=shared)
    if shared is not None:
        tensors = {key: value for key, value in tensors.items() if key != EMBED_KEY}
    # Loads d2t/t2d too (persistent buffers); the key set was checked, embed may be absent.
    model.load_state_dict(tensors, strict=False)
    if shared is None and EMBED_KEY not in tensors:
        install_embedding(model, embed_tokens, directory)
    return model.eval()


def install_embedding(model: Eagle3DraftModel, embed_tokens: torch.Tensor | None, directory: Path) -> None:
    if embed_tokens is None:
        logger.warning("%s has no embed_tokens.weight; install the target's embedding before use", directory)
        return
    expected = (model.config.vocab_size, model.config.hidden_size)
    if tuple(embed_tokens.shape) != expected:
        raise Eagle3Error(f"the target embedding has shape {list(embed_tokens.shape)}, the draft needs {list(expected)}")
    with torch.no_grad():
        model.embed_tokens.weight.copy_(embed_tokens)


@dataclass
class CheckpointReport:
    """What :func:`inspect_checkpoint` found: the config (if readable), tensor shapes, problems."""

    directory: Path
    layout: str = "eagle3"
    config: DraftConfig | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # values a foreign layout left out, filled in
    warnings: list[str] = field(default_factory=list)  # what an engine would get wrong serving it as is
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # under the project's keys

    @property
    def has_embed(self) -> bool:
        return EMBED_KEY in self.shapes

    @property
    def num_parameters(self) -> int:
        """Trained parameters: every weight but the (frozen, reused) embedding and the vocab map."""
        excluded = {EMBED_KEY, *VOCAB_MAP_KEYS}
        return sum(math.prod(shape) for key, shape in self.shapes.items() if key not in excluded)


def inspect_checkpoint(directory: Path, *, target_config: Mapping[str, Any] | None = None) -> CheckpointReport:
    """Check a checkpoint folder as both engines would read it; never raises for a bad checkpoint.

    With ``target_config`` (the target's ``config.json``) also checks sizes, vocabulary and
    capture layers against the target.
    """
    report = CheckpointReport(directory=Path(directory))
    layout = detect_layout(report.directory)
    if layout in (None, "eagle3"):  # the project's layout: every config and file problem listed
        try:
            report.config, report.problems = parse_draft_config(read_json(report.directory / CONFIG_FILE))
        except Eagle3Error as error:  # an unreadable file is one problem
            report.problems = [str(error)]
        if layout is None and foreign_to_every_layout(report.directory):
            report.problems.insert(0, no_layout_message(report.directory))
        try:
            tensors = read_safetensors(report.directory / WEIGHTS_FILE)
        except Eagle3Error as error:
            report.problems.append(str(error))
            return report
    else:
        report.layout = layout
        try:
            read = read_layout(report.directory, target_config=target_config)
        except Eagle3Error as error:
            report.problems.append(str(error))
            return report
        report.config, report.problems = parse_draft_config(read.config)
        report.notes, report.warnings, tensors = read.notes, read.warnings, read.tensors
    report.tensors = tensors
    report.shapes = {key: tuple(tensor.shape) for key, tensor in tensors.items()}
    report.dtypes = {key: dtype_name(tensor.dtype) for key, tensor in tensors.items()}
    report.problems += tensor_problems(tensors, report.config)
    if report.config is not None and target_config is not None:
        report.problems += draft_target_problems(report.config, target_config, has_embed=report.has_embed)
        report.warnings += draft_target_warnings(report.config, target_config)
    return report


def check_fits_target(directory: Path, target_dir: Path, target_config: Mapping[str, Any]) -> CheckpointReport:
    """The checkpoint at ``directory`` (config and tensors, for :func:`build_draft`) if it
    passes :func:`inspect_checkpoint` against the target; else raise, naming ``target_dir``."""
    report = inspect_checkpoint(directory, target_config=target_config)
    if report.problems:
        raise Eagle3Error(f"draft {directory} does not fit target {target_dir}: " + "; ".join(report.problems),
                          hint=f"run eagle3 inspect {directory} --target-model {target_dir}")
    return report
