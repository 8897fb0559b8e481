#!/usr/bin/env bash
# The sanitizer run (issue 10): builds the frontends, runtime, tools and
# their tests with AddressSanitizer + UndefinedBehaviorSanitizer (GCC, -O1)
# into build-asan/, then runs their tests: lit, the GoogleTest suites, end
# to end, and tokenizer agreement. Any sanitizer report, from a test
# binary or from a tool a Python test ran, fails the run: reports go to
# files, so a test that expected an error exit cannot hide one.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
dir=${SANITIZE_BUILD_DIR:-build-asan}
if [ ! -f "$dir/build.ninja" ]; then
  cmake -G Ninja -S . -B "$dir" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" \
    -DMEGATRON_SANITIZE=address,undefined \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit
fi
reports=$PWD/$dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
# allow_user_poisoning=0: LLVM's headers poison BumpPtrAllocator slabs when
# compiled with ASan, but Debian's MLIR libraries are not, and the linker
# mixes both copies of those inline functions; the pairs would not match.
export ASAN_OPTIONS=log_path=$reports/asan:allow_user_poisoning=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1

# Only what the tests below run (no benchmarks, no CUDA kernel tests). The
# build runs sanitized tools too (the runtime tests' artifacts).
cmake --build "$dir" -j "$(nproc)" --target \
  megatron-opt megatron-compile megatron-run megatron-tokenize \
  reader-tests frontends-tests compiler-tests runtime-tests megatron-fixtures || status=$?
[ "${status:-0}" != 0 ] || ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" \
  -E '^(reference|trained-models|quantize-accuracy|cuda-tests_NOT_BUILT)$' || status=$?
if compgen -G "$reports/*" >/dev/null; then
  for report in "$reports"/*; do
    echo "== $report" >&2
    head -n 60 "$report" >&2
  done
  echo "error: the sanitizers reported problems (all reports: $reports)" >&2
  exit 1
fi
exit "${status:-0}"
