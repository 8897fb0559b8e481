#!/usr/bin/env bash
# Builds the fuzz targets (test/fuzz: libFuzzer + ASan + UBSan, clang-22)
# into build-fuzz/ and runs each for SECONDS (default 60) from a seed
# corpus of the test fixtures. Any crash, leak or sanitizer report fails.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_SEED=N   libFuzzer's seed (default 0: a random one; CI fixes it so
#                 its short smoke run is reproducible)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
bash scripts/install-deps.sh
fuzz_dir=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$fuzz_dir/build.ninja" ]; then
  cmake -G Ninja -S test/fuzz -B "$fuzz_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-22
fi
cmake --build "$fuzz_dir" -j "$(nproc)"

fixtures=${BUILD_DIR:-build}/test/fixtures
[ -d "$fixtures" ] || bash scripts/build.sh >/dev/null
corpus=$fuzz_dir/corpus
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pickle torch_file zip safetensors artifact tokenizers config cli_ids)
# LLVM Support comes from the uninstrumented libLLVM.so: its containers'
# annotations do not match ours, so container-overflow checks would be
# false alarms.
export ASAN_OPTIONS=detect_container_overflow=0:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for target in "${targets[@]}"; do
  seeds=$corpus/$target
  mkdir -p "$seeds"
  case $target in
    pickle|torch_file|zip) find "$fixtures" -name '*.pt' -size -2M -exec cp {} "$seeds/" \; ;;
    safetensors) find "$fixtures" -name '*.safetensors' -size -2M -exec cp {} "$seeds/" \; ;;
    artifact) find "${BUILD_DIR:-build}/test/unit/runtime/artifacts" -name '*.mtc' -size -2M \
                -exec cp {} "$seeds/" \; 2>/dev/null || true ;;
    config) find "$fixtures" -name 'config.json' -exec sh -c 'cp "$1" "$2/$(echo "$1" | md5sum | cut -c1-16).json"' _ {} "$seeds" \;
            printf 'num_attention_heads=16\nhidden_act=gelu_new\nn_inner=null\n' > "$seeds/set.txt" ;;
    cli_ids) printf '101,2003,102;101,7592,102' > "$seeds/rows.txt"
             printf '1,2|3,4;5,6|7,8' > "$seeds/choices.txt" ;;
    tokenizers) printf 'Hello world, it'"'"'s 2024!\n中文 é \xff\xfe' > "$seeds/seed.txt" ;;
  esac
  echo "== fuzz_$target for ${seconds}s" >&2
  log=$fuzz_dir/fuzz_$target.log
  if ! "$fuzz_dir/fuzz_$target" -max_total_time="$seconds" -seed="${FUZZ_SEED:-0}" \
      -max_len=1048576 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$fuzz_dir/crash-$target-" "$seeds" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "error: fuzz_$target found a problem (log: $log)" >&2
    exit 1
  fi
  grep -E '^(Done|#[0-9]+ *DONE)' "$log" | tail -n 1 >&2 || tail -n 1 "$log" >&2
done
