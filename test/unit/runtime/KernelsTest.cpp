//===- KernelsTest.cpp - CPU kernels against naive double loops -----------===//
//
// Each kernel is compared with the textbook formula evaluated in double on
// random inputs, at shapes that are not multiples of any vector width.
//
//===----------------------------------------------------------------------===//

#include "GeluReference.h"
#include "megatron/runtime/Half.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

using namespace megatron::runtime;
using namespace megatron::runtime::cpu;

namespace {

std::vector<float> randomVector(size_t n, float scale = 1.0f,
                                unsigned seed = 7) {
  std::mt19937 rng(seed + n);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

void expectClose(const std::vector<float> &actual,
                 const std::vector<double> &expected, double tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i],
                tolerance * (1.0 + std::fabs(expected[i])))
        << "element " << i;
}

/// x [rows, in] w[out, in]^T + bias (null: none), summed in double.
std::vector<double> referenceLinear(const std::vector<float> &x, const std::vector<float> &w,
                                    const float *bias, int64_t rows, int64_t in, int64_t out) {
  std::vector<double> expected(rows * out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < in; ++i)
        sum += double(x[r * in + i]) * w[o * in + i];
      expected[r * out + o] = sum;
    }
  return expected;
}

TEST(Kernels, LinearWithAndWithoutBias) {
  const int64_t rows = 5, in = 37, out = 19;
  auto x = randomVector(rows * in), w = randomVector(out * in, 0.2f),
       b = randomVector(out);
  for (bool withBias : {true, false}) {
    std::vector<float> y(rows * out);
    const float *bias = withBias ? b.data() : nullptr;
    linear(x.data(), rows, in, w.data(), bias, out, y.data());
    expectClose(y, referenceLinear(x, w, bias, rows, in, out), 1e-5);
  }
}

/// linear with bias, with each GELU and accumulating into a residual, twice
/// (a shape's first call may measure which library is faster), against
/// double sums of x [rows, in] and w [out, in].
void expectLinearMatches(const Weights &weights, const std::vector<float> &x,
                         const std::vector<float> &w, int64_t rows, int64_t in, int64_t out) {
  auto b = randomVector(out), residual = randomVector(rows * out);
  const std::vector<double> expected = referenceLinear(x, w, b.data(), rows, in, out);
  for (int call = 0; call < 2; ++call) {
    std::vector<float> y(rows * out);
    linear(x.data(), rows, in, weights, b.data(), out, y.data());
    expectClose(y, expected, 1e-5);
    for (GeluKind kind : {GeluKind::Erf, GeluKind::Tanh}) {
      linear(x.data(), rows, in, weights, b.data(), out, y.data(), kind);
      std::vector<double> activated(rows * out);
      for (int64_t i = 0; i < rows * out; ++i)
        activated[i] = geluReference(expected[i], kind);
      expectClose(y, activated, 2e-5);
    }
    std::vector<float> sum = residual;
    linearAccumulate(x.data(), rows, in, weights, out, sum.data());
    std::vector<double> accumulated(rows * out);
    for (int64_t i = 0; i < rows * out; ++i)
      accumulated[i] = expected[i] - b[i % out] + residual[i];
    expectClose(sum, accumulated, 1e-5);
  }
}

// Below 32 rows (decode) f32 weights stream through the register kernel
// where the CPU has AVX-512, OpenBLAS elsewhere: every row count of its
// passes of 8, inputs that end inside a 16-wide chunk, one and two
// channels per tile (x past 32 KiB).
TEST(Kernels, FewRowLinear) {
  for (auto [rows, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 1000, 77},
                               {2, 37, 19}, {7, 1024, 40}, {8, 1030, 33}, {9, 4096, 24},
                               {31, 250, 65}}) {
    auto x = randomVector(rows * in), w = randomVector(out * in, 0.05f);
    expectLinearMatches(Weights(w.data()), x, w, rows, in, out);
  }
}

// From 32 rows on a shape goes to the faster of OpenBLAS and oneDNN,
// measured on its first call, or to oneDNN with the weight packed for it:
// both calls, and accumulating, must be right.
TEST(Kernels, ManyRowLinearWhicheverLibraryIsFaster) {
  for (bool packed : {false, true})
    for (auto [rows, in, out] : {std::tuple<int64_t, int64_t, int64_t>{40, 1000, 77},
                                 {128, 1024, 4096}, {128, 4096, 1024}}) {
      auto x = randomVector(rows * in), w = randomVector(out * in, 0.05f);
      Weights weights(w.data());
      dnnl::PackedWeightPtr packedWeight;
      if (packed) {
        packedWeight = dnnl::packWeight(w.data(), out, in);
        ASSERT_NE(packedWeight, nullptr);
        weights.packed = packedWeight.get();
      }
      expectLinearMatches(weights, x, w, rows, in, out);
    }
}

// oneDNN's epilogue in its order: scales, bias, GELU, then what y held.
TEST(Kernels, OneDnnEpilogueInOrder) {
  const int64_t rows = 40, in = 70, out = 19;
  auto x = randomVector(rows * in), w = randomVector(out * in, 0.2f), scales = randomVector(out),
       bias = randomVector(out), before = randomVector(rows * out);
  std::vector<uint16_t> xBf16(x.size()), wBf16(w.size());
  toBf16(x.data(), x.size(), xBf16.data());
  toBf16(w.data(), w.size(), wBf16.data());
  for (bool bf16 : {false, true}) {
    if (bf16 && !dnnl::bf16Native())
      continue;
    for (unsigned combination = 0; combination < 16; ++combination) {
      dnnl::Epilogue e;
      e.scales = combination & 1 ? scales.data() : nullptr;
      e.bias = combination & 2 ? bias.data() : nullptr;
      if (combination & 4)
        e.gelu = combination & 8 ? GeluKind::Tanh : GeluKind::Erf;
      e.accumulate = combination & 8;
      std::vector<float> y = before;
      ASSERT_TRUE(bf16 ? dnnl::matmulBf16(xBf16.data(), rows, in, wBf16.data(), out, e,
                                          y.data())
                       : dnnl::matmulF32(x.data(), rows, in, w.data(), out, e, y.data()));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
          const int64_t at = r * out + o;
          double v = 0;
          for (int64_t k = 0; k < in; ++k)
            v += bf16 ? double(bfloat16ToFloat(xBf16[r * in + k])) *
                            bfloat16ToFloat(wBf16[o * in + k])
                      : double(x[r * in + k]) * w[o * in + k];
          if (e.scales)
            v *= scales[o];
          if (e.bias)
            v += bias[o];
          if (e.gelu)
            v = geluReference(v, *e.gelu);
          if (e.accumulate)
            v += before[at];
          ASSERT_NEAR(y[at], v, 2e-5 * (1 + std::fabs(v)))
              << (bf16 ? "bf16" : "f32") << " epilogue " << combination << " at [" << r
              << ", " << o << "]";
        }
    }
  }
}

TEST(Kernels, BatchedMatmulReadsOnlyTheRowsInUseOfAStridedRhs) {
  // A KV cache: each head has room for `capacity` rows, `keys` are filled.
  const int64_t batch = 2, m = 3, d = 5, keys = 4, capacity = 7;
  auto q = randomVector(batch * m * d), cache = randomVector(batch * capacity * d);
  std::vector<float> dense(batch * keys * d);
  for (int64_t p = 0; p < batch; ++p)
    std::copy_n(cache.begin() + p * capacity * d, keys * d, dense.begin() + p * keys * d);
  std::vector<float> strided(batch * m * keys), packed(batch * m * keys);
  batchedMatmul(q.data(), cache.data(), batch, m, d, keys, true, capacity * d, strided.data());
  batchedMatmul(q.data(), dense.data(), batch, m, d, keys, true, keys * d, packed.data());
  EXPECT_EQ(strided, packed);
}

TEST(Kernels, BatchedMatmulBothLayouts) {
  const int64_t batch = 3, m = 4, k = 9, n = 6;
  auto a = randomVector(batch * m * k), b = randomVector(batch * k * n);
  for (bool transposeB : {false, true}) {
    std::vector<float> c(batch * m * n);
    batchedMatmul(a.data(), b.data(), batch, m, k, n, transposeB, k * n, c.data());
    std::vector<double> expected(batch * m * n);
    for (int64_t p = 0; p < batch; ++p)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t q = 0; q < k; ++q)
            sum += double(a[(p * m + i) * k + q]) *
                   (transposeB ? b[(p * n + j) * k + q] : b[(p * k + q) * n + j]);
          expected[(p * m + i) * n + j] = sum;
        }
    expectClose(c, expected, 1e-5);
  }
}

TEST(Kernels, LayerNormWithALargeMean) {
  const int64_t rows = 3, width = 33;
  auto x = randomVector(rows * width), g = randomVector(width),
       b = randomVector(width);
  for (float &v : x)
    v += 100.0f; // the mean dwarfs the spread
  std::vector<float> y(rows * width);
  layerNorm(x.data(), rows, width, g.data(), b.data(), 1e-5f, y.data());
  std::vector<double> expected(rows * width);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < width; ++i)
      mean += x[r * width + i];
    mean /= width;
    for (int64_t i = 0; i < width; ++i)
      var += std::pow(x[r * width + i] - mean, 2);
    var /= width;
    for (int64_t i = 0; i < width; ++i)
      expected[r * width + i] =
          (x[r * width + i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i];
  }
  expectClose(y, expected, 1e-4);
}

TEST(Kernels, GeluBothForms) {
  auto x = randomVector(101, 3.0f);
  std::vector<float> y(x.size());
  for (GeluKind kind : {GeluKind::Erf, GeluKind::Tanh}) {
    gelu(x.data(), x.size(), kind, y.data());
    std::vector<double> expected(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      expected[i] = geluReference(x[i], kind);
    expectClose(y, expected, 1e-6);
  }
}

// The vector kernel (built with -ffast-math) rounds as the scalar
// conversion does, ties to even included, and keeps NaN a NaN.
TEST(Kernels, ToBf16RoundsAsTheScalarConversionAndKeepsNaN) {
  std::vector<float> x = randomVector(37, 100.0f);
  x.insert(x.end(), {std::nanf(""), -std::nanf(""), std::numeric_limits<float>::infinity(),
                     -0.0f, 1.00390625f /* a tie, to even: 1 */, 1.01171875f /* up */,
                     std::numeric_limits<float>::max()});
  // NaNs whose payload lies in the low bits: rounding alone would make them
  // infinities.
  for (uint32_t bits : {0x7f800001u, 0xff800001u}) {
    float nan;
    std::memcpy(&nan, &bits, sizeof(nan));
    x.push_back(nan);
  }
  std::vector<uint16_t> out(x.size());
  toBf16(x.data(), x.size(), out.data());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(out[i], megatron::runtime::floatToBFloat16(x[i])) << "element " << i;
    EXPECT_EQ(std::isnan(bfloat16ToFloat(out[i])), std::isnan(x[i])) << "element " << i;
  }
}

// The softmax's exp (inline, vectorized): within 2 ulp of float, and
// exactly 0 below -80, where masked scores (the lowest float) land. The
// test's build may optimize differently from the release's (the sanitizer
// build is -O1), and the bound must hold in both.
TEST(Kernels, ExpShiftIsAccurateAndFlushesFarBelow) {
  const float shift = 1.5f, lowest = std::numeric_limits<float>::lowest();
  std::vector<float> x;
  for (float v = -98.5f; v <= 1.5f; v += 0.00731f)
    x.push_back(v);
  x.push_back(shift);
  x.push_back(lowest);
  std::vector<float> e = x;
  const float sum = expShift(e.data(), static_cast<int64_t>(e.size()), shift);
  double expectedSum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = x[i] - shift; // as the kernel subtracts
    const double exact = v < -80.0f ? 0.0 : std::exp(double(v));
    expectedSum += exact;
    EXPECT_NEAR(e[i], exact, 2.4e-7 * exact) << "exp(" << v << ")";
  }
  EXPECT_NEAR(sum, expectedSum, 1e-6 * expectedSum);
}

TEST(Kernels, SoftmaxIsStableForLargeScores) {
  std::vector<float> x = {1000.0f, 1001.0f, 1002.0f, -5.0f, 0.0f, 5.0f};
  softmax(x.data(), 2, 3);
  std::vector<double> expected;
  for (int r = 0; r < 2; ++r) {
    double row[3] = {r ? -5.0 : 0.0, r ? 0.0 : 1.0, r ? 5.0 : 2.0};
    double sum = std::exp(row[0]) + std::exp(row[1]) + std::exp(row[2]);
    for (double v : row)
      expected.push_back(std::exp(v) / sum);
  }
  expectClose(x, expected, 1e-6);
}

TEST(Kernels, AttentionMaskPaddingAndCausalWithCachedKeys) {
  // One batch, one head, 2 queries after 1 cached key: 3 keys in all.
  std::vector<float> scores(6, 1.0f);
  int64_t padding[] = {1, 1, 0};
  attentionMask(scores.data(), 1, 2, 3, padding, /*causal=*/true, 0, 2);
  const float low = std::numeric_limits<float>::lowest();
  // Query 0 sees keys 0..1; query 1 sees keys 0..2 but key 2 is padding.
  EXPECT_EQ(scores, (std::vector<float>{1, 1, low, 1, 1, low}));
}

TEST(Kernels, AttentionMaskRowRangesCoverBatchesAndHeads) {
  // [batch 2, heads 3, queries 4, keys 6], masked in three uneven row ranges.
  const int64_t batch = 2, heads = 3, queries = 4, keys = 6;
  const int64_t padding[] = {1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1};
  std::vector<float> scores(batch * heads * queries * keys, 1.0f);
  for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 5}, {5, 17}, {17, 24}})
    attentionMask(scores.data(), heads, queries, keys, padding, true, begin, end);
  const float low = std::numeric_limits<float>::lowest();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t q = 0; q < queries; ++q)
        for (int64_t k = 0; k < keys; ++k) {
          bool masked = padding[b * keys + k] == 0 || k > q + (keys - queries);
          EXPECT_EQ(scores[((b * heads + h) * queries + q) * keys + k],
                    masked ? low : 1.0f)
              << "b " << b << " h " << h << " q " << q << " k " << k;
        }
}

TEST(Kernels, AddBroadcastsOverAnyRange) {
  std::vector<float> a(10), b = {100, 200, 300}, y(10, -1);
  for (int i = 0; i < 10; ++i)
    a[i] = static_cast<float>(i);
  // Ranges that start and end inside a period of b.
  add(a.data(), b.data(), 3, 0, 4, y.data());
  add(a.data(), b.data(), 3, 4, 10, y.data());
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(y[i], a[i] + b[i % 3]) << i;
}

TEST(Kernels, EmbeddingRejectsOutOfRangeIds) {
  std::vector<float> table = {0, 1, 10, 11, 20, 21};
  std::vector<float> out(4);
  int64_t ids[] = {2, 0};
  ASSERT_TRUE(embedding(table.data(), 3, 2, ids, 2, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{20, 21, 0, 1}));
  int64_t bad[] = {1, 3};
  Status status = embedding(table.data(), 3, 2, bad, 2, out.data());
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(),
            "token id 3 at position 1 is outside the vocabulary [0, 3)");
  int64_t negative[] = {-1};
  EXPECT_FALSE(embedding(table.data(), 3, 2, negative, 1, out.data()).ok());
}

TEST(Kernels, VocabParallelEmbeddingZeroesOtherRanksRows) {
  // This rank holds rows [3, 6) of a 9-row table.
  std::vector<float> table = {30, 31, 40, 41, 50, 51};
  std::vector<float> out(8, -1);
  int64_t ids[] = {4, 0, 5, 8};
  ASSERT_TRUE(embedding(table.data(), 3, 2, ids, 4, out.data(), 3, 9).ok());
  EXPECT_EQ(out, (std::vector<float>{40, 41, 0, 0, 50, 51, 0, 0}));
  int64_t bad[] = {9};
  EXPECT_FALSE(embedding(table.data(), 3, 2, bad, 1, out.data(), 3, 9).ok());
}

TEST(Kernels, SplitAndMergeHeadsAreInverse) {
  const int64_t batch = 2, seq = 3, heads = 4, dim = 5;
  auto x = randomVector(batch * seq * heads * dim);
  std::vector<float> split(x.size()), merged(x.size());
  swapMiddleAxes(x.data(), batch, seq, heads, dim, split.data());
  // Element (b, h, s, d) of the split comes from (b, s, h * dim + d).
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < seq; ++s)
        for (int64_t d = 0; d < dim; ++d)
          ASSERT_EQ(split[((b * heads + h) * seq + s) * dim + d],
                    x[((b * seq + s) * heads + h) * dim + d]);
  swapMiddleAxes(split.data(), batch, heads, seq, dim, merged.data());
  EXPECT_EQ(merged, x);
}

} // namespace

namespace {
/// Attention the plain way, in double: scores, mask, softmax, sum; with
/// bf16Probabilities the softmax's results rounded to float, then bf16.
std::vector<double> naiveAttention(const AttentionShape &a, const std::vector<float> &qkv,
                                   const std::vector<float> &pastK,
                                   const std::vector<float> &pastV, const int64_t *mask,
                                   bool bf16Probabilities = false) {
  int64_t width = a.heads * a.dim, keys = a.past + a.seq;
  std::vector<double> out(a.batch * a.seq * width);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h) {
      auto key = [&](int64_t j, int64_t d, bool value) -> double {
        if (j < a.past) // cached: [batch, heads, past, dim]
          return (value ? pastV : pastK)[((b * a.heads + h) * a.past + j) * a.dim + d];
        return qkv[(b * a.seq + j - a.past) * 3 * width + (value ? 2 : 1) * width +
                   h * a.dim + d];
      };
      for (int64_t i = 0; i < a.seq; ++i) {
        std::vector<double> s(keys);
        double max = -1e300;
        for (int64_t j = 0; j < keys; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < a.dim; ++d)
            dot += double(qkv[(b * a.seq + i) * 3 * width + h * a.dim + d]) * key(j, d, false);
          bool masked = (mask && mask[b * keys + j] == 0) || (a.causal && j > a.past + i);
          s[j] = masked ? -1e300 : dot * a.scale;
          max = std::max(max, s[j]);
        }
        double sum = 0;
        for (double &v : s)
          sum += v = v <= -1e300 ? 0 : std::exp(v - max);
        for (int64_t d = 0; d < a.dim; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < keys; ++j) {
            double p = s[j] / sum;
            if (bf16Probabilities)
              p = megatron::runtime::bfloat16ToFloat(
                  megatron::runtime::floatToBFloat16(static_cast<float>(p)));
            acc += p * key(j, d, true);
          }
          out[(b * a.seq + i) * width + h * a.dim + d] = acc;
        }
      }
    }
  return out;
}
} // namespace

// Longer than one block of queries (64) and of keys (256), odd lengths,
// padding and causal masks: without a cache (oneDNN's batched products over
// groups of heads), and with one (the blocked path), with and without
// tokens already cached.
TEST(Kernels, AttentionEqualsThePlainComputation) {
  for (bool causal : {false, true})
    for (auto [past, cached] : {std::pair<int64_t, bool>{0, false}, {0, true}, {37, true}}) {
      AttentionShape a{2, 301, 4, 8, 0.35f, causal};
      a.past = past;
      a.capacity = past + a.seq + 5;
      int64_t keys = past + a.seq, width = a.heads * a.dim;
      std::vector<float> qkv = randomVector(a.batch * a.seq * 3 * width);
      std::vector<float> pastK = randomVector(a.batch * a.heads * past * a.dim),
                         pastV = randomVector(a.batch * a.heads * past * a.dim);
      std::vector<int64_t> mask(a.batch * keys, 1);
      for (int64_t j = keys - 20; j < keys; ++j) // padding at the end of row 1
        mask[keys + j] = 0;
      mask[5] = 0;
      std::vector<float> kCache(a.batch * a.heads * a.capacity * a.dim, 0.0f), vCache = kCache;
      for (int64_t bh = 0; bh < a.batch * a.heads; ++bh)
        for (int64_t j = 0; j < past * a.dim; ++j) {
          kCache[bh * a.capacity * a.dim + j] = pastK[bh * past * a.dim + j];
          vCache[bh * a.capacity * a.dim + j] = pastV[bh * past * a.dim + j];
        }
      std::vector<float> out(a.batch * a.seq * width);
      AttentionShape run = a;
      if (!cached) { // the uncached form reads keys from qkv
        run.capacity = 0;
        attention(run, qkv.data(), mask.data(), nullptr, nullptr, out.data());
      } else {
        attention(run, qkv.data(), mask.data(), kCache.data(), vCache.data(), out.data());
      }
      expectClose(out, naiveAttention(a, qkv, pastK, pastV, mask.data()), 1e-5);
    }
}

// A model computed in bf16 (no cache): Q, K, V and the probabilities
// rounded to bf16, products summed in f32. Against the plain computation
// on the rounded values: more queries than one chunk (128), odd lengths,
// padding and causal masks.
TEST(Kernels, Bf16AttentionEqualsThePlainComputationOnRoundedValues) {
  if (!megatron::runtime::cpu::dnnl::bf16Native())
    GTEST_SKIP() << "no bf16 arithmetic on this CPU: attention stays f32";
  for (bool causal : {false, true}) {
    AttentionShape a{2, 301, 3, 8, 0.35f, causal};
    a.bf16 = true;
    const int64_t width = a.heads * a.dim;
    std::vector<float> qkv = randomVector(a.batch * a.seq * 3 * width);
    std::vector<float> rounded(qkv.size());
    for (size_t i = 0; i < qkv.size(); ++i)
      rounded[i] = megatron::runtime::bfloat16ToFloat(megatron::runtime::floatToBFloat16(qkv[i]));
    std::vector<int64_t> mask(a.batch * a.seq, 1);
    for (int64_t j = a.seq - 20; j < a.seq; ++j) // padding at the end of row 1
      mask[a.seq + j] = 0;
    mask[5] = 0;
    std::vector<float> out(a.batch * a.seq * width);
    attention(a, qkv.data(), mask.data(), nullptr, nullptr, out.data());
    // A probability within float rounding of a bf16 tie may round the other
    // way (2^-9 of it); one key wrongly masked or kept would be ~3e-3 off.
    expectClose(out, naiveAttention(a, rounded, {}, {}, mask.data(), true), 5e-4);
  }
}
