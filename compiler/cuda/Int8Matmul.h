//===- Int8Matmul.h - int8 weights on the tensor cores ---------*- C++ -*-===//
//
// y = x W^T (+ b) (+ residual) for an int8 W with per-channel or group
// scales and a 16-bit x of a few rows (a decode step's batch, 9 to 32):
// W is read once, as int8, and widened in registers to the artifact's
// 16-bit type for mma.sync, so such a step reads a byte per weight where
// widening W for cuBLASLt would move five. Every block of 8 channels
// reads all of x (from L2), rows / 4 bytes per byte of W: beyond 32 rows
// that would outweigh what it saves. Built with OpBuilder like the flash
// attention (MmaEmitter.h).
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_CUDA_INT8MATMUL_H
#define MEGATRON_COMPILER_CUDA_INT8MATMUL_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <cstdint>
#include <string>

namespace megatron {

/// Rows (x's) at most, output channels per block, threads per block (its
/// warps split the input dimension).
constexpr int64_t kInt8MatmulRows = 32, kInt8MatmulChannels = 8, kInt8MatmulThreads = 128;

/// "matmul_w8a16_bf16": the kernel for f16 or bf16 inputs.
std::string int8MatmulKernelName(bool bf16);

/// Appends that kernel to `module`. Parameters: x (rows x in, 16-bit,
/// as words of two), q (out x in int8, as words of four), scales (out x
/// in / group f32), bias (out), addend (rows x out), y (rows x out),
/// then rows, in, out, group, has_bias, has_addend. Launched as ceil(out
/// / kInt8MatmulChannels) blocks of kInt8MatmulThreads threads; in must
/// be a multiple of 16, group of 4, rows at most kInt8MatmulRows.
void addInt8MatmulKernel(mlir::gpu::GPUModuleOp module, bool bf16);

} // namespace megatron

#endif // MEGATRON_COMPILER_CUDA_INT8MATMUL_H
