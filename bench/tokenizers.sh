#!/usr/bin/env bash
# Tokenizer benchmark: our megatron-tokenize against Hugging Face's pure-JS
# tokenizers (@huggingface/tokenizers, test/tokenizer/reference_tokenize.mjs)
# on the same corpus (test/tokenizer/make_corpus.py), GPT-2 and BERT uncased
# with the real vocabularies. Each side times only its encode loop (--time);
# the table also says whether every line's ids agree.
#
# Usage: bench/tokenizers.sh [OUTDIR] [--lines N]
#   OUTDIR     reference install, corpus and outputs (default /tmp/megatron-tokenizer-bench)
#   --lines N  corpus lines (default 50000: one pass of 12000 is too short to time)
# Needs a build (build/bin/megatron-tokenize), node/npm and the npm registry
# (first run only).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 1; }

outdir=/tmp/megatron-tokenizer-bench lines=50000
while [ $# -gt 0 ]; do
  case $1 in
    --lines) lines=${2:?--lines needs a value}; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) outdir=$1; shift ;;
  esac
done

py=/usr/bin/python3 tool=build/bin/megatron-tokenize
[ -x "$tool" ] || die "$tool is missing: build first (scripts/build.sh, or cmake --build build)"
[ -x "$py" ] || die "$py is missing"
command -v node >/dev/null || die "node is missing (apt-get install nodejs npm)"

ref=$outdir/reference corpus=$outdir/corpus-$lines.txt res=$outdir/results
mkdir -p "$res"
test/tokenizer/fetch_reference.sh "$ref"
"$py" test/tokenizer/make_corpus.py "$corpus" --lines "$lines"  # cheap; never stale

# Runs one side: ids to $res/NAME.ids, timing JSON to $res/NAME.time.
side() { # NAME COMMAND...
  local name=$1
  shift
  echo "running: $name" >&2
  if ! "$@" --lines "$corpus" --time >"$res/$name.ids" 2>"$res/$name.err"; then
    cat "$res/$name.err" >&2
    die "$name failed (command: $* --lines $corpus --time)"
  fi
  tail -n 1 "$res/$name.err" >"$res/$name.time"
}
refjs=(node test/tokenizer/reference_tokenize.mjs --modules "$ref/node_modules")
side gpt2-ours "$tool" --vocab "$ref/gpt2-encoder.json" --merges "$ref/gpt2-vocab.bpe"
side gpt2-ref "${refjs[@]}" --gpt2 "$ref/gpt2-encoder.json" "$ref/gpt2-vocab.bpe"
side bert-ours "$tool" --vocab "$ref/bert-vocab.txt"
side bert-ref "${refjs[@]}" --bert "$ref/bert-vocab.txt"

echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1); node $(node --version)"
echo
"$py" - "$res" <<'EOF'
import json, sys
res = sys.argv[1]
def ids(name):
    with open(f"{res}/{name}.ids", encoding="utf-8") as f:
        return [json.loads(l) for l in f.read().split("\n") if l]
def timing(name):
    with open(f"{res}/{name}.time", encoding="utf-8") as f:
        return json.load(f)
print("| tokenizer | lines | tokens | ours tokens/s | reference tokens/s | ours / reference | ids agree |")
print("|---|---:|---:|---:|---:|---:|---|")
for model, label in [("gpt2", "GPT-2 BPE"), ("bert", "BERT uncased WordPiece")]:
    o, r = timing(f"{model}-ours"), timing(f"{model}-ref")
    a, b = ids(f"{model}-ours"), ids(f"{model}-ref")
    same = sum(x == y for x, y in zip(a, b)) if len(a) == len(b) else 0
    agree = "yes (100%)" if same == len(b) and len(a) == len(b) else f"NO ({same}/{len(b)} lines)"
    ratio = o["tokens_per_s"] / r["tokens_per_s"] if r["tokens_per_s"] else float("nan")
    print(f"| {label} | {r['lines']} | {r['tokens']} | {o['tokens_per_s']:,.0f} | "
          f"{r['tokens_per_s']:,.0f} | {ratio:.2f}x | {agree} |")
EOF
