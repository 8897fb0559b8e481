//===- Tensor.h - lazily read checkpoint tensors ---------------*- C++ -*-===//
//
// A TensorRef is a strided view of a Storage, exactly as PyTorch lays tensors
// out: element (i0, i1, ...) lives at storage element
// storageOffset + sum(ik * strides[k]). The storage's bytes are a ByteSource,
// so nothing is read until `read` is called.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_READER_TENSOR_H
#define MEGATRON_FRONTENDS_READER_TENSOR_H

#include "frontends/reader/ByteSource.h"
#include "frontends/reader/DType.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace megatron::reader {

/// A flat array of `numel` elements of `dtype`.
struct Storage {
  DType dtype = DType::U8;
  /// Names the storage in messages: "archive/data/3" (torch zip), the
  /// storage's key (legacy torch), or the tensor name (safetensors).
  std::string key;
  uint64_t numel = 0;
  /// At least numel * dtypeSize(dtype) bytes, little-endian. May be null
  /// while a legacy torch file is still being parsed.
  std::shared_ptr<const ByteSource> bytes;

  /// Fails unless `bytes` is bound and long enough for `numel` elements.
  llvm::Error checkBytes() const;
};

/// Tensors have at most this many dimensions (a sanity bound on input).
constexpr size_t kMaxTensorRank = 64;

struct TensorRef {
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides; ///< in elements
  int64_t storageOffset = 0;    ///< in elements
  std::shared_ptr<Storage> storage;

  /// A view of `storage`; fails when any element it addresses lies outside
  /// the storage, or sizes/strides/offset are negative.
  static llvm::Expected<TensorRef> create(std::shared_ptr<Storage> storage,
                                          int64_t storageOffset,
                                          std::vector<int64_t> shape,
                                          std::vector<int64_t> strides);
  /// A row-major contiguous view of the whole storage prefix.
  static llvm::Expected<TensorRef> contiguous(std::shared_ptr<Storage> storage,
                                              std::vector<int64_t> shape);

  /// Number of elements (product of the shape).
  uint64_t numel() const;
  /// numel() * dtypeSize(dtype).
  uint64_t nbytes() const;
  /// Whether the elements are adjacent in storage in row-major order.
  bool isContiguous() const;
  /// Re-checks the view against its storage (and the storage's bytes).
  llvm::Error validate() const;

  /// Copies the elements in row-major contiguous order into `dst`, which
  /// must hold nbytes() bytes. Honours strides and the storage offset.
  llvm::Error read(void *dst) const;

  /// "f16[2, 3] in storage 'archive/data/0'".
  std::string describe() const;
};

struct NamedTensor {
  std::string name;
  TensorRef tensor;
};

} // namespace megatron::reader

#endif // MEGATRON_FRONTENDS_READER_TENSOR_H
