// Both tokenizers on arbitrary bytes (invalid UTF-8 included): no crash,
// offsets inside the text, and byte-level BPE decodes to exactly the input.
#include "megatron/runtime/Tokenizer.h"

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
  TokenizerSpec spec;
  spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    char32_t c = printable ? char32_t(b) : next++;
    std::string s;
    if (c < 0x80) {
      s += char(c);
    } else {
      s += char(0xC0 | (c >> 6));
      s += char(0x80 | (c & 0x3F));
    }
    spec.vocab.push_back(s);
  }
  for (const char *m : {"t h", "th e", "Ġ t", "Ġt h", "Ġth e", "e r", "' s"}) {
    std::string merge = m;
    size_t space = merge.find(' ');
    spec.vocab.push_back(merge.substr(0, space) + merge.substr(space + 1));
    spec.merges.push_back(merge);
  }
  spec.vocab.push_back("<|endoftext|>");
  std::unique_ptr<Tokenizer> t;
  if (!Tokenizer::create(spec, t).ok())
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
