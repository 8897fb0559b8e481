//===- Int8Linear.h - linears with int8 weights on the GPU -----*- C++ -*-===//
//
// y = x W^T (+ b) (+ residual) for an int8 W with per-channel or group
// scales, reading W once, as int8, and widening it in registers; built
// with OpBuilder (KernelEmitter.h), whose loops unroll at compile time:
//
// - linear_int8, a GEMV for a decode step's few rows of an f32 x (up to
//   kInt8GemvRows): a warp per output channel, each lane holding up to
//   kInt8GemvVectors 16-byte pieces of its row at once, so that a warp
//   keeps as many loads in flight and reads near the memory's rate.
// - matmul_w8a16_{f16,bf16}, for 9 to kInt8MatmulRows rows of a 16-bit x:
//   mma.sync on the weights widened to the artifact's 16-bit type, where
//   widening W for cuBLASLt would move five bytes per weight. Every block
//   of 8 channels reads all of x (from L2), rows / 4 bytes per byte of W:
//   beyond 32 rows that would outweigh what it saves.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_CUDA_INT8LINEAR_H
#define MEGATRON_COMPILER_CUDA_INT8LINEAR_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "runtime/cuda/KernelShapes.h"

#include <cstdint>
#include <string>

namespace megatron {

/// Appends linear_int8 to `module`. Parameters: x (rows x in f32, as
/// vectors of four), q (out x in int8, as vectors of four words: sixteen
/// weights), scales (out x in / group f32), bias (out), addend (rows x
/// out), y (rows x out), then rows, in, out, group, has_bias, has_addend.
/// Launched as ceil(out / (kInt8GemvThreads / 32)) blocks of
/// kInt8GemvThreads threads; in must be a multiple of 16, group of 4.
void addInt8GemvKernel(mlir::gpu::GPUModuleOp module);

/// "matmul_w8a16_bf16": the tensor-core kernel for f16 or bf16 inputs.
std::string int8MatmulKernelName(bool bf16);

/// Appends that kernel to `module`. Parameters as linear_int8's but x
/// (rows x in, 16-bit, as words of two) and q (as words of four weights).
/// Launched as ceil(out / kInt8MatmulChannels) blocks of
/// kInt8MatmulThreads threads; in must be a multiple of 16, group of 4,
/// rows at most kInt8MatmulRows.
void addInt8MatmulKernel(mlir::gpu::GPUModuleOp module, bool bf16);

} // namespace megatron

#endif // MEGATRON_COMPILER_CUDA_INT8LINEAR_H
