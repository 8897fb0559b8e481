//===- TasksTest.cpp - the text-task API on compiled fixtures -------------===//
//
// TextModel as an embedding program uses it, on artifacts of the tiny
// fixtures that carry a tokenizer (compiled at build time). The scores'
// agreement with the reference is test/e2e/test_tasks.py's job; here the
// API's promises: rankings, streaming, seeds, stop conditions, errors.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Tasks.h"

#include "gtest/gtest.h"

using namespace megatron::runtime;

namespace {

std::unique_ptr<TextModel> open(const std::string &name) {
  std::unique_ptr<TextModel> model;
  Status s = TextModel::open(std::string(MEGATRON_ARTIFACTS_DIR) + "/" + name, {}, model);
  EXPECT_TRUE(s.ok()) << s.message();
  return model;
}

TEST(TextModel, FillMaskRanksEachMask) {
  auto model = open("bert-mlm.mtc");
  ASSERT_TRUE(model);
  std::vector<FillMaskResult> results;
  Status s = model->fillMask({"the [MASK] of france is [MASK].", "[MASK] world"}, 3, results);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(results.size(), 2u);
  ASSERT_EQ(results[0].masks.size(), 2u);
  ASSERT_EQ(results[1].masks.size(), 1u);
  for (const auto &result : results)
    for (const auto &mask : result.masks) {
      ASSERT_EQ(mask.size(), 3u);
      for (size_t k = 1; k < mask.size(); ++k)
        EXPECT_GE(mask[k - 1].score, mask[k].score);
      for (const Candidate &c : mask) {
        EXPECT_GT(c.score, 0);
        EXPECT_LT(c.id, model->tokenizer().vocabSize());
        EXPECT_EQ(c.token, model->tokenizer().token(c.id));
      }
    }
}

TEST(TextModel, GenerationStreamsWhatItReturns) {
  auto model = open("gpt2-bpe.mtc");
  ASSERT_TRUE(model);
  GenerationOptions options;
  options.maxNewTokens = 10;
  std::string streamed;
  GenerationResult result;
  Status s = model->generate("The capital of", options,
                             [&](const std::string &piece) { streamed += piece; }, result);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(streamed, result.text);
  EXPECT_EQ(result.ids.size(), 10u);
  EXPECT_EQ(result.stopReason, "max-new-tokens");
  std::string decoded;
  ASSERT_TRUE(model->tokenizer().decode(result.ids, true, decoded).ok());
  EXPECT_EQ(decoded, result.text);
}

TEST(TextModel, SamplingIsReproducibleBySeed) {
  auto model = open("gpt2-bpe.mtc");
  ASSERT_TRUE(model);
  GenerationOptions options;
  options.maxNewTokens = 8;
  options.sample = true;
  options.temperature = 2.0;
  auto sample = [&](uint64_t seed) {
    options.seed = seed;
    GenerationResult r;
    EXPECT_TRUE(model->generate("Hello", options, nullptr, r).ok());
    return r.ids;
  };
  EXPECT_EQ(sample(5), sample(5));
  EXPECT_NE(sample(5), sample(6));
}

TEST(TextModel, WrongHeadEmptyAndOverlongInputsAreErrors) {
  auto bert = open("bert-mlm.mtc");
  auto gpt2 = open("gpt2-bpe.mtc");
  ASSERT_TRUE(bert && gpt2);
  GenerationResult g;
  Status s = bert->generate("hello", {}, nullptr, g);
  EXPECT_NE(s.message().find("'masked-lm' head"), std::string::npos) << s.message();
  std::vector<FillMaskResult> f;
  s = gpt2->fillMask({"hello [MASK]"}, 5, f);
  EXPECT_NE(s.message().find("'causal-lm' head"), std::string::npos) << s.message();
  s = bert->fillMask({""}, 5, f);
  EXPECT_NE(s.message().find("is empty"), std::string::npos) << s.message();
  std::string longText;
  for (int i = 0; i < 80; ++i)
    longText += "the ";
  s = bert->fillMask({longText + "[MASK]"}, 5, f);
  EXPECT_NE(s.message().find("tokens long"), std::string::npos) << s.message();
  std::vector<Classification> c;
  s = bert->classify({{"hello", ""}}, c);
  EXPECT_NE(s.message().find("sequence-classification"), std::string::npos) << s.message();
}

TEST(TextModel, AnArtifactWithoutTokenizerSaysHowToEmbedOne) {
  std::unique_ptr<TextModel> model;
  Status s = TextModel::open(std::string(MEGATRON_ARTIFACTS_DIR) + "/bert.mtc", {}, model);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--vocab"), std::string::npos) << s.message();
}

} // namespace
