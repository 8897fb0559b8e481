//===- QuantizedLinear.h - linear layers with int8 weights -----*- C++ -*-===//
//
// Narrow weights: int8 with float scales (weight-only quantization), or
// bf16; float32 activations and results. The weight is never dequantized
// to f32 whole: a few rows (decode) read it once and widen it in
// registers, many rows (prefill) widen it for the GEMM, to bf16 where the
// CPU multiplies bf16 (a layer's weight at a time for the most rows),
// else one block of output channels at a time.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CPU_QUANTIZEDLINEAR_H
#define MEGATRON_RUNTIME_CPU_QUANTIZEDLINEAR_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>
#include <optional>

namespace megatron::runtime::cpu {

/// y[rows, out] = beta * y + x[rows, in] * W^T (+ bias[out]) where
/// W[o, k] = q[o, k] * scales[o * groups + k / groupSize], groups = in / groupSize
/// (groupSize == in: one scale per output channel). Symmetric int8 (-127..127).
/// beta is 0 (y is only written) or 1 (accumulate into y, e.g. a residual);
/// `in` must be a multiple of groupSize. With `gelu` (and beta 0), y =
/// GELU(x W^T + bias). Many rows with per-channel scales multiply x rounded
/// to bf16 where the CPU has bf16 arithmetic, from `packed` (q packed by
/// dnnl::packWeight, per-channel scales) when given. With `int16Rows` (for
/// models computing in bf16) a few rows with per-channel scales may be
/// quantized to int16 per row, as linearInt8QuantizedRows does to int8,
/// for AVX512-VNNI's integer products; otherwise they are exact.
void linearInt8(const float *x, int64_t rows, int64_t in, const int8_t *q,
                const float *scales, int64_t groupSize, const dnnl::PackedWeight *packed,
                bool int16Rows, const float *bias, int64_t out, float beta, float *y,
                std::optional<GeluKind> gelu = std::nullopt);

/// linearInt8 with x quantized as well (dynamic W8A8, like PyTorch's
/// dynamic quantization but with a scale per row rather than per tensor):
/// row r of x becomes xq[r, k] = x[r, k] * (127 / m_r), the product in
/// float, rounded to the nearest integer (ties to even; as the GPU's
/// quantize_rows does), with scale s_r = m_r / 127,
/// m_r = max_k |x[r, k]|, and
///   y[r, o] = beta * y[r, o] + s_r * scales[o] * sum_k xq[r, k] q[o, k] + bias[o].
/// Per-channel scales only. Many rows sum the int8 products exactly where
/// the CPU has AVX512-VNNI (twice bf16's rate); a few rows, or other CPUs,
/// multiply the dequantized rows xq * s_r as linearInt8 does. A row with a
/// NaN or infinity gives NaNs.
void linearInt8QuantizedRows(const float *x, int64_t rows, int64_t in, const int8_t *q,
                             const float *scales, const float *bias, int64_t out, float beta,
                             float *y, std::optional<GeluKind> gelu = std::nullopt);

/// The same with W bf16 [out, in] (raw bits), no scales. Many rows multiply
/// in bf16 where the CPU can (oneDNN, from `packed` when given: x is
/// rounded to bf16 first, as PyTorch's bf16 does), a few rows widen W in
/// registers.
void linearBf16(const float *x, int64_t rows, int64_t in, const uint16_t *w,
                const dnnl::PackedWeight *packed, const float *bias, int64_t out, float beta,
                float *y, std::optional<GeluKind> gelu = std::nullopt);

/// y = beta * y + x W^T (+ bias) with W f32 [out, in] through the AVX-512
/// kernel that streams W once: for a few rows (decode), where it beats a
/// GEMM; the caller picks how many. False, with y untouched, without
/// AVX-512.
bool linearF32FewRows(const float *x, int64_t rows, int64_t in, const float *w,
                      const float *bias, int64_t out, float beta, float *y);
} // namespace megatron::runtime::cpu

#endif // MEGATRON_RUNTIME_CPU_QUANTIZEDLINEAR_H
