//===- ByteLevelBpe.cpp - GPT-2's tokenizer -------------------------------===//
//
// Split the text with GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (written out as a scanner: a regex engine with Unicode classes would be a
// dependency for one expression), map each piece's bytes to GPT-2's
// printable stand-ins, start from one symbol per byte and apply the merges
// lowest rank first (leftmost among equals). Decoding maps the stand-ins
// back to bytes, so it returns exactly the bytes that were encoded.
//
//===----------------------------------------------------------------------===//

#include "runtime/tokenizer/Tokenizers.h"
#include "runtime/tokenizer/Unicode.h"

#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

using namespace megatron::runtime;
using unicode::Char;

namespace {

/// GPT-2's byte -> character table: printable Latin-1 bytes stand for
/// themselves, the other 68 become U+0100 onwards in byte order.
std::array<char32_t, 256> byteToChar() {
  std::array<char32_t, 256> table{};
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? char32_t(b) : next++;
  }
  return table;
}

enum class Class { Space, Letter, Number, Other };

Class classify(char32_t cp) {
  if (unicode::isWhitespace(cp))
    return Class::Space;
  if (unicode::isLetter(cp))
    return Class::Letter;
  if (unicode::isNumber(cp))
    return Class::Number;
  return Class::Other;
}

/// Splits `chars` into GPT-2's pre-tokens: [begin, end) index pairs.
std::vector<std::pair<size_t, size_t>> pretokenize(const std::vector<Char> &chars) {
  std::vector<std::pair<size_t, size_t>> pieces;
  std::vector<Class> cls(chars.size());
  for (size_t i = 0; i < chars.size(); ++i)
    cls[i] = classify(chars[i].cp);
  size_t n = chars.size();
  auto runOf = [&](size_t i, Class c) {
    while (i < n && cls[i] == c)
      ++i;
    return i;
  };
  for (size_t i = 0; i < n;) {
    // Contractions: 's 't 're 've 'm 'll 'd (lower case only).
    if (chars[i].cp == '\'' && i + 1 < n) {
      char32_t a = chars[i + 1].cp, b = i + 2 < n ? chars[i + 2].cp : 0;
      size_t len = (a == 's' || a == 't' || a == 'm' || a == 'd') ? 2
                   : ((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l')
                       ? 3
                       : 0;
      if (len) {
        pieces.emplace_back(i, i + len);
        i += len;
        continue;
      }
    }
    // An optional space, then a run of letters, numbers or other symbols.
    size_t start = i, j = i;
    if (chars[j].cp == ' ' && j + 1 < n && cls[j + 1] != Class::Space)
      ++j;
    if (cls[j] != Class::Space) {
      size_t end = runOf(j, cls[j]);
      pieces.emplace_back(start, end);
      i = end;
      continue;
    }
    // Whitespace: all of it, but leave the last one to a following word.
    size_t end = runOf(i, Class::Space);
    if (end < n && end - i > 1)
      --end;
    pieces.emplace_back(i, end);
    i = end;
  }
  return pieces;
}

class ByteLevelBpe final : public Tokenizer {
public:
  explicit ByteLevelBpe(TokenizerSpec spec) : Tokenizer(std::move(spec)) {}

  Status prepare() override {
    std::array<char32_t, 256> table = byteToChar();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      unicode::append(s, table[b]);
      std::optional<int64_t> found = id(s);
      if (!found)
        return Status::error("the BPE vocabulary lacks the symbol of byte " +
                             std::to_string(b) + " ('" + s +
                             "'); byte-level BPE needs all 256");
      byteIds_[b] = *found;
      charToByte_[table[b]] = static_cast<uint8_t>(b);
    }
    for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
      const std::string &line = spec_.merges[rank];
      size_t space = line.find(' ');
      std::string where = "merge " + std::to_string(rank + 1) + " '" + line + "'";
      if (space == std::string::npos || space == 0 || space + 1 == line.size())
        return Status::error(where + " is not two tokens separated by a space");
      std::string left = line.substr(0, space);
      std::string right = line.substr(space + 1, line.find(' ', space + 1) - space - 1);
      std::optional<int64_t> l = id(left), r = id(right), m = id(left + right);
      if (!l || !r || !m)
        return Status::error(where + ": '" + (!l ? left : !r ? right : left + right) +
                             "' is not in the vocabulary");
      // A repeated pair takes its later rank, as in Hugging Face.
      merges_[key(*l, *r)] = {static_cast<int64_t>(rank), *m};
    }
    return Status::success();
  }

  void encodeSegment(std::string_view text, size_t base,
                     Encoding &out) const override {
    std::vector<Char> chars = unicode::decode(text, base);
    for (auto [begin, end] : pretokenize(chars)) {
      size_t lo = chars[begin].begin - base, hi = chars[end - 1].end - base;
      encodeWord(text.substr(lo, hi - lo), base + lo, out);
    }
  }

  std::string decodeIds(const std::vector<int64_t> &ids) const override {
    std::string bytes;
    for (int64_t id : ids) {
      const std::string &t = spec_.vocab[static_cast<size_t>(id)];
      if (isSpecial(id)) { // added tokens are spelt as they are
        bytes += t;
        continue;
      }
      for (const Char &c : unicode::decode(t)) {
        auto it = charToByte_.find(c.cp);
        bytes += static_cast<char>(it == charToByte_.end() ? 0 : it->second);
      }
    }
    return bytes;
  }

private:
  struct Merge {
    int64_t rank, result;
  };
  static uint64_t key(int64_t left, int64_t right) {
    return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
  }

  /// One pre-token: its bytes, at `base` in the source text.
  void encodeWord(std::string_view bytes, size_t base, Encoding &out) const {
    struct Symbol {
      int64_t id;
      size_t begin, end; // bytes of the word
      int prev, next;    // linked list; -1 at the ends
      bool alive;
    };
    std::vector<Symbol> symbols(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i)
      symbols[i] = {byteIds_[static_cast<uint8_t>(bytes[i])], i, i + 1,
                    static_cast<int>(i) - 1,
                    i + 1 < bytes.size() ? static_cast<int>(i) + 1 : -1, true};
    // Candidate merges, lowest rank first, then leftmost. An entry is
    // stale when either symbol has changed since it was queued.
    struct Candidate {
      int64_t rank;
      int left;
      int64_t leftId, rightId;
      bool operator>(const Candidate &o) const {
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int left) {
      if (left < 0 || symbols[left].next < 0)
        return;
      int right = symbols[left].next;
      auto it = merges_.find(key(symbols[left].id, symbols[right].id));
      if (it != merges_.end())
        queue.push({it->second.rank, left, symbols[left].id, symbols[right].id});
    };
    for (size_t i = 0; i + 1 < symbols.size(); ++i)
      consider(static_cast<int>(i));
    while (!queue.empty()) {
      Candidate c = queue.top();
      queue.pop();
      Symbol &left = symbols[c.left];
      if (!left.alive || left.id != c.leftId || left.next < 0 ||
          symbols[left.next].id != c.rightId)
        continue;
      Symbol &right = symbols[left.next];
      left.id = merges_.at(key(c.leftId, c.rightId)).result;
      left.end = right.end;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0)
        symbols[right.next].prev = c.left;
      consider(left.prev);
      consider(c.left);
    }
    for (const Symbol &s : symbols)
      if (s.alive) {
        out.ids.push_back(s.id);
        out.offsets.emplace_back(base + s.begin, base + s.end);
      }
  }

  std::array<int64_t, 256> byteIds_{};
  std::unordered_map<char32_t, uint8_t> charToByte_;
  std::unordered_map<uint64_t, Merge> merges_;
};

} // namespace

std::unique_ptr<Tokenizer> megatron::runtime::makeByteLevelBpe(TokenizerSpec spec) {
  return std::unique_ptr<Tokenizer>(new ByteLevelBpe(std::move(spec)));
}
