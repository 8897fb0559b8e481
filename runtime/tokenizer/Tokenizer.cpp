//===- Tokenizer.cpp - what both tokenizers share ------------------------===//
//
// The vocabulary, the special tokens (matched in the raw text before any
// normalisation, leftmost and longest first, as Hugging Face does), BERT's
// [CLS]/[SEP] framing and decoding.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Tokenizer.h"

#include "runtime/tokenizer/Tokenizers.h"

#include <algorithm>

using namespace megatron::runtime;

Tokenizer::~Tokenizer() = default;

Status Tokenizer::create(TokenizerSpec spec, std::unique_ptr<Tokenizer> &out) {
  if (spec.vocab.empty())
    return Status::error("the tokenizer's vocabulary is empty");
  std::unique_ptr<Tokenizer> tokenizer =
      spec.kind == TokenizerSpec::Kind::WordPiece
          ? makeWordPiece(std::move(spec))
          : makeByteLevelBpe(std::move(spec));
  if (Status s = tokenizer->buildVocabulary(); !s.ok())
    return s;
  if (Status s = tokenizer->prepare(); !s.ok())
    return s;
  out = std::move(tokenizer);
  return Status::success();
}

Status Tokenizer::buildVocabulary() {
  ids_.reserve(spec_.vocab.size());
  for (size_t i = 0; i < spec_.vocab.size(); ++i) {
    if (spec_.vocab[i].empty())
      return Status::error("vocabulary entry " + std::to_string(i) +
                           " is an empty token");
    // A repeated token maps to its last id, as in Hugging Face.
    ids_[spec_.vocab[i]] = static_cast<int64_t>(i);
  }
  bool wordPiece = spec_.kind == TokenizerSpec::Kind::WordPiece;
  std::pair<const std::string *, std::optional<int64_t> *> specials[] = {
      {&spec_.unkToken, &unk_}, {&spec_.clsToken, &cls_},
      {&spec_.sepToken, &sep_}, {&spec_.padToken, &pad_},
      {&spec_.maskToken, &mask_}, {&spec_.eosToken, &eos_}};
  for (auto [name, slot] : specials) {
    bool applies = wordPiece != (name == &spec_.eosToken);
    if (!applies || name->empty())
      continue;
    if (std::optional<int64_t> found = id(*name)) {
      *slot = found;
      specials_.emplace_back(*name, *found);
    }
  }
  std::sort(specials_.begin(), specials_.end(), [](auto &a, auto &b) {
    return a.first.size() > b.first.size();
  });
  return Status::success();
}

std::optional<int64_t> Tokenizer::id(std::string_view token) const {
  auto it = ids_.find(token);
  if (it == ids_.end())
    return std::nullopt;
  return it->second;
}

std::string Tokenizer::token(int64_t id) const {
  if (id < 0 || id >= vocabSize())
    return "";
  return spec_.vocab[static_cast<size_t>(id)];
}

bool Tokenizer::isSpecial(int64_t id) const {
  for (const auto &s : specials_)
    if (s.second == id)
      return true;
  return false;
}

void Tokenizer::encodeText(std::string_view text, int source, int64_t typeId,
                           Encoding &out) const {
  size_t segment = 0; // start of the text not yet encoded
  auto flush = [&](size_t end) {
    if (end > segment)
      encodeSegment(text.substr(segment, end - segment), segment, out);
    out.special.resize(out.ids.size(), false);
  };
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int64_t> *match = nullptr;
    for (const auto &s : specials_)
      if (text.compare(i, s.first.size(), s.first) == 0) {
        match = &s;
        break;
      }
    if (!match) {
      ++i;
      continue;
    }
    flush(i);
    out.ids.push_back(match->second);
    out.offsets.emplace_back(i, i + match->first.size());
    out.special.push_back(true);
    i += match->first.size();
    segment = i;
  }
  flush(text.size());
  out.typeIds.resize(out.ids.size(), typeId);
  out.sources.resize(out.ids.size(), source);
  out.special.resize(out.ids.size(), false);
}

namespace {
void addSpecial(Encoding &e, int64_t id, int64_t typeId) {
  e.ids.push_back(id);
  e.typeIds.push_back(typeId);
  e.offsets.emplace_back(0, 0);
  e.sources.push_back(-1);
  e.special.push_back(true);
}
} // namespace

Encoding Tokenizer::encode(std::string_view text, bool addSpecialTokens) const {
  Encoding e;
  bool frame = addSpecialTokens && spec_.kind == TokenizerSpec::Kind::WordPiece &&
               cls_ && sep_;
  if (frame)
    addSpecial(e, *cls_, 0);
  encodeText(text, 0, 0, e);
  if (frame)
    addSpecial(e, *sep_, 0);
  return e;
}

Encoding Tokenizer::encodePair(std::string_view text, std::string_view pair) const {
  Encoding e = encode(text, true);
  encodeText(pair, 1, 1, e);
  if (spec_.kind == TokenizerSpec::Kind::WordPiece && sep_)
    addSpecial(e, *sep_, 1);
  return e;
}

Status Tokenizer::decode(const std::vector<int64_t> &ids, bool skipSpecialTokens,
                         std::string &text) const {
  std::vector<int64_t> kept;
  kept.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocabSize())
      return Status::error("token id " + std::to_string(ids[i]) + " at position " +
                           std::to_string(i) + " is outside the vocabulary [0, " +
                           std::to_string(vocabSize()) + ")");
    if (!(skipSpecialTokens && isSpecial(ids[i])))
      kept.push_back(ids[i]);
  }
  text = decodeIds(kept);
  return Status::success();
}
