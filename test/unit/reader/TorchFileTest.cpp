//===- TorchFileTest.cpp - torch.save files, zip and legacy ---------------===//

#include "TestSupport.h"

#include "frontends/reader/StateDict.h"
#include "frontends/reader/TorchFile.h"
#include "frontends/reader/ZipArchive.h"

#include <random>

using namespace megatron::reader;
using reader_test::fixture;
using Kind = Value::Kind;

namespace {

const Value &get(const Value &dict, llvm::StringRef key) {
  const Value *value = dict.dictGet(key);
  EXPECT_NE(value, nullptr) << "no key " << key.str();
  static const ValuePtr none = Value::none();
  return value ? *value : *none;
}

class TensorZoo : public testing::TestWithParam<const char *> {};

TEST_P(TensorZoo, EveryDTypeAndViewReadsBackExactly) {
  ASSERT_OK_AND_ASSIGN(root, loadTorchFile(fixture(GetParam())));
  ASSERT_TRUE(root->isDict());
  nlohmann::json zoo = reader_test::manifest("zoo");
  for (const auto &[name, expected] : zoo.items()) {
    const Value &value = get(*root, name);
    ASSERT_TRUE(value.isTensor()) << name << ": " << value.describe();
    reader_test::expectMatches(*value.asTensor(), expected, name);
  }
  const TensorRef &base = *get(*root, "base").asTensor();
  const TensorRef &transposed = *get(*root, "transposed").asTensor();
  const TensorRef &sliced = *get(*root, "sliced").asTensor();
  EXPECT_EQ(base.storage, transposed.storage) << "views share one storage";
  EXPECT_EQ(transposed.strides, (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(sliced.storageOffset, 8);
  EXPECT_FALSE(sliced.isContiguous());
  const Value &args = get(*root, "args");
  EXPECT_EQ(args.attr("hidden_size")->asInt(), 8);
  EXPECT_EQ(args.attr("params_dtype")->asTorchDType(), DType::F16);
}

INSTANTIATE_TEST_SUITE_P(Formats, TensorZoo,
                         testing::Values("zoo_zip.pt", "zoo_legacy.pt",
                                         "zoo_deflated.pt"));

TEST(TorchFile, StorageKeysNameTheirRecords) {
  ASSERT_OK_AND_ASSIGN(zip, loadTorchFile(fixture("zoo_zip.pt")));
  EXPECT_EQ(get(*zip, "f32").asTensor()->storage->key, "zoo_zip/data/0");
  EXPECT_EQ(get(*zip, "f32").asTensor()->storage->bytes->describe(),
            "'zoo_zip/data/0' in " + fixture("zoo_zip.pt"));
  ASSERT_OK_AND_ASSIGN(legacy, loadTorchFile(fixture("zoo_legacy.pt")));
  const Storage &storage = *get(*legacy, "f32").asTensor()->storage;
  EXPECT_EQ(storage.bytes->describe(),
            "storage '" + storage.key + "' in " + fixture("zoo_legacy.pt"));
}

/// What the Megatron-shaped fixture holds, whichever way it is packaged.
void checkMegatronCheckpoint(const Value &root) {
  ASSERT_TRUE(root.isDict());
  EXPECT_EQ(get(root, "iteration").asInt(), 5000);
  EXPECT_EQ(get(root, "checkpoint_version").asFloat(), 3.0);
  const Value &args = get(root, "args");
  EXPECT_EQ(args.qualifiedName(), "argparse.Namespace");
  EXPECT_EQ(args.attr("hidden_size")->asInt(), 4);
  EXPECT_EQ(args.attr("layernorm_epsilon")->asFloat(), 1e-5);
  EXPECT_EQ(args.attr("bias_gelu_fusion")->asBool(), true);
  EXPECT_EQ(args.attr("params_dtype")->asTorchDType(), DType::F16);
  EXPECT_EQ(args.attr("tokenizer_type")->asString(),
            llvm::StringRef("GPT2BPETokenizer"));
  // Python >= 3.11 pickles enum members by name: getattr(cls, 'causal').
  const Value *mask = args.attr("attn_mask_type");
  ASSERT_NE(mask, nullptr);
  EXPECT_EQ(mask->kind(), Kind::Global);
  EXPECT_EQ(mask->qualifiedName(), "megatron.model.enums.AttnMaskType.causal");
  EXPECT_EQ(args.attr("data_path")->elements().size(), 2u);

  const Value &embedding =
      get(get(get(root, "model"), "language_model"), "embedding");
  const Value &word = get(get(embedding, "word_embeddings"), "weight");
  ASSERT_TRUE(word.isTensor());
  reader_test::expectMatches(
      *word.asTensor(),
      reader_test::manifest(
          "megatron")["language_model.embedding.word_embeddings.weight"],
      "word_embeddings");
  const Value &encoder =
      get(get(get(root, "model"), "language_model"), "encoder");
  const Value *metadata =
      encoder.state() ? encoder.state()->dictGet("_metadata") : nullptr;
  ASSERT_NE(metadata, nullptr) << "OrderedDict state dicts keep _metadata";
  EXPECT_EQ(get(encoder, "layers.0._extra_state").qualifiedName(),
            "_io.BytesIO");
  EXPECT_TRUE(get(encoder, "layers.0.unused").isNone());

  const Value &rng = *get(root, "rng_state").elements()[0];
  EXPECT_EQ(get(rng, "np_rng_state").elements()[0]->asString(),
            llvm::StringRef("MT19937"));
  EXPECT_EQ(get(rng, "random_rng_state").elements()[1]->elements().size(),
            625u);
  EXPECT_EQ(get(rng, "torch_rng_state").asTensor()->dtype, DType::U8);
  EXPECT_EQ(get(root, "param").asTensor()->shape, (std::vector<int64_t>{2}));
  const Value &state = get(get(get(root, "optimizer"), "optimizer"), "state");
  EXPECT_EQ(state.dictGet("0"), nullptr) << "int keys are not str keys";
  ASSERT_NE(state.dictGet(int64_t(0)), nullptr);
  EXPECT_TRUE(state.dictGet(int64_t(0))->isDict());
}

TEST(TorchFile, MegatronCheckpointZip) {
  ASSERT_OK_AND_ASSIGN(root, loadTorchFile(fixture("model_optim_rng.pt")));
  checkMegatronCheckpoint(*root);
}

TEST(TorchFile, MegatronCheckpointLegacy) {
  ASSERT_OK_AND_ASSIGN(root,
                       loadTorchFile(fixture("model_optim_rng_legacy.pt")));
  checkMegatronCheckpoint(*root);
}

TEST(TorchFile, MegatronCheckpointInsideNgcZips) {
  for (const char *name : {"ngc_deflated.zip", "ngc_stored.zip"}) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(outer, ZipArchive::open(fixture(name)));
    ASSERT_OK_AND_ASSIGN(
        entry, outer->openEntry("release/mp_rank_00/model_optim_rng.pt"));
    ASSERT_OK_AND_ASSIGN(root, loadTorchFile(entry));
    // The outer archive may go away; the tensors keep what they need.
    outer.reset();
    checkMegatronCheckpoint(*root);
  }
}

TEST(TorchFile, ExplicitLittleEndianByteOrder) {
  ASSERT_OK_AND_ASSIGN(root, loadTorchFile(fixture("little_endian.pt")));
  std::string data = reader_test::readTensor(*get(*root, "w").asTensor());
  // A 2x2 view with strides (1, 2) over floats whose bytes are 0..31.
  std::string bytes;
  for (int element : {0, 2, 1, 3})
    for (int b = 0; b < 4; ++b)
      bytes.push_back(static_cast<char>(element * 4 + b));
  EXPECT_EQ(data, bytes);
}

TEST(TorchFile, StorageTypesOfNewerTorch) {
  ASSERT_OK_AND_ASSIGN(root, loadTorchFile(fixture("storage_types.pt")));
  const TensorRef &half = *get(*root, "h").asTensor();
  EXPECT_EQ(half.dtype, DType::F16);
  EXPECT_EQ(reader_test::readTensor(half), "\x02\x03\x04\x05");
  const TensorRef &untyped = *get(*root, "u").asTensor();
  EXPECT_EQ(untyped.dtype, DType::U8);
  EXPECT_EQ(reader_test::readTensor(untyped), "xyz");
}

TEST(TorchFile, LegacyStorageViews) {
  ASSERT_OK_AND_ASSIGN(root, loadTorchFile(fixture("legacy_view.pt")));
  const TensorRef &whole = *get(*root, "whole").asTensor();
  const TensorRef &view = *get(*root, "view").asTensor();
  EXPECT_EQ(view.storage->key, "8");
  EXPECT_EQ(view.storage->numel, 3u);
  std::vector<float> values(2);
  ASSERT_FALSE(static_cast<bool>(view.read(values.data())));
  EXPECT_EQ(values, (std::vector<float>{3, 4}));
  EXPECT_EQ(whole.numel(), 6u);
}

TEST(TorchFileHostile, BadStoragesAndViews) {
  EXPECT_ERROR(loadTorchFile(fixture("short_storage.pt")),
               "tensor f32[3] in storage 'archive/data/0' (strides [1], "
               "offset 0): needs 3 elements but the storage holds 2");
  EXPECT_ERROR(loadTorchFile(fixture("short_record.pt")),
               "storage 'archive/data/0' holds 16 f32 elements, which needs "
               "more than the 32 bytes");
  EXPECT_ERROR(loadTorchFile(fixture("negative_stride.pt")), "negative stride");
  EXPECT_ERROR(loadTorchFile(fixture("missing_record.pt")),
               "'archive/data/9' in " + fixture("missing_record.pt") +
                   ": no such entry");
  EXPECT_ERROR(loadTorchFile(fixture("big_endian.pt")),
               "byte order 'big' is not supported");
}

TEST(TorchFileHostile, NotTorchFiles) {
  EXPECT_ERROR(loadTorchFile(fixture("no_data_pkl.zip")),
               "no <folder>/data.pkl record");
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  std::string zip = reader_test::readFile(fixture("zoo_zip.pt"));
  reader_test::writeFile(dir + "/truncated.pt",
                         zip.substr(0, zip.size() - 100));
  EXPECT_ERROR(loadTorchFile(dir + "/truncated.pt"),
               "not a readable zip archive");
  reader_test::writeFile(dir + "/text.pt", "hello");
  EXPECT_ERROR(loadTorchFile(dir + "/text.pt"),
               "neither a torch zip archive nor a legacy torch file (starts "
               "with 68 65 6c 6c)");
  reader_test::writeFile(dir + "/empty.pt", "");
  EXPECT_ERROR(loadTorchFile(dir + "/empty.pt"), "neither");
  EXPECT_ERROR(loadTorchFile(dir + "/missing.pt"), "cannot open");
}

TEST(TorchFileHostile, LegacyFiles) {
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  std::string legacy = reader_test::readFile(fixture("zoo_legacy.pt"));
  ASSERT_EQ(legacy.substr(0, 5), "\x80\x02\x8a\x0a\x6c");
  std::string badMagic = legacy;
  badMagic[4] = 0x6d;
  reader_test::writeFile(dir + "/magic.pt", badMagic);
  EXPECT_ERROR(loadTorchFile(dir + "/magic.pt"),
               dir +
                   "/magic.pt: bad magic number int 119547037146038801333357");
  // Which storage comes last depends on torch's keys; whichever it is, its
  // record no longer fits.
  reader_test::writeFile(dir + "/cut.pt", legacy.substr(0, legacy.size() - 3));
  std::string message =
      reader_test::errorMessage(loadTorchFile(dir + "/cut.pt"));
  EXPECT_NE(message.find("storage '"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/cut.pt"), std::string::npos) << message;
  reader_test::writeFile(dir + "/header.pt", legacy.substr(0, 40));
  EXPECT_ERROR(loadTorchFile(dir + "/header.pt"),
               dir + "/header.pt: pickle offset 27 (BINUNICODE): truncated");
}

TEST(TorchFileHostile, CorruptedLegacyFilesFailCleanly) {
  // Damage a legacy file anywhere (pickles, keys, storage headers, data) and
  // read every tensor that still loads: errors are fine, crashes are not.
  std::string original = reader_test::readFile(fixture("zoo_legacy.pt"));
  std::mt19937 random(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = original;
    for (int flips = 1 + random() % 3; flips > 0; --flips)
      bytes[random() % bytes.size()] = static_cast<char>(random());
    auto root = loadTorchFile(memorySource(bytes, "corrupt.pt"));
    if (!root) {
      llvm::consumeError(root.takeError());
      continue;
    }
    auto tensors = flattenStateDict(**root);
    if (!tensors) {
      llvm::consumeError(tensors.takeError());
      continue;
    }
    for (const NamedTensor &tensor : *tensors) {
      if (tensor.tensor.nbytes() > (1 << 20))
        continue; // a corrupted shape may claim any size
      std::vector<uint8_t> data(tensor.tensor.nbytes());
      llvm::consumeError(tensor.tensor.read(data.data()));
    }
  }
}

} // namespace
