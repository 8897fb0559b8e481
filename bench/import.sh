#!/usr/bin/env bash
# Import benchmark: 345M-shaped Megatron-LM checkpoints (random fp16 weights,
# generated once into a cache) imported by megatron-compile, next to PyTorch
# merely loading the same file with torch.load, in the same run.
# Usage: bench/import.sh [CACHE_DIR]   (needs a build: scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/megatron-compiler/bench}
compile=build/bin/megatron-compile
py=/usr/bin/python3
[ -x "$compile" ] || { echo "error: build first (scripts/build.sh)" >&2; exit 1; }

measure() { # prints "seconds peak_MiB" of a command, which must succeed
  local log
  log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null
  awk '{printf "%.2f %.0f\n", $1, $2 / 1024}' "$log"
  rm -f "$log"
}

printf '%-6s %-22s %10s %10s\n' model step seconds peak_MiB
for model in bert gpt2; do
  dir="$cache/${model}_345m"
  if [ ! -f "$dir/latest_checkpointed_iteration.txt" ]; then
    echo "generating $dir ..." >&2
    "$py" test/fixtures/gen_fixtures.py --large "$model" "$dir" >&2
  fi
  file=$(find "$dir" -name model_optim_rng.pt | head -n 1)
  read -r s m < <(measure "$compile" "$dir" --compile-to=import -o /dev/null)
  printf '%-6s %-22s %10s %10s\n' "$model" "megatron-compile import" "$s" "$m"
  read -r s m < <(measure "$py" -c "import torch, sys; torch.load(sys.argv[1], map_location='cpu')" "$file")
  printf '%-6s %-22s %10s %10s\n' "$model" "torch.load" "$s" "$m"
done
