//===- FlashAttention.h - the tensor-core attention kernel -----*- C++ -*-===//
//
// Attention for many queries (prefill, BERT) on the tensor cores: Q K^T and
// P V as mma.sync m16n8k16 (f16 or bf16 operands, f32 accumulation) with an
// online softmax over tiles of keys, flash-attention style. Built with
// OpBuilder rather than written in kernels.mlir because its register tiles
// unroll by the head dimension, a compile-time constant per variant.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_CUDA_FLASHATTENTION_H
#define MEGATRON_COMPILER_CUDA_FLASHATTENTION_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "runtime/cuda/KernelShapes.h"

#include <cstdint>
#include <string>

namespace megatron {

/// "flash_attention_bf16_d64": the kernel for `element` (f16 or bf16)
/// operands and heads of `dim` dimensions.
std::string flashAttentionKernelName(bool bf16, int64_t dim);

/// Appends that kernel to `module`. Its parameters are the attention
/// kernel's of kernels.mlir (qkv, keys_src, values_src, mask, out, seq,
/// heads, dim, past_ref, kv_batch, kv_head, kv_row, scale, causal,
/// has_mask; `dim` must be the variant's), launched as batch * heads *
/// ceil(seq / kFlashQueries) blocks of kFlashThreads threads. `dim` is a
/// multiple of 16 up to 128.
void addFlashAttentionKernel(mlir::gpu::GPUModuleOp module, bool bf16, int64_t dim);

} // namespace megatron

#endif // MEGATRON_COMPILER_CUDA_FLASHATTENTION_H
