//===- Unicode.h - the character classes tokenizers depend on --*- C++ -*-===//
//
// Categories and decompositions come from utf8proc. The class definitions
// follow Hugging Face's tokenizers (the JavaScript implementation, whose ids
// the tests require): whitespace is ECMAScript's `\s`, punctuation is
// `\p{P}` plus every ASCII symbol, lower-casing is the full mapping
// (U+0130 and the final sigma included).
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_TOKENIZER_UNICODE_H
#define MEGATRON_RUNTIME_TOKENIZER_UNICODE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megatron::runtime::unicode {

/// A code point and the bytes of the source text it stands for.
struct Char {
  char32_t cp;
  size_t begin, end;
};

/// Decodes UTF-8; each byte of an invalid sequence becomes U+FFFD covering
/// that byte, so every byte of the text belongs to exactly one Char.
std::vector<Char> decode(std::string_view text, size_t base = 0);
void append(std::string &out, char32_t cp);

bool isWhitespace(char32_t cp);  // ECMAScript \s
bool isLetter(char32_t cp);      // \p{L}
bool isNumber(char32_t cp);      // \p{N}
bool isPunctuation(char32_t cp); // \p{P} and ASCII !-/ :-@ [-` {-~
/// Cc, Cf, Co, Cs, U+0000 and U+FFFD, but not tab, newline or return.
bool isControl(char32_t cp);
bool isNonspacingMark(char32_t cp); // Mn
/// The BMP blocks BERT pads with spaces (CJK Unified Ideographs, Extension
/// A, Compatibility Ideographs).
bool isCjk(char32_t cp);

/// Full lower-casing of a whole text, in place.
void lowercase(std::vector<Char> &text);
/// Canonical decomposition (NFD) with canonical ordering, in place; each
/// resulting code point keeps its source's byte range.
void decompose(std::vector<Char> &text);

} // namespace megatron::runtime::unicode

#endif // MEGATRON_RUNTIME_TOKENIZER_UNICODE_H
