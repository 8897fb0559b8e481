#!/usr/bin/env bash
# The sanitizer run (issue 10): builds the checkpoint readers, the runtime,
# its tools (megatron-run, megatron-tokenize) and their tests with
# AddressSanitizer + UndefinedBehaviorSanitizer (GCC, -O1) into build-asan/,
# then runs those tests: the GoogleTest suites, end to end, and tokenizer
# agreement. What links MLIR (megatron-compile, megatron-opt, the passes) is
# not rebuilt: the tests take megatron-compile from the plain build, and
# Debian's MLIR libraries are not sanitized anyway. Any sanitizer report,
# from a test binary or from a tool a Python test ran, fails the run:
# reports go to files, so a test that expected an error exit cannot hide one.
set -euo pipefail
cd "$(dirname "$0")/.."

plain=${BUILD_DIR:-build}
[ -x "$plain/bin/megatron-compile" ] || bash scripts/build.sh
dir=${SANITIZE_BUILD_DIR:-build-asan}
if [ ! -f "$dir/build.ninja" ]; then
  cmake -G Ninja -S . -B "$dir" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELEASE="-O1 -g1 -DNDEBUG" \
    -DMEGATRON_SANITIZE=address,undefined \
    -DMEGATRON_COMPILER="$PWD/$plain/bin/megatron-compile" \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit
fi
reports=$PWD/$dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
# allow_user_poisoning=0: LLVM's headers poison BumpPtrAllocator slabs when
# compiled with ASan, but Debian's LLVM library is not, so the pairs would
# not match.
export ASAN_OPTIONS=log_path=$reports/asan:allow_user_poisoning=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1

# GoogleTest discovery runs the sanitized test binaries during the build.
cmake --build "$dir" -j "$(nproc)" || status=$?
[ "${status:-0}" != 0 ] || ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" || status=$?
if compgen -G "$reports/*" >/dev/null; then
  for report in "$reports"/*; do
    echo "== $report" >&2
    head -n 60 "$report" >&2
  done
  echo "error: the sanitizers reported problems (all reports: $reports)" >&2
  exit 1
fi
exit "${status:-0}"
