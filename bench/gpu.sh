#!/usr/bin/env bash
# The CUDA backend against PyTorch + Transformers on one NVIDIA GPU (issue
# 7), 345M-shaped models with random weights: checkpoints generated once
# (test/fixtures/gen_fixtures.py --large), compiled with --target cuda as
# f32, f16, bf16 (16-bit linears on the tensor cores) and int8 (weight-only,
# in an f32 and in an f16 model), then
#   - BERT forward latency, batch 1 x 128 and 32 x 512 (megatron-bench's
#     times with the logits copied back to the host, and left on the device
#     as PyTorch's are);
#   - GPT-2 greedy decode tokens/s after a 128-token prompt, batch 1 and 16
#     (each step replayed as a CUDA graph; f16 batch 1 also without);
#   - for the f16 and int8-f16 models, the time per step kind of those
#     (megatron-bench --profile);
# and the same models in PyTorch (bench/gpu_torch_peer.py: eager in f32,
# f16 and bf16, with --compile also torch.compile), with the device's copy
# bandwidth for the decode floor. Every result is one JSON line in
# OUTDIR/results.jsonl; a table of them ends the output.
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
# f32, f16 and bf16 (their linears on the tensor cores) and int8
# (weight-only: with f32 activations, and in an f16 model, whose many-row
# linears widen the int8 weights to f16 for the tensor cores).
precisions=(f32 f16 bf16 int8 int8-f16)
for p in "${precisions[@]}"; do
  flags=(--target cuda --cuda-arch sm_80,sm_90)
  case $p in
    int8) flags+=(--quantize int8) ;;
    int8-f16) flags+=(--quantize int8 --dtype f16) ;;
    *) flags+=(--dtype "$p") ;;
  esac
  "$bin/megatron-compile" "$outdir/bert_345m" "${flags[@]}" --max-batch 32 --max-seq 512 \
    -o "$outdir/bert_$p.mtc"
  "$bin/megatron-compile" "$outdir/gpt2_345m" "${flags[@]}" --max-batch 16 -o "$outdir/gpt2_$p.mtc"
done

# A workload that fails is reported and the others still run (the table
# shows it as '-'); the script then exits non-zero.
failures=0
ours() {
  local p=$1 line
  shift
  if line=$("$bin/megatron-bench" "$@" --cuda-device 0); then
    echo "$line" | sed "s/^{/{\"precision\": \"$p\", /" | tee -a "$results"
  else
    echo "error: megatron-bench ($p) $* failed" >&2
    failures=$((failures + 1))
  fi
}
for p in "${precisions[@]}"; do
  ours "$p" "$outdir/bert_$p.mtc" forward --batch 1 --seq 128 --warmup 3 --iters 20
  ours "$p" "$outdir/bert_$p.mtc" forward --batch 32 --seq 512 --warmup 1 --iters 5
  for batch in 1 16; do
    ours "$p" "$outdir/gpt2_$p.mtc" decode --batch "$batch" --prompt 128 --new-tokens 128 --iters 3
  done
done
# What the decode steps' CUDA graphs bring: f16 batch 1 launched kernel by kernel.
ours f16-no-graphs "$outdir/gpt2_f16.mtc" decode --batch 1 --prompt 128 --new-tokens 128 --iters 3 \
  --cuda-graphs 0
# Where the time goes, per step kind (megatron-bench --profile: a table on
# stderr), in the 16-bit models.
for p in f16 int8-f16; do
  ours "$p-profile" "$outdir/bert_$p.mtc" forward --batch 1 --seq 128 --warmup 1 --iters 5 --profile 1
  ours "$p-profile" "$outdir/bert_$p.mtc" forward --batch 32 --seq 512 --warmup 1 --iters 2 --profile 1
  for batch in 1 16; do
    ours "$p-profile" "$outdir/gpt2_$p.mtc" decode --batch "$batch" --prompt 128 --new-tokens 32 \
      --iters 1 --profile 1
  done
done
"$py" bench/gpu_torch_peer.py --dtypes float32,float16,bfloat16 "${peer_flags[@]}" | tee -a "$results" ||
  failures=$((failures + 1))

# The table: each side's fastest precision, and PyTorch's fastest eager
# model (Megatron-BERT or BERT with SDPA); decode's floor from the copy
# bandwidth and the weight bytes a step reads.
"$py" - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith('{')]
bandwidth = next((r['copy_bandwidth_GBps'] * 1e9 for r in rows if 'copy_bandwidth_GBps' in r), None)
ours = [r for r in rows if r.get('impl') == 'megatron']
torch = [r for r in rows if 'model' in r and 'error' not in r]
precisions = ('f32', 'f16', 'bf16', 'int8', 'int8-f16')
print('\n| workload | ' + ' | '.join(f'ours {p}' for p in precisions) +
      ' | ' + ' | '.join(f'PyTorch {m} {d}' for m in ('eager', 'torch.compile') for d in ('float32', 'float16', 'bfloat16')) +
      ' | fastest ours / fastest eager |')
print('|---' * (len(precisions) + 8) + '|')
# Ours twice for BERT: with the logits copied to the host, and left on the
# device as PyTorch's are.
copied, on_device = 'median_ms', 'median_outputs_on_device_ms'
for name, mode, key, field in (('BERT 1x128, ms', 'forward', (1, 128), copied),
                               ('BERT 1x128, logits left on the device, ms', 'forward', (1, 128), on_device),
                               ('BERT 32x512, ms', 'forward', (32, 512), copied),
                               ('BERT 32x512, logits left on the device, ms', 'forward', (32, 512), on_device),
                               ('GPT-2 decode b1, tokens/s', 'decode', 1, 'tokens_per_s'),
                               ('GPT-2 decode b16, tokens/s', 'decode', 16, 'tokens_per_s')):
    lower = mode == 'forward'
    def mine(p):
        for r in ours:
            if r['precision'] == p and r['mode'] == mode and (r['batch'], r.get('seq')) == (key if mode == 'forward' else (key, None)):
                return r[field]
    def theirs(m, d):
        got = [r['ms'] if lower else r['tokens_per_s'] for r in torch if r['dtype'] == d and r['batch'] == (key[0] if mode == 'forward' else key)
               and (r.get('seq') == key[1] if mode == 'forward' else 'decode' in r['mode']) and r['mode'].startswith(m)]
        return (min(got) if lower else max(got)) if got else None
    a = [mine(p) for p in precisions]
    b = [theirs(m, d) for m in ('eager', 'torch.compile') for d in ('float32', 'float16', 'bfloat16')]
    pick = min if lower else max
    best_a, best_b = pick((x for x in a if x), default=None), pick((x for x in b[:3] if x), default=None)
    ratio = '-' if not (best_a and best_b) else f'{best_b / best_a if lower else best_a / best_b:.2f}x'
    cells = ' | '.join('-' if x is None else f'{x:.1f}' for x in a + b)
    print(f'| {name} | {cells} | {ratio} |')
for r in ours:
    if r['mode'] == 'decode' and r['batch'] == 1 and bandwidth and 'profile' not in r['precision']:
        step = 1e3 / r['tokens_per_s']
        print(f"decode b1 {r['precision']}: {r['weight_bytes'] / 1e9:.2f} GB per step, floor "
              f"{r['weight_bytes'] / bandwidth * 1e3:.3f} ms at {bandwidth / 1e12:.2f} TB/s, ours {step:.3f} ms "
              f"= {r['weight_bytes'] / bandwidth * 1e3 / step:.0%} of the floor")
PY
exit $((failures > 0))
