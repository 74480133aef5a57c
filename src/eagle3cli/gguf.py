"""Turn a GGUF file (llama.cpp format) into an HF model directory every stage can use.

transformers de-quantises GGUF weights on load (``gguf_file=``); the result is saved as a
plain ``safetensors`` model with its tokenizer and chat template, without the GGUF
quantisation markers (so vLLM, dump-hidden, training and bench read it like any HF model).
"""

from __future__ import annotations

from pathlib import Path

from eagle3cli.config import GgufDtype
from eagle3cli.errors import Eagle3Error
from eagle3cli.fileio import prepare_output_dir, staged_directory


def convert_gguf(gguf_path: Path, output_dir: Path, *, dtype: GgufDtype = "float32", overwrite: bool = False) -> Path:
    """Load ``gguf_path`` with transformers and save model + tokenizer to ``output_dir``.

    The directory appears complete or not at all (written beside it, then renamed).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    output_dir = Path(output_dir)
    if not gguf_path.is_file():
        raise Eagle3Error(f"GGUF file {gguf_path} does not exist")
    if output_dir.exists() and not overwrite:
        raise Eagle3Error(f"{output_dir} already exists", hint="pass --overwrite to replace it, or another --output-dir")
    prepare_output_dir(output_dir.parent, "--output-dir's parent")  # before the model is loaded
    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError) as error:
        raise Eagle3Error(f"transformers could not load {gguf_path}: {error}", hint="is it a GGUF of a causal LM?") from error
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with staged_directory(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return output_dir
