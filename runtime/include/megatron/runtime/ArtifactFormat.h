//===- ArtifactFormat.h - the fixed header of a .mtc file -----*- C++ -*-===//
//
// Shared by the writer (compiler) and the loader (runtime). All fields are
// little-endian; the header is exactly 64 bytes so the FlatBuffer after it
// starts aligned.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_ARTIFACTFORMAT_H
#define MEGATRON_RUNTIME_ARTIFACTFORMAT_H

#include <cstdint>

namespace megatron::runtime {

constexpr char kArtifactMagic[8] = {'M', 'E', 'G', 'A', 'T', 'R', 'O', 'N'};
/// Bumped when a runtime of the previous version could misread the file.
constexpr uint32_t kArtifactFormatVersion = 4;
constexpr uint64_t kWeightAlignment = 64;

struct ArtifactHeader {
  char magic[8];
  uint32_t formatVersion;
  uint32_t headerSize; ///< sizeof(ArtifactHeader)
  uint64_t flatbufferOffset;
  uint64_t flatbufferSize;
  uint64_t weightsOffset; ///< a multiple of kWeightAlignment
  uint64_t weightsSize;
  uint8_t reserved[16];
};
static_assert(sizeof(ArtifactHeader) == 64, "the header is 64 bytes");

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_ARTIFACTFORMAT_H
