"""``dump-hidden --backend vllm``: the target's states through vLLM instead of transformers.

vLLM's ``extract_hidden_states`` speculative method caches chosen layers' states for every
token of a request, and a KV connector writes them to a file per request when it finishes
(the route vLLM's ``speculators`` uses for training data). Each sample, prompt and answer
together, is one prompt with one generated token, so one prefill yields its states.

Layer numbering (vLLM 0.32, ``SupportsEagle3`` models): id ``k`` below the number of layers
``L`` is the residual stream entering decoder layer ``k`` — the project's capture ids, HF's
``hidden_states[k]`` — and id ``L`` is the last layer's output *before* the final norm; the
file holds the layers in ascending id order. ``last_hidden`` is that output through the
target's final RMSNorm, computed here as transformers computes it (float32, then the weight
in the state's dtype), so only the norm's weight is read from the checkpoint. Targets whose
final norm is another function are refused.

Each file's ``token_ids`` must equal the sample's, so a mix-up cannot go unnoticed; the files
live in a folder of the dump being written and are deleted once read.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from eagle3cli.bench.vllm_engine import VLLM_SIDE, VllmEngine
from eagle3cli.config import DumpHiddenConfig
from eagle3cli.dump.plan import TokenizedSample
from eagle3cli.dump.shard_file import FP8, NUM_AUX_STATES, HiddenSample, quantize
from eagle3cli.dump.target import DumpTarget
from eagle3cli.errors import Eagle3Error

DUMP_WORKER = VLLM_SIDE / "dump_worker.py"
CONNECTOR = "Eagle3HiddenStatesConnector"
CONNECTOR_MODULE = "eagle3_states_connector"
STATES_DIR = ".vllm-states"
# model types whose final norm is transformers' plain RMSNorm (weight * x / rms(x))
RMS_NORM_MODEL_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "hunyuan_v1_dense", "hunyuan_v1_moe",
})
VLLM_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def check_vllm_target(target: DumpTarget) -> None:
    model_type = target.config.get("model_type")
    if model_type not in RMS_NORM_MODEL_TYPES:
        raise Eagle3Error(
            f"dump-hidden --backend vllm computes the final norm itself and knows it for {', '.join(sorted(RMS_NORM_MODEL_TYPES))}; "
            f"the target is {model_type!r}",
            hint="use --backend hf for this target",
        )


def rms_norm(states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalised in float32, cast back, times the weight."""
    normalised = states.float() * torch.rsqrt(states.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight.to(states.dtype) * normalised.to(states.dtype)


def engine_arguments(
    config: DumpHiddenConfig, target: DumpTarget, states_dir: Path, compute_dtype: torch.dtype, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``vllm.LLM`` arguments: the target, the layers to extract, the connector that writes them."""
    layers = sorted({*target.draft.aux_layer_ids, int(target.config["num_hidden_layers"])})
    max_positions = int(target.config.get("max_position_embeddings") or config.max_length + 1)
    arguments = {
        "model": str(target.directory), "dtype": VLLM_DTYPES[compute_dtype], "seed": 0, "skip_tokenizer_init": True,
        "max_model_len": min(config.max_length + 1, max_positions), "tensor_parallel_size": config.tensor_parallel_size,
        "trust_remote_code": config.trust_remote_code,
        "speculative_config": {
            "method": "extract_hidden_states", "num_speculative_tokens": 1,
            "draft_model_config": {"hf_config": {"eagle_aux_hidden_state_layer_ids": layers}},
        },
        "kv_transfer_config": {
            "kv_connector": CONNECTOR, "kv_connector_module_path": CONNECTOR_MODULE, "kv_role": "kv_producer",
            "kv_connector_extra_config": {"shared_storage_path": str(states_dir)},
        },
    }
    return arguments | dict(extra or {})


class VllmStates(AbstractContextManager["VllmStates"]):
    """A vLLM engine that computes samples' states, in the dump's layout."""

    def __init__(
        self,
        config: DumpHiddenConfig,
        target: DumpTarget,
        directory: Path,
        *,
        rank: int,
        local_rank: int,
        world_size: int,
        compute_dtype: torch.dtype,
        engine_args: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from eagle3cli.bench.vllm_backend import find_vllm_python
        from eagle3cli.target_weights import read_final_norm

        check_vllm_target(target)
        self.target = target
        self.states_dir = directory / STATES_DIR / f"rank-{rank}"
        shutil.rmtree(self.states_dir, ignore_errors=True)  # a killed run's leftovers
        self.states_dir.mkdir(parents=True)
        self.layers = sorted({*target.draft.aux_layer_ids, int(target.config["num_hidden_layers"])})
        self.norm_weight = read_final_norm(target.directory)
        self.norm_eps = float(target.config.get("rms_norm_eps", 1e-6))
        arguments = engine_arguments(config, target, self.states_dir, compute_dtype, engine_args)
        env = dict(env or {})
        if world_size > 1 and torch.cuda.is_available():  # data parallel: each process's engine on its own GPUs
            first = local_rank * config.tensor_parallel_size
            env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(str(first + i) for i in range(config.tensor_parallel_size)))
        self.engine = VllmEngine(find_vllm_python(config.vllm_python, target.directory), arguments,
                                 log_path=directory / STATES_DIR / f"vllm-rank-{rank}.log", env=env, worker=DUMP_WORKER)

    def __enter__(self) -> VllmStates:
        self.engine.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine and remove the states folder (idempotent)."""
        self.engine.close()
        shutil.rmtree(self.states_dir, ignore_errors=True)

    def fence(self) -> Callable[[], None]:
        """The states are on the host when :meth:`compute` returns: nothing to wait for."""
        return lambda: None

    def compute(
        self, samples: Sequence[TokenizedSample], *, dtype: torch.dtype, on_batch: Callable[[int, int], None] | None = None
    ) -> list[HiddenSample]:
        """The states of ``samples`` in their order (one engine call for all of them)."""
        from safetensors.torch import load_file

        paths = self.engine.request({"prompts": [list(sample.input_ids) for sample in samples]})["paths"]
        results = []
        for sample, path in zip(samples, paths, strict=True):
            tensors = load_file(path)
            Path(path).unlink(missing_ok=True)
            Path(path + ".lock").unlink(missing_ok=True)
            if tensors["token_ids"].tolist() != list(sample.input_ids):
                raise Eagle3Error(f"vLLM returned the states of other tokens for sample {sample.sample_id} ({path})")
            results.append(self.hidden_sample(sample, tensors["hidden_states"], dtype))
        if on_batch is not None:
            on_batch(len(samples), sum(len(sample.input_ids) for sample in samples))
        return results

    def hidden_sample(self, sample: TokenizedSample, states: torch.Tensor, dtype: torch.dtype) -> HiddenSample:
        """``states [T, layers, H]`` (ascending layer ids) → the dump's sample."""
        slot = {layer: index for index, layer in enumerate(self.layers)}
        aux_hidden = torch.cat([states[:, slot[layer]] for layer in self.target.draft.aux_layer_ids], dim=-1)
        last_hidden = rms_norm(states[:, slot[self.layers[-1]]], self.norm_weight, self.norm_eps)
        aux_scale = last_scale = None
        if dtype == FP8:
            aux_hidden, aux_scale = quantize(aux_hidden, NUM_AUX_STATES)
            last_hidden, last_scale = quantize(last_hidden, 1)
        return HiddenSample(
            sample_index=sample.sample_index,
            sample_id=sample.sample_id,
            input_ids=torch.tensor(sample.input_ids, dtype=torch.int32),
            loss_mask=torch.tensor(sample.loss_mask, dtype=torch.uint8),
            aux_hidden=aux_hidden.to(dtype),
            last_hidden=last_hidden.to(dtype),
            aux_scale=aux_scale,
            last_scale=last_scale,
        )
