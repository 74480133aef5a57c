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

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from eagle3cli.config import DumpHiddenConfig
from eagle3cli.dump.manifest import VLLM_STATES_DIR
from eagle3cli.data.tokenize import TokenizedSample
from eagle3cli.dump.shard_file import FP8, NUM_AUX_STATES, HiddenSample, quantize
from eagle3cli.dump.target import DumpTarget
from eagle3cli.errors import Eagle3Error
from eagle3cli.vllm_process import VLLM_SIDE, VllmWorker, resolve_vllm_python

DUMP_WORKER = VLLM_SIDE / "dump_worker.py"
CONNECTOR = "Eagle3HiddenStatesConnector"
CONNECTOR_MODULE = "eagle3_states_connector"
# model types whose final norm is transformers' plain RMSNorm (weight * x / rms(x)) and whose
# vLLM 0.32 model class hands out capture layers (SupportsEagle3)
VLLM_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "qwen3_moe"})
VLLM_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def check_vllm_target(config: DumpHiddenConfig, target: DumpTarget) -> None:
    """Refuse what this backend cannot do right before vLLM loads anything."""
    model_type = target.spec.config.get("model_type")
    if model_type not in VLLM_MODEL_TYPES:
        raise Eagle3Error(
            f"dump-hidden --backend vllm supports {', '.join(sorted(VLLM_MODEL_TYPES))} targets (vLLM's capture layers, "
            f"a plain RMSNorm before the head); the target is {model_type!r}",
            hint="use --backend hf for this target",
        )
    max_positions = target.spec.config.get("max_position_embeddings")
    if max_positions is not None and config.max_length >= int(max_positions):
        raise Eagle3Error(
            f"--max-length {config.max_length} leaves vLLM no room for its one generated token: the target has "
            f"{max_positions} positions",
            hint=f"pass --max-length {int(max_positions) - 1} or less",
        )


def rms_norm(states: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalised in float32, cast back, times the weight."""
    normalised = states.float() * torch.rsqrt(states.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight.to(states.dtype) * normalised.to(states.dtype)


def engine_arguments(
    config: DumpHiddenConfig, target: DumpTarget, states_dir: Path, compute_dtype: torch.dtype, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``vllm.LLM`` arguments: the target, the layers to extract, the connector that writes them."""
    layers = extracted_layers(target)
    arguments = {
        "model": str(target.spec.directory), "dtype": VLLM_DTYPES[compute_dtype], "seed": 0, "skip_tokenizer_init": True,
        "max_model_len": config.max_length + 1, "tensor_parallel_size": config.tensor_parallel_size,
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


def extracted_layers(target: DumpTarget) -> list[int]:
    """The layer ids vLLM extracts, ascending: the capture layers and the last layer's output."""
    return sorted({*target.draft.aux_layer_ids, target.spec.num_layers})


def scratch_bytes(num_tokens: int, num_shards: int, target: DumpTarget, compute_dtype: torch.dtype) -> int:
    """Disk the states files of one (average) shard take before they are read and removed."""
    tokens_per_shard = -(-num_tokens // max(num_shards, 1))
    return tokens_per_shard * len(extracted_layers(target)) * target.spec.hidden_size * compute_dtype.itemsize


def process_devices(local_rank: int, tensor_parallel_size: int) -> list[str]:
    """The devices of process ``local_rank`` among those this one may see (``CUDA_VISIBLE_DEVICES``
    when set, else all, numbered from 0)."""
    visible = [device for device in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if device.strip()]
    first = local_rank * tensor_parallel_size
    indices = range(first, first + tensor_parallel_size)
    if not visible:
        return [str(index) for index in indices]
    if indices[-1] >= len(visible):
        raise Eagle3Error(
            f"process {local_rank} needs devices {list(indices)} of the {len(visible)} in CUDA_VISIBLE_DEVICES={','.join(visible)}",
            hint="run as many processes per node as the visible devices hold engines of --tensor-parallel-size",
        )
    return [visible[index] for index in indices]


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
        cpu: bool = False,
    ) -> None:
        """``cpu``: vLLM's CPU build runs the engine (:func:`~eagle3cli.vllm_process.cpu_vllm_env`)."""
        from eagle3cli.target.weights import read_final_norm

        check_vllm_target(config, target)
        self.states_dir = directory / VLLM_STATES_DIR / f"rank-{rank}"
        shutil.rmtree(self.states_dir, ignore_errors=True)  # a killed run's leftovers
        self.states_dir.mkdir(parents=True)
        layers = extracted_layers(target)  # the file's layer order
        self.aux_slots = [layers.index(layer) for layer in target.draft.aux_layer_ids]
        self.norm_weight = read_final_norm(target.spec.directory)
        self.norm_eps = float(target.spec.config.get("rms_norm_eps", 1e-6))
        arguments = engine_arguments(config, target, self.states_dir, compute_dtype, engine_args)
        env = dict(env or {})
        if world_size > 1:  # data parallel: each process's engine on its own devices of those it may see
            env["CUDA_VISIBLE_DEVICES"] = ",".join(process_devices(local_rank, config.tensor_parallel_size))
        self.log_path = directory / VLLM_STATES_DIR / f"vllm-rank-{rank}.log"
        self.engine = VllmWorker(resolve_vllm_python(config.vllm_python), arguments,
                                 log_path=self.log_path, env=env, worker=DUMP_WORKER, cpu=cpu)

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
            try:
                tensors = load_file(path)
            except (OSError, ValueError) as error:  # the connector's write failed (a full disk, say)
                raise Eagle3Error(f"vLLM's states file {path} for sample {sample.sample_id} cannot be read ({error})",
                                  hint=f"see {self.log_path}; rerunning the same command resumes the dump") from None
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
        aux_hidden = torch.cat([states[:, slot] for slot in self.aux_slots], dim=-1)
        last_hidden = rms_norm(states[:, -1], self.norm_weight, self.norm_eps)  # the last layer's output: the highest id
        aux_scale = last_scale = None
        if dtype == FP8:
            aux_hidden, aux_scale = quantize(aux_hidden, NUM_AUX_STATES)
            last_hidden, last_scale = quantize(last_hidden, 1)
        return HiddenSample.of(sample, aux_hidden.to(dtype), last_hidden.to(dtype), aux_scale, last_scale)
