#!/usr/bin/env bash
# Fusion on the CPU (issue 6): 345M-shaped BERT and GPT-2 compiled with the
# default (fused) pipeline and with --no-fuse, side by side with PyTorch
# eager (bench/torch_peer.py, same threads) in the same run:
#   - plan steps and activation traffic per layer at 1 x 128 (info --steps);
#   - BERT forward 1 x 128 median latency;
#   - GPT-2 prefill of 32 tokens and decode tokens/s.
# Checkpoints come from bench/e2e.sh's cache (generated there once).
#
# Usage: bench/fusion.sh [OUTDIR] [--threads N] [--iters N]
set -euo pipefail
cd "$(dirname "$0")/.."

outdir=/tmp/megatron-bench threads=$(nproc) iters=20
source bench/common.sh
bench_setup fusion "$@"
for variant in fused unfused; do
  flags=()
  [ "$variant" = unfused ] && flags=(--no-fuse)
  for model in bert gpt2; do
    echo "megatron-compile $model ($variant)" >&2
    "$compile" "$outdir/${model}_345m" "${flags[@]}" -o "$results/${model}_$variant.mtc"
    "$runner" "$results/${model}_$variant.mtc" info --steps --seq 128 --json \
      >"$results/steps_${model}_$variant.json"
  done
  echo "megatron-bench ($variant)" >&2
  "$bench" "$results/bert_$variant.mtc" forward --batch 1 --seq 128 --iters "$iters" \
    --threads "$threads" >"$results/forward_$variant.json"
  "$bench" "$results/gpt2_$variant.mtc" decode --prompt 32 --new-tokens 64 --iters 3 \
    --threads "$threads" >"$results/decode_$variant.json"
done
vocab() { "$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab"])' "$1"; }
echo "torch_peer.py" >&2
"$py" bench/torch_peer.py "$outdir/bert_345m" forward --batch 1 --seq 128 --iters "$iters" \
  --threads "$threads" --vocab "$(vocab "$results/forward_fused.json")" >"$results/forward_torch.json"
"$py" bench/torch_peer.py "$outdir/gpt2_345m" decode --prompt 32 --new-tokens 64 --iters 3 \
  --threads "$threads" --vocab "$(vocab "$results/decode_fused.json")" >"$results/decode_torch.json"

results_table <<'PY'
print('| measurement | fused | unfused (--no-fuse) | torch eager fp32 | fused vs unfused | fused vs torch |')
print('|---|---:|---:|---:|---:|---:|')
for model, label in (('bert', 'BERT-345M'), ('gpt2', 'GPT-2-345M')):
    f, u = get(f'steps_{model}_fused')[0], get(f'steps_{model}_unfused')[0]
    print(f'| {label} plan steps per layer | {f["steps_per_layer"]:.0f} | {u["steps_per_layer"]:.0f} | | '
          f'{u["steps_per_layer"] / f["steps_per_layer"]:.1f}x fewer | |')
    print(f'| {label} activation MiB per layer (1x128) | {f["bytes_per_layer"] / 2**20:.2f} | '
          f'{u["bytes_per_layer"] / 2**20:.2f} | | {u["bytes_per_layer"] / f["bytes_per_layer"]:.1f}x less | |')
for what, mode, key, higher in (('BERT-345M forward 1x128, median ms', 'forward', 'median_ms', False),
                                ('GPT-2-345M prefill 32 tokens, median ms', 'decode', 'prefill_ms', False),
                                ('GPT-2-345M decode, tokens/s', 'decode', 'tokens_per_s', True)):
    f, u, t = (get(f'{mode}_{v}')[key] for v in ('fused', 'unfused', 'torch'))
    ratio = (lambda a, b: a / b) if higher else (lambda a, b: b / a)
    print(f'| {what} | {f:.1f} | {u:.1f} | {t:.1f} | {ratio(f, u):.2f}x | {ratio(f, t):.2f}x |')
PY
