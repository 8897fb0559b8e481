//===- CudaKernelsTest.cpp - the generated PTX on a GPU -------------------===//
//
// Loads the PTX an artifact compiled with --target cuda carries, launches
// each kernel of the library through the driver API and compares with the
// CPU kernels. Without a GPU (CI) the device cannot open: that must be a
// clear error, and the kernel tests are skipped; on a GPU machine
// (scripts/gpu-check.sh) they run.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Artifact.h"
#include "megatron/runtime/Half.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/KernelShapes.h"
#include "test/unit/runtime/CudaTestArtifacts.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using namespace megatron;
using namespace megatron::runtime;

namespace {

class CudaKernels : public ::testing::Test {
protected:
  void SetUp() override {
    Status s = cuda::Device::open(0, device);
    if (!s.ok())
      GTEST_SKIP() << "no GPU here: " << s.message();
    std::unique_ptr<Artifact> artifact;
    s = Artifact::open(cudaTestArtifact("gpt2-cuda.mtc"), artifact);
    ASSERT_TRUE(s.ok()) << s.message();
    std::vector<KernelModuleInfo> modules = artifact->kernelModules();
    const KernelModuleInfo *best = cuda::moduleFor(modules, device->arch());
    ASSERT_TRUE(best) << "no PTX for " << device->arch() << " or older";
    s = device->loadModule(best->ptx);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  uint64_t upload(const void *data, size_t bytes) {
    uint64_t p = 0;
    EXPECT_TRUE(device->allocate(bytes, p).ok());
    EXPECT_TRUE(device->copyToDevice(p, data, bytes).ok());
    pointers.push_back(p);
    return p;
  }
  /// Launches a kernel of signature (x, y, n), one thread per element.
  Status launchElementwise(const char *name, uint64_t x, uint64_t y, int64_t n) {
    cuda::MemRef1D mx(x, n), my(y, n);
    std::vector<void *> params;
    mx.append(params);
    my.append(params);
    params.push_back(&n);
    unsigned grid[3] = {unsigned((n + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
    return device->launch(name, grid, block, 0, params);
  }
  /// The operands linear_int8 and matmul_w8a16 take: x and q as vectors
  /// of four (f32, words) or words (of 16-bit pairs, of four int8).
  struct Int8Linear {
    uint64_t x, q, scales, bias, addend, y;
    int64_t xElements, qElements, rows, in, out, group;
    uint8_t hasBias, hasAddend;
  };
  Status launchInt8Linear(const char *kernel, unsigned blocks, Int8Linear l) {
    cuda::MemRef1D mx(l.x, l.xElements), mq(l.q, l.qElements),
        ms(l.scales, l.out * l.in / l.group), mb(l.bias, l.out), ma(l.addend, l.rows * l.out),
        my(l.y, l.rows * l.out);
    std::vector<void *> params;
    for (cuda::MemRef1D *m : {&mx, &mq, &ms, &mb, &ma, &my})
      m->append(params);
    for (int64_t *v : {&l.rows, &l.in, &l.out, &l.group})
      params.push_back(v);
    params.push_back(&l.hasBias);
    params.push_back(&l.hasAddend);
    static_assert(kInt8GemvThreads == kInt8MatmulThreads);
    unsigned grid[3] = {blocks, 1, 1}, block[3] = {unsigned(kInt8GemvThreads), 1, 1};
    return device->launch(kernel, grid, block, 0, params);
  }
  void TearDown() override {
    for (uint64_t p : pointers)
      (void)device->free(p);
  }

  std::unique_ptr<cuda::Device> device;
  std::vector<uint64_t> pointers;
};

std::vector<float> random(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float &x : v)
    x = d(rng);
  return v;
}

TEST(CudaDriver, OpensOrSaysWhyNot) {
  std::unique_ptr<cuda::Device> device;
  Status s = cuda::Device::open(0, device);
  if (s.ok())
    EXPECT_EQ(device->arch().rfind("sm_", 0), 0u);
  else
    EXPECT_TRUE(s.message().find("CUDA") != std::string::npos) << s.message();
}

// Both GELUs, and the copy rounded to f16 / bf16 for a 16-bit linear (bit
// for bit the rounding of the f32 result).
TEST_F(CudaKernels, GeluMatchesTheCpu) {
  const int64_t n = 100003;
  std::vector<float> x = random(n, 1), y(n), want(n);
  std::vector<uint16_t> rounded(n);
  uint64_t dx = upload(x.data(), n * 4), dy = upload(y.data(), n * 4),
           d16 = upload(rounded.data(), n * 2);
  for (auto kind : {cpu::GeluKind::Erf, cpu::GeluKind::Tanh})
    for (int32_t half : {0, 1, 2}) {
      cuda::MemRef1D mx(dx, n), my(dy, n), m16(d16, n);
      int64_t count = n;
      uint8_t tanh = kind == cpu::GeluKind::Tanh;
      std::vector<void *> params;
      for (cuda::MemRef1D *m : {&mx, &my, &m16})
        m->append(params);
      params.push_back(&count);
      params.push_back(&tanh);
      params.push_back(&half);
      unsigned grid[3] = {unsigned((n + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
      Status s = device->launch("gelu", grid, block, 0, params);
      ASSERT_TRUE(s.ok()) << s.message();
      ASSERT_TRUE(device->copyToHost(y.data(), dy, n * 4).ok());
      ASSERT_TRUE(device->copyToHost(rounded.data(), d16, n * 2).ok());
      cpu::gelu(x.data(), n, kind, want.data());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(y[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << int(tanh) << " at " << i;
        if (half) {
          ASSERT_EQ(rounded[i], half == 1 ? floatToHalf(y[i]) : floatToBFloat16(y[i]))
              << "half " << half << " at " << i;
        }
      }
    }
}

TEST_F(CudaKernels, SixteenBitRoundingMatchesTheCpu) {
  const int64_t n = 100003;
  std::vector<float> x = random(n, 7);
  // Ties, specials, and values past f16's range and below its normals.
  x[0] = 1.0f + 1.0f / 256;
  x[1] = 1.0f + 3.0f / 256;
  x[2] = -std::numeric_limits<float>::infinity();
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[4] = 70000.0f;
  x[5] = -1e-6f;
  x[6] = 1.0f + 1.0f / 2048; // an f16 tie
  for (auto [kernel, f16] : {std::pair{"to_bf16", false}, std::pair{"to_f16", true}}) {
    std::vector<uint16_t> y(n), want(n);
    uint64_t dx = upload(x.data(), n * 4), dy = upload(y.data(), n * 2);
    Status s = launchElementwise(kernel, dx, dy, n);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(device->copyToHost(y.data(), dy, n * 2).ok());
    for (int64_t i = 0; i < n; ++i)
      want[i] = f16 ? floatToHalf(x[i]) : floatToBFloat16(x[i]);
    uint16_t exponent = f16 ? 0x7c00 : 0x7f80;
    EXPECT_TRUE((y[3] & exponent) == exponent && (y[3] & ~(exponent | 0x8000)) != 0)
        << kernel << ": NaN stays NaN";
    y[3] = want[3] = 0;
    EXPECT_EQ(y, want) << kernel;
  }
}

// And the LayerNorm's 16-bit copy for a 16-bit linear (%half 1: f16, 2:
// bf16): its result rounded to nearest even, bit for bit.
TEST_F(CudaKernels, AddThenLayerNormMatchesTheCpu) {
  const int64_t rows = 37, cols = 1000;
  std::vector<float> a = random(rows * cols, 2), b = random(rows * cols, 3),
                     gamma = random(cols, 4), beta = random(cols, 5);
  std::vector<float> sum(rows * cols), out(rows * cols), wantSum(rows * cols),
      wantOut(rows * cols);
  std::vector<uint16_t> rounded(rows * cols);
  uint64_t da = upload(a.data(), a.size() * 4), db = upload(b.data(), b.size() * 4),
           dg = upload(gamma.data(), cols * 4), dbeta = upload(beta.data(), cols * 4),
           ds = upload(sum.data(), sum.size() * 4), dout = upload(out.data(), out.size() * 4),
           d16 = upload(rounded.data(), rounded.size() * 2);
  cuda::MemRef1D ma(da, rows * cols), mb(db, rows * cols), mg(dg, cols), mbeta(dbeta, cols),
      ms(ds, rows * cols), mo(dout, rows * cols), m16(d16, rows * cols);
  int64_t n = rows * cols, width = cols;
  float eps = 1e-5f;
  std::vector<void *> add;
  for (cuda::MemRef1D *m : {&ma, &mb, &ms})
    m->append(add);
  add.push_back(&n);
  add.push_back(&n);
  unsigned addGrid[3] = {unsigned((n + 255) / 256), 1, 1}, addBlock[3] = {256, 1, 1};
  unsigned grid[3] = {unsigned(rows), 1, 1}, block[3] = {128, 1, 1};
  ASSERT_TRUE(device->launch("add", addGrid, addBlock, 0, add).ok());
  cpu::add(a.data(), b.data(), rows * cols, 0, rows * cols, wantSum.data());
  cpu::layerNorm(wantSum.data(), rows, cols, gamma.data(), beta.data(), eps, wantOut.data());
  for (int32_t half : {0, 1, 2}) {
    std::vector<void *> norm;
    for (cuda::MemRef1D *m : {&ms, &mg, &mbeta, &mo, &m16})
      m->append(norm);
    norm.push_back(&width);
    norm.push_back(&eps);
    norm.push_back(&half);
    Status s = device->launch("layer_norm", grid, block, 0, norm);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(device->copyToHost(sum.data(), ds, sum.size() * 4).ok());
    ASSERT_TRUE(device->copyToHost(out.data(), dout, out.size() * 4).ok());
    ASSERT_TRUE(device->copyToHost(rounded.data(), d16, rounded.size() * 2).ok());
    for (int64_t i = 0; i < rows * cols; ++i) {
      ASSERT_NEAR(sum[i], wantSum[i], 1e-5f * (1 + std::fabs(wantSum[i]))) << i;
      ASSERT_NEAR(out[i], wantOut[i], 1e-4f * (1 + std::fabs(wantOut[i]))) << i;
      if (half) {
        ASSERT_EQ(rounded[i], half == 1 ? floatToHalf(out[i]) : floatToBFloat16(out[i]))
            << "half " << half << " at " << i;
      }
    }
  }
}

// quantize_rows against the CPU's row quantization for W8A8, bit for bit:
// q = x * (127 / max|x|) rounded to the nearest (ties to even), clamped,
// times max|x| / 127. Rows of ties, of zeros, with infinity or NaN (all
// NaN), and a random row longer than a block's threads.
TEST_F(CudaKernels, QuantizeRowsMatchesTheCpu) {
  const int64_t cols = 300;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  std::vector<std::vector<float>> rows = {{127, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 126.5f},
                                          {0, 0, 0},
                                          {1, -inf, 2},
                                          {1, nan, 2},
                                          random(cols, 31)};
  std::vector<float> x(rows.size() * cols, 0.0f), y(x.size());
  for (size_t r = 0; r < rows.size(); ++r)
    std::copy(rows[r].begin(), rows[r].end(), x.begin() + r * cols);
  uint64_t dx = upload(x.data(), x.size() * 4), dy = upload(y.data(), y.size() * 4);
  cuda::MemRef1D mx(dx, int64_t(x.size())), my(dy, int64_t(y.size()));
  int64_t width = cols;
  std::vector<void *> params;
  mx.append(params);
  my.append(params);
  params.push_back(&width);
  unsigned grid[3] = {unsigned(rows.size()), 1, 1}, block[3] = {256, 1, 1};
  ASSERT_TRUE(device->launch("quantize_rows", grid, block, 0, params).ok());
  ASSERT_TRUE(device->copyToHost(y.data(), dy, y.size() * 4).ok());
  for (size_t r = 0; r < rows.size(); ++r) {
    const float *row = x.data() + r * cols;
    float largest = 0;
    for (int64_t k = 0; k < cols; ++k)
      largest = std::isnan(row[k]) ? row[k] : std::max(largest, std::fabs(row[k]));
    float inverse = largest > 0 ? 127.0f / largest : 0.0f, scale = largest / 127.0f;
    for (int64_t k = 0; k < cols; ++k) {
      float got = y[r * cols + k];
      if (!std::isfinite(largest)) {
        EXPECT_TRUE(std::isnan(got)) << "row " << r << " at " << k;
        continue;
      }
      float product = row[k] * inverse; // rounded to f32 before its rounding to an integer
      float q = std::clamp(std::nearbyint(product), -127.0f, 127.0f);
      ASSERT_EQ(got, q * scale) << "row " << r << " at " << k;
    }
  }
}

/// A random int8 matrix [out, in] with positive scales per `group` columns.
struct Int8Matrix {
  int64_t out, in, group;
  std::vector<int8_t> q;
  std::vector<float> scales;
  Int8Matrix(int64_t out, int64_t in, int64_t group, unsigned seed)
      : out(out), in(in), group(group), q(out * in), scales(random(out * (in / group), seed)) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> value(-127, 127);
    for (int8_t &v : q)
      v = static_cast<int8_t>(value(rng));
    q[0] = -128; // the sign of a full byte
    for (float &v : scales)
      v = std::fabs(v) / 64;
  }
  float weight(int64_t o, int64_t k) const {
    return float(q[o * in + k]) * scales[o * (in / group) + k / group];
  }
};

// linear_int8 (1 to 8 rows, bias and residual) against a double-precision
// product of the dequantized weights: 240 columns (15 vectors of 16: lanes
// with none) in groups of 20 (a scale per word), 256 in groups of 32 (a
// scale per vector), and a row of 2304 columns, more than a chunk of the
// row (2048) takes, per channel.
TEST_F(CudaKernels, Int8GemvMatchesADoubleReference) {
  const int64_t maxRows = 8;
  // Partial lanes and per-word scales; per-vector scales; two chunks of a
  // row; two chunks with groups of 128 (the usual --group-size).
  for (Int8Matrix w : {Int8Matrix(77, 240, 20, 9), Int8Matrix(40, 256, 32, 15),
                       Int8Matrix(6, 2304, 2304, 10), Int8Matrix(5, 4096, 128, 16)}) {
    SCOPED_TRACE(std::to_string(w.in) + " columns");
    std::vector<float> bias = random(w.out, 11), x = random(maxRows * w.in, 12),
                       addend = random(maxRows * w.out, 13), y(maxRows * w.out);
    uint64_t dq = upload(w.q.data(), w.q.size()), ds = upload(w.scales.data(), w.scales.size() * 4),
             db = upload(bias.data(), bias.size() * 4), dx = upload(x.data(), x.size() * 4),
             da = upload(addend.data(), addend.size() * 4), dy = upload(y.data(), y.size() * 4);
    for (int64_t rows = 1; rows <= maxRows; ++rows) {
      uint8_t hasBias = rows != 2, hasAddend = rows % 2; // with and without either
      const int64_t perBlock = kInt8GemvThreads / 32; // a warp per channel
      Status s = launchInt8Linear("linear_int8", unsigned((w.out + perBlock - 1) / perBlock),
                                  {dx, dq, ds, db, da, dy, rows * w.in / 4, w.out * w.in / 16, rows,
                                   w.in, w.out, w.group, hasBias, hasAddend});
      ASSERT_TRUE(s.ok()) << s.message();
      ASSERT_TRUE(device->copyToHost(y.data(), dy, rows * w.out * 4).ok());
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < w.out; ++c) {
          double want = (hasBias ? bias[c] : 0.0) + (hasAddend ? addend[i * w.out + c] : 0.0);
          double magnitude = std::fabs(want);
          for (int64_t k = 0; k < w.in; ++k) {
            double term = double(x[i * w.in + k]) * w.weight(c, k);
            want += term;
            magnitude += std::fabs(term);
          }
          ASSERT_NEAR(y[i * w.out + c], want, 1e-5 * magnitude + 1e-6)
              << rows << " rows, row " << i << ", channel " << c;
        }
    }
  }
}

// dequantize_int8: widened to f32 (exact), and rounded to f16 and bf16 (to
// nearest even), as the CPU rounds.
TEST_F(CudaKernels, DequantizeInt8MatchesTheCpu) {
  Int8Matrix w(77, 200, 20, 14);
  std::vector<float> wide(w.out * w.in);
  std::vector<uint16_t> narrow(w.out * w.in);
  uint64_t dq = upload(w.q.data(), w.q.size()), ds = upload(w.scales.data(), w.scales.size() * 4),
           dw = upload(wide.data(), wide.size() * 4), dn = upload(narrow.data(), narrow.size() * 2);
  for (int32_t half : {0, 1, 2}) {
    int64_t n = w.out * w.in, columns = w.in, g = w.group;
    cuda::MemRef1D mq(dq, n), ms(ds, int64_t(w.scales.size())), mw(dw, n), mn(dn, n);
    std::vector<void *> params;
    for (cuda::MemRef1D *m : {&mq, &ms, &mw, &mn})
      m->append(params);
    for (int64_t *v : {&n, &columns, &g})
      params.push_back(v);
    params.push_back(&half);
    unsigned grid[3] = {unsigned((n + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
    Status s = device->launch("dequantize_int8", grid, block, 0, params);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(device->copyToHost(wide.data(), dw, wide.size() * 4).ok());
    ASSERT_TRUE(device->copyToHost(narrow.data(), dn, narrow.size() * 2).ok());
    for (int64_t i = 0; i < n; ++i) {
      float exact = w.weight(i / w.in, i % w.in);
      if (half == 0) {
        ASSERT_EQ(wide[i], exact) << i;
      } else {
        ASSERT_EQ(narrow[i], half == 1 ? floatToHalf(exact) : floatToBFloat16(exact))
            << "half " << half << " at " << i;
      }
    }
  }
}

// matmul_w8a16 (9 to 32 rows of a 16-bit x; bias and residual) against a
// double-precision product of x rounded to the 16-bit type and the
// weights dequantized and rounded to it, as the kernel multiplies them:
// each product is exact in f32, so what differs is the order of the f32
// sums. 77 channels (a partial block), 208 columns (13 steps of 16, which
// four warps do not split evenly), per-channel scales and groups of 8.
TEST_F(CudaKernels, Int8MatmulMatchesADoubleReference) {
  const int64_t out = 77, maxRows = 32;
  std::vector<float> bias = random(out, 22), addend = random(maxRows * out, 24), y(maxRows * out);
  uint64_t db = upload(bias.data(), out * 4), da = upload(addend.data(), addend.size() * 4),
           dy = upload(y.data(), y.size() * 4);
  // Per channel; groups of 8 and of 32; 48 columns, fewer steps than warps.
  for (auto [in, group] : {std::pair<int64_t, int64_t>{208, 208}, {208, 8}, {256, 32}, {48, 48}})
    for (bool bf16 : {false, true}) {
      Int8Matrix w(out, in, group, 21);
      std::vector<float> x = random(maxRows * in, 23);
      auto round = [&](float v) {
        return bf16 ? bfloat16ToFloat(floatToBFloat16(v)) : halfToFloat(floatToHalf(v));
      };
      std::vector<uint16_t> narrowX(x.size());
      for (size_t i = 0; i < x.size(); ++i)
        narrowX[i] = bf16 ? floatToBFloat16(x[i]) : floatToHalf(x[i]);
      uint64_t dq = upload(w.q.data(), w.q.size()),
               ds = upload(w.scales.data(), w.scales.size() * 4),
               dx = upload(narrowX.data(), narrowX.size() * 2);
      for (int64_t rows : {9, 16, 17, 25, 32}) {
        SCOPED_TRACE(std::string(bf16 ? "bf16" : "f16") + ", " + std::to_string(in) +
                     " columns in groups of " + std::to_string(group) + ", " +
                     std::to_string(rows) + " rows");
        uint8_t hasBias = rows % 2, hasAddend = rows != 16;
        Status s = launchInt8Linear(
            bf16 ? "matmul_w8a16_bf16" : "matmul_w8a16_f16",
            unsigned((out + kInt8MatmulChannels - 1) / kInt8MatmulChannels),
            {dx, dq, ds, db, da, dy, rows * in / 2, out * in / 4, rows, in, out, group, hasBias,
             hasAddend});
        ASSERT_TRUE(s.ok()) << s.message();
        ASSERT_TRUE(device->copyToHost(y.data(), dy, rows * out * 4).ok());
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t c = 0; c < out; ++c) {
            double want = (hasBias ? bias[c] : 0.0) + (hasAddend ? addend[i * out + c] : 0.0);
            double magnitude = std::fabs(want);
            for (int64_t k = 0; k < in; ++k) {
              double term = double(round(x[i * in + k])) * round(w.weight(c, k));
              want += term;
              magnitude += std::fabs(term);
            }
            ASSERT_NEAR(y[i * out + c], want, 1e-5 * magnitude + 1e-6)
                << "row " << i << ", channel " << c;
          }
      }
    }
}

// The tensor-core attention of 16-bit artifacts against the CPU's f32
// attention of the same inputs rounded to the 16-bit type: what differs is
// the probabilities' rounding to it (relative 2^-11 in f16, 2^-8 in bf16,
// of a sum bounded by the largest |v|) and the order of the sums. A
// sequence that is not a whole number of 64-query tiles, padding, and a
// causal prefill after cached tokens (a key count no tile divides), whose
// second sequence starts with 140 padded keys: its first queries see no
// key, and average V over their block's keys as the CPU's do.
TEST_F(CudaKernels, FlashAttentionMatchesTheCpu) {
  struct Case {
    int64_t batch, seq, heads, past;
    bool causal, cached;
    int64_t leftPadding = 0; // of the last sequence
  };
  for (bool bf16 : {false, true})
    for (int64_t dim : {64, 128})
      for (Case c : {Case{2, 100, 3, 0, false, false}, Case{2, 70, 2, 131, true, true, 140},
                     Case{1, 128, 2, 0, true, false}}) {
        std::string kernel = std::string("flash_attention_") + (bf16 ? "bf16" : "f16") + "_d" +
                             std::to_string(dim);
        SCOPED_TRACE(kernel + ", seq " + std::to_string(c.seq) + ", past " +
                     std::to_string(c.past));
        const int64_t width = c.heads * dim, keys = c.past + c.seq, capacity = keys + 5;
        auto rounded = [&](std::vector<float> v) {
          for (float &x : v)
            x = bf16 ? bfloat16ToFloat(floatToBFloat16(x)) : halfToFloat(floatToHalf(x));
          return v;
        };
        std::vector<float> qkv = rounded(random(c.batch * c.seq * 3 * width, 20 + dim));
        std::vector<float> kCache = rounded(random(c.batch * c.heads * capacity * dim, 21)),
                           vCache = rounded(random(c.batch * c.heads * capacity * dim, 22));
        std::vector<int64_t> mask(c.batch * keys, 1);
        for (int64_t j = 0; j < keys; j += 7)
          mask[(j % c.batch) * keys + j] = 0; // never a query's only key: j = 0 stays
        mask[0] = 1;
        std::fill_n(mask.end() - keys, c.leftPadding, 0);
        float scale = 1.0f / std::sqrt(float(dim));
        cpu::AttentionShape shape{c.batch, c.seq, c.heads, dim, scale, c.causal};
        std::vector<float> want(c.batch * c.seq * width), got(want.size());
        if (c.cached) {
          shape.past = c.past;
          shape.capacity = capacity;
        }
        // Appends the new keys and values to the caches, which the GPU then
        // reads as the executor's kv_append leaves them.
        cpu::attention(shape, qkv.data(), mask.data(), c.cached ? kCache.data() : nullptr,
                       c.cached ? vCache.data() : nullptr, want.data());
        uint64_t dq = upload(qkv.data(), qkv.size() * 4),
                 dm = upload(mask.data(), mask.size() * 8),
                 dout = upload(got.data(), got.size() * 4);
        uint64_t dk = dq + width * 4, dv = dq + 2 * width * 4;
        int64_t kvBatch = c.seq * 3 * width, kvHead = dim, kvRow = 3 * width;
        if (c.cached) {
          dk = upload(kCache.data(), kCache.size() * 4);
          dv = upload(vCache.data(), vCache.size() * 4);
          kvBatch = c.heads * capacity * dim;
          kvHead = capacity * dim;
          kvRow = dim;
        }
        int64_t past = c.cached ? c.past : 0;
        uint64_t dp = upload(&past, sizeof(past));
        cuda::MemRef1D mq(dq, qkv.size()), mk(dk, 0), mv(dv, 0), mm(dm, mask.size()),
            mo(dout, got.size()), mp(dp, 1);
        int64_t sizes[] = {c.seq, c.heads, dim}, strides[] = {kvBatch, kvHead, kvRow};
        uint8_t causal = c.causal, hasMask = 1;
        std::vector<void *> params;
        for (cuda::MemRef1D *m : {&mq, &mk, &mv, &mm, &mo})
          m->append(params);
        for (int64_t &v : sizes)
          params.push_back(&v);
        mp.append(params);
        for (int64_t &v : strides)
          params.push_back(&v);
        params.push_back(&scale);
        params.push_back(&causal);
        params.push_back(&hasMask);
        unsigned grid[3] = {unsigned(c.batch * c.heads * ((c.seq + 63) / 64)), 1, 1},
                 block[3] = {128, 1, 1};
        Status s = device->launch(kernel.c_str(), grid, block, 0, params);
        ASSERT_TRUE(s.ok()) << s.message();
        ASSERT_TRUE(device->copyToHost(got.data(), dout, got.size() * 4).ok());
        float largest = 0;
        for (const std::vector<float> *v : {&qkv, &vCache})
          for (float x : *v)
            largest = std::max(largest, std::fabs(x));
        float tolerance = 4 * largest * (bf16 ? 1.0f / 256 : 1.0f / 2048);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_NEAR(got[i], want[i], tolerance) << "at " << i;
      }
}

// A vocab-parallel shard's rows (ids of other shards give zeros), from an
// f32 table and from an int8 one with scales in groups of 24 columns.
TEST_F(CudaKernels, VocabParallelEmbeddingMatchesTheCpu) {
  const int64_t rows = 50, width = 96, offset = 50, numIds = 100, group = 24,
                groups = width / group;
  std::vector<float> table = random(rows * width, 6), scales = random(rows * groups, 8);
  std::mt19937 rng(14);
  std::uniform_int_distribution<int> value(-128, 127);
  std::vector<int8_t> q(rows * width);
  for (int8_t &v : q)
    v = static_cast<int8_t>(value(rng));
  std::vector<int64_t> ids = {0, 49, 50, 77, 99, 51, 3};
  int64_t count = static_cast<int64_t>(ids.size());
  uint64_t dt = upload(table.data(), table.size() * 4), dq = upload(q.data(), q.size()),
           ds = upload(scales.data(), scales.size() * 4), di = upload(ids.data(), ids.size() * 8);
  for (bool int8 : {false, true}) {
    std::vector<float> out(count * width), want(count * width);
    uint64_t dout = upload(out.data(), out.size() * 4);
    cuda::MemRef1D mt(dt, rows * width), mq(dq, rows * width), ms(ds, rows * groups),
        mi(di, count), mo(dout, count * width);
    int64_t w = width, r = rows, o = offset, g = int8 ? group : width;
    uint8_t flag = int8;
    std::vector<void *> params;
    for (cuda::MemRef1D *m : {&mt, &mq, &ms, &mi, &mo})
      m->append(params);
    for (int64_t *v : {&w, &r, &o, &g})
      params.push_back(v);
    params.push_back(&flag);
    unsigned grid[3] = {unsigned(count), 1, 1}, block[3] = {64, 1, 1};
    Status s = device->launch("embedding", grid, block, 0, params);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(device->copyToHost(out.data(), dout, out.size() * 4).ok());
    cpu::Weights weights = int8 ? cpu::Weights(q.data(), scales.data(), groups)
                                : cpu::Weights(table.data());
    ASSERT_TRUE(cpu::embedding(weights, rows, width, ids.data(), count, want.data(), offset,
                               numIds)
                    .ok());
    EXPECT_EQ(out, want) << (int8 ? "int8" : "f32");
  }
}

} // namespace
