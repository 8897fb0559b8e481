//===- ArtifactTest.cpp - loading and rejecting .mtc files ----------------===//
//
// Artifacts are assembled here byte by byte (header, FlatBuffer, weights) so
// each way a file can be damaged is produced exactly, and the loader must
// name the problem instead of crashing or reading out of bounds.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Artifact.h"
#include "megatron/runtime/Session.h"
#include "megatron/runtime/ArtifactFormat.h"
#include "runtime/schema/artifact_generated.h"

#include "gtest/gtest.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <vector>

using namespace megatron::runtime;
namespace fb = megatron::artifact;

namespace {

/// What a test may change about the artifact it builds.
struct Spec {
  uint64_t weightBytes = 4 * 3 * sizeof(float); // one f32 [4, 3] weight
  uint64_t weightBufferSize = 4 * 3 * sizeof(float);
  uint64_t weightBufferOffset = 0;
  uint32_t stepInput = 0;
  uint32_t formatVersion = kArtifactFormatVersion;
  fb::DType weightType = fb::DType::F32;
  int64_t int8Input = 0; ///< the linear step's second parameter
};

std::vector<uint8_t> build(const Spec &spec) {
  flatbuffers::FlatBufferBuilder b;
  std::vector<flatbuffers::Offset<fb::Dim>> shape = {
      fb::CreateDim(b, 4), fb::CreateDim(b, 3)};
  auto weight = fb::CreateBuffer(b, b.CreateString("w"), fb::BufferKind::Weight,
                                 spec.weightType, b.CreateVector(shape),
                                 spec.weightBufferOffset, spec.weightBufferSize);
  std::vector<fb::Symbol> batchSeq = {fb::Symbol::Batch, fb::Symbol::Sequence};
  std::vector<flatbuffers::Offset<fb::Dim>> actShape = {
      fb::CreateDim(b, 1, b.CreateVector(batchSeq)), fb::CreateDim(b, 4)};
  auto activation = fb::CreateBuffer(
      b, b.CreateString("x"), fb::BufferKind::Input, fb::DType::F32,
      b.CreateVector(actShape), 0, 2 * 8 * 4 * sizeof(float));
  auto result = fb::CreateBuffer(
      b, b.CreateString("y"), fb::BufferKind::Output, fb::DType::F32,
      b.CreateVector(actShape), 0, 2 * 8 * 4 * sizeof(float));
  std::vector<uint32_t> inputs = {1, spec.stepInput}, outputs = {2};
  std::vector<int64_t> ints = {0, spec.int8Input}; // no epilogue
  auto step = fb::CreateStep(b, fb::StepKind::Linear, b.CreateVector(inputs),
                             b.CreateVector(outputs), b.CreateVector(ints));
  std::vector<flatbuffers::Offset<fb::Step>> steps = {step};
  std::vector<uint32_t> entryInputs = {1}, entryOutputs = {2};
  auto entry = fb::CreateEntry(b, b.CreateString("forward"), b.CreateVector(entryInputs),
                               b.CreateVector(entryOutputs), b.CreateVector(steps));
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers = {weight, activation, result};
  std::vector<flatbuffers::Offset<fb::Entry>> entries = {entry};
  auto rank = fb::CreateRank(b, b.CreateVector(buffers), b.CreateVector(entries),
                             /*arena_size=*/2 * 8 * 4 * sizeof(float),
                             /*weights_offset=*/0, spec.weightBytes);
  std::vector<flatbuffers::Offset<fb::Rank>> ranks = {rank};
  auto model = fb::CreateModel(b, b.CreateString("bert"),
                               b.CreateString("masked-lm"),
                               b.CreateString("{}"), 2, 8);
  b.Finish(fb::CreateArtifact(b, model, b.CreateVector(ranks)),
           fb::ArtifactIdentifier());

  ArtifactHeader header{};
  std::memcpy(header.magic, kArtifactMagic, sizeof(header.magic));
  header.formatVersion = spec.formatVersion;
  header.headerSize = sizeof(ArtifactHeader);
  header.flatbufferOffset = sizeof(ArtifactHeader);
  header.flatbufferSize = b.GetSize();
  uint64_t end = header.flatbufferOffset + header.flatbufferSize;
  header.weightsOffset = (end + kWeightAlignment - 1) / kWeightAlignment *
                         kWeightAlignment;
  header.weightsSize = spec.weightBytes;

  std::vector<uint8_t> file(header.weightsOffset + header.weightsSize, 0);
  std::memcpy(file.data(), &header, sizeof(header));
  std::memcpy(file.data() + header.flatbufferOffset, b.GetBufferPointer(),
              b.GetSize());
  for (uint64_t i = 0; i < header.weightsSize / sizeof(float); ++i) {
    float value = static_cast<float>(i);
    std::memcpy(file.data() + header.weightsOffset + i * sizeof(float), &value,
                sizeof(float));
  }
  return file;
}

class ArtifactTest : public ::testing::Test {
protected:
  /// Writes `bytes` and opens them; returns the error message, or "" when
  /// the artifact loaded.
  std::string load(const std::vector<uint8_t> &bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    Status status = Artifact::open(path, artifact);
    return status.ok() ? "" : status.message();
  }
  void TearDown() override { std::remove(path.c_str()); }

  // ctest runs each test in its own process, several at once: one file each.
  std::string path =
      ::testing::TempDir() + "artifact-test-" +
      ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
      std::to_string(getpid()) + ".mtc";
  std::unique_ptr<Artifact> artifact;
};

TEST_F(ArtifactTest, AValidArtifactLoads) {
  ASSERT_EQ(load(build(Spec{})), "");
  EXPECT_EQ(artifact->root().model()->architecture()->str(), "bert");
  EXPECT_EQ(artifact->root().model()->max_sequence(), 8);
  const float *weights = reinterpret_cast<const float *>(artifact->weights(0));
  EXPECT_EQ(weights[0], 0.0f);
  EXPECT_EQ(weights[11], 11.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(weights) % kWeightAlignment, 0u);
}

TEST_F(ArtifactTest, MissingOrTinyFiles) {
  Status missing = Artifact::open(path + ".absent", artifact);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("cannot open artifact"), std::string::npos);
  EXPECT_NE(load({1, 2, 3}).find("too short to be an artifact"),
            std::string::npos);
}

TEST_F(ArtifactTest, NotAnArtifact) {
  std::vector<uint8_t> bytes = build(Spec{});
  bytes[0] = 'X';
  EXPECT_NE(load(bytes).find("is not a megatron-compiler artifact"),
            std::string::npos);
}

TEST_F(ArtifactTest, NewerFormatVersion) {
  Spec spec;
  spec.formatVersion = kArtifactFormatVersion + 1;
  EXPECT_NE(load(build(spec)).find(
                "has artifact format version " +
                std::to_string(kArtifactFormatVersion + 1) +
                "; this runtime reads " + std::to_string(kArtifactFormatVersion)),
            std::string::npos);
}

TEST_F(ArtifactTest, TruncatedFiles) {
  std::vector<uint8_t> bytes = build(Spec{});
  for (size_t keep : {bytes.size() - 1, bytes.size() / 2, size_t(80)}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + keep);
    EXPECT_NE(load(cut).find("truncated or corrupt"), std::string::npos)
        << "kept " << keep << " bytes";
  }
}

TEST_F(ArtifactTest, CorruptFlatBuffer) {
  std::vector<uint8_t> bytes = build(Spec{});
  // The root offset of the FlatBuffer, pointed far outside it.
  uint32_t bogus = 0x7fffff00;
  std::memcpy(bytes.data() + sizeof(ArtifactHeader), &bogus, sizeof(bogus));
  EXPECT_NE(load(bytes).find("FlatBuffer does not verify"), std::string::npos);
}

TEST_F(ArtifactTest, WeightsOutsideTheirRegion) {
  Spec spec;
  spec.weightBufferOffset = 8; // 48 bytes from offset 8 overrun 48
  EXPECT_NE(load(build(spec)).find("lie outside its weight region of 48 bytes"),
            std::string::npos);
}

TEST_F(ArtifactTest, WeightSizeDisagreesWithShape) {
  Spec spec;
  spec.weightBytes = 64;
  spec.weightBufferSize = 40;
  EXPECT_NE(load(build(spec)).find("need 48 bytes, the buffer has 40"),
            std::string::npos);
}

TEST_F(ArtifactTest, StepsUseExistingBuffers) {
  Spec spec;
  spec.stepInput = 7;
  EXPECT_NE(load(build(spec)).find("uses buffer 7 of 3"),
            std::string::npos);
}

TEST_F(ArtifactTest, AnInt8WeightWithoutScalesIsAnError) {
  // A linear reading int8 values needs their scales as its next operand;
  // without them the session must refuse the step, not read past it.
  Spec spec;
  spec.weightType = fb::DType::I8;
  spec.weightBytes = spec.weightBufferSize = 4 * 3;
  ASSERT_EQ(load(build(spec)), "");
  std::unique_ptr<Session> session;
  Status status = Session::create(*artifact, SessionOptions(), session);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("its int8 weight 'w' has no scales after it"),
            std::string::npos)
      << status.message();
}

// The int8-input flag is 0 or 1, and 1 only with an int8 weight.
TEST_F(ArtifactTest, Int8InputNeedsAnInt8Weight) {
  for (int64_t flag : {1, 2}) {
    Spec spec;
    spec.int8Input = flag;
    ASSERT_EQ(load(build(spec)), "");
    std::unique_ptr<Session> session;
    Status status = Session::create(*artifact, SessionOptions(), session);
    ASSERT_FALSE(status.ok());
    EXPECT_NE(status.message().find(flag == 1 ? "quantizes its input to int8 but its weight is not int8"
                                              : "int8-input flag 2 is not 0 or 1"),
              std::string::npos)
        << status.message();
  }
}

} // namespace
