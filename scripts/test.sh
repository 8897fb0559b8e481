#!/usr/bin/env bash
# The whole test suite: build, then every lit and unit test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"
# The frontends, runtime and tools again, built with ASan + UBSan, and
# their tests (build-asan/).
bash scripts/sanitize.sh
# Fuzz smoke: every target (ASan + UBSan + libFuzzer) briefly, from a fixed
# seed; scripts/fuzz.sh SECONDS runs them longer.
FUZZ_SEED=1 bash scripts/fuzz.sh 10
