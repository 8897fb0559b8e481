//===- Kernels.cpp - CPU kernels for the plan's steps ---------------------===//

#include "runtime/cpu/Kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

using namespace megatron::runtime;
using namespace megatron::runtime::cpu;

void cpu::linear(const float *x, int64_t rows, int64_t in, const float *w,
                 const float *bias, int64_t out, float *y) {
  // Start from the bias (beta = 1) so the GEMM adds it for free.
  float beta = 0.0f;
  if (bias) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(y + r * out, bias, out * sizeof(float));
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x,
              in, w, in, beta, y, out);
}

void cpu::batchedMatmul(const float *a, const float *b, int64_t batch,
                        int64_t m, int64_t k, int64_t n, bool transposeB,
                        int64_t bStride, float *c) {
  for (int64_t i = 0; i < batch; ++i)
    cblas_sgemm(CblasRowMajor, CblasNoTrans,
                transposeB ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                a + i * m * k, k, b + i * bStride, transposeB ? k : n, 0.0f,
                c + i * m * n, n);
}

void cpu::layerNorm(const float *x, int64_t rows, int64_t width,
                    const float *gamma, const float *beta, float eps,
                    float *y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * width;
    // Two passes in double: the mean first, then the centred variance, which
    // stays accurate when the mean is large against the spread.
    double mean = 0;
    for (int64_t i = 0; i < width; ++i)
      mean += row[i];
    mean /= width;
    double var = 0;
    for (int64_t i = 0; i < width; ++i)
      var += (row[i] - mean) * (row[i] - mean);
    var /= width;
    float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    float *outRow = y + r * width;
    for (int64_t i = 0; i < width; ++i)
      outRow[i] = (row[i] - static_cast<float>(mean)) * inv * gamma[i] + beta[i];
  }
}

void cpu::softmax(float *x, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    float *row = x + r * width;
    float max = *std::max_element(row, row + width);
    double sum = 0;
    for (int64_t i = 0; i < width; ++i) {
      row[i] = std::exp(row[i] - max);
      sum += row[i];
    }
    float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < width; ++i)
      row[i] *= inv;
  }
}

void cpu::attentionMask(float *scores, int64_t batch, int64_t heads,
                        int64_t queries, int64_t keys,
                        const int64_t *paddingMask, bool causal) {
  const float lowest = std::numeric_limits<float>::lowest();
  int64_t offset = keys - queries; // keys already cached before the queries
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t q = 0; q < queries; ++q) {
        float *row = scores + ((b * heads + h) * queries + q) * keys;
        for (int64_t k = 0; k < keys; ++k)
          if ((paddingMask && paddingMask[b * keys + k] == 0) ||
              (causal && k > q + offset))
            row[k] = lowest;
      }
}

Status cpu::embedding(const float *table, int64_t rows, int64_t width,
                      const int64_t *ids, int64_t count, float *out) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= rows)
      return Status::error("token id " + std::to_string(ids[i]) +
                           " at position " + std::to_string(i) +
                           " is outside the vocabulary [0, " +
                           std::to_string(rows) + ")");
    std::memcpy(out + i * width, table + ids[i] * width, width * sizeof(float));
  }
  return Status::success();
}

void cpu::swapMiddleAxes(const float *x, int64_t a, int64_t b, int64_t c,
                         int64_t d, float *y) {
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t k = 0; k < c; ++k)
        std::memcpy(y + ((i * c + k) * b + j) * d, x + ((i * b + j) * c + k) * d,
                    d * sizeof(float));
}
