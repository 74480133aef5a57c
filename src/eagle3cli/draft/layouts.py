"""Published EAGLE-3 draft layouts, read into and written from the project's checkpoint format.

The project's own layout (``eagle3``, DESIGN "Draft checkpoint") is what vLLM and SGLang both
load. The drafts people already have come in others, learned from each project's code:

- ``eagle``: SafeAILab EAGLE-3 originals (DeepSpeed's ``pytorch_model.bin``, or safetensors),
  SpecForge exports and AngelSlim's released drafts: ``LlamaForCausalLMEagle3``, keys
  ``midlayer.*``, and no vLLM-numbered capture layers — either none (EAGLE's fixed
  ``[2, N // 2, N - 3]``, the same as vLLM's default) or ``eagle_config``'s ids, which count
  the *output* of a decoder layer (vLLM id − 1).
- ``angelslim``: drafts AngelSlim's trainer saves: ``Eagle3LlamaForCausalLM``, safetensors,
  custom capture layers (if any) in ``aux_hidden_states_layer_ids`` (output numbering).
- ``speculators``: vLLM's speculators library: ``speculators_config`` + a nested
  ``transformer_layer_config``, keys ``layers.0.*``, capture layers top-level in vLLM
  numbering. vLLM's ``norm_before_residual`` defaults to true for this layout when absent,
  so it is always written.
- ``modelopt``: NVIDIA ModelOpt's HF export: ``LlamaForCausalLMEagle3`` with ModelOpt's
  ``eagle_config`` switches, keys ``layers.0.*`` (``midlayer.*`` before 0.41), no ``t2d``,
  ``d2t`` only when the draft vocabulary is smaller, capture layers in output numbering.

Reading gives a config mapping in the project's ``config.json`` form and the tensors under
the project's keys, with what was filled in (``notes``) and what an engine would get wrong
if served as is (``warnings``). Validation is the checkpoint module's, the same for every layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eagle3cli.draft.config import DraftConfig
from eagle3cli.draft.config_json import (
    ARCHITECTURE,
    EAGLE_CONFIG_KEY,
    VLLM_LAYER_IDS_KEY,
    draft_config_to_json,
    is_int,
    read_json,
)
from eagle3cli.draft.derive import default_aux_layer_ids
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import atomic_write, atomic_write_json

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"
LAYOUTS = ("eagle3", "eagle", "angelslim", "speculators", "modelopt")
WRITABLE_LAYOUTS = ("eagle3", "speculators", "modelopt")
ANGELSLIM_ARCHITECTURE = "Eagle3LlamaForCausalLM"
ANGELSLIM_LAYER_IDS_KEY = "aux_hidden_states_layer_ids"
LLAMA_RMS_NORM_EPS = 1e-6
MODELOPT_SWITCHES = ("use_input_layernorm_in_first_layer", "use_last_layernorm", "use_mtp_layernorm")
# ModelOpt's switches for the one-layer EAGLE-3 draft the project's model implements.
MODELOPT_EAGLE_CONFIG = {"use_input_layernorm_in_first_layer": True, "use_last_layernorm": True, "use_mtp_layernorm": False}
SPECULATORS_UNSUPPORTED = ("norm_before_residual", "norm_before_fc", "norm_output")
NEEDS = {
    "eagle3": f"config.json with architectures [{ARCHITECTURE}] and top-level {VLLM_LAYER_IDS_KEY}, and {SAFETENSORS_FILE}",
    "eagle": f"config.json with architectures [{ARCHITECTURE}] (capture layers optional), and {SAFETENSORS_FILE} or {PICKLE_FILE}",
    "angelslim": f"config.json with architectures [{ANGELSLIM_ARCHITECTURE}], and {SAFETENSORS_FILE} or {PICKLE_FILE}",
    "speculators": f"config.json with speculators_config and transformer_layer_config, and {SAFETENSORS_FILE}",
    "modelopt": f"config.json with architectures [{ARCHITECTURE}] and eagle_config.{{{', '.join(MODELOPT_SWITCHES)}}}, and {SAFETENSORS_FILE}",
}
DESCRIPTIONS = {
    "eagle3": "eagle3 (this project, SGLang, vLLM)",
    "eagle": "EAGLE / SpecForge / released AngelSlim",
    "angelslim": "AngelSlim trainer",
    "speculators": "vLLM speculators",
    "modelopt": "NVIDIA ModelOpt",
}


@dataclass
class LayoutRead:
    """A draft read from any layout: config mapping and tensors in the project's form."""

    layout: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)  # values filled in or rebuilt
    warnings: list[str] = field(default_factory=list)  # what an engine would get wrong serving the source as is
    source_config: dict[str, Any] = field(default_factory=dict)


def detect_layout(directory: Path) -> str | None:
    """The layout of a draft folder, from its ``config.json`` and weight files (``None``: no
    layout matches, or there is no readable config)."""
    directory = Path(directory)
    try:
        raw = read_json(directory / CONFIG_FILE)
    except Eagle3Error:
        return None
    architectures = raw.get("architectures")
    eagle_config = raw.get(EAGLE_CONFIG_KEY)
    eagle_config = eagle_config if isinstance(eagle_config, Mapping) else {}
    has_safetensors = (directory / SAFETENSORS_FILE).is_file() or (directory / SAFETENSORS_INDEX).is_file()
    has_pickle = (directory / PICKLE_FILE).is_file()
    layout = None
    if "speculators_config" in raw or "speculators_model_type" in raw:
        layout = "speculators"
    elif architectures == [ARCHITECTURE] and any(key in eagle_config for key in MODELOPT_SWITCHES):
        layout = "modelopt"
    elif architectures == [ANGELSLIM_ARCHITECTURE]:
        layout = "angelslim"
    elif architectures == [ARCHITECTURE]:
        both_numberings = VLLM_LAYER_IDS_KEY in raw and VLLM_LAYER_IDS_KEY in eagle_config
        layout = "eagle3" if both_numberings and (directory / SAFETENSORS_FILE).is_file() and not has_pickle else "eagle"
    if layout is not None and (has_safetensors or (has_pickle and layout in ("eagle", "angelslim"))):
        return layout
    return None


def foreign_to_every_layout(directory: Path) -> bool:
    """Whether a readable ``config.json`` names no architecture (or speculators config) of any layout."""
    try:
        raw = read_json(Path(directory) / CONFIG_FILE)
    except Eagle3Error:
        return False
    known = [[ARCHITECTURE], [ANGELSLIM_ARCHITECTURE]]
    return raw.get("architectures") not in known and "speculators_config" not in raw and "speculators_model_type" not in raw


def no_layout_message(directory: Path) -> str:
    """What a folder that matches no layout holds, and what each layout needs."""
    directory = Path(directory)
    try:
        raw = read_json(directory / CONFIG_FILE)
    except Eagle3Error:
        raw = {}
    files = sorted(path.name for path in directory.iterdir()) if directory.is_dir() else []
    needs = "; ".join(f"{name}: {need}" for name, need in NEEDS.items())
    return (f"{directory} matches no known EAGLE-3 draft layout (found architectures {json.dumps(raw.get('architectures'))}, "
            f"config keys {sorted(raw)[:12]}, files {files[:12]}); each layout needs — {needs}")


def read_layout(directory: Path, *, target_config: Mapping[str, Any] | None = None) -> LayoutRead:
    """Read a draft folder of any layout into the project's config mapping and keys.

    Values the source leaves out are filled from its weights (sizes), as the engines read them
    (rope, norm epsilon: LlamaConfig's defaults) or, with ``target_config``, from the target
    (vocabulary size, positions, default capture layers); without the target an unknowable
    value is an error saying to pass it.
    """
    directory = Path(directory)
    layout = detect_layout(directory)
    if layout is None:
        read_json(directory / CONFIG_FILE)  # a missing or broken config is its own error
        raise Eagle3Error(no_layout_message(directory))
    raw = read_json(directory / CONFIG_FILE)
    tensors = read_tensors(directory, allow_pickle=layout in ("eagle", "angelslim"))
    if layout == "eagle3":
        return LayoutRead(layout, raw, tensors, source_config=raw)
    read = LayoutRead(layout, {}, rename_layer_keys(tensors, "layers.0.", "midlayer."), source_config=raw)
    fields = _speculators_fields(raw, read) if layout == "speculators" else dict(raw)
    if layout == "modelopt":
        _check_modelopt_switches(raw)
    eagle_config = raw.get(EAGLE_CONFIG_KEY)
    if isinstance(eagle_config, Mapping) and eagle_config.get("use_aux_hidden_state") is False:
        raise Eagle3Error("config.json: eagle_config.use_aux_hidden_state is false: an EAGLE-1/2 draft, not EAGLE-3")
    read.config = _project_config(fields, read, target_config)
    read.config[VLLM_LAYER_IDS_KEY] = _layer_ids(layout, raw, fields, read, num_target_layers(target_config))
    read.config[EAGLE_CONFIG_KEY] = {
        VLLM_LAYER_IDS_KEY: [layer_id - 1 for layer_id in read.config[VLLM_LAYER_IDS_KEY]],
        "use_aux_hidden_state": True,
    }
    _complete_vocab_map(read)
    return read


def num_target_layers(target_config: Mapping[str, Any] | None) -> int | None:
    layers = None if target_config is None else target_config.get("num_hidden_layers")
    return layers if is_int(layers) else None


def read_tensors(directory: Path, *, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """Every tensor of a draft folder: ``model.safetensors``, a sharded safetensors index, or
    (EAGLE's originals) ``pytorch_model.bin`` loaded with ``weights_only`` — never a full unpickle."""
    if (directory / SAFETENSORS_FILE).is_file():
        return read_safetensors(directory / SAFETENSORS_FILE)
    if (directory / SAFETENSORS_INDEX).is_file():
        index = read_json(directory / SAFETENSORS_INDEX)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, Mapping):
            raise Eagle3Error(f"{directory / SAFETENSORS_INDEX} has no weight_map")
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(directory / str(shard)))
        return tensors
    if allow_pickle and (directory / PICKLE_FILE).is_file():
        return read_pickled_weights(directory / PICKLE_FILE)
    raise Eagle3Error(f"{directory} has no {SAFETENSORS_FILE}", hint="a draft checkpoint folder holds config.json and model.safetensors")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with a clear error when it is absent or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise Eagle3Error(f"{path} does not exist", hint="a draft checkpoint folder holds config.json and model.safetensors")
    try:
        return load_file(path)
    except SafetensorError as error:
        raise Eagle3Error(f"{path} is not a readable safetensors file: {error}") from error


def read_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin`` state dict through ``torch.load(weights_only=True)``: tensors and
    plain containers only, so a file carrying code is refused instead of run."""
    import pickle

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Eagle3Error(f"refusing {path}: it does not load as plain tensors ({reason})",
                          hint="only weights-only pickles are read; convert it with the project that wrote it") from error
    if not isinstance(data, Mapping) or not all(isinstance(value, torch.Tensor) for value in data.values()):
        raise Eagle3Error(f"{path} is not a state dict of tensors")
    return dict(data)


def rename_layer_keys(tensors: Mapping[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {(new + key[len(old):] if key.startswith(old) else key): tensor for key, tensor in tensors.items()}


def _speculators_fields(raw: Mapping[str, Any], read: LayoutRead) -> dict[str, Any]:
    """The Llama fields of a speculators config (``transformer_layer_config``) plus the draft's own."""
    if raw.get("speculators_model_type") != "eagle3":
        raise Eagle3Error(f"speculators_model_type is {json.dumps(raw.get('speculators_model_type'))}; only \"eagle3\" drafts are read")
    layer = raw.get("transformer_layer_config")
    if not isinstance(layer, Mapping):
        raise Eagle3Error("config.json: speculators transformer_layer_config is missing or not an object")
    if "norm_before_residual" not in raw:
        raise Eagle3Error("config.json: norm_before_residual is absent (the speculators library reads false, vLLM 0.32 true)",
                          hint="set it to what the draft was trained with")
    on = [name for name in SPECULATORS_UNSUPPORTED if raw.get(name)]
    if on:
        raise Eagle3Error(f"config.json: {', '.join(on)} is on; eagle3's draft model is the EAGLE-3 paper's layer, without it")
    fields = {**layer, "draft_vocab_size": raw.get("draft_vocab_size"), "fc_norm": bool(raw.get("fc_norm", False))}
    if raw.get("target_hidden_size") is not None:
        fields["target_hidden_size"] = raw["target_hidden_size"]
    if raw.get(VLLM_LAYER_IDS_KEY):
        fields[VLLM_LAYER_IDS_KEY] = raw[VLLM_LAYER_IDS_KEY]
    return fields


def _check_modelopt_switches(raw: Mapping[str, Any]) -> None:
    eagle_config = raw[EAGLE_CONFIG_KEY]
    different = {key: eagle_config[key] for key, value in MODELOPT_EAGLE_CONFIG.items() if key in eagle_config and eagle_config[key] != value}
    if different or (eagle_config.get("parallel_draft_step") or 1) != 1:
        raise Eagle3Error(
            f"config.json: ModelOpt eagle_config {json.dumps(different or {'parallel_draft_step': eagle_config['parallel_draft_step']})} "
            f"describes another draft than EAGLE-3's one layer ({json.dumps(MODELOPT_EAGLE_CONFIG)}, one draft step)"
        )


def _project_config(fields: dict[str, Any], read: LayoutRead, target_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The project's config mapping: fixed format fields, sizes from the weights where the
    source omits them, target values where it omits those."""
    if fields.get("num_hidden_layers", 1) != 1:
        raise Eagle3Error(f"config.json: num_hidden_layers is {fields['num_hidden_layers']}; an EAGLE-3 draft has one decoder layer")
    config = {key: value for key, value in fields.items() if key not in (VLLM_LAYER_IDS_KEY, EAGLE_CONFIG_KEY, ANGELSLIM_LAYER_IDS_KEY)}
    config.update(architectures=[ARCHITECTURE], model_type="llama", num_hidden_layers=1, tie_word_embeddings=False)
    for key in ("speculators_model_type", "speculators_config", "transformer_layer_config", "speculators_version", *SPECULATORS_UNSUPPORTED):
        config.pop(key, None)
    if "lm_head.weight" in read.tensors and config.get("draft_vocab_size") is None:
        config["draft_vocab_size"] = read.tensors["lm_head.weight"].shape[0]
        read.notes.append("draft_vocab_size taken from lm_head.weight")
    if "fc.weight" in read.tensors and read.tensors["fc.weight"].ndim == 2 and config.get("target_hidden_size") is None:
        config["target_hidden_size"] = read.tensors["fc.weight"].shape[1] // 3
    # Absent rope and norm epsilon are what every engine reads then (LlamaConfig's defaults: theta
    # 10000, no scaling, eps 1e-6), so the draft keeps behaving as it was served; inspect warns
    # when they differ from the target's.
    if config.get("rms_norm_eps") is None:
        config["rms_norm_eps"] = LLAMA_RMS_NORM_EPS
        read.notes.append(f"rms_norm_eps is LlamaConfig's default {LLAMA_RMS_NORM_EPS} (the engines read that)")
    for key in ("vocab_size", "max_position_embeddings"):
        if config.get(key) is None:
            if target_config is None or target_config.get(key) is None:
                raise Eagle3Error(f"config.json lacks {key}", hint="pass --target-model to take it from the target")
            config[key] = target_config[key]
            read.notes.append(f"{key} taken from the target")
    return config


def _layer_ids(layout: str, raw: Mapping[str, Any], fields: Mapping[str, Any], read: LayoutRead, num_layers: int | None) -> list[int]:
    """Capture layers in vLLM numbering, from wherever the layout keeps them, else the target's defaults."""
    eagle_config = raw.get(EAGLE_CONFIG_KEY) if isinstance(raw.get(EAGLE_CONFIG_KEY), Mapping) else {}
    top = fields.get(VLLM_LAYER_IDS_KEY)
    output_numbered = raw.get(ANGELSLIM_LAYER_IDS_KEY) if layout == "angelslim" else eagle_config.get(VLLM_LAYER_IDS_KEY)
    for name, ids in (("top-level", top), ("output-numbered", output_numbered)):
        if ids is not None and not (isinstance(ids, list) and all(is_int(layer_id) for layer_id in ids)):
            raise Eagle3Error(f"config.json: {name} capture layer ids {json.dumps(ids)} are not a list of integers")
    if output_numbered is not None:
        shifted = [layer_id + 1 for layer_id in output_numbered]
        if top is not None and top != shifted:
            raise Eagle3Error(f"config.json: capture layers disagree: {VLLM_LAYER_IDS_KEY} {top} (vLLM numbering) should be {output_numbered} (output numbering) plus one")
        if top is None and layout != "angelslim":
            read.warnings.append(
                f"capture layers {output_numbered} are written in output-of-layer numbering only; vLLM reads them as its own "
                f"(one layer early): serve the converted draft (ids {shifted} in vLLM numbering)"
            )
        if layout == "angelslim":
            read.warnings.append(f"vLLM does not read {ANGELSLIM_LAYER_IDS_KEY}: served as is it captures its default layers, not {shifted}")
        return shifted
    if top is not None:
        return list(top)
    if num_layers is None:
        raise Eagle3Error("config.json names no capture layers", hint="pass --target-model: the default layers [2, N // 2, N - 3] depend on its depth")
    read.notes.append("capture layers are the default [2, N // 2, N - 3] for the target (the source names none)")
    return list(default_aux_layer_ids(num_layers))


def _complete_vocab_map(read: LayoutRead) -> None:
    """``d2t`` as int64 and ``t2d`` rebuilt from it where the layout leaves them out (ModelOpt
    writes no ``t2d``, and no ``d2t`` at all when draft and target vocabularies are one)."""
    tensors, config = read.tensors, read.config
    draft_vocab, vocab = config.get("draft_vocab_size"), config.get("vocab_size")
    if "d2t" not in tensors:
        if draft_vocab != vocab:
            raise Eagle3Error(
                f"the draft has no d2t although its vocabulary ({draft_vocab}) is smaller than the target's ({vocab})",
                hint="engines would read draft id i as target id i; this draft cannot be used as is",
            )
        tensors["d2t"] = torch.zeros(draft_vocab, dtype=torch.int64)
        read.notes.append("d2t is all zeros (draft vocabulary = target vocabulary)")
    elif tensors["d2t"].dtype != torch.int64 and not tensors["d2t"].dtype.is_floating_point:
        tensors["d2t"] = tensors["d2t"].to(torch.int64)
    if "t2d" not in tensors and is_int(vocab) and tensors["d2t"].dtype == torch.int64:
        t2d = torch.zeros(vocab, dtype=torch.bool)
        target_ids = torch.arange(len(tensors["d2t"])) + tensors["d2t"]
        t2d[target_ids.clamp(0, vocab - 1)] = True  # out-of-range ids are reported by the map check
        tensors["t2d"] = t2d
        read.notes.append("t2d rebuilt from d2t")


def write_layout(directory: Path, layout: str, config: DraftConfig, tensors: Mapping[str, torch.Tensor], *,
                 verifier: Mapping[str, Any] | None = None, speculative_tokens: int = 3) -> None:
    """Write a checked draft (project keys) as ``speculators`` or ``modelopt`` into ``directory``
    (the ``eagle3`` layout is the checkpoint module's ``save_checkpoint``)."""
    from safetensors.torch import save

    if layout == "speculators":
        if verifier is None:
            raise Eagle3Error("the speculators layout names the target (verifier.name_or_path)", hint="pass --target-model")
        data, weights = speculators_config(config, verifier, speculative_tokens), dict(tensors)
    elif layout == "modelopt":
        if config.fc_norm:
            raise Eagle3Error("ModelOpt's layout has no fc_norm; an engine reading it would skip the norms", hint="convert to eagle3 or speculators")
        data = modelopt_config(config)
        weights = {key: tensor for key, tensor in tensors.items() if key != "t2d" and (key != "d2t" or config.draft_vocab_size < config.vocab_size)}
    else:
        raise ValueError(layout)
    weights = {key: tensor.detach().cpu().contiguous() for key, tensor in rename_layer_keys(weights, "midlayer.", "layers.0.").items()}
    payload = save(weights, metadata={"format": "pt"})
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / SAFETENSORS_FILE, lambda handle: handle.write(payload))
    atomic_write_json(directory / CONFIG_FILE, data)


def speculators_config(config: DraftConfig, verifier: Mapping[str, Any], speculative_tokens: int) -> dict[str, Any]:
    """The speculators ``config.json``: the draft's Llama layer nested, capture layers in vLLM
    numbering, ``norm_before_residual`` written false (vLLM's default for the layout is true)."""
    layer = draft_config_to_json(config)
    for key in ("architectures", "draft_vocab_size", "target_hidden_size", "fc_norm", VLLM_LAYER_IDS_KEY, EAGLE_CONFIG_KEY):
        layer.pop(key, None)
    return {
        "architectures": ["Eagle3Speculator"],
        "speculators_model_type": "eagle3",
        "speculators_config": {
            "algorithm": "eagle3",
            "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": speculative_tokens,
                                  "verifier_accept_k": 1, "accept_tolerance": 0.0}],
            "default_proposal_method": "greedy",
            "verifier": dict(verifier),
        },
        "transformer_layer_config": layer,
        "draft_vocab_size": config.draft_vocab_size,
        "target_hidden_size": config.target_hidden_size,
        VLLM_LAYER_IDS_KEY: list(config.aux_layer_ids),
        "norm_before_residual": False,
        "norm_before_fc": False,
        "fc_norm": config.fc_norm,
        "norm_output": False,
    }


def modelopt_config(config: DraftConfig) -> dict[str, Any]:
    """ModelOpt's export ``config.json``: its ``eagle_config`` switches with the capture layers in
    its output numbering, plus the vLLM-numbered top-level ids so vLLM captures the right layers."""
    data = draft_config_to_json(config)
    data[EAGLE_CONFIG_KEY] = {**data[EAGLE_CONFIG_KEY], **MODELOPT_EAGLE_CONFIG}
    return data
