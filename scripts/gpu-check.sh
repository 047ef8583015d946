#!/usr/bin/env bash
# GPU check (issue 18 §2): on a machine with a GPU, from a fresh clone after `npm ci` only:
#   bash scripts/gpu-check.sh [--steps 60]
# prints the WebGPU adapter, trains the Geneformer V1 6-layer model (configs/geneformer-v1-6L.yaml)
# at 512 x 4 on pbmc3k for a fixed number of steps with --backend webgpu, embeds the cells, and
# prints tokens/s next to PyTorch on the same GPU when `torch` (with CUDA) imports in python3
# (CELLFM_BENCH_PYTHON picks another interpreter). Sized to finish well inside 8 minutes on a GPU;
# not yet run on one (no GPU was lent to the session that wrote it, see docs/gpu.md).
# Needs the GPU's Vulkan driver (docs/gpu.md). Smoke test of the whole flow on a CPU machine with
# SwiftShader (1 step of a 1-layer model at 32 x 2, 20 cells embedded; minutes, as SwiftShader runs the
# 25,426-gene output layer slowly; not a measurement):
#   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json bash scripts/gpu-check.sh --smoke
# or the flow alone on wasm: bash scripts/gpu-check.sh --smoke --backend wasm
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/cli.js ] || npm run build >/dev/null
node --version
exec node scripts/gpu-check.mjs "$@"
