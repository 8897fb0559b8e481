#!/usr/bin/env bash
# End-to-end benchmark (issue 3), in one run on one machine, side by side:
#   - megatron-compile time and peak RSS for 345M-shaped BERT and GPT-2
#     Megatron-LM checkpoints (random weights, generated once into OUTDIR);
#   - BERT-345M forward latency, batch 1 x 128 tokens: our runtime
#     (megatron-bench) vs PyTorch eager fp32 on the same weights
#     (bench/torch_peer.py), same thread count, median of timed runs;
#   - GPT-2-345M greedy generation: prefill a 32-token prompt, then 64 decode
#     steps with a KV cache, batch 1: tokens/s, ours vs torch.
# Targets: BERT compiles in < 60 s and < 3 GB; our BERT forward is no slower
# than torch eager (speedup >= 1).
#
# Usage: bench/e2e.sh [OUTDIR] [--threads N] [--iters N] [--decode-iters N] [--torch-only]
#   OUTDIR        checkpoints, artifacts and results (default /tmp/megatron-bench)
#   --threads N   threads for both sides (default: nproc)
#   --iters N     timed BERT forward runs (default 20, at least 10)
#   --decode-iters N   timed GPT-2 generations (default 3)
#   --torch-only  skip compiling and our runtime (e.g. before artifacts exist)
# Needs a build (scripts/build.sh; megatron-compile and megatron-bench) and
# Debian's python3-torch as /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 1; }

outdir=/tmp/megatron-bench threads=$(nproc) iters=20 decode_iters=3 torch_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --iters) iters=${2:?--iters needs a value}; shift 2 ;;
    --decode-iters) decode_iters=${2:?--decode-iters needs a value}; shift 2 ;;
    --torch-only) torch_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) outdir=$1; shift ;;
  esac
done
[ "$iters" -ge 10 ] 2>/dev/null || die "--iters must be a number >= 10 (medians of fewer runs are noise)"

py=/usr/bin/python3 compile=build/bin/megatron-compile bench=build/bin/megatron-bench
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
command -v lscpu >/dev/null || die "lscpu is missing (apt-get install util-linux)"
[ -x "$py" ] && "$py" -c 'import torch, numpy' 2>/dev/null ||
  die "$py cannot import torch and numpy (apt-get install python3-torch python3-numpy)"
if [ "$torch_only" = 0 ]; then
  for tool in "$compile" "$bench"; do
    [ -x "$tool" ] || die "$tool is missing: build first (scripts/build.sh, or cmake --build build)"
  done
fi

results=$outdir/results
mkdir -p "$results"
rm -f "$results"/*.json "$results"/*.time

# Runs a command, stdout to $1; on failure shows its stderr and stops.
step() {
  local out=$1 what=$2 log
  shift 2
  log=$(mktemp)
  echo "running: $what" >&2
  if ! "$@" >"$out" 2>"$log"; then
    cat "$log" >&2
    rm -f "$log"
    die "$what failed (command: $*)"
  fi
  rm -f "$log"
}

for model in bert gpt2; do
  ckpt=$outdir/${model}_345m
  if [ ! -f "$ckpt/latest_checkpointed_iteration.txt" ]; then
    step /dev/null "generating $ckpt (once; ~0.7 GB)" "$py" test/fixtures/gen_fixtures.py --large "$model" "$ckpt"
  fi
  if [ "$torch_only" = 0 ]; then
    step /dev/null "megatron-compile $model" \
      /usr/bin/time -f '%e %M' -o "$results/compile_$model.time" "$compile" "$ckpt" -o "$outdir/$model.mtc"
  fi
done

# One side at a time, so neither competes with the other for the cores. Ours
# first: torch then takes the artifact's vocabulary (logits width and id
# range), which for GPT-2 drops Megatron's padding rows (50304 -> 50257).
bench_pair() { # MODEL MODE ARGS...
  local model=$1 mode=$2 vocab=()
  shift 2
  if [ "$torch_only" = 0 ]; then
    step "$results/ours_$mode.json" "megatron-bench $mode" "$bench" "$outdir/$model.mtc" "$mode" "$@"
    vocab=(--vocab "$("$py" -c 'import json, sys; print(json.load(sys.stdin)["vocab"])' <"$results/ours_$mode.json")")
  fi
  step "$results/torch_$mode.json" "torch_peer.py $mode" \
    "$py" bench/torch_peer.py "$outdir/${model}_345m" "$mode" "$@" "${vocab[@]}"
}
bench_pair bert forward --batch 1 --seq 128 --iters "$iters" --threads "$threads"
bench_pair gpt2 decode --prompt 32 --new-tokens 64 --iters "$decode_iters" --threads "$threads"

echo
echo "machine: $(nproc) CPUs (nproc), $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); $threads threads per side"
if [ "$torch_only" = 0 ]; then
  echo "megatron-bench BLAS: $(ldd "$bench" | awk '/blas/ {print $3}' | xargs -r readlink -f | paste -sd ' ' -)"
fi
echo
"$py" bench/e2e_table.py "$results"
