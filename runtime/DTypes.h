//===- DTypes.h - sizes of the artifact's element types --------*- C++ -*-===//
//
// Internal to the runtime: the loader and the session both size buffers.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_DTYPES_H
#define MEGATRON_RUNTIME_DTYPES_H

#include "runtime/schema/artifact_generated.h"

namespace megatron::runtime {

/// Bytes per element; 0 for a value outside the enum (a damaged file).
inline uint64_t elementSize(artifact::DType dtype) {
  switch (dtype) {
  case artifact::DType::F32:
  case artifact::DType::I32:
    return 4;
  case artifact::DType::F16:
  case artifact::DType::BF16:
    return 2;
  case artifact::DType::I64:
    return 8;
  case artifact::DType::I8:
    return 1;
  }
  return 0;
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_DTYPES_H
