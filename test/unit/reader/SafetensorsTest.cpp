//===- SafetensorsTest.cpp - safetensors files and sharded checkpoints ----===//

#include "TestSupport.h"

#include "frontends/reader/Safetensors.h"
#include "frontends/reader/ShardedCheckpoint.h"

using namespace megatron::reader;
using reader_test::operator""_b;

namespace {

/// A safetensors file: 8-byte little-endian header length, header, data.
std::string safetensors(const std::string &header, const std::string &data) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<char>(uint64_t(header.size()) >> (8 * i));
  return file + header + data;
}

template <typename T> std::string bytesOf(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

llvm::Expected<std::vector<NamedTensor>> load(const std::string &file) {
  return loadSafetensors(memorySource(file, "test.safetensors"));
}

TEST(Safetensors, ReadsTensorsInHeaderOrder) {
  std::string header =
      R"({"__metadata__": {"format": "pt"},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "a": {"dtype": "I64", "shape": [1, 1], "data_offsets": [8, 16]},
          "e": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [16, 16]}})";
  std::string data = bytesOf<float>({1.5f, -2.0f}) + bytesOf<int64_t>({-7});
  ASSERT_OK_AND_ASSIGN(tensors, load(safetensors(header, data)));
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0].name, "b");
  EXPECT_EQ(tensors[1].name, "a");
  EXPECT_EQ(tensors[2].name, "e");
  EXPECT_EQ(reader_test::readTensor(tensors[0].tensor),
            bytesOf<float>({1.5f, -2.0f}));
  EXPECT_EQ(tensors[1].tensor.dtype, DType::I64);
  EXPECT_EQ(tensors[1].tensor.shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(reader_test::readTensor(tensors[1].tensor), bytesOf<int64_t>({-7}));
  EXPECT_EQ(tensors[2].tensor.numel(), 0u);
  EXPECT_EQ(tensors[0].tensor.storage->bytes->describe(),
            "tensor 'b' in test.safetensors");
}

TEST(SafetensorsHostile, Headers) {
  std::string huge(8, '\xff');
  EXPECT_ERROR(load(huge + "{}"), "header length 18446744073709551615 exceeds");
  EXPECT_ERROR(load(safetensors("{}", "").substr(0, 9)),
               "header length 2 exceeds the file (9 bytes)");
  EXPECT_ERROR(load("\x01\x00\x00"_b), "too short for a safetensors header");
  EXPECT_ERROR(load(safetensors("{not json", "")),
               "test.safetensors: the header is not a JSON object");
  EXPECT_ERROR(load(safetensors("[1, 2]", "")), "not a JSON object");
  EXPECT_ERROR(load(safetensors(R"({"w": 3})", "")),
               "tensor 'w': header entry is not an object");
}

TEST(SafetensorsHostile, Entries) {
  std::string data(16, '\0');
  auto entry = [&](const std::string &fields) {
    return load(safetensors(R"({"w": {)" + fields + "}}", data));
  };
  EXPECT_ERROR(
      entry(R"("dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1])"),
      "tensor 'w': unsupported dtype 'F8_E4M3'");
  EXPECT_ERROR(entry(R"("shape": [1], "data_offsets": [0, 4])"),
               "missing dtype");
  EXPECT_ERROR(
      entry(R"("dtype": "F32", "shape": [-1], "data_offsets": [0, 4])"),
      "shape holds -1, not a non-negative integer");
  EXPECT_ERROR(entry(R"("dtype": "F32", "shape": 4, "data_offsets": [0, 4])"),
               "malformed shape");
  EXPECT_ERROR(
      entry(R"("dtype": "F32", "shape": [1], "data_offsets": [0.0, 4])"),
      "data_offsets must be two non-negative integers");
  EXPECT_ERROR(entry(R"("dtype": "F32", "shape": [1], "data_offsets": [0])"),
               "data_offsets must be two");
  EXPECT_ERROR(entry(R"("dtype": "F32", "shape": [1], "data_offsets": [8, 4])"),
               "are not within the 16-byte data section");
  EXPECT_ERROR(
      entry(R"("dtype": "F32", "shape": [8], "data_offsets": [0, 32])"),
      "data_offsets [0, 32] are not within");
  EXPECT_ERROR(entry(R"("dtype": "F32", "shape": [3], "data_offsets": [0, 8])"),
               "data_offsets span 8 bytes but 3 x f32 needs 12");
  EXPECT_ERROR(entry(R"("dtype": "F32", "shape": [4294967296, 4294967296],
                        "data_offsets": [0, 8])"),
               "too many elements");
  EXPECT_ERROR(
      load(safetensors(
          R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
          data)),
      "tensors 'a' and 'b' overlap");
}

TEST(ShardedCheckpoint, SafetensorsShards) {
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  reader_test::writeFile(
      dir + "/model-1.safetensors",
      safetensors(
          R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
          bytesOf<float>({1, 2})));
  reader_test::writeFile(
      dir + "/model-2.safetensors",
      safetensors(
          R"({"c": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
          bytesOf<float>({3})));
  reader_test::writeFile(dir + "/model.safetensors.index.json",
                         R"({"metadata": {"total_size": 12},
                             "weight_map": {"c": "model-2.safetensors",
                                            "a": "model-1.safetensors",
                                            "b": "model-1.safetensors"}})");
  ASSERT_OK_AND_ASSIGN(
      tensors, loadShardedCheckpoint(dir + "/model.safetensors.index.json"));
  ASSERT_EQ(tensors.size(), 3u);
  EXPECT_EQ(tensors[0].name, "c");
  EXPECT_EQ(reader_test::readTensor(tensors[0].tensor), bytesOf<float>({3}));
  EXPECT_EQ(tensors[2].name, "b");
  EXPECT_EQ(reader_test::readTensor(tensors[2].tensor), bytesOf<float>({2}));

  reader_test::writeFile(dir + "/missing.index.json",
                         R"({"weight_map": {"zzz": "model-1.safetensors"}})");
  EXPECT_ERROR(loadShardedCheckpoint(dir + "/missing.index.json"),
               "tensor 'zzz' is not in " + dir + "/model-1.safetensors");
  reader_test::writeFile(dir + "/escape.index.json",
                         R"({"weight_map": {"a": "../model-1.safetensors"}})");
  EXPECT_ERROR(loadShardedCheckpoint(dir + "/escape.index.json"),
               "not a file next to the index");
  reader_test::writeFile(dir + "/nomap.index.json", R"({"metadata": {}})");
  EXPECT_ERROR(loadShardedCheckpoint(dir + "/nomap.index.json"),
               "no weight_map");
  reader_test::writeFile(dir + "/gone.index.json",
                         R"({"weight_map": {"a": "gone.safetensors"}})");
  EXPECT_ERROR(loadShardedCheckpoint(dir + "/gone.index.json"), "cannot open");
}

TEST(ShardedCheckpoint, TorchShards) {
  reader_test::TempDir temp;
  const std::string &dir = temp.path();
  reader_test::writeFile(
      dir + "/pytorch_model-1.bin",
      reader_test::readFile(reader_test::fixture("zoo_zip.pt")));
  reader_test::writeFile(dir + "/pytorch_model.bin.index.json",
                         R"({"weight_map": {"row": "pytorch_model-1.bin",
                                            "f32": "pytorch_model-1.bin"}})");
  ASSERT_OK_AND_ASSIGN(
      tensors, loadShardedCheckpoint(dir + "/pytorch_model.bin.index.json"));
  ASSERT_EQ(tensors.size(), 2u);
  reader_test::expectMatches(tensors[0].tensor,
                             reader_test::manifest("zoo")["row"], "row");
  reader_test::expectMatches(tensors[1].tensor,
                             reader_test::manifest("zoo")["f32"], "f32");
}

} // namespace
