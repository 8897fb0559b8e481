//===- ModelConfigTest.cpp - Hugging Face config keys and --set -----------===//

#include "frontends/ModelConfig.h"

#include "gtest/gtest.h"

#include <nlohmann/json.hpp>

using namespace megatron;

namespace {

std::string errorOf(llvm::Expected<ConfigLayer> layer) {
  if (layer)
    return "";
  return llvm::toString(layer.takeError());
}

llvm::Expected<ConfigLayer> fromOverrides(std::vector<std::string> sets) {
  auto json = parseOverrides(sets);
  if (!json)
    return json.takeError();
  return parseHuggingFaceConfig(*json, "--set", std::nullopt, /*strict=*/true);
}

TEST(ModelConfig, OverridesTakeJsonValuesOrPlainStrings) {
  auto layer = fromOverrides({"n_embd=8", "n_head=4", "activation_function=gelu_new", "n_inner=null"});
  ASSERT_TRUE(static_cast<bool>(layer)) << llvm::toString(layer.takeError());
  EXPECT_EQ(*layer->numHeads, 4);
  EXPECT_EQ(*layer->gelu, GeluKind::Tanh);
  EXPECT_FALSE(layer->ffnSize) << "null means the default";
}

// Found by fuzz_config: a --set value that is not UTF-8 made the error
// message's JSON dump throw, and megatron-compile died in std::terminate.
TEST(ModelConfig, AnInvalidUtf8ValueIsAnErrorNotAThrow) {
  std::string error;
  EXPECT_NO_THROW(error = errorOf(fromOverrides({"num_attention_heads=\xff\xfe"})));
  EXPECT_NE(error.find("'num_attention_heads' must be a positive integer"),
            std::string::npos)
      << error;
  EXPECT_NO_THROW(error = errorOf(fromOverrides({"hidden_act=\xc3"})));
  EXPECT_NE(error.find("is not supported"), std::string::npos) << error;
}

TEST(ModelConfig, BadValuesNameTheKeyAndTheSource) {
  EXPECT_NE(errorOf(fromOverrides({"num_attention_heads=0"})).find("--set: 'num_attention_heads'"),
            std::string::npos);
  EXPECT_NE(errorOf(fromOverrides({"hiden_size=8"})).find("unknown bert configuration key 'hiden_size'"),
            std::string::npos);
  nlohmann::json labels = {{"id2label", {{"0", "a"}, {"2", "b"}}}};
  EXPECT_NE(errorOf(parseHuggingFaceConfig(labels, "config.json", std::nullopt, false))
                .find("'id2label' must map the indices 0..1"),
            std::string::npos);
}

TEST(ModelConfig, TextThatIsNotJsonIsAnError) {
  auto json = parseJson("{\"hidden_size\": ", "config.json");
  ASSERT_FALSE(static_cast<bool>(json));
  EXPECT_EQ(llvm::toString(json.takeError()), "'config.json' is not valid JSON");
}

} // namespace
