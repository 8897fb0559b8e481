//===- DType.h - element types of checkpoint tensors -----------*- C++ -*-===//
//
// The element types that PyTorch and safetensors checkpoints store, with the
// spellings each format uses for them.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_DTYPE_H
#define MEGATRON_FRONTENDS_READER_DTYPE_H

#include "llvm/ADT/StringRef.h"

#include <cstddef>
#include <optional>

namespace megatron::reader {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

/// Bytes per element.
size_t dtypeSize(DType dtype);
/// Short lower-case name: "f32", "bf16", "i64", "bool", ...
llvm::StringRef dtypeName(DType dtype);

/// From a torch storage class name: "FloatStorage", "BFloat16Storage", ...
std::optional<DType> dtypeFromTorchStorage(llvm::StringRef className);
/// From a torch dtype attribute name: "float32", "bfloat16", "int64", ...
std::optional<DType> dtypeFromTorchName(llvm::StringRef name);
/// From a safetensors header dtype: "F32", "BF16", "I64", "BOOL", ...
std::optional<DType> dtypeFromSafetensors(llvm::StringRef name);

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_DTYPE_H
