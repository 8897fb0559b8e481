//===- Tokenizer.h - text <-> token ids, as the model was trained ---------===//
//
// The two tokenizers of the Megatron family, written to give the ids that
// Hugging Face's tokenizers give:
//
//   - WordPiece (BERT): clean-up, CJK splitting, optional lower-casing and
//     accent stripping, whitespace/punctuation splitting, then greedy
//     longest-match-first sub-words with `##` continuations.
//   - Byte-level BPE (GPT-2): GPT-2's pre-tokenization pattern over Unicode
//     categories, bytes mapped to printable characters, then merges by rank.
//     Decoding gives back the exact bytes.
//
// A TokenizerSpec is what megatron-compile embeds in an artifact; the
// runtime builds a Tokenizer from it (frontends/tokenizer reads the files).
//
//   std::unique_ptr<Tokenizer> tok;
//   if (Status s = Tokenizer::create(spec, tok)) ... s.message()
//   Encoding e = tok->encode("The capital of France is [MASK].");
//   std::string text = tok->decode(e.ids);
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_TOKENIZER_H
#define MEGATRON_RUNTIME_TOKENIZER_H

#include "megatron/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace megatron::runtime {

struct TokenizerSpec {
  enum class Kind { WordPiece, ByteLevelBpe };
  Kind kind = Kind::WordPiece;
  /// Token text by id.
  std::vector<std::string> vocab;
  /// Byte-level BPE: "left right" pairs, the first merged first.
  std::vector<std::string> merges;
  /// WordPiece: an uncased vocabulary (lower-case, strip accents).
  bool lowercase = true;
  bool stripAccents = true;
  /// WordPiece: longer words (in code points) become the unknown token.
  int64_t maxCharsPerWord = 100;
  /// Special tokens; those the vocabulary lacks are simply absent. Where
  /// they appear in input text they are that token, never split.
  std::string unkToken = "[UNK]", clsToken = "[CLS]", sepToken = "[SEP]",
              padToken = "[PAD]", maskToken = "[MASK]",
              eosToken = "<|endoftext|>";
};

struct Encoding {
  std::vector<int64_t> ids;
  /// 0 for the first text, 1 for the second of a pair.
  std::vector<int64_t> typeIds;
  /// Byte range of each token in the text it came from ({0, 0} for the
  /// special tokens the tokenizer adds); `sources` says which text, 0 or 1.
  std::vector<std::pair<size_t, size_t>> offsets;
  std::vector<int> sources;
  /// Whether a token is a special token (added or written in the text).
  std::vector<bool> special;
};

class Tokenizer {
public:
  /// Checks the spec (duplicate tokens, merges of unknown tokens, GPT-2's
  /// 256 byte symbols, ...) and builds the lookup tables.
  static Status create(TokenizerSpec spec, std::unique_ptr<Tokenizer> &out);
  virtual ~Tokenizer();

  const TokenizerSpec &spec() const { return spec_; }
  int64_t vocabSize() const { return static_cast<int64_t>(spec_.vocab.size()); }

  /// WordPiece adds [CLS] text [SEP]; byte-level BPE adds nothing.
  Encoding encode(std::string_view text, bool addSpecialTokens = true) const;
  /// WordPiece only: [CLS] text [SEP] pair [SEP], token types 0 then 1.
  Encoding encodePair(std::string_view text, std::string_view pair) const;
  /// Text of `ids`; out-of-range ids are an error.
  Status decode(const std::vector<int64_t> &ids, bool skipSpecialTokens,
                std::string &text) const;

  /// The vocabulary's spelling of a token (byte-level BPE: the mapped
  /// characters, e.g. "Ġthe"); empty for an out-of-range id.
  std::string token(int64_t id) const;
  std::optional<int64_t> id(std::string_view token) const;

  /// Ids of the special tokens, nullopt when the vocabulary lacks them.
  std::optional<int64_t> clsId() const { return cls_; }
  std::optional<int64_t> sepId() const { return sep_; }
  std::optional<int64_t> maskId() const { return mask_; }
  std::optional<int64_t> padId() const { return pad_; }
  std::optional<int64_t> unkId() const { return unk_; }
  std::optional<int64_t> eosId() const { return eos_; }
  bool isSpecial(int64_t id) const;

  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

protected:
  explicit Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {}
  /// Appends the tokens of `text`, which holds no special token, with
  /// offsets relative to `base`.
  virtual void encodeSegment(std::string_view text, size_t base,
                             Encoding &out) const = 0;
  /// Text of in-range ids (special ones already dropped if asked).
  virtual std::string decodeIds(const std::vector<int64_t> &ids) const = 0;

  Status buildVocabulary();
  /// Model-specific tables and checks, after the vocabulary.
  virtual Status prepare() = 0;
  void encodeText(std::string_view text, int source, int64_t typeId,
                  Encoding &out) const;

  TokenizerSpec spec_;
  std::unordered_map<std::string_view, int64_t> ids_;     // token -> id
  std::vector<std::pair<std::string, int64_t>> specials_; // longest first

  friend std::unique_ptr<Tokenizer> makeWordPiece(TokenizerSpec);
  friend std::unique_ptr<Tokenizer> makeByteLevelBpe(TokenizerSpec);
  std::optional<int64_t> cls_, sep_, mask_, pad_, unk_, eos_;
};

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_TOKENIZER_H
