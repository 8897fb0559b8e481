//===- WeightEvaluator.h - compute weight values from a checkpoint -*- C++ -*-===//
//
// Weights stay symbolic through the pipeline: a `megatron.weight` plus the
// transforms applied to it (transpose, reshape, slice, concat, int8
// quantization). This computes such a value from the checkpoint, as the
// artifact writer does while it streams tensors, one weight at a time.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_WEIGHTEVALUATOR_H
#define MEGATRON_COMPILER_WEIGHTEVALUATOR_H

#include "frontends/Checkpoint.h"

#include "mlir/IR/Value.h"
#include "llvm/Support/Error.h"

#include <vector>

namespace megatron {

/// A dense row-major float32 tensor.
struct DenseTensor {
  llvm::SmallVector<int64_t> shape;
  std::vector<float> data;
};

/// Whether `value` is computed from weights alone (no function arguments).
bool isWeightValue(mlir::Value value);

/// Evaluates `value`, which must satisfy isWeightValue, reading the
/// checkpoint tensors it refers to.
llvm::Expected<DenseTensor> evaluateWeight(mlir::Value value,
                                           const Checkpoint &checkpoint);

/// Reads checkpoint tensor `name` whole, converted to float32.
llvm::Expected<DenseTensor> readTensorF32(const Checkpoint &checkpoint,
                                          llvm::StringRef name);

/// Converts `count` stored elements of `dtype` to float32.
llvm::Error convertToF32(reader::DType dtype, const void *src, float *dst,
                         size_t count);

} // namespace megatron

#endif // MEGATRON_COMPILER_WEIGHTEVALUATOR_H
