//===- StateDictTest.cpp - flattening nested state dicts ------------------===//

#include "TestSupport.h"

#include "frontends/reader/StateDict.h"
#include "frontends/reader/TorchFile.h"

using namespace megatron::reader;
using reader_test::operator""_b;

namespace {

std::vector<std::string> namesOf(const std::vector<NamedTensor> &tensors) {
  std::vector<std::string> names;
  for (const NamedTensor &tensor : tensors)
    names.push_back(tensor.name);
  return names;
}

TEST(StateDict, MegatronModelFlattensToDottedNames) {
  ASSERT_OK_AND_ASSIGN(
      root, loadTorchFile(reader_test::fixture("model_optim_rng.pt")));
  ASSERT_OK_AND_ASSIGN(tensors, flattenStateDict(*root->dictGet("model")));
  EXPECT_EQ(namesOf(tensors),
            (std::vector<std::string>{
                "language_model.embedding.word_embeddings.weight",
                "language_model.embedding.position_embeddings.weight",
                "language_model.encoder.layers.0.input_layernorm.weight",
                "language_model.encoder.layers.0.input_layernorm.bias",
                "language_model.encoder.layers.0.query_key_value.weight",
                "language_model.encoder.layers.0.query_key_value.bias",
                "language_model.encoder.final_layernorm.weight",
                "language_model.encoder.final_layernorm.bias",
            }));
  nlohmann::json expected = reader_test::manifest("megatron");
  for (const NamedTensor &tensor : tensors)
    reader_test::expectMatches(tensor.tensor, expected[tensor.name],
                               tensor.name);
}

TEST(StateDict, PrefixesIntKeysAndLists) {
  ASSERT_OK_AND_ASSIGN(
      root, loadTorchFile(reader_test::fixture("model_optim_rng.pt")));
  ASSERT_OK_AND_ASSIGN(
      optimizer, flattenStateDict(*root->dictGet("optimizer"), "optimizer"));
  EXPECT_EQ(namesOf(optimizer),
            (std::vector<std::string>{"optimizer.optimizer.state.0.exp_avg",
                                      "optimizer.fp32_from_fp16_params.0.0"}));
  reader_test::expectMatches(
      optimizer[0].tensor,
      reader_test::manifest("megatron")["optimizer.optimizer.state.0.exp_avg"],
      "exp_avg");
  // The whole checkpoint: args (a Namespace), ints and rng states of numpy
  // objects are skipped; the torch rng state is a tensor like any other.
  ASSERT_OK_AND_ASSIGN(all, flattenStateDict(*root));
  std::vector<std::string> names = namesOf(all);
  EXPECT_EQ(names.size(), 12u);
  EXPECT_EQ(names.front(),
            "model.language_model.embedding.word_embeddings.weight");
  EXPECT_NE(
      std::find(names.begin(), names.end(), "rng_state.0.torch_rng_state"),
      names.end());
  EXPECT_EQ(names.back(), "param");
}

/// Unpickles with every persistent id bound to one 4-element float storage.
llvm::Expected<ValuePtr> loadsWithStorage(const std::string &pickle) {
  auto source = memorySource(pickle, "state.pkl");
  auto storage = std::make_shared<Storage>(Storage{
      DType::F32, "s", 4, memorySource(std::vector<uint8_t>(16), "s bytes")});
  auto result =
      unpickle(*source, 0,
               [&](const Value &) -> llvm::Expected<std::shared_ptr<Storage>> {
                 return storage;
               });
  if (!result)
    return result.takeError();
  return result->value;
}

// GLOBAL _rebuild_tensor_v2, BINPUT 0, then a tensor over the storage.
const std::string kTensorPrologue =
    "\x80\x02"
    "ctorch._utils\n_rebuild_tensor_v2\nq\x00"_b;
const std::string kTensor = "h\x00(NQK\x00K\x04\x85K\x01\x85\x89)tR"_b;

TEST(StateDict, DuplicateNamesAreAnError) {
  // {'a': {'b': T}, 'a.b': T}
  ASSERT_OK_AND_ASSIGN(root, loadsWithStorage(kTensorPrologue +
                                              "}(X\x01\x00\x00\x00"
                                              "a}X\x01\x00\x00\x00"
                                              "b"_b +
                                              kTensor +
                                              "sX\x03\x00\x00\x00"
                                              "a.b"_b +
                                              kTensor + "u."));
  EXPECT_ERROR(flattenStateDict(*root), "state dict names two tensors 'a.b'");
}

TEST(StateDict, SkipsOtherLeavesAndKeys) {
  // {('t',): T, 'n': None, 'x': T} -> only 'x'.
  ASSERT_OK_AND_ASSIGN(root, loadsWithStorage(kTensorPrologue +
                                              "}(X\x01\x00\x00\x00"
                                              "t\x85"_b +
                                              kTensor +
                                              "X\x01\x00\x00\x00"
                                              "nNX\x01\x00\x00\x00"
                                              "x"_b +
                                              kTensor + "u."));
  ASSERT_OK_AND_ASSIGN(tensors, flattenStateDict(*root, "p"));
  EXPECT_EQ(namesOf(tensors), (std::vector<std::string>{"p.x"}));
  ASSERT_OK_AND_ASSIGN(single,
                       loadsWithStorage(kTensorPrologue + kTensor + "."));
  ASSERT_OK_AND_ASSIGN(alone, flattenStateDict(*single, "w"));
  EXPECT_EQ(namesOf(alone), (std::vector<std::string>{"w"}));
}

TEST(StateDict, SharedSubtreesCannotExplode) {
  // Forty levels of (x, x) name 2^40 paths to one None.
  std::string pickle = "\x80\x02N";
  for (int i = 0; i < 40; ++i)
    pickle += "2\x86";
  ASSERT_OK_AND_ASSIGN(root, reader_test::loads(pickle + "."));
  EXPECT_ERROR(flattenStateDict(*root), "more than 4194304 entries");
}

} // namespace
