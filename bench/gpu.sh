#!/usr/bin/env bash
# The CUDA backend against PyTorch + Transformers on one NVIDIA GPU (issue
# 7), 345M-shaped models with random weights: checkpoints generated once
# (test/fixtures/gen_fixtures.py --large), compiled with --target cuda, then
#   - BERT forward latency, batch 1 x 128 and 32 x 512 (megatron-bench's
#     times include copying the ids in and the logits back to the host);
#   - GPT-2 greedy decode tokens/s after a 128-token prompt, batch 1 and 16;
# and the same models in PyTorch (bench/gpu_torch_peer.py: eager in f32 and
# f16, with --compile also torch.compile), with the device's copy bandwidth
# for the decode floor. Every result is one JSON line in OUTDIR/results.jsonl.
#
# Usage: bench/gpu.sh [OUTDIR] [--bin DIR] [--compile]
#   OUTDIR     checkpoints, artifacts and results (default /tmp/megatron-bench-gpu)
#   --bin DIR  where megatron-compile and megatron-bench are (default build/bin)
#   --compile  PyTorch's torch.compile rows too (minutes of compilation)
#   PYTHON     a Python with CUDA PyTorch and Transformers (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

outdir=/tmp/megatron-bench-gpu bin=build/bin peer_flags=()
py=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=${2:?--bin needs a directory}; shift 2 ;;
    --compile) peer_flags+=(--compile); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 1 ;;
    *) outdir=$1; shift ;;
  esac
done
nvidia-smi -L || { echo "error: no NVIDIA GPU visible (nvidia-smi)" >&2; exit 1; }
mkdir -p "$outdir"
results=$outdir/results.jsonl
: >"$results"

for model in bert gpt2; do
  if [ ! -f "$outdir/${model}_345m/latest_checkpointed_iteration.txt" ]; then
    "$py" test/fixtures/gen_fixtures.py --large "$model" "$outdir/${model}_345m" >/dev/null
  fi
done
"$bin/megatron-compile" "$outdir/bert_345m" --target cuda --cuda-arch sm_80,sm_90 \
  --max-batch 32 --max-seq 512 -o "$outdir/bert.mtc"
"$bin/megatron-compile" "$outdir/gpt2_345m" --target cuda --cuda-arch sm_80,sm_90 \
  --max-batch 16 -o "$outdir/gpt2.mtc"

ours() { "$bin/megatron-bench" "$@" --cuda-device 0 | tee -a "$results"; }
ours "$outdir/bert.mtc" forward --batch 1 --seq 128 --warmup 3 --iters 20
ours "$outdir/bert.mtc" forward --batch 32 --seq 512 --warmup 1 --iters 5
for batch in 1 16; do
  ours "$outdir/gpt2.mtc" decode --batch "$batch" --prompt 128 --new-tokens 128 --iters 3
done
"$py" bench/gpu_torch_peer.py --dtypes float32,float16 "${peer_flags[@]}" | tee -a "$results"
