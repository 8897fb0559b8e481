//===- CudaTestArtifacts.h - where cuda-tests find their artifacts -------===//

#ifndef MEGATRON_TEST_CUDATESTARTIFACTS_H
#define MEGATRON_TEST_CUDATESTARTIFACTS_H

#include <cstdlib>
#include <string>

/// The CUDA tests' artifacts, compiled at build time; a GPU machine may run
/// a copy of the build from another path (MEGATRON_CUDA_ARTIFACTS).
inline std::string cudaTestArtifact(const std::string &name) {
  const char *dir = std::getenv("MEGATRON_CUDA_ARTIFACTS");
  return std::string(dir ? dir : MEGATRON_CUDA_ARTIFACTS_DIR) + "/" + name;
}

#endif // MEGATRON_TEST_CUDATESTARTIFACTS_H
