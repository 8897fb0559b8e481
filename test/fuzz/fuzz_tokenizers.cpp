// Both tokenizers on arbitrary bytes (invalid UTF-8 included): no crash,
// offsets inside the text, and byte-level BPE decodes to exactly the input.
#include "megatron/runtime/Tokenizer.h"
#include "test/unit/runtime/TinyTokenizers.h"

#include <cstdlib>

using namespace megatron::runtime;

namespace {
std::unique_ptr<Tokenizer> wordPiece() {
  TokenizerSpec spec;
  spec.vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "the", "中", "é", "."};
  std::unique_ptr<Tokenizer> t;
  if (!Tokenizer::create(spec, t).ok())
    std::abort();
  return t;
}

std::unique_ptr<Tokenizer> byteLevel() {
  std::unique_ptr<Tokenizer> t;
  if (!Tokenizer::create(megatron::test::byteLevelSpec(
                             {"t h", "th e", "Ġ t", "Ġt h", "Ġth e", "e r", "' s"}),
                         t)
           .ok())
    std::abort();
  return t;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static std::unique_ptr<Tokenizer> bert = wordPiece(), gpt2 = byteLevel();
  std::string_view text(reinterpret_cast<const char *>(data), size);
  for (Tokenizer *t : {bert.get(), gpt2.get()}) {
    Encoding e = t->encode(text);
    for (auto [begin, end] : e.offsets)
      if (begin > end || end > size)
        std::abort();
    std::string back;
    if (!t->decode(e.ids, false, back).ok())
      std::abort();
    if (t == gpt2.get() && back != text) // byte-level BPE is lossless
      std::abort();
  }
  return 0;
}
