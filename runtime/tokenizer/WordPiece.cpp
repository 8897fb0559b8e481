//===- WordPiece.cpp - BERT's tokenizer -----------------------------------===//
//
// Normalise (drop control characters, whitespace to spaces, space out CJK
// ideographs, lower-case, strip non-spacing marks after NFD), split at
// whitespace and around each punctuation character, then cut each word
// into the longest vocabulary pieces from the left, continuations spelt
// with `##`. A word that cannot be cut, or is longer than the limit, is
// one [UNK]. Every step keeps each character's source bytes, so tokens
// carry offsets into the original text.
//
//===----------------------------------------------------------------------===//

#include "runtime/tokenizer/Tokenizers.h"
#include "runtime/tokenizer/Unicode.h"

using namespace megatron::runtime;
using unicode::Char;

namespace {

class WordPiece final : public Tokenizer {
public:
  explicit WordPiece(TokenizerSpec spec) : Tokenizer(std::move(spec)) {}

  Status prepare() override {
    if (!unk_)
      return Status::error("the WordPiece vocabulary has no unknown token '" +
                           spec_.unkToken + "'");
    if (spec_.maxCharsPerWord < 1)
      return Status::error("the longest word must be at least one character");
    return Status::success();
  }

  void encodeSegment(std::string_view text, size_t base,
                     Encoding &out) const override {
    std::vector<Char> chars = normalize(text, base);
    size_t i = 0;
    while (i < chars.size()) {
      if (chars[i].cp == ' ') {
        ++i;
        continue;
      }
      size_t end = i + 1;
      if (!unicode::isPunctuation(chars[i].cp))
        while (end < chars.size() && chars[end].cp != ' ' &&
               !unicode::isPunctuation(chars[end].cp))
          ++end;
      encodeWord(chars, i, end, out);
      i = end;
    }
  }

  std::string decodeIds(const std::vector<int64_t> &ids) const override {
    std::string text;
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string &t = spec_.vocab[static_cast<size_t>(ids[i])];
      if (i > 0 && t.compare(0, 2, "##") == 0)
        text.append(t, 2);
      else
        text.append(i > 0 ? " " : "").append(t);
    }
    return cleanUpSpaces(text);
  }

private:
  std::vector<Char> normalize(std::string_view text, size_t base) const {
    std::vector<Char> chars;
    for (const Char &c : unicode::decode(text, base)) {
      if (unicode::isControl(c.cp))
        continue;
      if (unicode::isWhitespace(c.cp)) {
        chars.push_back({U' ', c.begin, c.end});
      } else if (unicode::isCjk(c.cp)) {
        chars.push_back({U' ', c.begin, c.begin});
        chars.push_back(c);
        chars.push_back({U' ', c.end, c.end});
      } else {
        chars.push_back(c);
      }
    }
    if (spec_.lowercase)
      unicode::lowercase(chars);
    if (spec_.stripAccents) {
      unicode::decompose(chars);
      std::vector<Char> kept;
      kept.reserve(chars.size());
      for (const Char &c : chars)
        if (!unicode::isNonspacingMark(c.cp))
          kept.push_back(c);
      chars = std::move(kept);
    }
    return chars;
  }

  /// chars[begin, end) is one word.
  void encodeWord(const std::vector<Char> &chars, size_t begin, size_t end,
                  Encoding &out) const {
    auto push = [&](int64_t id, size_t from, size_t to) {
      size_t lo = chars[from].begin, hi = chars[from].end;
      for (size_t k = from; k < to; ++k) {
        lo = std::min(lo, chars[k].begin);
        hi = std::max(hi, chars[k].end);
      }
      out.ids.push_back(id);
      out.offsets.emplace_back(lo, hi);
    };
    size_t count = end - begin;
    if (static_cast<int64_t>(count) > spec_.maxCharsPerWord) {
      push(*unk_, begin, end);
      return;
    }
    // UTF-8 of the word, and where each character starts in it.
    std::string word;
    std::vector<size_t> at;
    for (size_t k = begin; k < end; ++k) {
      at.push_back(word.size());
      unicode::append(word, chars[k].cp);
    }
    at.push_back(word.size());
    size_t first = out.ids.size();
    std::string piece;
    for (size_t start = 0; start < count;) {
      size_t stop = count;
      std::optional<int64_t> found;
      for (; stop > start; --stop) {
        piece.assign(start > 0 ? "##" : "");
        piece.append(word, at[start], at[stop] - at[start]);
        if ((found = id(piece)))
          break;
      }
      if (!found) { // the whole word is unknown
        out.ids.resize(first);
        out.offsets.resize(first);
        push(*unk_, begin, end);
        return;
      }
      push(*found, begin + start, begin + stop);
      start = stop;
    }
  }

  /// Hugging Face's clean_up_tokenization: no space before punctuation and
  /// English contractions.
  static std::string cleanUpSpaces(std::string text) {
    static const std::pair<const char *, const char *> kRules[] = {
        {" .", "."},       {" ?", "?"},     {" !", "!"},     {" ,", ","},
        {" ' ", "'"},      {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},
        {" 've", "'ve"},   {" 're", "'re"}};
    for (auto [from, to] : kRules) {
      std::string result;
      std::string_view f(from);
      size_t pos = 0;
      for (size_t hit; (hit = text.find(f, pos)) != std::string::npos;) {
        result.append(text, pos, hit - pos).append(to);
        pos = hit + f.size();
      }
      result.append(text, pos, std::string::npos);
      text = std::move(result);
    }
    return text;
  }
};

} // namespace

std::unique_ptr<Tokenizer> megatron::runtime::makeWordPiece(TokenizerSpec spec) {
  return std::unique_ptr<Tokenizer>(new WordPiece(std::move(spec)));
}
