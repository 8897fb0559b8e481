//===- Artifact.h - a verified, memory-mapped .mtc file -------*- C++ -*-===//

#ifndef MEGATRON_RUNTIME_ARTIFACT_H
#define MEGATRON_RUNTIME_ARTIFACT_H

#include "megatron/runtime/Status.h"
#include "megatron/runtime/Tokenizer.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace megatron::artifact {
struct Artifact;
} // namespace megatron::artifact

namespace megatron::runtime {

/// GPU code in an artifact (megatron-compile --target cuda).
struct KernelModuleInfo {
  std::string arch; ///< "sm_90"
  std::string ptx;
  std::vector<std::string> kernels;
  /// Per kernel, its launch parameters (empty in an artifact without them).
  std::vector<uint32_t> parameters;
};

class Artifact {
public:
  /// Maps `path` and checks everything that can be checked before running:
  /// the header, the format version, the FlatBuffer (verified once), and
  /// that every buffer lies inside its weight region or arena.
  static Status open(const std::string &path, std::unique_ptr<Artifact> &out);

  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;
  ~Artifact();

  const artifact::Artifact &root() const { return *root_; }
  /// The weight region of `rank` (checked by `open`).
  const uint8_t *weights(uint32_t rank) const;
  const std::string &path() const { return path_; }
  /// Drops the mapped pages wholly inside [begin, begin + bytes) from
  /// memory, for a runtime that keeps its own copy of those weights;
  /// reading them again reads the file.
  void evict(const uint8_t *begin, uint64_t bytes) const;

  /// Tensor-parallel ranks (each with its plan and weight region).
  int ranks() const;
  /// Bytes of weights over all ranks by stored element type ("f32", "f16",
  /// "bf16", "i8": int8-quantized values, whose scales count as f32).
  std::map<std::string, uint64_t> weightBytes() const;
  /// The PTX modules it carries, one per architecture (none for CPU).
  std::vector<KernelModuleInfo> kernelModules() const;
  /// "bert" or "gpt2", and the task the artifact's head serves.
  std::string architecture() const;
  std::string task() const;
  /// The tokenizer embedded by megatron-compile; an error that says how to
  /// embed one when the artifact has none.
  Status tokenizer(std::unique_ptr<Tokenizer> &out) const;

private:
  Artifact() = default;

  std::string path_;
  const uint8_t *data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t weightsOffset_ = 0;
  const artifact::Artifact *root_ = nullptr;
};

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_ARTIFACT_H
