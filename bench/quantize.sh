#!/usr/bin/env bash
# int8 weight-only quantization on the CPU (issue 8): 345M-shaped GPT-2 and
# BERT compiled as f32 and with --quantize int8 (GPT-2 also with
# --quantize-embeddings), next to PyTorch eager fp32 and PyTorch's dynamic
# int8 quantization of the same linear layers (bench/torch_peer.py), in one
# run on the same cores, one side at a time:
#   - weight bytes of each artifact;
#   - GPT-2: prefill of 32 tokens, then 64 greedy decode steps, batch 1:
#     tokens/s, and the weight bytes a decode step reads per second (every
#     weight once per token: the decode roofline's numerator);
#   - BERT forward, batch 1 x 128: median latency.
# Checkpoints come from bench/e2e.sh's cache (generated there once).
#
# Usage: bench/quantize.sh [OUTDIR] [--threads N] [--iters N]
#   OUTDIR       the cache of bench/e2e.sh (default /tmp/megatron-bench)
set -euo pipefail
cd "$(dirname "$0")/.."

outdir=/tmp/megatron-bench threads=$(nproc) iters=10
source bench/common.sh
bench_setup quantize "$@"
rm -f "$results"/*.json
variants=("f32:" "int8:--quantize int8" "int8-emb:--quantize int8 --quantize-embeddings")
for model in gpt2 bert; do
  for variant in "${variants[@]}"; do
    name=${variant%%:*} flags=${variant#*:}
    [ "$model" = bert ] && [ "$name" = int8-emb ] && continue
    echo "megatron-compile $model $flags" >&2
    # shellcheck disable=SC2086 # flags are words
    "$compile" "$outdir/${model}_345m" $flags -o "$results/${model}_$name.mtc"
    "$runner" "$results/${model}_$name.mtc" info --json >"$results/info_${model}_$name.json"
  done
done

decode=(decode --prompt 32 --new-tokens 64 --iters 3 --threads "$threads")
forward=(forward --batch 1 --seq 128 --iters "$iters" --threads "$threads")
for name in f32 int8 int8-emb; do
  echo "megatron-bench decode $name" >&2
  "$bench" "$results/gpt2_$name.mtc" "${decode[@]}" >"$results/ours_decode_$name.json"
done
for name in f32 int8; do
  echo "megatron-bench forward $name" >&2
  "$bench" "$results/bert_$name.mtc" "${forward[@]}" >"$results/ours_forward_$name.json"
done
vocab=$("$py" -c 'import json, sys; print(json.load(sys.stdin)["vocab"])' <"$results/ours_decode_f32.json")
for quantize in none int8; do
  echo "torch_peer.py decode / forward --quantize $quantize" >&2
  "$py" bench/torch_peer.py "$outdir/gpt2_345m" "${decode[@]}" --vocab "$vocab" \
    --quantize "$quantize" >"$results/torch_decode_$quantize.json"
  "$py" bench/torch_peer.py "$outdir/bert_345m" "${forward[@]}" \
    --quantize "$quantize" >"$results/torch_forward_$quantize.json"
done

results_table <<'PY'
mib = 2 ** 20
print('| GPT-2-345M, batch 1 | weights MiB | prefill 32 ms | decode tokens/s | weight GB/s | vs f32 artifact | vs torch (same precision) |')
print('|---|---:|---:|---:|---:|---:|---:|')
base = get('ours_decode_f32')['tokens_per_s']
for name, label, peer in (('f32', 'ours f32', 'none'), ('int8', 'ours int8', 'int8'),
                          ('int8-emb', 'ours int8 + embeddings', 'int8')):
    d, size = get('ours_decode_' + name), get('info_gpt2_' + name)['weight_bytes']
    t = get('torch_decode_' + peer)['tokens_per_s']
    print(f'| {label} | {size / mib:.0f} | {d["prefill_ms"]:.0f} | {d["tokens_per_s"]:.1f} | '
          f'{size * d["tokens_per_s"] / 1e9:.1f} | {d["tokens_per_s"] / base:.2f}x | {d["tokens_per_s"] / t:.2f}x |')
for peer, label in (('none', 'torch fp32'), ('int8', 'torch dynamic int8')):
    t = get('torch_decode_' + peer)
    print(f'| {label} | | {t["prefill_ms"]:.0f} | {t["tokens_per_s"]:.1f} | | | |')
print()
print('| BERT-345M forward 1x128 | weights MiB | median ms | vs f32 artifact | vs torch (same precision) |')
print('|---|---:|---:|---:|---:|')
base = get('ours_forward_f32')['median_ms']
for name, label, peer in (('f32', 'ours f32', 'none'), ('int8', 'ours int8', 'int8')):
    f, size = get('ours_forward_' + name), get('info_bert_' + name)['weight_bytes']
    t = get('torch_forward_' + peer)['median_ms']
    print(f'| {label} | {size / mib:.0f} | {f["median_ms"]:.0f} | {base / f["median_ms"]:.2f}x | '
          f'{t / f["median_ms"]:.2f}x |')
for peer, label in (('none', 'torch fp32'), ('int8', 'torch dynamic int8')):
    print(f'| {label} | | {get("torch_forward_" + peer)["median_ms"]:.0f} | | |')
PY
