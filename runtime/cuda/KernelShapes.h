//===- KernelShapes.h - the launch shapes of the built kernels -*- C++ -*-===//
//
// Header-only and free of MLIR and CUDA: the compiler builds its OpBuilder
// kernels (compiler/cuda/FlashAttention.h, Int8Linear.h) for these shapes
// and the CUDA executor launches them so, from one definition.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CUDA_KERNELSHAPES_H
#define MEGATRON_RUNTIME_CUDA_KERNELSHAPES_H

#include <cstdint>

namespace megatron {

/// flash_attention_*: queries per block (four warps of 16 rows), keys per
/// tile, threads per block.
constexpr int64_t kFlashQueries = 64, kFlashKeys = 64, kFlashThreads = 128;

/// linear_int8: rows at most; threads per block (a warp per output
/// channel); 16-byte pieces of a row a lane holds at once.
constexpr int64_t kInt8GemvRows = 8, kInt8GemvThreads = 128, kInt8GemvVectors = 4;

/// matmul_w8a16_*: rows at most, output channels per block, threads per
/// block (its warps split the input dimension).
constexpr int64_t kInt8MatmulRows = 32, kInt8MatmulChannels = 8, kInt8MatmulThreads = 128;

} // namespace megatron

#endif // MEGATRON_RUNTIME_CUDA_KERNELSHAPES_H
