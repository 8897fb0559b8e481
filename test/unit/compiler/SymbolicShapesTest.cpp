//===- SymbolicShapesTest.cpp - naming the dynamic dimensions -------------===//

#include "compiler/SymbolicShapes.h"

#include "FixtureTest.h"

using namespace megatron;

namespace {

class SymbolicShapesTest : public FixtureTest {
protected:
  /// Imports `fixture` and returns each result's shape as text, by op name,
  /// in program order.
  std::vector<std::pair<std::string, std::string>>
  shapes(const std::string &fixture) {
    auto ckpt = openFixture(fixture);
    mlir::func::FuncOp func = ckpt ? importForward(*ckpt) : nullptr;
    if (!func)
      return {};
    auto inferred = inferSymbolicShapes(func);
    EXPECT_TRUE(bool(inferred))
        << (inferred ? "" : llvm::toString(inferred.takeError()));
    if (!inferred)
      return {};
    std::vector<std::pair<std::string, std::string>> out;
    func.walk([&](mlir::Operation *op) {
      if (op->getNumResults() != 1)
        return;
      std::string text;
      for (const SymbolicDim &d : inferred->lookup(op->getResult(0)))
        text += (text.empty() ? "" : " x ") + d.str();
      out.emplace_back(op->getName().getStringRef().str(), text);
    });
    return out;
  }

  /// The shape of the `nth` result of an op named `name`.
  static std::string find(
      const std::vector<std::pair<std::string, std::string>> &shapes,
      const std::string &name, unsigned nth = 0) {
    for (const auto &[op, shape] : shapes)
      if (op == name && nth-- == 0)
        return shape;
    return "<none>";
  }

};

TEST_F(SymbolicShapesTest, BertAttention) {
  auto s = shapes("megatron/bert_v3_tp1");
  EXPECT_EQ(find(s, "megatron.embedding"), "Batch x Sequence x 32");
  EXPECT_EQ(find(s, "megatron.split_heads"), "Batch x 4 x Sequence x 8");
  EXPECT_EQ(find(s, "megatron.matmul"), "Batch x 4 x Sequence x Sequence");
  EXPECT_EQ(find(s, "megatron.merge_heads"), "Batch x Sequence x 32");
  // The LM head's logits.
  EXPECT_EQ(s.back().second, "Batch x Sequence x 128");
}

TEST_F(SymbolicShapesTest, MultipleChoiceFoldsChoicesIntoRows) {
  auto s = shapes("hf/megatron_bert_multichoice");
  EXPECT_EQ(find(s, "megatron.reshape"), "Batch*Choices x Sequence");
  EXPECT_EQ(find(s, "megatron.matmul"),
            "Batch*Choices x 4 x Sequence x Sequence");
  EXPECT_EQ(s.back().second, "Batch x Choices");
}

TEST_F(SymbolicShapesTest, QuestionAnsweringSpans) {
  auto s = shapes("hf/megatron_bert_qa");
  EXPECT_EQ(s.back().second, "Batch x Sequence");
}

TEST_F(SymbolicShapesTest, WeightsAreStatic) {
  auto s = shapes("megatron/bert_v1_tp1");
  EXPECT_EQ(find(s, "megatron.transpose"), "3 x 4 x 8 x 32");
}

TEST(SymbolicDim, ProductsAndText) {
  SymbolicDim batch{1, {Symbol::Batch}}, choices{1, {Symbol::Choices}};
  EXPECT_EQ((choices * batch).str(), "Batch*Choices");
  EXPECT_EQ((SymbolicDim{3, {}} * batch).str(), "3*Batch");
  EXPECT_EQ((SymbolicDim{7, {}}).str(), "7");
}

} // namespace
