#!/usr/bin/env bash
# Tensor parallelism on the CPU (issue 5): 345M-shaped BERT and GPT-2
# compiled with --tp 1 and --tp 2, run in one process (ranks as threads,
# in-process collectives) on the same cores, side by side:
#   - BERT forward, batch 1 x 128: median latency;
#   - GPT-2: prefill of 32 tokens, then 64 greedy decode steps: tokens/s;
#   - the bytes one rank puts into all-reduces and all-gathers per token.
# Checkpoints come from bench/e2e.sh's cache (generated there once).
#
# Usage: bench/tp.sh [OUTDIR] [--threads N] [--iters N]
#   OUTDIR       the cache of bench/e2e.sh (default /tmp/megatron-bench)
set -euo pipefail
cd "$(dirname "$0")/.."

outdir=/tmp/megatron-bench threads=$(nproc) iters=10
source bench/common.sh
bench_setup tp "$@"
for tp in 1 2; do
  for model in bert gpt2; do
    echo "megatron-compile $model --tp $tp" >&2
    "$compile" "$outdir/${model}_345m" --tp "$tp" -o "$results/${model}_tp$tp.mtc"
  done
  echo "megatron-bench forward / decode, --tp $tp" >&2
  "$bench" "$results/bert_tp$tp.mtc" forward --batch 1 --seq 128 --iters "$iters" \
    --threads "$threads" >"$results/forward_tp$tp.json"
  "$bench" "$results/gpt2_tp$tp.mtc" decode --prompt 32 --new-tokens 64 --iters 3 \
    --threads "$threads" >"$results/decode_tp$tp.json"
done

results_table <<'PY'
rows = [('BERT-345M forward 1x128, median ms', 'forward', 'median_ms', False),
        ('GPT-2-345M prefill 32 tokens, median ms', 'decode', 'prefill_ms', False),
        ('GPT-2-345M decode, tokens/s', 'decode', 'tokens_per_s', True)]
print('| measurement | TP=1 | TP=2 | TP=2 vs TP=1 | collective bytes per token (TP=2) |')
print('|---|---:|---:|---:|---:|')
for what, mode, key, higher in rows:
    one, two = get(f'{mode}_tp1'), get(f'{mode}_tp2')
    ratio = two[key] / one[key] if higher else one[key] / two[key]
    print(f'| {what} | {one[key]:.1f} | {two[key]:.1f} | {ratio:.2f}x | '
          f'{two["collective_bytes_per_token"]:.0f} |')
PY
