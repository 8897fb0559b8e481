//===- QuantizedLinearTest.cpp - narrow-weight linear against double loops ===//
//
// linearInt8 and linearBf16 against the widened product evaluated in double, over row
// counts that take the register kernel and the dequantize-and-GEMM path,
// shapes that are not multiples of any vector width, per-channel and
// grouped scales, both betas, with and without a bias.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Parallel.h"
#include "runtime/cpu/QuantizedLinear.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

/// Runs one case and compares every `stride`-th output channel (and the
/// last) with the double-precision product.
void checkCase(const Case &shape, float beta, bool withBias, int64_t stride = 1) {
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

  if (bf16)
    cpu::linearBf16(x.data(), rows, in, wBf16.data(), withBias ? bias.data() : nullptr, out,
                    beta, y.data());
  else
    cpu::linearInt8(x.data(), rows, in, q.data(), scales.data(), groupSize,
                    withBias ? bias.data() : nullptr, out, beta, y.data());
  auto weight = [&](int64_t o, int64_t k) {
    if (!bf16)
      return double(q[o * in + k]) * scales[o * groups + k / groupSize];
    uint32_t u = uint32_t(wBf16[o * in + k]) << 16;
    float w;
    std::memcpy(&w, &u, sizeof(w));
    return double(w);
  };

  std::vector<int64_t> checked;
  for (int64_t o = 0; o < out; o += stride)
    checked.push_back(o);
  if (checked.back() != out - 1)
    checked.push_back(out - 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o : checked) {
      // Many-row products may take x rounded to bf16 (as PyTorch's bf16
      // GEMMs do) where the CPU has bf16 arithmetic; either product is
      // right to float rounding.
      double sum = 0, roundedSum = 0, magnitude = 0;
      for (int64_t k = 0; k < in; ++k) {
        double w = weight(o, k);
        sum += double(x[r * in + k]) * w;
        roundedSum += double(roundToBf16(x[r * in + k])) * w;
        magnitude += std::fabs(double(x[r * in + k]) * w);
      }
      double extra = 0;
      if (withBias) {
        extra += bias[o];
        magnitude += std::fabs(bias[o]);
      }
      if (beta != 0.0f) {
        extra += beta * double(before[r * out + o]);
        magnitude += std::fabs(beta * double(before[r * out + o]));
      }
      sum += extra;
      roundedSum += extra;
      if (rows > 32 && std::fabs(y[r * out + o] - roundedSum) <= 1e-5 * magnitude)
        continue;
      // Float rounding, relative to the sum of magnitudes; one term in
      // 4096 left out or taken twice is 25 times this.
      ASSERT_NEAR(y[r * out + o], sum, 1e-5 * magnitude)
          << "rows " << rows << " in " << in << " out " << out << " group " << shape.groupSize
          << " beta " << beta << " bias " << withBias << " at [" << r << ", " << o << "]";
    }
}

TEST(QuantizedLinear, MatchesDoubleReference) {
  cpu::setThreads(2);
  // Rows 9 and in 1000 outgrow L1, where the register kernel pairs channels
  // (23 of them leave one over); groups of 24 are not whole 16-weight chunks.
  const std::vector<Case> shapes = {
      {1, 40, 24, 0},    {2, 40, 24, 0},   {3, 37, 19, 0},     {8, 40, 24, 0},
      {9, 1000, 23, 0},  {17, 24, 40, 0},  {64, 40, 24, 0},    {200, 37, 19, 0},
      {1, 64, 24, 32},   {3, 96, 21, 32},  {8, 128, 40, 64},   {9, 1024, 23, 64},
      {17, 256, 24, 128}, {64, 64, 23, 32}, {200, 128, 40, 64}, {2, 48, 21, 24}};
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

} // namespace
