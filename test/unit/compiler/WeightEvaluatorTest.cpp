//===- WeightEvaluatorTest.cpp - weight transforms on real checkpoints ----===//
//
// The importer expresses checkpoint-specific layouts (QKV row orders of each
// checkpoint_version, tensor-parallel shards, GPT-2's Conv1D) as transforms on
// weights. Evaluated, they must all give the canonical weights: the fused QKV
// of a Megatron-LM checkpoint equals the Hugging Face query, key and value
// weights of the same model stacked, whatever version or TP degree saved it.
//
//===----------------------------------------------------------------------===//

#include "compiler/WeightEvaluator.h"

#include "FixtureTest.h"
#include "dialects/megatron/MegatronOps.h"

#include <cmath>

using namespace megatron;
namespace mm = mlir::megatron;

namespace {

class WeightEvaluatorTest : public FixtureTest {
protected:
  /// The evaluated weight and bias of the `index`-th linear of the imported
  /// forward function.
  std::pair<DenseTensor, DenseTensor> linear(const Checkpoint &ckpt,
                                             unsigned index) {
    mlir::func::FuncOp func = importForward(ckpt);
    if (!func)
      return {};
    llvm::SmallVector<mm::LinearOp> linears;
    func.walk([&](mm::LinearOp op) { linears.push_back(op); });
    if (index >= linears.size()) {
      ADD_FAILURE() << "no linear #" << index;
      return {};
    }
    return {evaluate(linears[index].getWeight(), ckpt),
            evaluate(linears[index].getBias(), ckpt)};
  }

  /// `result`'s tensor, or an empty one with a test failure.
  static DenseTensor check(llvm::Expected<DenseTensor> result) {
    if (!result) {
      ADD_FAILURE() << llvm::toString(result.takeError());
      return {};
    }
    return std::move(*result);
  }
  static DenseTensor evaluate(mlir::Value value, const Checkpoint &ckpt) {
    return check(evaluateWeight(value, ckpt));
  }
  static DenseTensor tensor(const Checkpoint &ckpt, const std::string &name) {
    return check(readTensorF32(ckpt, name));
  }

  /// Hugging Face BERT's layer-0 query, key and value, stacked as the
  /// canonical fused projection.
  std::pair<DenseTensor, DenseTensor> hfQkv() {
    auto hf = openFixture("hf/megatron_bert_mlm");
    std::pair<DenseTensor, DenseTensor> qkv;
    for (const char *part : {"query", "key", "value"}) {
      std::string base =
          std::string("bert.encoder.layer.0.attention.self.") + part;
      DenseTensor w = tensor(*hf, base + ".weight");
      DenseTensor b = tensor(*hf, base + ".bias");
      qkv.first.data.insert(qkv.first.data.end(), w.data.begin(), w.data.end());
      qkv.second.data.insert(qkv.second.data.end(), b.data.begin(),
                             b.data.end());
    }
    qkv.first.shape = {96, 32};
    qkv.second.shape = {96};
    return qkv;
  }
};

void expectNear(const DenseTensor &actual, const DenseTensor &expected,
                float relative, const std::string &what,
                float absolute = 0) {
  ASSERT_EQ(actual.shape, expected.shape) << what;
  ASSERT_EQ(actual.data.size(), expected.data.size()) << what;
  for (size_t i = 0; i < actual.data.size(); ++i)
    ASSERT_LE(std::fabs(actual.data[i] - expected.data[i]),
              relative * std::fabs(expected.data[i]) + absolute)
        << what << " element " << i;
}

TEST_F(WeightEvaluatorTest, MegatronQkvOfEveryVersionAndTpIsCanonical) {
  auto [w, b] = hfQkv();
  for (const char *path :
       {"megatron/bert_v0_tp1", "megatron/bert_v1_tp1", "megatron/bert_v2_tp1",
        "megatron/bert_v3_tp1", "megatron/bert_v0_tp2", "megatron/bert_v1_tp2",
        "megatron/bert_v3_tp2", "megatron/bert_v1_legacy.pt",
        "megatron/bert_view.pt"}) {
    auto ckpt = openFixture(path);
    ASSERT_TRUE(ckpt);
    auto [qkvWeight, qkvBias] = linear(*ckpt, 0);
    expectNear(qkvWeight, w, 0, std::string(path) + " QKV weight");
    expectNear(qkvBias, b, 0, std::string(path) + " QKV bias");
  }
}

TEST_F(WeightEvaluatorTest, Gpt2Conv1DAndMegatronAgree) {
  auto megatron = openFixture("megatron/gpt2_v3_tp2");
  auto hf = openFixture("hf/gpt2");
  ASSERT_TRUE(megatron && hf);
  // Linears in order: QKV, attention output, MLP in, MLP out.
  for (unsigned i = 0; i < 4; ++i) {
    auto [mw, mb] = linear(*megatron, i);
    auto [hw, hb] = linear(*hf, i);
    expectNear(mw, hw, 0, "GPT-2 linear " + std::to_string(i) + " weight");
    expectNear(mb, hb, 0, "GPT-2 linear " + std::to_string(i) + " bias");
  }
}

TEST_F(WeightEvaluatorTest, HalfPrecisionWeightsConvert) {
  auto full = openFixture("megatron/gpt2_v3_tp1");
  auto half = openFixture("megatron/gpt2_fp16");
  ASSERT_TRUE(full && half);
  auto [fw, fb] = linear(*full, 0);
  auto [hw, hb] = linear(*half, 0);
  // 10 mantissa bits; below 2^-14 fp16 is subnormal with steps of 2^-24.
  expectNear(hw, fw, 1.0f / 1024, "fp16 QKV weight", std::ldexp(1.0f, -24));
}

TEST_F(WeightEvaluatorTest, QuantizedWeightsRoundTrip) {
  // The fused QKV weight quantized with 4 groups per row: every value an
  // integer in [-127, 127], each group's largest one at +-127, and the
  // dequantized weight within half a step of the original.
  auto ckpt = openFixture("megatron/gpt2_v3_tp1");
  ASSERT_TRUE(ckpt);
  mlir::func::FuncOp func = importForward(*ckpt);
  ASSERT_TRUE(func);
  mm::LinearOp qkv = *func.getOps<mm::LinearOp>().begin();
  mlir::OpBuilder b(qkv);
  auto type = mlir::cast<mlir::RankedTensorType>(qkv.getWeight().getType());
  int64_t rows = type.getDimSize(0), cols = type.getDimSize(1), groups = 4;
  auto quantize = mm::QuantizeOp::create(
      b, qkv.getLoc(), mlir::RankedTensorType::get(type.getShape(), b.getI8Type()),
      mlir::RankedTensorType::get({rows, groups}, b.getF32Type()), qkv.getWeight());
  auto dequantize = mm::DequantizeOp::create(b, qkv.getLoc(), type, quantize.getValues(),
                                             quantize.getScales());
  DenseTensor w = evaluate(qkv.getWeight(), *ckpt);
  DenseTensor q = evaluate(quantize.getValues(), *ckpt);
  DenseTensor scales = evaluate(quantize.getScales(), *ckpt);
  DenseTensor d = evaluate(dequantize.getResult(), *ckpt);
  ASSERT_EQ(scales.shape, (llvm::SmallVector<int64_t>{rows, groups}));
  int64_t width = cols / groups;
  for (int64_t g = 0; g < rows * groups; ++g) {
    float largest = 0;
    for (int64_t i = g * width; i < (g + 1) * width; ++i) {
      ASSERT_EQ(q.data[i], std::round(q.data[i]));
      ASSERT_LE(std::fabs(q.data[i]), 127.0f);
      largest = std::max(largest, std::fabs(q.data[i]));
      ASSERT_LE(std::fabs(d.data[i] - w.data[i]), 0.5f * scales.data[g] * 1.0001f);
      ASSERT_EQ(d.data[i], q.data[i] * scales.data[g]);
    }
    EXPECT_EQ(largest, 127.0f) << "group " << g;
  }
}

TEST(ConvertToF32, SpecialValues) {
  // fp16: 1.0, -2.0, smallest subnormal, infinity.
  uint16_t half[] = {0x3c00, 0xc000, 0x0001, 0x7c00};
  float out[4];
  ASSERT_FALSE(bool(convertToF32(reader::DType::F16, half, out, 4)));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(out[3]));
  // bf16: 1.0 and -0.5.
  uint16_t bf[] = {0x3f80, 0xbf00};
  ASSERT_FALSE(bool(convertToF32(reader::DType::BF16, bf, out, 2)));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -0.5f);
  llvm::Error err = convertToF32(reader::DType::I64, bf, out, 1);
  ASSERT_TRUE(bool(err));
  llvm::consumeError(std::move(err));
}

} // namespace
