//===- CudaCodegen.h - the plan's CUDA kernels as PTX ----------*- C++ -*-===//
//
// compiler/cuda/kernels.mlir (gpu.module of the non-GEMM kernels) and the
// flash-attention kernels (FlashAttention.h) lowered through MLIR's NVVM
// path to PTX, once per architecture: attach an NVVM target per chip
// (linking libdevice for the math functions), convert GPU/SCF to
// NVVM/LLVM, serialise with gpu-module-to-binary{format=isa}.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_CUDA_CUDACODEGEN_H
#define MEGATRON_COMPILER_CUDA_CUDACODEGEN_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace megatron {

struct PtxModule {
  std::string arch; ///< "sm_90"
  std::string ptx;
  std::vector<std::string> kernels; ///< entry points
  std::vector<uint32_t> parameters; ///< per kernel, its launch parameters
};

/// PTX of the kernel library for each of `archs` ("sm_80", "sm_90", ...).
/// `libdevice` is CUDA's libdevice.10.bc; an error names what is missing.
llvm::Expected<std::vector<PtxModule>>
generateCudaKernels(llvm::ArrayRef<std::string> archs, const std::string &libdevice);

} // namespace megatron

#endif // MEGATRON_COMPILER_CUDA_CUDACODEGEN_H
