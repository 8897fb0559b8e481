//===- QuantizedLinearTest.cpp - narrow-weight linear against double loops ===//
//
// linearInt8 and linearBf16 against the widened product evaluated in double
// (linearInt8QuantizedRows against its definition), over row
// counts that take the register kernel and the dequantize-and-GEMM path,
// shapes that are not multiples of any vector width, per-channel and
// grouped scales, both betas, with and without a bias.
//
//===----------------------------------------------------------------------===//

#include "GeluReference.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Parallel.h"
#include "runtime/cpu/QuantizedLinear.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

using namespace megatron::runtime;

namespace {

struct Case {
  int64_t rows, in, out, groupSize; // groupSize 0: per channel; -1: bf16 weights
};

float roundToBf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  u = (u + 0x7FFFu + ((u >> 16) & 1)) & 0xFFFF0000u;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

/// Every `stride`-th output channel, and the last.
std::vector<int64_t> sampledChannels(int64_t out, int64_t stride) {
  std::vector<int64_t> channels;
  for (int64_t o = 0; o < out; o += stride)
    channels.push_back(o);
  if (channels.back() != out - 1)
    channels.push_back(out - 1);
  return channels;
}

/// Output [r, o]'s bias and beta * y (y as it was before the call) terms
/// added to `value`, their magnitudes to `magnitude`.
void addBiasAndBeta(bool withBias, const std::vector<float> &bias, float beta,
                    const std::vector<float> &before, int64_t r, int64_t o, int64_t out,
                    double &value, double &magnitude) {
  if (withBias) {
    value += bias[o];
    magnitude += std::fabs(bias[o]);
  }
  if (beta != 0.0f) {
    value += beta * double(before[r * out + o]);
    magnitude += std::fabs(beta * double(before[r * out + o]));
  }
}

/// `value` through GELU when asked, and the bound on its error given
/// `bound` on value's: GELU's slope is at most 1.13, and its own rounding.
void activate(std::optional<cpu::GeluKind> gelu, double &value, double &bound) {
  if (!gelu)
    return;
  value = geluReference(value, *gelu);
  bound = 1.13 * bound + 1e-6 * (1 + std::fabs(value));
}

/// Row x quantized to integers as the runtime's quantizeRow does (limit
/// 127 or 32767), in double: the values, their scale, and which were within
/// float rounding of a tie (either rounding is right there).
struct QuantizedRow {
  std::vector<int> values;
  std::vector<bool> nearTie;
  double scale = 0;
};

QuantizedRow quantizeRowReference(const float *x, int64_t in, double limit) {
  float largest = 0.0f;
  for (int64_t k = 0; k < in; ++k)
    largest = std::max(largest, std::fabs(x[k]));
  const double inverse = largest > 0.0f ? limit / largest : 0.0;
  QuantizedRow row{std::vector<int>(in), std::vector<bool>(in), largest / limit};
  for (int64_t k = 0; k < in; ++k) {
    const double v = x[k] * inverse;
    row.values[k] = static_cast<int>(std::nearbyint(v));
    row.nearTie[k] = std::fabs(std::fabs(v - std::trunc(v)) - 0.5) < 1e-4;
  }
  return row;
}

/// Runs one case and compares every `stride`-th output channel (and the
/// last) with the double-precision product (through GELU when asked).
/// With `packed`, the weight is packed for oneDNN first (where it can);
/// `int16Rows` is linearInt8's.
void checkCase(const Case &shape, float beta, bool withBias, int64_t stride = 1,
               std::optional<cpu::GeluKind> gelu = std::nullopt, bool packed = false,
               bool int16Rows = false) {
  const int64_t rows = shape.rows, in = shape.in, out = shape.out;
  const bool bf16 = shape.groupSize < 0;
  const int64_t groupSize = shape.groupSize > 0 ? shape.groupSize : in;
  const int64_t groups = in / groupSize;
  std::mt19937 rng(static_cast<unsigned>(rows * 131 + in * 17 + out + groupSize));
  std::uniform_int_distribution<int> qDist(-127, 127);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<int8_t> q(out * in);
  std::vector<uint16_t> wBf16(out * in);
  std::vector<float> x(rows * in), scales(out * groups), bias(out), y(rows * out);
  for (int8_t &v : q)
    v = static_cast<int8_t>(qDist(rng));
  for (float &v : scales)
    v = 0.02f * (1.0f + uniform(rng));
  for (uint16_t &v : wBf16) {
    float w = roundToBf16(0.05f * uniform(rng));
    uint32_t u;
    std::memcpy(&u, &w, sizeof(u));
    v = static_cast<uint16_t>(u >> 16);
  }
  for (std::vector<float> *v : {&x, &bias, &y})
    for (float &e : *v)
      e = uniform(rng);
  // beta == 0 must not read y: NaN there would show.
  if (beta == 0.0f)
    std::fill(y.begin(), y.end(), std::nanf(""));
  const std::vector<float> before = y;

  cpu::dnnl::PackedWeightPtr packedWeight;
  if (packed) {
    packedWeight = bf16 ? cpu::dnnl::packWeight(wBf16.data(), out, in)
                        : cpu::dnnl::packWeight(q.data(), out, in);
    ASSERT_EQ(packedWeight != nullptr, cpu::dnnl::bf16Native());
  }
  if (bf16)
    cpu::linearBf16(x.data(), rows, in, wBf16.data(), packedWeight.get(),
                    withBias ? bias.data() : nullptr, out, beta, y.data(), gelu);
  else
    cpu::linearInt8(x.data(), rows, in, q.data(), scales.data(), groupSize, packedWeight.get(),
                    int16Rows, withBias ? bias.data() : nullptr, out, beta, y.data(), gelu);
  auto weight = [&](int64_t o, int64_t k) {
    if (!bf16)
      return double(q[o * in + k]) * scales[o * groups + k / groupSize];
    uint32_t u = uint32_t(wBf16[o * in + k]) << 16;
    float w;
    std::memcpy(&w, &u, sizeof(w));
    return double(w);
  };

  // With int16Rows, a few rows with int8 weights and per-channel scales may
  // be quantized to int16 per row (AVX512-VNNI's kernel) as the runtime's
  // quantizeRow does; without, they are exact.
  const bool mayQuantize = int16Rows && !bf16 && groupSize == in && rows <= 32;
  for (int64_t r = 0; r < rows; ++r) {
    const QuantizedRow x16 = quantizeRowReference(x.data() + r * in, in, 32767.0);
    for (int64_t o : sampledChannels(out, stride)) {
      // Many-row products (packed bf16 weights: from 2 rows) may take x
      // rounded to bf16 (as PyTorch's bf16 GEMMs do) where the CPU has bf16
      // arithmetic; either product is right to float rounding.
      double sum = 0, roundedSum = 0, quantizedSum = 0, tieSlack = 0, magnitude = 0;
      for (int64_t k = 0; k < in; ++k) {
        double w = weight(o, k);
        sum += double(x[r * in + k]) * w;
        roundedSum += double(roundToBf16(x[r * in + k])) * w;
        quantizedSum += x16.values[k] * x16.scale * w;
        tieSlack += x16.nearTie[k] ? x16.scale * std::fabs(w) : 0.0;
        magnitude += std::fabs(double(x[r * in + k]) * w);
      }
      double extra = 0;
      addBiasAndBeta(withBias, bias, beta, before, r, o, out, extra, magnitude);
      sum += extra;
      roundedSum += extra;
      quantizedSum += extra;
      // Float rounding, relative to the sum of magnitudes; one term in
      // 4096 left out or taken twice is 25 times this.
      double bound = 1e-5 * magnitude, roundedBound = bound, quantizedBound = bound + tieSlack;
      activate(gelu, sum, bound);
      activate(gelu, roundedSum, roundedBound);
      activate(gelu, quantizedSum, quantizedBound);
      if ((rows > 32 || (packed && bf16)) &&
          std::fabs(y[r * out + o] - roundedSum) <= roundedBound)
        continue;
      if (mayQuantize && std::fabs(y[r * out + o] - quantizedSum) <= quantizedBound)
        continue;
      ASSERT_NEAR(y[r * out + o], sum, bound)
          << "rows " << rows << " in " << in << " out " << out << " group " << shape.groupSize
          << " beta " << beta << " bias " << withBias << " gelu " << gelu.has_value()
          << " at [" << r << ", " << o << "]";
    }
  }
}

TEST(QuantizedLinear, MatchesDoubleReference) {
  cpu::setThreads(2);
  // Rows 9 and in 1000 outgrow L1, where the register kernel pairs channels
  // (23 of them leave one over); groups of 24 are not whole 16-weight chunks;
  // 1100 rows widen a weight with per-channel scales whole.
  const std::vector<Case> shapes = {
      {1, 40, 24, 0},    {2, 40, 24, 0},   {3, 37, 19, 0},     {8, 40, 24, 0},
      {9, 1000, 23, 0},  {17, 24, 40, 0},  {64, 40, 24, 0},    {200, 37, 19, 0},
      {1, 64, 24, 32},   {3, 96, 21, 32},  {8, 128, 40, 64},   {9, 1024, 23, 64},
      {17, 256, 24, 128}, {64, 64, 23, 32}, {200, 128, 40, 64}, {2, 48, 21, 24},
      {1100, 40, 24, 0}, {1100, 64, 23, 32}};
  for (const Case &shape : shapes)
    for (float beta : {0.0f, 1.0f})
      for (bool withBias : {false, true})
        checkCase(shape, beta, withBias);
}

// GPT-2/BERT-345M's shapes; a sample of the output channels keeps the
// double-precision reference quick.
TEST(QuantizedLinear, RealisticShapes) {
  cpu::setThreads(2);
  for (int64_t rows : {1, 2, 3, 8, 17, 64, 200})
    for (int64_t groupSize : {0, 128})
      checkCase({rows, 1024, 4096, groupSize}, rows % 2 ? 1.0f : 0.0f, rows % 3 == 0, 37);
  for (int64_t groupSize : {0, 32})
    checkCase({8, 4096, 1024, groupSize}, 0.0f, true, 11);
}

// bf16 weights: the register kernel for a few rows, oneDNN's bf16 matmul
// (where the CPU has bf16 arithmetic) or widened blocks for many.
TEST(QuantizedLinear, Bf16WeightsMatchDoubleReference) {
  cpu::setThreads(2);
  for (int64_t rows : {1, 3, 9, 33, 64, 200})
    for (float beta : {0.0f, 1.0f})
      for (bool withBias : {false, true})
        checkCase({rows, 1000, 23, -1}, beta, withBias);
  for (int64_t rows : {1, 8, 128})
    checkCase({rows, 1024, 4096, -1}, rows == 8 ? 1.0f : 0.0f, rows != 8, 37);
}

// The same products from weights packed once for oneDNN (bf16; int8 with
// per-channel scales, which take theirs from 1024 rows), shapes its blocks
// do not divide included.
TEST(QuantizedLinear, PackedWeightsMatchDoubleReference) {
  cpu::setThreads(2);
  for (int64_t groupSize : {-1, 0})
    for (int64_t rows : {2, 33, 1024})
      for (float beta : {0.0f, 1.0f})
        checkCase({rows, 1000, 23, groupSize}, beta, beta == 0.0f, 1, std::nullopt, true);
  checkCase({128, 1024, 4096, -1}, 0.0f, true, 37, cpu::GeluKind::Tanh, true);
  checkCase({1024, 1024, 512, 0}, 0.0f, true, 37, cpu::GeluKind::Tanh, true);
  checkCase({64, 4096, 1024, -1}, 1.0f, false, 37, std::nullopt, true);
}

// Models computing in bf16 may take a few rows through int16 (AVX512-VNNI):
// up to 8 rows a pass, one or two channels a tile, inputs not a multiple of
// the kernel's 32 or 128.
TEST(QuantizedLinear, Int16RowsMatchTheirDefinition) {
  cpu::setThreads(2);
  for (int64_t rows : {1, 3, 8, 9, 32})
    for (int64_t in : {24, 1000, 4096})
      checkCase({rows, in, 37, 0}, rows % 2 ? 0.0f : 1.0f, rows != 8, in == 4096 ? 5 : 1,
                std::nullopt, false, true);
  checkCase({1, 1024, 4096, 0}, 0.0f, true, 37, cpu::GeluKind::Tanh, false, true);
}

/// linearInt8QuantizedRows against its definition: x quantized per row in
/// double, int8 products summed exactly, then scaled. A value within float
/// rounding of a tie may round either way: its term counts in the bound.
void checkQuantizedRows(int64_t rows, int64_t in, int64_t out, float beta, bool withBias,
                        int64_t stride = 1, std::optional<cpu::GeluKind> gelu = std::nullopt) {
  std::mt19937 rng(static_cast<unsigned>(rows * 7 + in * 3 + out));
  std::uniform_int_distribution<int> qDist(-127, 127);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<int8_t> q(out * in);
  std::vector<float> x(rows * in), scales(out), bias(out), y(rows * out);
  for (int8_t &v : q)
    v = static_cast<int8_t>(qDist(rng));
  for (float &v : scales)
    v = 0.02f * (1.0f + uniform(rng));
  for (std::vector<float> *v : {&x, &bias, &y})
    for (float &e : *v)
      e = uniform(rng);
  // Rows of other magnitudes, and an all-zero row.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < in; ++k)
      x[r * in + k] *= r % 3 == 1 ? 100.0f : r % 3 == 2 ? 0.001f : 1.0f;
  if (rows > 2)
    std::fill(x.begin() + 2 * in, x.begin() + 3 * in, 0.0f);
  if (beta == 0.0f)
    std::fill(y.begin(), y.end(), std::nanf(""));
  const std::vector<float> before = y;
  cpu::linearInt8QuantizedRows(x.data(), rows, in, q.data(), scales.data(),
                               withBias ? bias.data() : nullptr, out, beta, y.data(), gelu);
  for (int64_t r = 0; r < rows; ++r) {
    const QuantizedRow xq = quantizeRowReference(x.data() + r * in, in, 127.0);
    const double rowScale = xq.scale;
    for (int64_t o : sampledChannels(out, stride)) {
      int64_t sum = 0, magnitude = 0, tieSlack = 0;
      for (int64_t k = 0; k < in; ++k) {
        sum += int64_t(xq.values[k]) * q[o * in + k];
        magnitude += std::abs(int64_t(xq.values[k]) * q[o * in + k]);
        tieSlack += xq.nearTie[k] ? std::abs(q[o * in + k]) : 0;
      }
      double expected = rowScale * scales[o] * double(sum),
             bound = rowScale * scales[o] * double(magnitude);
      addBiasAndBeta(withBias, bias, beta, before, r, o, out, expected, bound);
      bound = 1e-5 * bound + rowScale * scales[o] * double(tieSlack) + 1e-30;
      activate(gelu, expected, bound);
      ASSERT_NEAR(y[r * out + o], expected, bound)
          << "rows " << rows << " in " << in << " out " << out << " beta " << beta << " bias "
          << withBias << " at [" << r << ", " << o << "]";
    }
  }
}

// A few rows take the register kernel on the rows' dequantized values, more
// oneDNN's int8 matmul (where the CPU has VNNI) in chunks of rows.
// A row's values round their float product x * (127 / max|x|) to the
// nearest integer, ties to even, on every path and CPU clone, as the GPU's
// quantize_rows does. With max|x| = 3 these products are ties in float
// (0.5, 8.5) while the exact ones lie just above: an FMA would round up.
TEST(QuantizedLinear, QuantizedRowsRoundTheFloatProduct) {
  cpu::setThreads(2);
  const float ties[] = {0x1.83060ep-7f, 0x1.9b366ep-3f}; // 0.5 and 8.5 in float
  const float inverse = 127.0f / 3.0f;
  ASSERT_EQ(ties[0] * inverse, 0.5f);
  ASSERT_EQ(ties[1] * inverse, 8.5f);
  const int64_t in = 64;
  std::vector<float> row(in, 0.0f);
  row[0] = 3.0f;
  for (int64_t k = 1; k < in; ++k)
    row[k] = (k % 2 ? 1.0f : -1.0f) * ties[k % 2];
  // The identity as the weight: y[r, o] = xq[r, o] * s_r.
  std::vector<int8_t> q(in * in, 0);
  for (int64_t o = 0; o < in; ++o)
    q[o * in + o] = 1;
  std::vector<float> scales(in, 1.0f);
  for (int64_t rows : {1, 40}) {
    std::vector<float> x, y(rows * in);
    for (int64_t r = 0; r < rows; ++r)
      x.insert(x.end(), row.begin(), row.end());
    cpu::linearInt8QuantizedRows(x.data(), rows, in, q.data(), scales.data(), nullptr, in, 0.0f,
                                 y.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < in; ++k) {
        float product = x[r * in + k] * inverse;
        EXPECT_EQ(std::lround(y[r * in + k] / (3.0f / 127.0f)), std::lround(std::nearbyint(product)))
            << rows << " rows, at [" << r << ", " << k << "]";
      }
  }
}

TEST(QuantizedLinear, QuantizedRowsMatchDefinition) {
  cpu::setThreads(2);
  for (int64_t rows : {1, 3, 4, 5, 8, 33, 200})
    for (float beta : {0.0f, 1.0f})
      for (bool withBias : {false, true})
        checkQuantizedRows(rows, rows % 2 ? 1000 : 37, 23, beta, withBias);
  // More rows than one chunk of int32 sums (1024 rows at 4096 channels).
  checkQuantizedRows(1100, 64, 4096, 1.0f, true, 97);
  checkQuantizedRows(8, 1024, 4096, 0.0f, true, 37);
}

// GELU after the product: inside oneDNN's bf16 matmul (bf16 weights, and
// int8 ones with per-channel scales, from 33 rows), or after the register
// kernel and the widened blocks (grouped scales).
TEST(QuantizedLinear, GeluFollowsEveryPath) {
  cpu::setThreads(2);
  for (cpu::GeluKind kind : {cpu::GeluKind::Erf, cpu::GeluKind::Tanh})
    for (int64_t rows : {3, 40, 200, 1100})
      for (int64_t groupSize : {0, 32, -1}) {
        checkCase({rows, 96, 37, groupSize}, 0.0f, true, 1, kind);
        checkCase({rows, 96, 37, groupSize}, 0.0f, false, 1, kind);
      }
  for (cpu::GeluKind kind : {cpu::GeluKind::Erf, cpu::GeluKind::Tanh})
    for (int64_t rows : {3, 40})
      checkQuantizedRows(rows, 96, 37, 0.0f, true, 1, kind);
}

// Rows long enough that 127 x 127 products overflow an int32 sum still come
// out right (they are not summed in int32).
TEST(QuantizedLinear, QuantizedRowsTooLongForInt32Sums) {
  cpu::setThreads(2);
  const int64_t rows = 8, in = 140000, out = 2;
  std::vector<int8_t> q(out * in, 127);
  std::vector<float> x(rows * in, 1.0f), scales(out, 0.5f), y(rows * out);
  cpu::linearInt8QuantizedRows(x.data(), rows, in, q.data(), scales.data(), nullptr, out, 0.0f,
                               y.data());
  for (float v : y) // (1 / 127) * 0.5 * 127 * 127 * in
    EXPECT_NEAR(v, 0.5 * 127 * in, 1e-5 * 0.5 * 127 * in);
}

// A NaN or infinity in a row makes that row's results NaN, and only its.
// Rows with a NaN or an infinity give NaNs, and only those: dynamic W8A8,
// and weight-only int8 whose few rows may be quantized to int16.
TEST(QuantizedLinear, QuantizedRowsPropagateNonFinite) {
  cpu::setThreads(2);
  for (bool weightOnly : {false, true})
    for (int64_t rows : {3, 64}) {
      const int64_t in = 40, out = 24;
      std::vector<int8_t> q(out * in, 1);
      std::vector<float> x(rows * in, 0.5f), scales(out, 0.1f), y(rows * out);
      x[1 * in + 7] = std::nanf("");
      x[2 * in + 3] = -INFINITY;
      x[2 * in + 4] = INFINITY;
      if (weightOnly)
        cpu::linearInt8(x.data(), rows, in, q.data(), scales.data(), in, nullptr, true, nullptr,
                        out, 0.0f, y.data());
      else
        cpu::linearInt8QuantizedRows(x.data(), rows, in, q.data(), scales.data(), nullptr, out,
                                     0.0f, y.data());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) {
          if (r == 1 || r == 2)
            EXPECT_TRUE(std::isnan(y[r * out + o]))
                << "rows " << rows << " [" << r << ", " << o << "]";
          else
            EXPECT_NEAR(y[r * out + o], 0.5f * 0.1f * in, 1e-5) << "rows " << rows;
        }
    }
}

} // namespace
