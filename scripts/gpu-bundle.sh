#!/usr/bin/env bash
# Packs a build for an NVIDIA GPU machine that has a driver, the CUDA
# toolkit and PyTorch but not this project's build dependencies (LLVM,
# MLIR, oneDNN, OpenBLAS, ...): the tools and cuda-tests (stripped), every
# shared library they load except the C and C++ runtimes and the
# compression, crypto and terminal libraries any such machine has, the
# CUDA tests' artifacts and the good test fixtures, and run.sh. There, from a
# checkout of the same commit, as root (run.sh puts OpenBLAS where the
# runtime loads it from):
#   mkdir -p /tmp/gpu && tar -xJf BUNDLE -C /tmp/gpu && bash /tmp/gpu/run.sh [PHASE] [--compile]
# runs the phases in turn, or PHASE alone (each fits a device call of 10
# minutes): kernels (cuda-tests, each in its own process, none skipped but
# for want of more GPUs), e2e and e2e-more (the e2e suite's CUDA classes
# against the reference, in two halves), bench (bench/gpu.sh, its flags
# passed on).
# Usage: scripts/gpu-bundle.sh OUT.tar.xz   (BUILD_DIR as for scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: scripts/gpu-bundle.sh OUT.tar.xz}
build_dir=${BUILD_DIR:-build}
tools=(megatron-compile megatron-run megatron-bench cuda-tests)
for t in "${tools[@]}"; do
  [ -x "$build_dir/bin/$t" ] || { echo "error: $build_dir/bin/$t is missing (build with the CUDA toolkit)" >&2; exit 1; }
done
openblas=$(sed -n 's/^MEGATRON_OPENBLAS:FILEPATH=//p' "$build_dir/CMakeCache.txt")
openblas=$(dirname "$openblas")/libopenblas.so.0   # the runtime loads this path

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/openblas" "$stage/artifacts"
for t in "${tools[@]}"; do
  strip -o "$stage/bin/$t" "$build_dir/bin/$t"
done
ldd "${tools[@]/#/$build_dir/bin/}" "$openblas" | awk '/=> \//{print $3}' | sort -u |
  grep -vE '/(libc|libm|libmvec|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libz|liblzma|libbz2|libzstd|libffi|libcrypto|libtinfo)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
cp -L "$openblas" "$stage/openblas/"
# libLLVM links Z3 (the static analyzer's solver) and, through libxml2,
# ICU's data: 30 MB of what the device tool can carry, for features the
# compiler never uses. Stubs take their place, defining what the others
# name (functions that abort, an empty data blob), and the stubbed
# compiler must compile a fixture here before the bundle is written.
undefined() {
  nm -D --undefined-only "$stage"/lib/* "$stage"/bin/* 2>/dev/null |
    awk '{print $2}' | sed 's/@.*//' | grep -E "$1" | sort -u
}
stub() { # soname, C source
  [ -e "$stage/lib/$1" ] || return 0
  echo "$2" | gcc -shared -fPIC -x c -Wl,-soname,"$1" -o "$stage/lib/$1" -
}
stub libz3.so.4 "$(echo '#include <stdlib.h>'; undefined '^Z3_' | sed 's/.*/void &(void) { abort(); }/')"
for icu in "$stage"/lib/libicudata.so.*; do
  if [ -e "$icu" ]; then
    stub "$(basename "$icu")" "$(undefined '^icudt[0-9]+_dat$' | sed 's/.*/const char &[16];/')"
  fi
done
LD_LIBRARY_PATH="$stage/lib" "$stage/bin/megatron-compile" "$build_dir/test/fixtures/megatron/gpt2_v3_tp1" \
  --target cuda -o "$stage/check.mtc" >/dev/null ||
  { echo "error: the bundled megatron-compile does not run with its stubs" >&2; exit 1; }
rm "$stage/check.mtc"
cp "$build_dir"/test/unit/runtime/artifacts/{*-cuda,gpt2}.mtc "$stage/artifacts/"
# The e2e suite's CUDA classes read the good fixtures only (the bad ones
# would take room the bundle has not got).
mkdir -p "$stage/fixtures"
tar -C "$build_dir/test/fixtures" --exclude=./bad -cf - . | tar -C "$stage/fixtures" -xf -
cat >"$stage/run.sh" <<EOF
#!/usr/bin/env bash
# Made by scripts/gpu-bundle.sh; run from the checkout it was made from.
set -uo pipefail
here=\$(cd "\$(dirname "\$0")" && pwd)
export LD_LIBRARY_PATH=\$here/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
if [ ! -e $openblas ]; then
  mkdir -p $(dirname "$openblas") && cp "\$here/openblas/libopenblas.so.0" $openblas ||
    { echo "error: cannot install OpenBLAS at $openblas (run as root)" >&2; exit 1; }
fi
nvidia-smi -L || { echo "error: no NVIDIA GPU visible (nvidia-smi)" >&2; exit 1; }
phases=(kernels e2e e2e_more bench)
case \${1:-} in kernels|e2e|bench) phases=("\$1"); shift ;; e2e-more) phases=(e2e_more); shift ;; esac
status=0
kernels() {
  # Each GPU test in a process of its own: a kernel's fault poisons its
  # CUDA context, and would fail every test after it.
  export MEGATRON_CUDA_ARTIFACTS=\$here/artifacts
  for t in \$("\$here/bin/cuda-tests" --gtest_list_tests | awk '/^[^ ]/ {s = \$1} /^  / {print s \$1}'); do
    out=\$("\$here/bin/cuda-tests" --gtest_filter="\$t" 2>&1) || status=1
    echo "\$out" | grep -E '^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z0-9_]+\.[A-Za-z0-9_]+ |Failure|Expected|Which is|at [0-9]|max error'
    # Only the NCCL test may skip, for want of GPUs or of NCCL itself.
    if echo "\$out" | grep -q '^\[  SKIPPED' && ! echo "\$out" | grep -qE 'need as many CUDA devices|NCCL collectives need'; then
      echo "error: \$t was skipped" >&2; status=1
    fi
  done
}
unittests() {
  (cd test/e2e && MEGATRON_FIXTURES=\$here/fixtures MEGATRON_BIN=\$here/bin python3 -m unittest "\$@") ||
    status=1
}
e2e() { unittests test_e2e.CudaFixtures test_e2e.CudaHalfPrecision test_e2e.CudaInt8; }
e2e_more() {
  unittests test_e2e.CudaUnfused test_e2e.CudaTensorParallel \
    test_e2e.TensorParallelJobs.test_nccl_collectives_run_or_say_why_not
}
bench() { bash bench/gpu.sh --bin "\$here/bin" "\$@" || status=1; }
for phase in "\${phases[@]}"; do
  echo "== \$phase (\$(date +%T))"
  "\$phase" "\$@"
done
exit \$status
EOF
chmod +x "$stage/run.sh"
tar -C "$stage" -cf - . | xz -T0 -9e >"$out"
echo "wrote $out ($(du -h "$out" | cut -f1))"
# The device tool carries at most 64 MiB, the checkout included.
total=$(( $(stat -c %s "$out") + $(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s}') ))
if [ "$total" -gt $((64 << 20)) ]; then
  echo "warning: bundle + checkout = $total bytes, over the device tool's 64 MiB" >&2
else
  echo "bundle + checkout: $total bytes, $(( (64 << 20) - total )) under 64 MiB"
fi
