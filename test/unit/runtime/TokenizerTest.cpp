//===- TokenizerTest.cpp - WordPiece and byte-level BPE, by hand ----------===//
//
// Hand-checked cases on small vocabularies; the agreement with Hugging
// Face's tokenizers on real vocabularies and a large corpus is
// test/tokenizer/test_tokenizer_agreement.py.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Tokenizer.h"
#include "test/unit/runtime/TinyTokenizers.h"

#include "gtest/gtest.h"

#include <random>

using namespace megatron::runtime;

namespace {

std::unique_ptr<Tokenizer> make(TokenizerSpec spec) {
  std::unique_ptr<Tokenizer> t;
  Status s = Tokenizer::create(std::move(spec), t);
  EXPECT_TRUE(s.ok()) << s.message();
  return t;
}

TokenizerSpec bertSpec(bool lowercase) {
  TokenizerSpec spec;
  spec.vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cap",
                "##ital", "of", "france", "is", ".", "!", "hello", "world",
                "un", "##aff", "##able", "中", "文", "Hello", "'", "s", "it"};
  spec.lowercase = spec.stripAccents = lowercase;
  return spec;
}

std::vector<std::string> tokens(const Tokenizer &t, const Encoding &e) {
  std::vector<std::string> out;
  for (int64_t id : e.ids)
    out.push_back(t.token(id));
  return out;
}

using Strings = std::vector<std::string>;

TEST(WordPiece, LowerCasesStripsAccentsAndSplitsPunctuation) {
  auto t = make(bertSpec(true));
  Encoding e = t->encode("Héllo\tWORLD!  The CAPITAL of Fránce is [MASK].");
  EXPECT_EQ(tokens(*t, e),
            (Strings{"[CLS]", "hello", "world", "!", "the", "cap", "##ital", "of",
                     "france", "is", "[MASK]", ".", "[SEP]"}));
  // Offsets point into the original text, accents and case included.
  std::string text = "Héllo\tWORLD!  The CAPITAL of Fránce is [MASK].";
  EXPECT_EQ(text.substr(e.offsets[1].first, e.offsets[1].second - e.offsets[1].first), "Héllo");
  EXPECT_EQ(text.substr(e.offsets[6].first, e.offsets[6].second - e.offsets[6].first), "ITAL");
  EXPECT_EQ(text.substr(e.offsets[10].first, e.offsets[10].second - e.offsets[10].first), "[MASK]");
  EXPECT_TRUE(e.special[10]);
  EXPECT_FALSE(e.special[9]);
}

TEST(WordPiece, UnknownWordsCjkAndControlCharacters) {
  TokenizerSpec spec = bertSpec(true);
  spec.maxCharsPerWord = 8;
  auto t = make(spec);
  // "unaffable" is 9 characters: over the limit. "unaff" is cut; "zzz" is
  // unknown as a whole; CJK ideographs are words of their own; the control
  // character and the zero-width space vanish.
  EXPECT_EQ(tokens(*t, t->encode("unaffable unaff zzz 中文\x01the\u200b", false)),
            (Strings{"[UNK]", "un", "##aff", "[UNK]", "中", "文", "the"}));
}

TEST(WordPiece, CasedKeepsCaseAndAccents) {
  auto t = make(bertSpec(false));
  EXPECT_EQ(tokens(*t, t->encode("Hello hello Héllo", false)),
            (Strings{"Hello", "hello", "[UNK]"}));
}

TEST(WordPiece, PairsHaveTokenTypes) {
  auto t = make(bertSpec(true));
  Encoding e = t->encodePair("hello", "the world");
  EXPECT_EQ(tokens(*t, e),
            (Strings{"[CLS]", "hello", "[SEP]", "the", "world", "[SEP]"}));
  EXPECT_EQ(e.typeIds, (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(e.sources, (std::vector<int>{-1, 0, -1, 1, 1, -1}));
}

TEST(WordPiece, DecodeJoinsPiecesAndCleansSpaces) {
  auto t = make(bertSpec(true));
  std::string text;
  Encoding e = t->encode("The capital of France is [MASK]. it's");
  ASSERT_TRUE(t->decode(e.ids, true, text).ok());
  EXPECT_EQ(text, "the capital of france is. it's");
  ASSERT_TRUE(t->decode(e.ids, false, text).ok());
  EXPECT_EQ(text, "[CLS] the capital of france is [MASK]. it's [SEP]");
  EXPECT_FALSE(t->decode({0, 99}, true, text).ok());
}

TEST(WordPiece, RefusesAVocabularyWithoutUnk) {
  TokenizerSpec spec;
  spec.vocab = {"a", "b"};
  std::unique_ptr<Tokenizer> t;
  Status s = Tokenizer::create(spec, t);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("[UNK]"), std::string::npos) << s.message();
}

/// GPT-2's byte symbols, a few merges and <|endoftext|>.
TokenizerSpec gpt2Spec() {
  return megatron::test::byteLevelSpec({"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o",
                                        "Ġwo r", "Ġwor l", "Ġworl d", "' s"});
}

TEST(ByteLevelBpe, MergesByRankAndSplitsLikeGpt2) {
  auto t = make(gpt2Spec());
  EXPECT_EQ(tokens(*t, t->encode("hello world")), (Strings{"hello", "Ġworld"}));
  // Contractions split off; whitespace runs leave their last space to the
  // next word; a tab stays whitespace; <|endoftext|> is one token.
  EXPECT_EQ(tokens(*t, t->encode("it's  hello\t<|endoftext|>")),
            (Strings{"i", "t", "'s", "Ġ", "Ġ", "hello", "ĉ", "<|endoftext|>"}));
  EXPECT_EQ(*t->eosId(), t->vocabSize() - 1);
}

TEST(ByteLevelBpe, DecodeGivesBackTheExactBytes) {
  auto t = make(gpt2Spec());
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {
      "hello", " ", "  ", "\t", "\n", "it's", "'S", "2024", "½", "é", "中文",
      "🤗", "👩‍👩‍👧", "\xe2\x80\xa8", "\xef\xbb\xbf", "\xff", "\xc3", "\xed\xa0\x80",
      "\x00", "Σ", "'ll", "!!!", "\u3000"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i)
      text += pieces[rng() % pieces.size()];
    if (round % 3 == 0) // arbitrary bytes too, valid UTF-8 or not
      for (int i = 0; i < 8; ++i)
        text += static_cast<char>(rng() & 0xFF);
    Encoding e = t->encode(text);
    std::string back;
    ASSERT_TRUE(t->decode(e.ids, false, back).ok());
    ASSERT_EQ(back, text) << "round " << round;
    // The offsets tile the text.
    size_t at = 0;
    for (auto [begin, end] : e.offsets) {
      ASSERT_EQ(begin, at);
      at = end;
    }
    ASSERT_EQ(at, text.size());
  }
}

TEST(ByteLevelBpe, RefusesIncompleteTables) {
  TokenizerSpec spec = gpt2Spec();
  spec.vocab.erase(spec.vocab.begin() + 'a');
  std::unique_ptr<Tokenizer> t;
  Status s = Tokenizer::create(spec, t);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("byte"), std::string::npos) << s.message();
  spec = gpt2Spec();
  spec.merges.push_back("q zz");
  s = Tokenizer::create(spec, t);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'zz' is not in the vocabulary"), std::string::npos)
      << s.message();
}

} // namespace
