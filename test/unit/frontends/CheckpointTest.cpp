//===- CheckpointTest.cpp - merged tensors of real checkpoint layouts -----===//
//
// The same logical model saved in different layouts (TP=1 and TP=2 for each
// checkpoint_version, views, legacy torch files, safetensors) must read back
// as the same bytes, tensor by tensor.
//
//===----------------------------------------------------------------------===//

#include "frontends/Checkpoint.h"

#include "gtest/gtest.h"

#include <cstring>
#include <string>
#include <vector>

using namespace megatron;

namespace {

std::string fixture(const std::string &relative) {
  return std::string(MEGATRON_FIXTURES_DIR) + "/" + relative;
}

std::unique_ptr<Checkpoint> open(const std::string &relative) {
  auto ckpt = Checkpoint::open(fixture(relative));
  if (!ckpt) {
    ADD_FAILURE() << relative << ": " << llvm::toString(ckpt.takeError());
    return nullptr;
  }
  return std::move(*ckpt);
}

std::vector<uint8_t> bytes(const Checkpoint &ckpt, const std::string &name) {
  const TensorInfo *info = ckpt.find(name);
  EXPECT_NE(info, nullptr) << name;
  if (!info)
    return {};
  size_t count = 1;
  for (int64_t d : info->shape)
    count *= d;
  std::vector<uint8_t> data(count * reader::dtypeSize(info->dtype));
  if (llvm::Error err = ckpt.read(name, data.data()))
    ADD_FAILURE() << name << ": " << llvm::toString(std::move(err));
  return data;
}

/// Every tensor of `a` exists in `b` with the same dtype, shape and bytes.
void expectTensorsIn(const std::string &a, const std::string &b) {
  auto left = open(a), right = open(b);
  ASSERT_TRUE(left && right);
  for (const std::string &name : left->names()) {
    const TensorInfo *l = left->find(name), *r = right->find(name);
    ASSERT_NE(r, nullptr) << b << " lacks " << name;
    EXPECT_EQ(l->dtype, r->dtype) << name;
    EXPECT_EQ(l->shape, r->shape) << name;
    EXPECT_TRUE(bytes(*left, name) == bytes(*right, name))
        << name << " differs between " << a << " and " << b;
  }
}

void expectSameTensors(const std::string &a, const std::string &b) {
  expectTensorsIn(a, b);
  expectTensorsIn(b, a);
}

TEST(Checkpoint, TensorParallelShardsMergeToTheFullTensors) {
  // Version 0 keeps each rank's QKV rows as [3, local heads, dim]; the
  // merge must interleave the ranks' Q, K and V blocks.
  expectSameTensors("megatron/bert_v0_tp1", "megatron/bert_v0_tp2");
  expectSameTensors("megatron/bert_v1_tp1", "megatron/bert_v1_tp2");
  expectSameTensors("megatron/bert_v3_tp1", "megatron/bert_v3_tp2");
  expectSameTensors("megatron/gpt2_v3_tp1", "megatron/gpt2_v3_tp2");
}

TEST(Checkpoint, ContainersHoldTheSameTensors) {
  expectSameTensors("megatron/bert_v3_tp1", "megatron/bert_v3_tp1.pt");
  expectSameTensors("megatron/bert_v3_tp1", "megatron/bert_view.pt");
  expectSameTensors("megatron/bert_v1_tp1", "megatron/bert_v1_legacy.pt");
  expectSameTensors("megatron/gpt2_v3_tp1", "megatron/gpt2_v3_pp");
  // Safetensors files leave out tied copies the .bin files hold.
  expectTensorsIn("hf/megatron_bert_mlm_sharded", "hf/megatron_bert_mlm");
  expectTensorsIn("hf/megatron_bert_mlm_safetensors", "hf/megatron_bert_mlm");
  expectTensorsIn("hf/gpt2_safetensors", "hf/gpt2");
  expectSameTensors("hf/gpt2", "hf/gpt2_sharded_bin");
}

TEST(Checkpoint, MegatronMetadata) {
  auto ckpt = open("megatron/bert_v0_tp2");
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->format(), Checkpoint::Format::MegatronLM);
  EXPECT_EQ(ckpt->tensorParallelSize(), 2);
  EXPECT_EQ(ckpt->tokenizerType(), "BertWordPieceLowerCase");
  const ConfigLayer &stored = ckpt->storedConfig();
  ASSERT_TRUE(stored.numHeads);
  EXPECT_EQ(*stored.numHeads, 4);
  // Version 0 checkpoints have no checkpoint_version key.
  EXPECT_FALSE(stored.checkpointVersion);
  const TensorInfo *qkv = ckpt->find(
      "language_model.transformer.layers.0.attention.query_key_value.weight");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->shape, (llvm::SmallVector<int64_t>{96, 32}));
}

TEST(Checkpoint, CheckpointVersion) {
  auto ckpt = open("megatron/bert_v3_tp2");
  ASSERT_TRUE(ckpt);
  ASSERT_TRUE(ckpt->storedConfig().checkpointVersion);
  EXPECT_EQ(*ckpt->storedConfig().checkpointVersion, 3.0);
}

TEST(Checkpoint, HuggingFaceMetadata) {
  auto ckpt = open("hf/megatron_bert_qa");
  ASSERT_TRUE(ckpt);
  EXPECT_EQ(ckpt->format(), Checkpoint::Format::HuggingFace);
  ASSERT_EQ(ckpt->architectures().size(), 1u);
  EXPECT_EQ(ckpt->architectures()[0], "MegatronBertForQuestionAnswering");
  ASSERT_TRUE(ckpt->storedConfig().layerNormEps);
}

TEST(Checkpoint, StoredDTypesArePreserved) {
  auto fp16 = open("megatron/gpt2_fp16");
  ASSERT_TRUE(fp16);
  const TensorInfo *word =
      fp16->find("language_model.embedding.word_embeddings.weight");
  ASSERT_NE(word, nullptr);
  EXPECT_EQ(word->dtype, reader::DType::F16);
  auto bf16 = open("megatron/bert_bf16");
  ASSERT_TRUE(bf16);
  EXPECT_EQ(bf16->find("lm_head.bias")->dtype, reader::DType::BF16);
}

TEST(Checkpoint, ReadingAnUnknownTensorIsAnError) {
  auto ckpt = open("megatron/bert_v3_tp1");
  ASSERT_TRUE(ckpt);
  float sink;
  llvm::Error err = ckpt->read("no.such.tensor", &sink);
  ASSERT_TRUE(bool(err));
  EXPECT_NE(llvm::toString(std::move(err)).find("no.such.tensor"),
            std::string::npos);
}

} // namespace
