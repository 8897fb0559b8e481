//===- QuantizedLinear.cpp - linear layers with narrow weights ------------===//
//
// int8 weights (with scales) and bf16 weights, two paths by the number of
// rows of x (and f32 weights' few rows, whose many go to Kernels.cpp's GEMM):
//
// - A few rows (decode) are bound by reading the weight, and int8 is a
//   quarter of f32's bytes, bf16 half. An AVX-512 kernel streams each output
//   channel's weights once, widens 16 at a time in registers and multiplies
//   them with up to 8 rows of x. On 2 Zen 4 cores, int8: 3.5-4.5x faster
//   than OpenBLAS's f32 sgemv at one row, 2.5-3x than its sgemm at 8 rows
//   (which packs the whole weight on every call). f32 weights take the same
//   kernel: 10-15% faster than sgemv at one row, 1.2-2.5x than sgemm at
//   2-24 rows (GPT-2-345M f32 decode at batch 8: 41 -> 85 tokens/s). In a
//   model computing in bf16, with AVX512-VNNI, int8 weights (per-channel
//   scales) meet x quantized per row to int16 instead, their products
//   summed in int32: GPT-2-345M decode 58 -> 66 tokens/s at batch 1, 136 ->
//   163 at 8.
// - Many rows (prefill) are bound by arithmetic. Where the CPU multiplies
//   bf16 natively (twice the f32 rate), x is rounded to bf16 and oneDNN's
//   bf16 matmul takes bf16 weights whole (packed once for it when the
//   session loaded, which also serves from 2 rows) and int8 ones
//   (per-channel scales) widened exactly to bf16, a block of channels at a
//   time (whole from 1024 rows, from an int8 copy packed alike): BERT-345M
//   1x128 with int8 weights 590 -> 390 ms. The scales,
//   bias and GELU are applied inside oneDNN's kernel. Otherwise blocks of
//   output channels are widened into a per-thread f32 buffer, a few
//   hundred channels and never the whole matrix, and multiplied with
//   OpenBLAS's sgemm: int8 at 128 and 512 rows within 10% of f32 sgemm,
//   mostly within 5%.
//
// Without AVX-512 (other x86-64, aarch64) the few rows take the blocks too,
// with blocks that stay in L2.
//
// With int8 inputs (dynamic W8A8) x is quantized per row first; from 5 rows
// oneDNN's int8 matmul sums the products in int32 where the CPU has
// AVX512-VNNI (twice the bf16 rate), otherwise the rows' dequantized values
// take the paths above.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/QuantizedLinear.h"
#include "megatron/runtime/Half.h"
#include "runtime/cpu/Blas.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__)
// GCC 12 warns about the deliberately undefined operands inside its own
// AVX-512 intrinsics (GCC PR 105593); the warning points into the header.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define MEGATRON_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define MEGATRON_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

using namespace megatron::runtime;
using namespace megatron::runtime::cpu;

namespace {

/// Up to this many rows the register kernel beats dequantizing blocks for
/// OpenBLAS; measured on Zen 4, where the two cross between 32 and 48 rows.
constexpr int64_t kDirectMaxRows = 32;

/// From this many rows a bf16 weight packed for oneDNN goes to its matmul:
/// at GPT-2-345M's decode, batch 8 makes 200 tokens/s there against 110
/// through the register kernel, batch 2 60 against 50; one row streams
/// faster through the register kernel (42 against 27-34).
constexpr int64_t kPackedMinRows = 2;

/// From this many rows an int8 weight of at most kWholeWeightMaxParams is
/// widened to bf16 whole, for one product over all rows: each block of
/// channels reads all of x again, which at 4096 rows of 4096 inputs cost a
/// quarter of the product's time.
constexpr int64_t kWholeWeightMinRows = 1024, kWholeWeightMaxParams = int64_t(8) << 20;

/// The VNNI kernel's int32 lanes each sum at most in / 16 products of
/// |x| <= 32767 and |q| <= 127: up to this many inputs none can overflow.
constexpr int64_t kVnniMaxInputs = 8192;

/// With int8 x, oneDNN's VNNI matmul overtakes the register kernel at 5-16
/// rows by shape (GPT-2-345M's layers measured at 8 rows: 1.56 against
/// 1.77 ms in all; at 4 the kernel wins each).
constexpr int64_t kQuantizedDirectMaxRows = 4;

/// y[r, o] = beta * y[r, o] + v; beta == 0 never reads y, which may hold
/// anything.
inline void store(float *y, float beta, float v) { *y = beta == 0.0f ? v : beta * *y + v; }

#if defined(__x86_64__)

/// The 16 weights at q where `mask` holds, as floats (times the group's
/// scale).
template <bool kGrouped>
MEGATRON_AVX512 inline __m512 widenAvx512(const int8_t *q, __mmask16 mask, __m512 scale) {
  __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, q)));
  return kGrouped ? _mm512_mul_ps(w, scale) : w;
}

/// bf16 is the top half of an f32: widening is a shift.
template <bool kGrouped>
MEGATRON_AVX512 inline __m512 widenAvx512(const uint16_t *w, __mmask16 mask, __m512) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, w)), 16));
}

template <bool kGrouped>
MEGATRON_AVX512 inline __m512 widenAvx512(const float *w, __mmask16 mask, __m512) {
  return _mm512_maskz_loadu_ps(mask, w);
}

/// The hardware prefetchers follow a sequential read within a 4 KiB page but
/// start over on each new one, which then stalls on its first lines.
/// Fetching the next page's first lines on entering a page hides that: a
/// GEMV's weight stream runs about 1.5x faster on Zen 4 (more lines, or
/// fetching ahead within the page, measured no better).
template <typename T> MEGATRON_AVX512 inline void prefetchNextPage(const T *p) {
  // Called every 64 weights: true once per page.
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  if ((address & 4095) < 64 * sizeof(T)) {
    const char *next = reinterpret_cast<const char *>((address | 4095) + 1);
    for (int line = 0; line < 4; ++line)
      _mm_prefetch(next + 64 * line, _MM_HINT_T0);
  }
}

/// Moves each channel's `scale` to the next group's when chunk k starts one.
template <int kChannels, bool kGrouped>
MEGATRON_AVX512 inline void groupStartAvx512(int64_t k, int64_t groupSize, int64_t groups,
                                             const float *scales, int64_t &group,
                                             int64_t &groupEnd, __m512 (&scale)[kChannels]) {
  if (kGrouped && k == groupEnd) {
    ++group;
    for (int c = 0; c < kChannels; ++c)
      scale[c] = _mm512_set1_ps(scales[c * groups + group]);
    groupEnd += groupSize;
  }
}

constexpr int kMaxChannels = 2;

/// sums[r][c] = x[r, :] . W[c, :] for kChannels output channels (weights q,
/// `in` apart: int8 with scales, or bf16 or f32 without) and kRows rows of x
/// (`in` apart).
template <typename T, int kChannels, int kRows, bool kGrouped>
MEGATRON_AVX512 void dotTileAvx512(const float *x, int64_t in, const T *q,
                                   const float *scales, int64_t groupSize,
                                   float (*sums)[kMaxChannels]) {
  constexpr bool kScaled = std::is_same_v<T, int8_t>;
  // At least four independent sums in flight cover the FMA latency.
  constexpr int kChains = (4 + kRows * kChannels - 1) / (kRows * kChannels);
  const int64_t groups = in / groupSize;
  __m512 acc[kChains][kChannels][kRows];
  for (int a = 0; a < kChains; ++a)
    for (int c = 0; c < kChannels; ++c)
      for (int r = 0; r < kRows; ++r)
        acc[a][c][r] = _mm512_setzero_ps();
  __m512 scale[kChannels];
  for (int c = 0; c < kChannels; ++c)
    scale[c] = _mm512_set1_ps(kScaled ? scales[c * groups] : 1.0f);
  int64_t group = 0, groupEnd = groupSize;
  int64_t k = 0;
  for (; k + 64 <= in; k += 64) {
    for (int c = 0; c < kChannels; ++c)
      prefetchNextPage(q + c * in + k);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t kj = k + 16 * j;
      groupStartAvx512<kChannels, kGrouped>(kj, groupSize, groups, scales, group, groupEnd, scale);
      __m512 w[kChannels];
      for (int c = 0; c < kChannels; ++c)
        w[c] = widenAvx512<kGrouped>(q + c * in + kj, 0xFFFF, scale[c]);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const __m512 xv = _mm512_loadu_ps(x + r * in + kj);
        for (int c = 0; c < kChannels; ++c)
          acc[j % kChains][c][r] = _mm512_fmadd_ps(w[c], xv, acc[j % kChains][c][r]);
      }
    }
  }
  for (; k < in; k += 16) {
    groupStartAvx512<kChannels, kGrouped>(k, groupSize, groups, scales, group, groupEnd, scale);
    const __mmask16 mask = in - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (in - k)) - 1);
    __m512 w[kChannels];
    for (int c = 0; c < kChannels; ++c)
      w[c] = widenAvx512<kGrouped>(q + c * in + k, mask, scale[c]);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * in + k);
      for (int c = 0; c < kChannels; ++c)
        acc[0][c][r] = _mm512_fmadd_ps(w[c], xv, acc[0][c][r]);
    }
  }
  for (int c = 0; c < kChannels; ++c)
    for (int r = 0; r < kRows; ++r) {
      for (int a = 1; a < kChains; ++a)
        acc[0][c][r] = _mm512_add_ps(acc[0][c][r], acc[a][c][r]);
      sums[r][c] = _mm512_reduce_add_ps(acc[0][c][r]) * (kScaled && !kGrouped ? scales[c] : 1.0f);
    }
}

/// sums[r][c] = x[r, :] . q[c, :] * scales[c] for int8 weights with
/// per-channel scales and rows of x quantized to int16 (quantizeRow): the
/// products summed exactly in int32 lanes by AVX512-VNNI's vpdpwssd: per 32
/// weights a widening and one product per row, where the f32 tile widens
/// twice, converts twice and multiplies twice per row. No lane overflows
/// while in <= kVnniMaxInputs.
template <int kChannels, int kRows>
MEGATRON_AVX512_VNNI void dotTileVnni(const int16_t *x, int64_t in, const int8_t *q,
                                      const float *scales, int64_t,
                                      float (*sums)[kMaxChannels]) {
  constexpr int kChains = (4 + kRows * kChannels - 1) / (kRows * kChannels);
  __m512i acc[kChains][kChannels][kRows];
  for (int a = 0; a < kChains; ++a)
    for (int c = 0; c < kChannels; ++c)
      for (int r = 0; r < kRows; ++r)
        acc[a][c][r] = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 128 <= in; k += 128) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t kj = k + 32 * j;
      __m512i w[kChannels];
      for (int c = 0; c < kChannels; ++c) {
        if (j % 2 == 0)
          prefetchNextPage(q + c * in + kj);
        w[c] = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q + c * in + kj)));
      }
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const __m512i xv = _mm512_loadu_si512(x + r * in + kj);
        for (int c = 0; c < kChannels; ++c)
          acc[j % kChains][c][r] = _mm512_dpwssd_epi32(acc[j % kChains][c][r], xv, w[c]);
      }
    }
  }
  for (; k < in; k += 32) {
    const __mmask32 mask = in - k >= 32 ? ~__mmask32(0) : (__mmask32(1) << (in - k)) - 1;
    __m512i w[kChannels];
    for (int c = 0; c < kChannels; ++c)
      w[c] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, q + c * in + k));
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512i xv = _mm512_maskz_loadu_epi16(mask, x + r * in + k);
      for (int c = 0; c < kChannels; ++c)
        acc[0][c][r] = _mm512_dpwssd_epi32(acc[0][c][r], xv, w[c]);
    }
  }
  // Lanes to f32 (exact below 2^24, and within float rounding of the whole
  // sum above), then across.
  for (int c = 0; c < kChannels; ++c)
    for (int r = 0; r < kRows; ++r) {
      __m512 total = _mm512_cvtepi32_ps(acc[0][c][r]);
      for (int a = 1; a < kChains; ++a)
        total = _mm512_add_ps(total, _mm512_cvtepi32_ps(acc[a][c][r]));
      sums[r][c] = _mm512_reduce_add_ps(total) * scales[c];
    }
}

template <typename X, typename T>
using DotTileFn = void (*)(const X *, int64_t, const T *, const float *, int64_t,
                           float (*)[kMaxChannels]);

/// Rows of x per pass over a channel's weights.
constexpr int64_t kRowsPerPass = 8;

template <typename X, typename T, int kChannels, bool kGrouped, size_t... kIndex>
constexpr std::array<DotTileFn<X, T>, kRowsPerPass>
dotTileTable(std::index_sequence<kIndex...>) {
  if constexpr (std::is_same_v<X, int16_t>)
    return {dotTileVnni<kChannels, kIndex + 1>...};
  else
    return {dotTileAvx512<T, kChannels, kIndex + 1, kGrouped>...};
}

/// x [rows, in] (f32, or int16 with per-row scales `rowScales`, int8
/// weights with per-channel scales only) times the weight through the tiles
/// above, on all threads.
template <typename X, typename T>
void linearDirectAvx512(const X *x, const float *rowScales, int64_t rows, int64_t in,
                        const T *q, const float *scales, int64_t groupSize, const float *bias,
                        int64_t out, float beta, float *y) {
  constexpr auto rowCounts = std::make_index_sequence<kRowsPerPass>();
  static constexpr std::array<DotTileFn<X, T>, kRowsPerPass> tables[2][2] = {
      {dotTileTable<X, T, 1, false>(rowCounts), dotTileTable<X, T, 1, true>(rowCounts)},
      {dotTileTable<X, T, 2, false>(rowCounts), dotTileTable<X, T, 2, true>(rowCounts)}};
  const bool grouped = groupSize != in;
  const int64_t groups = in / groupSize;
  // One channel at a time keeps the weight a single sequential stream, which
  // the hardware prefetchers follow best. Once x outgrows L1 (32 KiB on Zen
  // 4), each channel reloads it from L2; pairing channels then halves that
  // traffic, which outweighs the second stream (measured both ways).
  const int64_t tileChannels = rows * in * int64_t(sizeof(X)) > 32768 ? 2 : 1;
  const int64_t tiles = (out + tileChannels - 1) / tileChannels;
  // At least 16 KiB of weights per thread, or the fork costs more than it
  // saves.
  const int64_t grain = std::max<int64_t>(1, 16384 / (in * tileChannels));
  parallelFor(tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t o = t * tileChannels, channels = std::min(tileChannels, out - o);
      for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerPass) {
        const int64_t passRows = std::min(kRowsPerPass, rows - r0);
        float sums[kRowsPerPass][kMaxChannels];
        tables[channels - 1][grouped][passRows - 1](x + r0 * in, in, q + o * in,
                                                   scales ? scales + o * groups : nullptr,
                                                   groupSize, sums);
        for (int64_t r = 0; r < passRows; ++r)
          for (int64_t c = 0; c < channels; ++c)
            store(y + (r0 + r) * out + o + c, beta,
                  sums[r][c] * (rowScales ? rowScales[r0 + r] : 1.0f) +
                      (bias ? bias[o + c] : 0.0f));
      }
    }
  });
}

bool detectAvx512() {
  // Static initializers may run before libgcc's own CPU detection.
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

const bool hasAvx512 = detectAvx512();
const bool hasAvx512Vnni = hasAvx512 && __builtin_cpu_supports("avx512vnni");
#endif

#if defined(__x86_64__) && !defined(__clang__)
#define MEGATRON_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MEGATRON_VECTOR_CLONES
#endif

/// w[c, k] = q[c, k] * scale for `channels` rows of the weight.
MEGATRON_VECTOR_CLONES
void dequantize(const int8_t *q, const float *scales, int64_t in, int64_t groupSize,
                int64_t channels, float *w) {
  const int64_t groups = in / groupSize;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = scales[c * groups + g];
      const int8_t *src = q + c * in + g * groupSize;
      float *dst = w + c * in + g * groupSize;
      for (int64_t k = 0; k < groupSize; ++k)
        dst[k] = static_cast<float>(src[k]) * scale;
    }
}

/// w[c, k] = the bf16 weight widened, for `channels` rows of the weight.
MEGATRON_VECTOR_CLONES
void dequantize(const uint16_t *q, const float *, int64_t in, int64_t, int64_t channels,
                float *w) {
  for (int64_t i = 0; i < channels * in; ++i)
    w[i] = bfloat16ToFloat(q[i]);
}

/// y[:, :channels] (`out` apart) = beta * y + x w^T + bias for the
/// dequantized channels w.
void gemmBlock(const float *x, int64_t rows, int64_t in, const float *w, const float *bias,
               int64_t out, float beta, int64_t channels, float *y) {
  if (bias) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c)
        store(y + r * out + c, beta, bias[c]);
    beta = 1.0f;
  }
  if (rows == 1)
    blas().sgemv(CblasRowMajor, CblasNoTrans, channels, in, 1.0f, w, in, x, 1, beta, y, 1);
  else
    blas().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, channels, in, 1.0f, x, in, w,
                 in, beta, y, out);
}

/// Dequantizes `block` output channels at a time into a per-thread buffer
/// and multiplies them with OpenBLAS. Each thread takes whole blocks: a GEMM
/// called inside the parallel region stays on its thread, so there is no
/// barrier per block (measured no slower than threading each block's GEMM).
template <typename T>
void linearBlocked(const float *x, int64_t rows, int64_t in, const T *q,
                   const float *scales, int64_t groupSize, const float *bias, int64_t out,
                   float beta, float *y, int64_t block) {
  const int64_t groups = in / groupSize;
  parallelFor((out + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> buffer;
    float *w = scratch(buffer, block * in);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * block, channels = std::min(block, out - o);
      dequantize(q + o * in, scales ? scales + o * groups : nullptr, in, groupSize, channels, w);
      gemmBlock(x, rows, in, w, bias ? bias + o : nullptr, out, beta, channels, y + o);
    }
  });
}

/// Row x[0, in) as integers q (Q: int8 or int16) and its scale: q[k] =
/// x[k] * limit / max|x| rounded to the nearest (ties to even), limit = 127
/// or 32767, and scale = max|x| / limit. A row with a NaN or infinity gets
/// a NaN scale (its results are NaN).
template <typename Q> inline void quantizeRowTo(const float *x, int64_t in, Q *q, float *scale) {
  constexpr float kLimit = static_cast<float>(std::numeric_limits<Q>::max());
  // The largest |x| by its bits: non-negative floats order as integers do,
  // which vectorizes (a float max does not without -ffast-math), and NaN
  // and infinity order above every finite value.
  uint32_t largestBits = 0;
  for (int64_t k = 0; k < in; ++k) {
    uint32_t bits;
    std::memcpy(&bits, x + k, sizeof(bits));
    largestBits = std::max(largestBits, bits & 0x7FFFFFFFu);
  }
  if (largestBits >= 0x7F800000u) { // NaN or infinity: no scale fits
    std::fill(q, q + in, Q(0));
    *scale = std::nanf("");
    return;
  }
  float largest;
  std::memcpy(&largest, &largestBits, sizeof(largest));
  const float inverse = largest > 0.0f ? kLimit / largest : 0.0f;
  // nearbyint rounds the float product, ties to even, as the GPU does
  // (vroundps in the AVX2 clone). Rounding by adding and taking away
  // 1.5 * 2^23 would let GCC contract the product into an FMA there, which
  // rounds the exact product instead: another integer near a tie.
  for (int64_t k = 0; k < in; ++k)
    q[k] = static_cast<Q>(
        static_cast<int32_t>(std::clamp(std::nearbyint(x[k] * inverse), -kLimit, kLimit)));
  *scale = largest / kLimit;
}

MEGATRON_VECTOR_CLONES
void quantizeRow(const float *x, int64_t in, int8_t *q, float *scale) {
  quantizeRowTo(x, in, q, scale);
}

MEGATRON_VECTOR_CLONES
void quantizeRow(const float *x, int64_t in, int16_t *q, float *scale) {
  quantizeRowTo(x, in, q, scale);
}

/// Both weight types' paths by the number of rows (see the file comment).
template <typename T>
void linearNarrow(const float *x, int64_t rows, int64_t in, const T *q, const float *scales,
                  int64_t groupSize, bool int16Rows, const float *bias, int64_t out,
                  float beta, float *y, std::optional<GeluKind> gelu) {
  if (rows <= 0 || out <= 0)
    return;
  bool direct = false;
#if defined(__x86_64__)
  // The kernel's groups start on its 16-weight chunks (32, 64, 128 do).
  direct = rows <= kDirectMaxRows && hasAvx512 && (groupSize == in || groupSize % 16 == 0);
  if constexpr (std::is_same_v<T, int8_t>) {
    if (direct && int16Rows && hasAvx512Vnni && groupSize == in && in <= kVnniMaxInputs) {
      // x quantized per row to int16: 15 bits and a sign, finer than bf16's
      // 8-bit significand wherever |x| is within 2^7 of the row's largest.
      thread_local std::vector<int16_t> quantized;
      thread_local std::vector<float> rowScales;
      int16_t *xq = scratch(quantized, rows * in);
      float *xs = scratch(rowScales, rows);
      for (int64_t r = 0; r < rows; ++r)
        quantizeRow(x + r * in, in, xq + r * in, xs + r);
      linearDirectAvx512(static_cast<const int16_t *>(xq), xs, rows, in, q, scales, groupSize,
                         bias, out, beta, y);
      if (gelu)
        geluInPlace(y, rows, out, *gelu);
      return;
    }
  }
  if (direct)
    linearDirectAvx512(x, nullptr, rows, in, q, scales, groupSize, bias, out, beta, y);
#endif
  if (!direct) {
    // A few rows are bound by reading the weight: blocks small enough that
    // their floats are still in L2 when the GEMM reads them back. Many are
    // bound by arithmetic: each block's GEMM packs all of x again, so blocks
    // of a few hundred channels, yet enough of them for every thread.
    const int64_t perThread = (out + threads() - 1) / threads();
    const int64_t block =
        rows <= kDirectMaxRows
            ? std::max<int64_t>(16, (256 << 10) / (in * int64_t(sizeof(float))))
            : std::clamp<int64_t>((perThread + 15) / 16 * 16, 64, 256);
    linearBlocked(x, rows, in, q, scales, groupSize, bias, out, beta, y, block);
  }
  if (gelu)
    geluInPlace(y, rows, out, *gelu);
}

/// The int8 values as bf16, exactly.
MEGATRON_VECTOR_CLONES
void int8ToBf16(const int8_t *q, int64_t n, uint16_t *out) {
  for (int64_t i = 0; i < n; ++i) {
    float v = q[i];
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    out[i] = static_cast<uint16_t>(bits >> 16);
  }
}

/// x rounded to bf16 in a buffer of the calling thread's, which grows to
/// the largest call and then stays.
const uint16_t *roundRowsToBf16(const float *x, int64_t rows, int64_t in) {
  thread_local std::vector<uint16_t> rounded;
  // By pointer: inside the lambda the name would be each worker's own.
  uint16_t *out = scratch(rounded, rows * in);
  parallelFor(rows * in, 1 << 16, [&](int64_t begin, int64_t end) {
    toBf16(x + begin, end - begin, out + begin);
  });
  return out;
}

/// Many rows, per-channel scales, a CPU with bf16 arithmetic: the weight is
/// widened to bf16 (exactly: |q| <= 127 needs 7 bits) and multiplied with x
/// rounded to bf16 by oneDNN, which applies the scales, bias and GELU as it
/// stores. From kWholeWeightMinRows rows the whole weight at once, from its
/// packed copy when there is one (GPT-2-345M 8 x 128: 7% faster than
/// widening the stored weight, which oneDNN then packs on every call);
/// fewer rows take blocks of channels, each on one thread, the block's
/// columns of y (beta) following. A block oneDNN cannot run takes the f32
/// path.
void linearInt8ViaBf16(const float *x, int64_t rows, int64_t in, const int8_t *q,
                       const float *scales, const dnnl::PackedWeight *packed,
                       const float *bias, int64_t out, float beta, float *y,
                       std::optional<GeluKind> gelu) {
  const uint16_t *xRounded = roundRowsToBf16(x, rows, in);
  const dnnl::Epilogue epilogue{scales, bias, gelu, beta != 0.0f};
  // Widened whole into one buffer of the calling thread's.
  auto widenWhole = [](const int8_t *from, int64_t n) {
    thread_local std::vector<uint16_t> whole;
    uint16_t *w = scratch(whole, n);
    parallelFor(n, 1 << 16, [&](int64_t begin, int64_t end) {
      int8ToBf16(from + begin, end - begin, w + begin);
    });
    return static_cast<const uint16_t *>(w);
  };
  if (rows >= kWholeWeightMinRows && out * in <= kWholeWeightMaxParams) {
    if (packed && dnnl::packedInt8(*packed) &&
        dnnl::matmulBf16(xRounded, rows, in, *packed,
                         widenWhole(dnnl::packedInt8(*packed), dnnl::packedElements(*packed)),
                         out, epilogue, y))
      return;
    if (dnnl::matmulBf16(xRounded, rows, in, widenWhole(q, out * in), out, epilogue, y))
      return;
  }
  // A block's bf16 weights fill the L2 (1 MiB on Zen 4) while oneDNN packs
  // them: at 128 rows a BERT-345M layer within 1-9% of bf16 weights' time,
  // against 13% with half-size blocks.
  const int64_t block =
      std::clamp<int64_t>((1 << 20) / (in * int64_t(sizeof(uint16_t))) / 16 * 16, 16, 512);
  parallelFor((out + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint16_t> widened;
    thread_local std::vector<float> products;
    uint16_t *w = scratch(widened, block * in);
    float *t = scratch(products, std::max(rows, in) * block);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * block, channels = std::min(block, out - o);
      int8ToBf16(q + o * in, channels * in, w);
      // oneDNN's fast kernels store only whole rows, not a block's columns.
      if (dnnl::matmulBf16(xRounded, rows, in, w, channels,
                           {scales + o, bias ? bias + o : nullptr, gelu, false}, t)) {
        for (int64_t r = 0; r < rows; ++r) {
          float *yr = y + r * out + o;
          if (beta == 0.0f)
            std::memcpy(yr, t + r * channels, channels * sizeof(float));
          else
            add(yr, t + r * channels, channels, 0, channels, yr);
        }
        continue;
      }
      dequantize(q + o * in, scales + o, in, in, channels, t);
      gemmBlock(x, rows, in, t, bias ? bias + o : nullptr, out, beta, channels, y + o);
      for (int64_t r = 0; gelu && r < rows; ++r)
        cpu::gelu(y + r * out + o, channels, *gelu, y + r * out + o);
    }
  });
}

/// y[o] = beta * y[o] + rowScale * scales[o] * sums[o] + bias[o] over one row.
MEGATRON_VECTOR_CLONES
void scaleSums(const int32_t *sums, int64_t out, float rowScale, const float *scales,
               const float *bias, float beta, float *y) {
  if (beta == 0.0f)
    for (int64_t o = 0; o < out; ++o)
      y[o] = rowScale * scales[o] * static_cast<float>(sums[o]) + (bias ? bias[o] : 0.0f);
  else
    for (int64_t o = 0; o < out; ++o)
      y[o] = beta * y[o] + rowScale * scales[o] * static_cast<float>(sums[o]) +
             (bias ? bias[o] : 0.0f);
}

/// The rows of a quantized x through oneDNN's int8 matmul, a chunk of rows
/// at a time so that each chunk's int32 sums are still in the L3 cache for
/// the scaling pass; each chunk packs the weight again, so not much smaller
/// (at [4096, 1024] x [1024, 4096], 4 MiB chunks measured 10% slower than
/// 16); GELU follows each row while it is in cache. Returns the rows done:
/// all, or those before a chunk oneDNN could not run.
int64_t int8MatmulRows(const int8_t *xq, const float *rowScales, int64_t rows, int64_t in,
                       const int8_t *q, const float *scales, const float *bias, int64_t out,
                       float beta, float *y, std::optional<GeluKind> gelu) {
  const int64_t chunk = std::max<int64_t>(64, (16 << 20) / (out * int64_t(sizeof(int32_t))));
  thread_local std::vector<int32_t> sums;
  int32_t *s = scratch(sums, std::min(chunk, rows) * out);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    if (!dnnl::matmulInt8(xq + r0 * in, n, in, q, out, s))
      return r0;
    parallelFor(n, std::max<int64_t>(1, 16384 / out), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float *row = y + (r0 + r) * out;
        scaleSums(s + r * out, out, rowScales[r0 + r], scales, bias, beta, row);
        if (gelu)
          cpu::gelu(row, out, *gelu, row);
      }
    });
  }
  return rows;
}

} // namespace

void cpu::linearInt8QuantizedRows(const float *x, int64_t rows, int64_t in, const int8_t *q,
                                  const float *scales, const float *bias, int64_t out,
                                  float beta, float *y, std::optional<GeluKind> gelu) {
  if (rows <= 0 || out <= 0)
    return;
  thread_local std::vector<int8_t> quantized;
  thread_local std::vector<float> rowScales;
  int8_t *xq = scratch(quantized, rows * in);
  float *xs = scratch(rowScales, rows);
  parallelFor(rows, std::max<int64_t>(1, 16384 / in), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      quantizeRow(x + r * in, in, xq + r * in, xs + r);
  });
  // int32 holds any sum of up to 2^31 / 127^2 products of two int8 values.
  constexpr int64_t kMaxExactIn = INT32_MAX / (127 * 127);
  const int64_t done = rows > kQuantizedDirectMaxRows && in <= kMaxExactIn && dnnl::int8Native()
                           ? int8MatmulRows(xq, xs, rows, in, q, scales, bias, out, beta, y,
                                            gelu)
                           : 0;
#if defined(__x86_64__)
  // A few rows: their int8 values, as int16, through the VNNI kernel, with
  // the same exact sums (GPT-2-345M w8a8 decode at batch 1 14% faster than
  // the f32 kernel on the dequantized rows).
  if (done == 0 && rows <= kDirectMaxRows && hasAvx512Vnni && in <= kVnniMaxInputs) {
    thread_local std::vector<int16_t> widened;
    int16_t *x16 = scratch(widened, rows * in);
    std::copy(xq, xq + rows * in, x16);
    linearDirectAvx512(static_cast<const int16_t *>(x16), xs, rows, in, q, scales, in, bias, out,
                       beta, y);
    if (gelu)
      geluInPlace(y, rows, out, *gelu);
    return;
  }
#endif
  if (done < rows) {
    thread_local std::vector<float> dequantized;
    float *xd = scratch(dequantized, (rows - done) * in);
    parallelFor(rows - done, std::max<int64_t>(1, 16384 / in), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        for (int64_t k = 0; k < in; ++k)
          xd[r * in + k] = static_cast<float>(xq[(done + r) * in + k]) * xs[done + r];
    });
    linearInt8(xd, rows - done, in, q, scales, in, nullptr, false, bias, out, beta,
               y + done * out, gelu);
  }
}

void cpu::linearInt8(const float *x, int64_t rows, int64_t in, const int8_t *q,
                     const float *scales, int64_t groupSize, const dnnl::PackedWeight *packed,
                     bool int16Rows, const float *bias, int64_t out, float beta, float *y,
                     std::optional<GeluKind> gelu) {
  if (rows > kDirectMaxRows && out > 0 && groupSize == in && dnnl::bf16Native())
    return linearInt8ViaBf16(x, rows, in, q, scales, packed, bias, out, beta, y, gelu);
  linearNarrow(x, rows, in, q, scales, groupSize, int16Rows, bias, out, beta, y, gelu);
}

void cpu::linearBf16(const float *x, int64_t rows, int64_t in, const uint16_t *w,
                     const dnnl::PackedWeight *packed, const float *bias, int64_t out,
                     float beta, float *y, std::optional<GeluKind> gelu) {
  if ((rows > kDirectMaxRows || (packed && rows >= kPackedMinRows)) && out > 0 &&
      dnnl::bf16Native()) {
    const uint16_t *xRounded = roundRowsToBf16(x, rows, in);
    const dnnl::Epilogue epilogue{nullptr, bias, gelu, beta != 0.0f};
    if ((packed && dnnl::matmulBf16(xRounded, rows, in, *packed, nullptr, out, epilogue, y)) ||
        dnnl::matmulBf16(xRounded, rows, in, w, out, epilogue, y))
      return;
  }
  linearNarrow(x, rows, in, w, nullptr, in, false, bias, out, beta, y, gelu);
}

bool cpu::linearF32FewRows(const float *x, int64_t rows, int64_t in, const float *w,
                           const float *bias, int64_t out, float beta, float *y) {
#if defined(__x86_64__)
  if (hasAvx512) {
    if (rows > 0 && out > 0)
      linearDirectAvx512(x, nullptr, rows, in, w, nullptr, in, bias, out, beta, y);
    return true;
  }
#endif
  return false;
}
