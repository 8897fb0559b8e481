#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the whole suite, then the GPU
# checks CI cannot run (the generated PTX launched through the driver and
# compared with the CPU kernels, whole models on the CUDA backend against
# the CPU backend), then the GPU benchmark against PyTorch (bench/gpu.sh).
# Usage: scripts/gpu-check.sh   (BUILD_DIR as for scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

nvidia-smi -L || { echo "error: no NVIDIA GPU visible (nvidia-smi)" >&2; exit 1; }
bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
# The GPU tests skip without a device; here none may skip.
out=$("$build_dir/bin/cuda-tests" 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -n 5
# Only the NCCL test may skip: it needs a GPU per rank, and NCCL.
skipped=$(echo "$out" | grep '^\[  SKIPPED \] [A-Za-z]' | grep -v NcclCollectives || true)
if [ -n "$skipped" ]; then
  echo "error: GPU tests were skipped on a GPU machine:" >&2
  echo "$skipped" >&2
  exit 1
fi
bash bench/gpu.sh --bin "$build_dir/bin"
