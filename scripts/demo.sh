#!/usr/bin/env bash
# The main job on the embedded defaults: build, generate a small Megatron-LM
# checkpoint, and import it into the megatron dialect.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
fixtures="$build_dir/test/fixtures"

echo "== Megatron-BERT (Megatron-LM format, TP=2, checkpoint_version 3.0) -> megatron IR"
"$build_dir/bin/megatron-compile" "$fixtures/megatron/bert_v3_tp2" \
  --compile-to=import -o "$build_dir/demo-bert.mlir"
head -n 12 "$build_dir/demo-bert.mlir"
echo "   ... written to $build_dir/demo-bert.mlir"

echo "== Megatron-GPT2 (NGC zip, no args; config from JSON) -> megatron IR"
"$build_dir/bin/megatron-compile" "$fixtures/megatron/gpt2_ngc.zip" \
  --config "$fixtures/megatron/gpt2_ngc_config.json" \
  --compile-to=import -o "$build_dir/demo-gpt2.mlir"
grep -c "megatron.weight" "$build_dir/demo-gpt2.mlir" | sed 's/^/   weights referenced: /'
echo "   ... written to $build_dir/demo-gpt2.mlir"
