#!/usr/bin/env bash
# The main job on the embedded defaults: build, generate small Megatron-LM
# checkpoints, compile each into an artifact and run it on the CPU backend.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
build_dir=${BUILD_DIR:-build}
bin=$build_dir/bin
fixtures=$build_dir/test/fixtures
out=$build_dir/demo
mkdir -p "$out"

echo "== Megatron-BERT (Megatron-LM, TP=2 shards, checkpoint_version 3.0) -> artifact"
"$bin/megatron-compile" "$fixtures/megatron/bert_v3_tp2" --task pretraining -o "$out/bert.mtc"
"$bin/megatron-run" "$out/bert.mtc" info
echo "-- forward, a batch of two with the second row padded"
"$bin/megatron-run" "$out/bert.mtc" forward \
  --input-ids "101,7,8,9,102;101,17,18,102,0" --attention-mask "1,1,1,1,1;1,1,1,1,0" \
  --token-type-ids "0,0,0,1,1;0,0,1,1,0" --output-dir "$out/bert"

echo "== Megatron-GPT2 (NGC zip, config from JSON) -> artifact"
"$bin/megatron-compile" "$fixtures/megatron/gpt2_ngc.zip" \
  --config "$fixtures/megatron/gpt2_ngc_config.json" -o "$out/gpt2.mtc"
"$bin/megatron-run" "$out/gpt2.mtc" info
echo "-- prefill 4 tokens, then decode 4 more one at a time through the KV cache"
"$bin/megatron-run" "$out/gpt2.mtc" forward --input-ids "5,6,7,8,9,10,11,12" \
  --decode-last 4 --output-dir "$out/gpt2"
echo "== Text in, text out: the tokenizer files next to a checkpoint are embedded in its artifact"
echo "   (the tiny models have random weights: the words are the plumbing, not a language model)"
"$bin/megatron-compile" "$fixtures/text/bert" --task masked-lm -o "$out/bert-mlm.mtc"
"$bin/megatron-run" "$out/bert-mlm.mtc" tokenize "The capital of France is [MASK]."
"$bin/megatron-run" "$out/bert-mlm.mtc" fill-mask "The capital of France is [MASK]." --top-k 3
"$bin/megatron-compile" "$fixtures/text/gpt2" -o "$out/gpt2-bpe.mtc"
"$bin/megatron-run" "$out/gpt2-bpe.mtc" generate "The capital of France is" --max-new-tokens 16 \
  --temperature 0.8 --top-k 20 --seed 1
echo "== the IR of every phase: $bin/megatron-compile CHECKPOINT --compile-to=import|lower -o -"
