//===- CublasLt.h - GEMMs through cuBLASLt, loaded at run time -*- C++ -*-===//
//
// The plan's linears as cuBLASLt matmuls. Like the driver, the library is
// opened with dlopen, so the runtime starts where it is missing.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CUDA_CUBLASLT_H
#define MEGATRON_RUNTIME_CUDA_CUBLASLT_H

#include "megatron/runtime/Status.h"

#include <array>
#include <cstdint>
#include <map>
#include <memory>

namespace megatron::runtime::cuda {

class CublasLt {
public:
  /// The element type of a linear's x and w (y, bias and addend are f32).
  enum class Operands { F32, BF16, F16 };

  /// Opens libcublasLt and a handle (the device's context must be
  /// current); its matmuls queue on `stream` (a CUstream).
  static Status open(void *stream, std::unique_ptr<CublasLt> &out);
  ~CublasLt();

  /// y[rows, out] = x[rows, in] w[out, in]^T (+ bias[out]) (+ addend[rows,
  /// out]), row-major device arrays (0 for an absent bias or addend), x and
  /// w of type `operands`, accumulated in f32; queued on the stream.
  /// `workspace` holds `workspaceBytes`.
  Status linear(uint64_t x, uint64_t w, uint64_t bias, uint64_t addend, uint64_t y, int64_t rows,
                int64_t in, int64_t out, Operands operands, uint64_t workspace,
                uint64_t workspaceBytes);

  CublasLt(const CublasLt &) = delete;
  CublasLt &operator=(const CublasLt &) = delete;

private:
  struct Api;
  struct Plan;
  CublasLt();
  /// The plan of a rows x in x out linear, with or without a bias, for
  /// matrices `alignment` bytes aligned (at most 256), made on first use.
  Status plan(int64_t rows, int64_t in, int64_t out, bool bias, Operands operands,
              uint32_t alignment, uint64_t workspaceBytes, Plan *&found);
  std::unique_ptr<Api> api_;
  std::map<std::array<int64_t, 6>, std::unique_ptr<Plan>> plans_;
};

} // namespace megatron::runtime::cuda

#endif // MEGATRON_RUNTIME_CUDA_CUBLASLT_H
