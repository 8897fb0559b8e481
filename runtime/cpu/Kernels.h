//===- Kernels.h - CPU kernels for the plan's steps -----------*- C++ -*-===//
//
// Float32, row-major, caller-owned buffers. Each kernel is one step of an
// executable plan; shapes arrive as plain integers because the plan has
// already checked them.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CPU_KERNELS_H
#define MEGATRON_RUNTIME_CPU_KERNELS_H

#include "megatron/runtime/Status.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace megatron::runtime::cpu {

namespace dnnl {
struct PackedWeight;
} // namespace dnnl

enum class GeluKind { Erf, Tanh };

/// buffer's data after growing it to at least `size` elements: scratch
/// space in a thread_local vector, which grows to the largest call and then
/// stays (no allocation per call once warm).
template <typename T> T *scratch(std::vector<T> &buffer, int64_t size) {
  if (buffer.size() < static_cast<size_t>(size))
    buffer.resize(static_cast<size_t>(size));
  return buffer.data();
}

/// A weight matrix [rows, cols]: float32, or int8 values with float32
/// scales [rows, groups] (element = value * the scale of its group of
/// cols / groups columns), as `megatron-compile --quantize int8` stores it.
struct Weights {
  Weights(const float *f32) : f32(f32) {}
  Weights(const int8_t *i8, const float *scales, int64_t groups)
      : i8(i8), scales(scales), groups(groups) {}
  explicit Weights(const uint16_t *bf16) : bf16(bf16) {}
  const float *f32 = nullptr;
  const int8_t *i8 = nullptr;
  const float *scales = nullptr;
  int64_t groups = 1;
  const uint16_t *bf16 = nullptr; ///< raw bits
  /// f32, bf16, or int8 with per-channel scales, also packed for oneDNN's
  /// matmul (many rows), or null.
  const dnnl::PackedWeight *packed = nullptr;
  /// int8 weights with per-channel scales: x is quantized per row too
  /// (dynamic W8A8, linearInt8QuantizedRows).
  bool int8Input = false;
  /// int8 weights in a model computing in bf16: a few rows of x may be
  /// quantized to int16 (linearInt8).
  bool int16Rows = false;
};

/// y[rows, out] = x[rows, in] * w[out, in]^T (+ bias[out]): torch.nn.Linear,
/// then GELU if asked (inside the GEMM where the GEMM can).
void linear(const float *x, int64_t rows, int64_t in, const Weights &w,
            const float *bias, int64_t out, float *y,
            std::optional<GeluKind> gelu = std::nullopt);

/// y[rows, out] += x[rows, in] * w[out, in]^T.
void linearAccumulate(const float *x, int64_t rows, int64_t in, const Weights &w,
                      int64_t out, float *y);

/// c[b] = a[b] * (transposeB ? b[b]^T : b[b]) for each of `batch` matrices:
/// a is [M, K], b is [K, N] (or [N, K] transposed), c is [M, N]. The b
/// matrices start `bStride` floats apart, which may exceed their size: a KV
/// cache keeps spare rows after the ones in use.
void batchedMatmul(const float *a, const float *b, int64_t batch, int64_t m,
                   int64_t k, int64_t n, bool transposeB, int64_t bStride,
                   float *c);

/// LayerNorm over the last dimension with the biased variance.
void layerNorm(const float *x, int64_t rows, int64_t width, const float *gamma,
               const float *beta, float eps, float *y);

void gelu(const float *x, int64_t count, GeluKind kind, float *y);

/// gelu in place over y [rows, cols], on all threads.
void geluInPlace(float *y, int64_t rows, int64_t cols, GeluKind kind);
void tanh(const float *x, int64_t count, float *y);

/// y[i] = a[i] + b[i % period] for i in [begin, end): a residual add
/// (period = the size of a) or a broadcast one (a bias row, say).
void add(const float *a, const float *b, int64_t period, int64_t begin,
         int64_t end, float *y);

/// x[i] = exp(x[i] - shift) in place; returns their sum.
float expShift(float *x, int64_t n, float shift);

/// One row of attention scores to probabilities `out` (f32, or bf16 raw
/// bits; out may be row): softmax of row[j] * scale over the keys j <
/// visible with keep[j] != 0 (keep may be null); masked keys get 0, and a
/// row with no key left a uniform distribution, as the blocked attention
/// gives. Overwrites row.
void scoresToProbabilities(float *row, int64_t n, float scale, int64_t visible,
                           const uint8_t *keep, float *out);
void scoresToProbabilities(float *row, int64_t n, float scale, int64_t visible,
                           const uint8_t *keep, uint16_t *out);

/// out[i] = x[i] as bf16 (raw bits), rounded to nearest even as torch's
/// .to(torch.bfloat16) does; NaN stays NaN.
void toBf16(const float *x, int64_t n, uint16_t *out);

struct AttentionShape {
  int64_t batch, seq, heads, dim;
  float scale;
  bool causal;
  /// With a KV cache: tokens cached before these, and the cache's rows.
  int64_t past = 0, capacity = 0;
  /// The model computes in bf16: without a cache the products take Q, K, V
  /// and the probabilities rounded to bf16, as PyTorch's bf16 does.
  bool bf16 = false;
};

/// Multi-head attention from qkv [batch, seq, 3 * heads * dim] (Q, K, V
/// blocks) into out [batch, seq, heads * dim]; `mask` is [batch, past +
/// seq] (1 = attend) or null. With caches ([batch, heads, capacity, dim])
/// the new keys and values are appended at row `past` and every cached
/// token is attended to.
void attention(const AttentionShape &shape, const float *qkv, const int64_t *mask,
               float *kCache, float *vCache, float *out);

/// Softmax over the last dimension, in place.
void softmax(float *x, int64_t rows, int64_t width);

/// Masks rows [rowBegin, rowEnd) of scores [batch, heads, queries, keys],
/// flattened to [batch * heads * queries, keys], in place: where
/// paddingMask[b, key] == 0 (when given) or, with `causal`, where
/// key > query + (keys - queries). Masked scores become the lowest float.
void attentionMask(float *scores, int64_t heads, int64_t queries, int64_t keys,
                   const int64_t *paddingMask, bool causal, int64_t rowBegin,
                   int64_t rowEnd);

/// out[i, :] = table[ids[i] - rowOffset, :] for ids in [rowOffset,
/// rowOffset + rows), zeros for other ids (the rows of other tensor-parallel
/// ranks); an id outside [0, numIds) is an error.
Status embedding(const Weights &table, int64_t rows, int64_t width,
                 const int64_t *ids, int64_t count, float *out,
                 int64_t rowOffset = 0, int64_t numIds = -1);

/// y[a, c, b, d] = x[a, b, c, d]. Splitting heads is
/// [batch, seq, heads, dim] -> [batch, heads, seq, dim]; merging them back is
/// the same swap of the middle axes.
void swapMiddleAxes(const float *x, int64_t a, int64_t b, int64_t c,
                    int64_t d, float *y);

} // namespace megatron::runtime::cpu

#endif // MEGATRON_RUNTIME_CPU_KERNELS_H
