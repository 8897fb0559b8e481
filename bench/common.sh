# Shared by the bench scripts (sourced): tools, the checkpoint cache, and
# the common options. Sets outdir, threads, iters (defaults as given before
# sourcing) from "$@" and checks that the build and torch are there.
# shellcheck shell=bash

die() { echo "error: $*" >&2; exit 1; }

py=/usr/bin/python3 compile=build/bin/megatron-compile bench=build/bin/megatron-bench
runner=build/bin/megatron-run

bench_options() {
  while [ $# -gt 0 ]; do
    case $1 in
      --threads) threads=${2:?--threads needs a value}; shift 2 ;;
      --iters) iters=${2:?--iters needs a value}; shift 2 ;;
      -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      -*) die "unknown option $1 (see --help)" ;;
      *) outdir=$1; shift ;;
    esac
  done
  for tool in "$compile" "$bench" "$runner"; do
    [ -x "$tool" ] || die "$tool is missing: build first (scripts/build.sh)"
  done
  "$py" -c 'import torch' 2>/dev/null || die "$py cannot import torch (apt-get install python3-torch)"
}

# A benchmark's start: its options ("$@" after NAME), the checkpoints, and
# its results directory $outdir/NAME as $results.
bench_setup() {
  local name=$1
  shift
  bench_options "$@"
  ensure_checkpoints
  results=$outdir/$name
  mkdir -p "$results"
}

# The 345M-shaped checkpoints, generated once into $outdir.
ensure_checkpoints() {
  for model in bert gpt2; do
    local ckpt=$outdir/${model}_345m
    if [ ! -f "$ckpt/latest_checkpointed_iteration.txt" ]; then
      echo "generating $ckpt (once; ~0.7 GB)" >&2
      "$py" test/fixtures/gen_fixtures.py --large "$model" "$ckpt" >/dev/null
    fi
  done
}

# The machine line, then the table that the Python on stdin prints from
# the JSON results in $results, each read with get(NAME) (NAME.json).
results_table() {
  echo
  machine_line
  echo
  "$py" -c "$(printf '%s\n' 'import json, os, sys' 'def get(name):' \
    '    with open(os.path.join(sys.argv[1], name + ".json")) as f:' \
    '        return json.load(f)'; cat)" "$results"
}

machine_line() {
  echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); $threads threads"
}
