#!/usr/bin/env bash
# The CPU backend against PyTorch (issue 9) on one machine, one side at a
# time on the same threads, in rounds. 345M-shaped BERT and GPT-2
# checkpoints with random weights (generated once into the cache) are
# compiled for each precision, then:
#   - compile time, peak memory and artifact size;
#   - BERT forward latency, batch 1 x 128 and 8 x 512;
#   - GPT-2 prefill of 128 tokens and greedy decode tokens/s (32 steps), at
#     batch 1 and 8;
# each next to the same model in PyTorch eager (bench/torch_peer.py,
# torch.inference_mode): fp32 for f32, bf16 for bf16 (only where the CPU
# has AVX512-BF16 or AMX), dynamic int8 of the linear layers for int8
# (weight-only, --quantize int8, with --dtype bf16 where the CPU has bf16:
# 16-bit activations) and for w8a8 (--quantize-activations: the linears'
# inputs quantized at run time too, as PyTorch's are).
# Every run's peak RSS is recorded; medians of timed runs after warm-up.
# The whole set of runs repeats --rounds times, each workload's two sides
# next to each other in every round: this host is shared, and its speed
# moves between two levels minutes apart (the same PyTorch model took 254
# and 410 ms in one run), so a single pair can land on different levels.
# The table shows the median over rounds of each side, and of each round's
# ratio.
# The decode roofline: weight bytes a batch-1 decode step reads, per
# second, against the machine's streaming read bandwidth, measured right
# before and right after that decode run (on a shared host it drifts:
# probes minutes apart read 32 and 56 GB/s), their mean.
#
# Usage: bench/cpu.sh [OUTDIR] [--threads N] [--iters N] [--rounds N] [--precisions f32,bf16,int8,w8a8]
#   OUTDIR        checkpoint cache and results (default /tmp/megatron-bench)
#   --iters N     timed BERT 1x128 runs (default 10; 8x512 and decode: 3)
#   --rounds N    times the whole set of runs repeats (default 3; ~15 minutes each)
#   --precisions  which to measure (again); the table shows all measured
set -euo pipefail
cd "$(dirname "$0")/.."

outdir=/tmp/megatron-bench threads=$(nproc) iters=10 rounds=3 precisions=f32,bf16,int8,w8a8
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --precisions) precisions=${2:?--precisions needs a value}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
source bench/common.sh
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive count, not '$rounds'"
bench_setup cpu "${args[@]}"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"

# int8 weights keep 16-bit activations (W8A16) where the CPU multiplies
# bf16: everything but the linears' weights is bf16 there, as in the bf16
# rows; elsewhere f32.
narrow=(--dtype bf16)
if ! grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
  echo "no AVX512-BF16 or AMX on this CPU: no bf16 rows, int8 rows with f32 activations" >&2
  precisions=${precisions//bf16/}
  narrow=()
fi
IFS=, read -r -a precisions <<<"$precisions"
# Only the precisions measured now start over; the table shows every
# precision with results (so one can be re-measured alone).
for p in "${precisions[@]}"; do
  [ -n "$p" ] && rm -f "$results"/*_"$p".json "$results"/*_"$p".time
done

# Runs a command with its stdout into NAME.json and its wall seconds and
# peak RSS (KiB) into NAME.time; a failure shows its stderr and stops.
measure() {
  local name=$1 log
  shift
  log=$(mktemp)
  echo "$name: $*" >&2
  if ! /usr/bin/time -f '%e %M' -o "$results/$name.time" "$@" >"$results/$name.json" 2>"$log"; then
    cat "$log" >&2
    die "$name failed"
  fi
  rm -f "$log"
}

# megatron-compile's flags and torch_peer.py's for a precision.
flags_for() {
  case $1 in
    f32) compile_flags=() peer=() ;;
    bf16) compile_flags=(--dtype bf16) peer=(--dtype bf16) ;;
    int8) compile_flags=("${narrow[@]}" --quantize int8) peer=(--quantize int8) ;;
    w8a8) compile_flags=("${narrow[@]}" --quantize int8 --quantize-activations) peer=(--quantize int8) ;;
    *) die "unknown precision '$1' (f32, bf16, int8 or w8a8)" ;;
  esac
}

for p in "${precisions[@]}"; do
  [ -n "$p" ] || continue
  flags_for "$p"
  for model in bert gpt2; do
    measure "compile_${model}_$p" "$compile" "$outdir/${model}_345m" "${compile_flags[@]}" \
      -o "$results/${model}_$p.mtc"
  done
done

forward_small=(forward --batch 1 --seq 128 --iters "$iters" --threads "$threads")
forward_large=(forward --batch 8 --seq 512 --warmup 1 --iters 3 --threads "$threads")
decode=(decode --prompt 128 --new-tokens 32 --warmup 1 --iters 3 --threads "$threads")
# Run NAME of round r is rR_NAME.
for round in $(seq "$rounds"); do
  for p in "${precisions[@]}"; do
    [ -n "$p" ] || continue
    flags_for "$p"
    r=r$round
    measure "${r}_ours_bert_1x128_$p" "$bench" "$results/bert_$p.mtc" "${forward_small[@]}"
    measure "${r}_torch_bert_1x128_$p" "$py" bench/torch_peer.py "$outdir/bert_345m" "${forward_small[@]}" "${peer[@]}"
    measure "${r}_ours_bert_8x512_$p" "$bench" "$results/bert_$p.mtc" "${forward_large[@]}"
    measure "${r}_torch_bert_8x512_$p" "$py" bench/torch_peer.py "$outdir/bert_345m" "${forward_large[@]}" "${peer[@]}"
    for batch in 1 8; do
      if [ "$batch" = 1 ]; then
        measure "${r}_bandwidth_before_$p" "$bench" bandwidth --threads "$threads"
        measure "${r}_ours_gpt2_b1_$p" "$bench" "$results/gpt2_$p.mtc" "${decode[@]}" --batch 1
        measure "${r}_bandwidth_after_$p" "$bench" bandwidth --threads "$threads"
      else
        measure "${r}_ours_gpt2_b${batch}_$p" "$bench" "$results/gpt2_$p.mtc" "${decode[@]}" --batch "$batch"
      fi
      vocab=$("$py" -c 'import json, sys; print(json.load(sys.stdin)["vocab"])' <"$results/${r}_ours_gpt2_b${batch}_$p.json")
      measure "${r}_torch_gpt2_b${batch}_$p" "$py" bench/torch_peer.py "$outdir/gpt2_345m" "${decode[@]}" \
        --batch "$batch" --vocab "$vocab" "${peer[@]}"
    done
  done
done

results_table <<'PY'
import statistics
mib = 2 ** 20
def run(name):
    """(wall seconds, peak RSS MiB) of a measured command."""
    with open(os.path.join(sys.argv[1], name + '.time')) as f:
        seconds, kib = f.read().split()[-2:]
    return float(seconds), int(kib) / 1024
precisions = [p for p in ('f32', 'bf16', 'int8', 'w8a8')
              if os.path.exists(os.path.join(sys.argv[1], f'r1_torch_gpt2_b8_{p}.json'))]
def rounds(p):
    """The rounds that measured precision p in full."""
    found = []
    while os.path.exists(os.path.join(sys.argv[1], f'r{len(found) + 1}_torch_gpt2_b8_{p}.json')):
        found.append(f'r{len(found) + 1}')
    return found
torch_name = {'f32': 'fp32', 'bf16': 'bf16', 'int8': 'dynamic int8', 'w8a8': 'dynamic int8'}
print('| compile | seconds | peak MiB | artifact MiB |')
print('|---|---:|---:|---:|')
for model in ('bert', 'gpt2'):
    for p in precisions:
        seconds, peak = run(f'compile_{model}_{p}')
        size = os.path.getsize(os.path.join(sys.argv[1], f'{model}_{p}.mtc'))
        print(f'| {model.upper()}-345M {p} | {seconds:.1f} | {peak:.0f} | {size / mib:.0f} |')
print()
counts = sorted({len(rounds(p)) for p in precisions})
print(f'Medians over {" or ".join(map(str, counts))} rounds; the speed-up is the median of the rounds\' '
      'ratios, each of two runs side by side, the lowest and highest in brackets. int8 keeps 16-bit '
      'activations (W8A16), which PyTorch has no CPU kernel for; its dynamic int8 quantizes the '
      'activations as w8a8 does (W8A8).')
print()
print('| workload | precision | ours | PyTorch | speed-up | ours peak MiB | PyTorch peak MiB |')
print('|---|---|---:|---:|---:|---:|---:|')
rows = (('BERT forward 1x128, ms', 'bert_1x128', 'median_ms', False),
        ('BERT forward 8x512, ms', 'bert_8x512', 'median_ms', False),
        ('GPT-2 prefill 1x128, ms', 'gpt2_b1', 'prefill_ms', False),
        ('GPT-2 prefill 8x128, ms', 'gpt2_b8', 'prefill_ms', False),
        ('GPT-2 decode batch 1, tokens/s', 'gpt2_b1', 'tokens_per_s', True),
        ('GPT-2 decode batch 8, tokens/s', 'gpt2_b8', 'tokens_per_s', True))
for label, name, key, higher in rows:
    for p in precisions:
        ours = [get(f'{r}_ours_{name}_{p}')[key] for r in rounds(p)]
        theirs = [get(f'{r}_torch_{name}_{p}')[key] for r in rounds(p)]
        ratios = [a / b if higher else b / a for a, b in zip(ours, theirs)]
        peak = lambda side: max(run(f'{r}_{side}_{name}_{p}')[1] for r in rounds(p))
        print(f'| {label} | {p} (PyTorch {torch_name[p]}) | {statistics.median(ours):.1f} | '
              f'{statistics.median(theirs):.1f} | {statistics.median(ratios):.2f}x '
              f'[{min(ratios):.2f}-{max(ratios):.2f}] | {peak("ours"):.0f} | {peak("torch"):.0f} |')
print()
print('Decode roofline (GPT-2 batch 1), against the streaming read measured right before and after '
      'the run, medians over the rounds:')
print()
print('| precision | weight MiB read per token | tokens/s | achieved GB/s | measured GB/s | of measured |')
print('|---|---:|---:|---:|---:|---:|')
for p in precisions:
    runs = [get(f'{r}_ours_gpt2_b1_{p}') for r in rounds(p)]
    rates = [d['weight_bytes'] * d['tokens_per_s'] for d in runs]
    bandwidths = [(get(f'{r}_bandwidth_before_{p}')['read_bytes_per_s'] +
                   get(f'{r}_bandwidth_after_{p}')['read_bytes_per_s']) / 2 for r in rounds(p)]
    shares = [rate / bandwidth for rate, bandwidth in zip(rates, bandwidths)]
    print(f'| {p} | {runs[0]["weight_bytes"] / mib:.0f} | '
          f'{statistics.median(d["tokens_per_s"] for d in runs):.1f} | '
          f'{statistics.median(rates) / 1e9:.1f} | {statistics.median(bandwidths) / 1e9:.1f} | '
          f'{100 * statistics.median(shares):.0f}% |')
PY
