"""Target hidden states for EAGLE-3, read with forward hooks on exactly the capture layers.

Capture ids are in **vLLM numbering**: id ``k`` is HF ``hidden_states[k]``, the INPUT of
decoder layer ``k`` — read by a forward pre-hook on ``layers[k]``. ``output_hidden_states=True``
would keep every layer's output alive; the hooks keep three. The final state is the base
model's ``last_hidden_state``, i.e. after the target's final norm; the LM head never runs.

Two levels, so dump, online training and the decoder share one mechanism:

- :func:`capture_layer_inputs` — a context manager that hooks the layers of any forward run
  inside it (the decoder runs the full causal LM with its cache and reads the captures).
- :func:`capture_hidden_states` — one base-model forward returning :class:`HiddenStates`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eagle3cli.errors import Eagle3Error


@dataclass(frozen=True)
class HiddenStates:
    """What the draft reads from one target forward."""

    aux_hidden: torch.Tensor  # [batch, seq, 3 * hidden]: capture layers concatenated low → high
    last_hidden: torch.Tensor  # [batch, seq, hidden]: after the final norm


def base_model(model: nn.Module) -> nn.Module:
    """The decoder stack (embeddings, ``layers``, final ``norm``) of a causal LM or base model."""
    for candidate in (model, getattr(model, "model", None)):
        if isinstance(getattr(candidate, "layers", None), nn.ModuleList):
            return candidate
    raise Eagle3Error(
        f"{type(model).__name__} has neither .layers nor .model.layers",
        hint="EAGLE-3 capture supports decoder-only causal LMs laid out like Llama/Qwen3/HunYuan",
    )


def check_layer_ids(num_layers: int, layer_ids: Sequence[int]) -> None:
    """Raise unless every id names a decoder layer input (``0 <= k < num_layers``)."""
    bad = [layer_id for layer_id in layer_ids if not 0 <= layer_id < num_layers]
    if bad:
        raise Eagle3Error(
            f"capture layer ids {bad} are outside 0..{num_layers - 1} for a {num_layers}-layer target",
            hint="ids are vLLM numbering (the input of decoder layer k); check the draft config",
        )


@contextmanager
def capture_layer_inputs(model: nn.Module, layer_ids: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Hook the inputs of decoder layers ``layer_ids`` for the duration of the block.

    Yields a dict that each forward run inside the block fills with ``{k: [batch, seq, hidden]}``
    (the latest forward wins). The hooks are removed on exit, also on error.
    """
    layers = base_model(model).layers
    check_layer_ids(len(layers), layer_ids)
    captured: dict[int, torch.Tensor] = {}

    def hook_for(layer_id: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured[layer_id] = args[0] if args else kwargs["hidden_states"]

        return hook

    handles = [layers[k].register_forward_pre_hook(hook_for(k), with_kwargs=True) for k in sorted(set(layer_ids))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def concat_captured(captured: dict[int, torch.Tensor], layer_ids: Sequence[int]) -> torch.Tensor:
    """``[batch, seq, len(layer_ids) * hidden]``: the captures in ``layer_ids`` order."""
    return torch.cat([captured[layer_id] for layer_id in layer_ids], dim=-1)


def capture_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    *,
    aux_layer_ids: Sequence[int],
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> HiddenStates:
    """Run the base model over ``input_ids [batch, seq]`` (no LM head, no cache) and return
    the capture layers' inputs and the post-norm final state.

    ``attention_mask [batch, seq]`` (1 = token, 0 = padding) handles right-padded batches.
    Call it under ``torch.inference_mode()`` unless gradients are wanted.
    """
    stack = base_model(model)
    with capture_layer_inputs(stack, aux_layer_ids) as captured:
        output = stack(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
    return HiddenStates(aux_hidden=concat_captured(captured, aux_layer_ids), last_hidden=output.last_hidden_state)
