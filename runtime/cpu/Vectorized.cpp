//===- Vectorized.cpp - the kernels that need vector math ---------------===//
//
// Built with -ffast-math (see CMakeLists.txt) so that GCC calls glibc's
// vector tanhf/erff, inlines our exp (expOfShifted) and vectorises the
// reductions, and cloned for x86-64-v4 (AVX-512) and x86-64-v3 (AVX2 + FMA)
// with a baseline fallback picked at load time. The scalar loops were about
// a sixth of a BERT-345M forward. Accuracy: the vector functions are within
// 2e-7 of double precision, and LayerNorm still accumulates in double. Only
// these loops get the flag; the rest of the kernels keep IEEE semantics.
// Masked scores are the lowest finite float, never -inf, so finite-math
// assumptions hold.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Half.h"
#include "runtime/cpu/Kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

using namespace megatron::runtime::cpu;

#if defined(__x86_64__) && !defined(__clang__)
#define MEGATRON_VECTOR_CLONES                                                 \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MEGATRON_VECTOR_CLONES
#endif

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::gelu(const float *x, int64_t count, GeluKind kind,
                                  float *y) {
  const float kSqrt2OverPi = 0.7978845608028654f, kInvSqrt2 = 0.7071067811865476f;
  if (kind == GeluKind::Erf) {
    for (int64_t i = 0; i < count; ++i)
      y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
  } else {
    for (int64_t i = 0; i < count; ++i) {
      float v = x[i];
      y[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    }
  }
}

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::tanh(const float *x, int64_t count, float *y) {
  for (int64_t i = 0; i < count; ++i)
    y[i] = std::tanh(x[i]);
}

namespace {
/// exp(v) for v <= 0, and 0 below -80 (e^-80 < 2e-35, nothing next to the
/// row's largest term, e^0). Inline and branch-free, so that the softmax
/// loops vectorize whole: glibc's vector expf is a call per 16 lanes that
/// spills the loop's registers (half of BERT-345M's softmax time at 8 x
/// 512), and hands lanes far out of range (masked scores are the lowest
/// float) to a slow scalar path. e^v = 2^n e^r with n = round(v / ln 2) and
/// |r| <= ln 2 / 2, e^r by its Taylor series to r^7 (truncation < 4e-9),
/// 2^n built in the exponent bits: within 1.2 ulp of e^v.
inline float expOfShifted(float v) {
  const float x = std::max(v, -80.0f);
  const float n = std::rint(x * 1.44269504088896341f);
  // r = x - n ln 2 with ln 2 in two parts (the first exact in 9 bits), as
  // explicit FMAs: -ffast-math may otherwise fold the two parts back into
  // one rounded ln 2, which at -O1 cost 60 ulp near -72. (Only the clone
  // for CPUs without FMA calls fmaf.)
  const float r = __builtin_fmaf(-n, -2.12194440e-4f, __builtin_fmaf(-n, 0.693359375f, x));
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return v < -80.0f ? 0.0f : p * scale;
}
} // namespace

MEGATRON_VECTOR_CLONES
float megatron::runtime::cpu::expShift(float *x, int64_t n, float shift) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = expOfShifted(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

namespace {
/// row[j] = exp(row[j] * scale - max) over the keys j < visible with keep[j]
/// != 0 (keep may be null), 0 elsewhere; returns 1 / their sum. A row with
/// no key left gets all ones: the uniform distribution once normalized.
/// Inlined into each clone of its callers.
inline float maskedExp(float *row, int64_t n, float scale, int64_t visible,
                       const uint8_t *keep) {
  const float lowest = std::numeric_limits<float>::lowest();
  float max = lowest;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = j < visible && (!keep || keep[j]) ? row[j] * scale : lowest;
    max = std::max(max, row[j]);
  }
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = expOfShifted(row[j] - max);
    sum += row[j];
  }
  return 1.0f / sum;
}

inline float asStored(float v, float *) { return v; }
inline uint16_t asStored(float v, uint16_t *) { return megatron::runtime::floatToBFloat16(v); }

/// out = the masked softmax of row (see scoresToProbabilities) as floats or
/// bf16 bits; out may be row. Inlined into each clone of the callers.
template <typename T>
inline void probabilities(float *row, int64_t n, float scale, int64_t visible,
                          const uint8_t *keep, T *out) {
  const float inverse = maskedExp(row, n, scale, visible, keep);
  for (int64_t j = 0; j < n; ++j)
    out[j] = asStored(row[j] * inverse, out);
}
} // namespace

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::softmax(float *x, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r)
    probabilities(x + r * width, width, 1.0f, width, nullptr, x + r * width);
}

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::layerNorm(const float *x, int64_t rows,
                                       int64_t width, const float *gamma,
                                       const float *beta, float eps, float *y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * width;
    // Two passes in double: the mean first, then the centred variance, which
    // stays accurate when the mean is large against the spread.
    double mean = 0;
    for (int64_t i = 0; i < width; ++i)
      mean += row[i];
    mean /= width;
    double var = 0;
    for (int64_t i = 0; i < width; ++i) {
      double d = row[i] - mean;
      var += d * d;
    }
    var /= width;
    float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    float m = static_cast<float>(mean);
    float *outRow = y + r * width;
    for (int64_t i = 0; i < width; ++i)
      outRow[i] = (row[i] - m) * inv * gamma[i] + beta[i];
  }
}

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::scoresToProbabilities(float *row, int64_t n, float scale,
                                                   int64_t visible, const uint8_t *keep,
                                                   float *out) {
  probabilities(row, n, scale, visible, keep, out);
}

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::scoresToProbabilities(float *row, int64_t n, float scale,
                                                   int64_t visible, const uint8_t *keep,
                                                   uint16_t *out) {
  probabilities(row, n, scale, visible, keep, out);
}

MEGATRON_VECTOR_CLONES
void megatron::runtime::cpu::toBf16(const float *x, int64_t n, uint16_t *out) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = megatron::runtime::floatToBFloat16(x[i]);
}
