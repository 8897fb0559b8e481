//===- Kernels.cpp - CPU kernels for the plan's steps ---------------------===//

#include "megatron/runtime/Half.h"
#include "runtime/cpu/Blas.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"
#include "runtime/cpu/QuantizedLinear.h"


#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

using namespace megatron::runtime;
using namespace megatron::runtime::cpu;

namespace {
void openBlasGemm(const float *x, int64_t rows, int64_t in, const float *w, int64_t out,
                  float beta, float *y) {
  blas().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, beta,
               y, out);
}

/// From this many rows on, a GEMM shape goes to whichever of OpenBLAS and
/// oneDNN multiplies it faster. On 2 Zen 4 cores at 128 rows oneDNN is 1.25x
/// faster with 4096 outputs or inputs, OpenBLAS 1.1-2x with 1024 or 3072.
constexpr int64_t kMeasuredMinRows = 32;

/// Whether oneDNN multiplies this shape faster than OpenBLAS, measured the
/// first time the calling thread meets it: best of three runs each, into y
/// when beta is 0 (the real call overwrites it) or else into a scratch
/// buffer (only for shapes of at most 64 MiB of results; larger stay with
/// OpenBLAS). Row counts share a decision up to the next power of two, so
/// prompts of many lengths do not each pay for a measurement.
bool oneDnnIsFaster(const float *x, int64_t rows, int64_t in, const float *w, int64_t out,
                    float beta, float *y) {
  thread_local std::map<std::tuple<int64_t, int64_t, int64_t>, bool> faster;
  int64_t bucket = 1;
  while (bucket < rows)
    bucket *= 2;
  auto found = faster.find({bucket, in, out});
  if (found != faster.end())
    return found->second;
  std::vector<float> scratch;
  if (beta != 0.0f) {
    if (rows * out > (int64_t(16) << 20))
      return false;
    scratch.resize(rows * out);
    y = scratch.data();
  }
  bool &choice = faster[{bucket, in, out}];
  choice = false;
  // Untimed: builds oneDNN's kernel for the shape.
  if (!dnnl::matmulF32(x, rows, in, w, out, {}, y))
    return false;
  auto best = [&](auto run) {
    double seconds = 1e30;
    for (int i = 0; i < 3; ++i) {
      auto start = std::chrono::steady_clock::now();
      run();
      seconds = std::min(seconds, std::chrono::duration<double>(
                                      std::chrono::steady_clock::now() - start).count());
    }
    return seconds;
  };
  double openBlas = best([&] { openBlasGemm(x, rows, in, w, out, 0.0f, y); });
  double oneDnn = best([&] { dnnl::matmulF32(x, rows, in, w, out, {}, y); });
  choice = oneDnn < openBlas;
  return choice;
}

/// y = x w^T through the epilogue (no scales). Fewer rows than
/// kMeasuredMinRows (decode, short prompts) go to the register kernel that
/// reads the weight once (linearF32FewRows): OpenBLAS 0.3.21 packs the whole
/// weight on every sgemm call, even for one row (so without AVX-512 one row
/// takes its sgemv).
/// A weight packed for oneDNN goes there from kMeasuredMinRows rows
/// unmeasured: packed, oneDNN beat OpenBLAS at every BERT-345M shape on Zen
/// 4 (by 1.1-1.3x at 128 rows, 1.1-1.2x at 4096).
void gemm(const float *x, int64_t rows, int64_t in, const float *w,
          const dnnl::PackedWeight *packed, int64_t out, const dnnl::Epilogue &epilogue,
          float *y) {
  if (rows >= kMeasuredMinRows && packed &&
      dnnl::matmulF32(x, rows, in, *packed, out, epilogue, y))
    return;
  if (rows >= kMeasuredMinRows &&
      oneDnnIsFaster(x, rows, in, w, out, epilogue.accumulate ? 1.0f : 0.0f, y) &&
      dnnl::matmulF32(x, rows, in, w, out, epilogue, y))
    return;
  float beta = epilogue.accumulate ? 1.0f : 0.0f;
  if (rows < kMeasuredMinRows && linearF32FewRows(x, rows, in, w, epilogue.bias, out, beta, y)) {
    if (epilogue.gelu)
      geluInPlace(y, rows, out, *epilogue.gelu);
    return;
  }
  // OpenBLAS adds the product to the bias (and what y held), GELU follows.
  if (epilogue.bias) {
    parallelFor(rows, std::max<int64_t>(1, 16384 / out), [&](int64_t begin, int64_t end) {
      for (float *row = y + begin * out; row < y + end * out; row += out)
        if (beta != 0.0f)
          add(row, epilogue.bias, out, 0, out, row);
        else
          std::memcpy(row, epilogue.bias, out * sizeof(float));
    });
    beta = 1.0f;
  }
  if (rows == 1)
    blas().sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, beta, y, 1);
  else
    openBlasGemm(x, rows, in, w, out, beta, y);
  if (epilogue.gelu)
    geluInPlace(y, rows, out, *epilogue.gelu);
}
} // namespace

void cpu::linear(const float *x, int64_t rows, int64_t in, const Weights &w,
                 const float *bias, int64_t out, float *y, std::optional<GeluKind> gelu) {
  if (w.i8 && w.int8Input)
    return linearInt8QuantizedRows(x, rows, in, w.i8, w.scales, bias, out, 0.0f, y, gelu);
  if (w.i8)
    return linearInt8(x, rows, in, w.i8, w.scales, in / w.groups, w.packed, w.int16Rows, bias,
                      out, 0.0f, y, gelu);
  if (w.bf16)
    return linearBf16(x, rows, in, w.bf16, w.packed, bias, out, 0.0f, y, gelu);
  gemm(x, rows, in, w.f32, w.packed, out, {nullptr, bias, gelu, false}, y);
}

void cpu::linearAccumulate(const float *x, int64_t rows, int64_t in, const Weights &w,
                           int64_t out, float *y) {
  if (w.i8 && w.int8Input)
    return linearInt8QuantizedRows(x, rows, in, w.i8, w.scales, nullptr, out, 1.0f, y);
  if (w.i8)
    return linearInt8(x, rows, in, w.i8, w.scales, in / w.groups, w.packed, w.int16Rows,
                      nullptr, out, 1.0f, y);
  if (w.bf16)
    return linearBf16(x, rows, in, w.bf16, w.packed, nullptr, out, 1.0f, y);
  gemm(x, rows, in, w.f32, w.packed, out, {nullptr, nullptr, std::nullopt, true}, y);
}

void cpu::geluInPlace(float *y, int64_t rows, int64_t cols, GeluKind kind) {
  parallelFor(rows * cols, 16384, [&](int64_t begin, int64_t end) {
    gelu(y + begin, end - begin, kind, y + begin);
  });
}

void cpu::batchedMatmul(const float *a, const float *b, int64_t batch,
                        int64_t m, int64_t k, int64_t n, bool transposeB,
                        int64_t bStride, float *c) {
  // Attention's matrices (one per head) are too small to split inside the
  // GEMM; one per thread instead (OpenBLAS keeps a call made inside a
  // parallel region on its caller's thread).
  parallelFor(batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      blas().sgemm(CblasRowMajor, CblasNoTrans,
                  transposeB ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                  a + i * m * k, k, b + i * bStride, transposeB ? k : n, 0.0f,
                  c + i * m * n, n);
  });
}

void cpu::add(const float *a, const float *b, int64_t period, int64_t begin,
              int64_t end, float *y) {
  // Segment by segment rather than b[i % period]: a division per element
  // costs more than the add.
  for (int64_t i = begin; i < end;) {
    int64_t j = i % period, run = std::min(end - i, period - j);
    const float *bj = b + j;
    for (int64_t k = 0; k < run; ++k)
      y[i + k] = a[i + k] + bj[k];
    i += run;
  }
}

void cpu::attentionMask(float *scores, int64_t heads, int64_t queries,
                        int64_t keys, const int64_t *paddingMask, bool causal,
                        int64_t rowBegin, int64_t rowEnd) {
  const float lowest = std::numeric_limits<float>::lowest();
  int64_t offset = keys - queries; // keys already cached before the queries
  for (int64_t r = rowBegin; r < rowEnd; ++r) {
    int64_t b = r / (heads * queries), q = r % queries;
    float *row = scores + r * keys;
    if (paddingMask)
      for (int64_t k = 0; k < keys; ++k)
        if (paddingMask[b * keys + k] == 0)
          row[k] = lowest;
    if (causal)
      std::fill(row + std::min(keys, std::max<int64_t>(q + offset + 1, 0)),
                row + keys, lowest);
  }
}

Status cpu::embedding(const Weights &table, int64_t rows, int64_t width,
                      const int64_t *ids, int64_t count, float *out,
                      int64_t rowOffset, int64_t numIds) {
  if (numIds < 0)
    numIds = rowOffset + rows;
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || ids[i] >= numIds)
      return Status::error("token id " + std::to_string(ids[i]) +
                           " at position " + std::to_string(i) +
                           " is outside the vocabulary [0, " +
                           std::to_string(numIds) + ")");
    int64_t row = ids[i] - rowOffset;
    if (row >= 0 && row < rows && table.f32) {
      std::memcpy(out + i * width, table.f32 + row * width, width * sizeof(float));
    } else if (row >= 0 && row < rows && table.bf16) {
      for (int64_t k = 0; k < width; ++k)
        out[i * width + k] = bfloat16ToFloat(table.bf16[row * width + k]);
    } else if (row >= 0 && row < rows) {
      const int8_t *values = table.i8 + row * width;
      const float *scales = table.scales + row * table.groups;
      int64_t group = width / table.groups;
      for (int64_t k = 0; k < width; ++k)
        out[i * width + k] = values[k] * scales[k / group];
    } else
      std::fill(out + i * width, out + (i + 1) * width, 0.0f);
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
