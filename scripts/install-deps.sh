#!/usr/bin/env bash
# Installs every build and test dependency from Debian's packages (bookworm +
# bookworm-security, where LLVM/MLIR 22 live). Safe to run repeatedly.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  flatbuffers-compiler libflatbuffers-dev
  nlohmann-json3-dev libzip-dev zlib1g-dev libutf8proc-dev
  libgtest-dev libopenmpi-dev openmpi-bin clang-22 libclang-rt-22-dev
  libopenblas-openmp-dev libopenblas0-pthread libdnnl-dev
  python3-torch python3-numpy time
)

# Node.js runs the tokenizer reference (Hugging Face's JS tokenizers, from
# npm) in the tests; a machine that already has node and npm keeps them.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
