//===- TinyTokenizers.h - small tokenizer specs for tests ------*- C++ -*-===//
//
// Shared by the tokenizer unit tests and the tokenizer fuzz target.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_TEST_UNIT_RUNTIME_TINYTOKENIZERS_H
#define MEGATRON_TEST_UNIT_RUNTIME_TINYTOKENIZERS_H

#include "megatron/runtime/Tokenizer.h"

#include <initializer_list>

namespace megatron::test {

/// GPT-2's 256 byte symbols, then one token per merge ("left right"), then
/// <|endoftext|>.
inline runtime::TokenizerSpec byteLevelSpec(std::initializer_list<const char *> merges) {
  runtime::TokenizerSpec spec;
  spec.kind = runtime::TokenizerSpec::Kind::ByteLevelBpe;
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
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
  for (const char *m : merges) {
    std::string merge = m;
    size_t space = merge.find(' ');
    spec.vocab.push_back(merge.substr(0, space) + merge.substr(space + 1));
    spec.merges.push_back(merge);
  }
  spec.vocab.push_back("<|endoftext|>");
  return spec;
}

} // namespace megatron::test

#endif // MEGATRON_TEST_UNIT_RUNTIME_TINYTOKENIZERS_H
