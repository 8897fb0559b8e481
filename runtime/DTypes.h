//===- DTypes.h - sizes of the artifact's element types --------*- C++ -*-===//
//
// Internal to the runtime: the loader and the session both size buffers;
// the session and the CUDA executor both widen 16-bit weights.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_DTYPES_H
#define MEGATRON_RUNTIME_DTYPES_H

#include "megatron/runtime/Half.h"
#include "runtime/schema/artifact_generated.h"

#include <cstring>

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

/// `count` f16 or bf16 values as stored (unaligned bytes) widened to f32.
inline void widenToF32(artifact::DType dtype, const uint8_t *stored, size_t count, float *out) {
  for (size_t k = 0; k < count; ++k) {
    uint16_t h;
    std::memcpy(&h, stored + 2 * k, 2);
    out[k] = dtype == artifact::DType::F16 ? halfToFloat(h) : bfloat16ToFloat(h);
  }
}

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_DTYPES_H
