//===- Unicode.cpp - the character classes tokenizers depend on -----------===//

#include "runtime/tokenizer/Unicode.h"

#include <utf8proc.h>

#include <algorithm>

using namespace megatron::runtime;
using namespace megatron::runtime::unicode;

namespace {
utf8proc_category_t category(char32_t cp) {
  return static_cast<utf8proc_category_t>(
      utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

bool isCased(char32_t cp) {
  auto c = category(cp);
  if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL ||
      c == UTF8PROC_CATEGORY_LT)
    return true;
  // Other_Uppercase/Other_Lowercase letters with a case mapping (Roman
  // numerals, circled letters).
  auto i = static_cast<utf8proc_int32_t>(cp);
  return utf8proc_tolower(i) != i || utf8proc_toupper(i) != i;
}

/// Case_Ignorable: marks, format characters, modifiers, and the word-break
/// MidLetter / MidNumLet / Single_Quote characters.
bool isCaseIgnorable(char32_t cp) {
  switch (category(cp)) {
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_SK:
    return true;
  default:
    break;
  }
  static const char32_t kMid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,
                                  0x55F,  0x5F4,  0x2018, 0x2019, 0x2024,
                                  0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07,
                                  0xFF0E, 0xFF1A};
  return std::find(std::begin(kMid), std::end(kMid), cp) != std::end(kMid);
}
} // namespace

std::vector<Char> unicode::decode(std::string_view text, size_t base) {
  std::vector<Char> out;
  out.reserve(text.size());
  const auto *bytes = reinterpret_cast<const utf8proc_uint8_t *>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(
        bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n <= 0) {
      out.push_back({0xFFFD, base + i, base + i + 1});
      ++i;
      continue;
    }
    out.push_back({static_cast<char32_t>(cp), base + i, base + i + n});
    i += static_cast<size_t>(n);
  }
  return out;
}

void unicode::append(std::string &out, char32_t cp) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char *>(buf), static_cast<size_t>(n));
}

bool unicode::isWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 ||
         cp == 0xFEFF;
}

bool unicode::isLetter(char32_t cp) {
  switch (category(cp)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
    return true;
  default:
    return false;
  }
}

bool unicode::isNumber(char32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
         c == UTF8PROC_CATEGORY_NO;
}

bool unicode::isPunctuation(char32_t cp) {
  if ((cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
      (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E))
    return true;
  auto c = category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool unicode::isControl(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r')
    return false;
  if (cp == 0 || cp == 0xFFFD)
    return true;
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF ||
         c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CS;
}

bool unicode::isNonspacingMark(char32_t cp) {
  return category(cp) == UTF8PROC_CATEGORY_MN;
}

bool unicode::isCjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0xF900 && cp <= 0xFAFF);
}

void unicode::lowercase(std::vector<Char> &text) {
  std::vector<Char> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t cp = text[i].cp;
    if (cp == 0x130) { // İ: i + combining dot above (SpecialCasing)
      out.push_back({U'i', text[i].begin, text[i].end});
      out.push_back({0x307, text[i].begin, text[i].end});
      continue;
    }
    if (cp == 0x3A3) { // Σ: final sigma after a cased letter, before none
      auto cased = [&](size_t j) { return isCased(text[j].cp); };
      auto ignorable = [&](size_t j) { return isCaseIgnorable(text[j].cp); };
      size_t j = i;
      while (j > 0 && ignorable(j - 1))
        --j;
      bool after = j > 0 && cased(j - 1);
      size_t k = i + 1;
      while (k < text.size() && ignorable(k))
        ++k;
      bool before = k < text.size() && cased(k);
      out.push_back({after && !before ? char32_t(0x3C2) : char32_t(0x3C3),
                     text[i].begin, text[i].end});
      continue;
    }
    out.push_back({static_cast<char32_t>(
                       utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))),
                   text[i].begin, text[i].end});
  }
  text = std::move(out);
}

void unicode::decompose(std::vector<Char> &text) {
  std::vector<Char> out;
  out.reserve(text.size());
  for (const Char &c : text) {
    utf8proc_int32_t buf[32];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(
        static_cast<utf8proc_int32_t>(c.cp), buf, 32, UTF8PROC_DECOMPOSE,
        &boundclass);
    if (n <= 0 || n > 32) {
      out.push_back(c);
      continue;
    }
    for (utf8proc_ssize_t k = 0; k < n; ++k)
      out.push_back({static_cast<char32_t>(buf[k]), c.begin, c.end});
  }
  // Canonical ordering: marks of a run sorted stably by combining class.
  auto ccc = [](const Char &c) {
    return utf8proc_get_property(static_cast<utf8proc_int32_t>(c.cp))
        ->combining_class;
  };
  for (size_t i = 0; i < out.size();) {
    if (ccc(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && ccc(out[j]) != 0)
      ++j;
    std::stable_sort(out.begin() + i, out.begin() + j,
                     [&](const Char &a, const Char &b) { return ccc(a) < ccc(b); });
    i = j;
  }
  text = std::move(out);
}
