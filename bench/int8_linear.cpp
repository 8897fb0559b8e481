//===- int8_linear.cpp - int8-weight linear layers against f32 ones -------===//
//
// megatron-int8-linear-bench [--threads N] [--group G] [--rows R,R,...]
//                             [--shape IN,OUT] [--quantized-rows 1]
//
// Times cpu::linearInt8 (with --quantized-rows 1:
// cpu::linearInt8QuantizedRows, x quantized too) against the f32 path
// (cpu::linear: below 32 rows the same register kernel on f32 weights where
// the CPU has AVX-512, else OpenBLAS or oneDNN) at the linear layers of
// GPT-2/BERT-345M.
// Each call reads a different copy of the weight, and the copies together
// exceed the last-level cache, so the weight comes from memory as it does
// in a forward (345M parameters are far larger than any cache). A streaming
// read on the same threads gives the bandwidth the GEMVs are judged by.
//
//===----------------------------------------------------------------------===//

#include "bench/MemoryBandwidth.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"
#include "runtime/cpu/QuantizedLinear.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace megatron::runtime;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point begin) {
  return std::chrono::duration<double>(Clock::now() - begin).count();
}

/// Seconds per call of fn(copy), cycling through `copies` weights: the best
/// of seven rounds of at least 50 ms, which keeps out time the cores spent
/// on other work.
template <typename Fn> double timeCalls(int copies, Fn fn) {
  for (int i = 0; i < copies; ++i)
    fn(i);
  auto probe = Clock::now();
  fn(0);
  int calls = std::clamp(static_cast<int>(0.05 / std::max(seconds(probe), 1e-7)), 3, 2000);
  double best = 1e30;
  for (int round = 0; round < 7; ++round) {
    auto begin = Clock::now();
    for (int i = 0; i < calls; ++i)
      fn(i % copies);
    best = std::min(best, seconds(begin) / calls);
  }
  return best;
}

int copiesFor(size_t bytes) {
  const size_t target = size_t(256) << 20; // 8x the 32 MiB L3
  return static_cast<int>(std::max<size_t>(2, (target + bytes - 1) / bytes));
}

std::vector<int64_t> parseList(const char *text) {
  std::vector<int64_t> values;
  for (const char *p = text; *p;) {
    values.push_back(std::atoll(p));
    p = std::strchr(p, ',');
    if (!p)
      break;
    ++p;
  }
  return values;
}

} // namespace

int main(int argc, char **argv) {
  int threads = 2;
  int64_t group = 0; // 0: one scale per output channel
  bool quantizedRows = false;
  std::vector<int64_t> rowCounts = {1, 8, 128, 512};
  std::vector<std::vector<int64_t>> shapes = {
      {1024, 3072}, {1024, 1024}, {1024, 4096}, {4096, 1024}, {1024, 50304}};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (flag == "--group")
      group = std::atoll(argv[i + 1]);
    else if (flag == "--rows")
      rowCounts = parseList(argv[i + 1]);
    else if (flag == "--quantized-rows")
      quantizedRows = std::atoi(argv[i + 1]) != 0;
    else if (flag == "--shape" && parseList(argv[i + 1]).size() == 2)
      shapes = {parseList(argv[i + 1])};
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--group G] [--rows R,R,...] [--shape IN,OUT]"
                   " [--quantized-rows 1]\n",
                   argv[0]);
      return 2;
    }
  }
  cpu::setThreads(threads);
  if (quantizedRows && group) {
    std::fprintf(stderr, "--quantized-rows takes per-channel scales (no --group)\n");
    return 2;
  }

  double bandwidth = megatron::bench::readBandwidth();
  std::printf("threads %d, streaming read %.1f GB/s, scales %s%s\n", threads, bandwidth / 1e9,
              group ? ("per " + std::to_string(group) + " weights").c_str() : "per channel",
              quantizedRows ? ", x quantized per row" : "");
  std::printf("%6s %6s %5s | %10s %10s %7s | %9s %9s %8s\n", "in", "out", "rows", "int8 ms",
              "f32 ms", "speedup", "int8 GB/s", "f32 GB/s", "int8/bw");

  std::mt19937 rng(1);
  for (const auto &shape : shapes) {
    const int64_t in = shape[0], out = shape[1], size = in * out;
    const int64_t groupSize = group ? group : in;
    const int64_t groups = in / groupSize;
    const int qCopies = copiesFor(size), fCopies = copiesFor(size * sizeof(float));
    std::vector<int8_t> q(size * qCopies);
    std::vector<float> scales(out * groups * qCopies), w(size * fCopies);
    std::uniform_int_distribution<int> qDist(-127, 127);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (int8_t &v : q)
      v = static_cast<int8_t>(qDist(rng));
    for (float &v : scales)
      v = 0.01f * (1.0f + uniform(rng));
    for (float &v : w)
      v = uniform(rng);
    for (int64_t rows : rowCounts) {
      std::vector<float> x(rows * in), y(rows * out);
      for (float &v : x)
        v = uniform(rng);
      double int8Time = timeCalls(qCopies, [&](int i) {
        const int8_t *qi = q.data() + i * size;
        const float *si = scales.data() + i * out * groups;
        if (quantizedRows)
          cpu::linearInt8QuantizedRows(x.data(), rows, in, qi, si, nullptr, out, 0.0f, y.data());
        else
          cpu::linearInt8(x.data(), rows, in, qi, si, groupSize, nullptr, false, nullptr, out,
                          0.0f, y.data());
      });
      double f32Time = timeCalls(fCopies, [&](int i) {
        cpu::linear(x.data(), rows, in, w.data() + i * size, nullptr, out, y.data());
      });
      double int8Rate = size / int8Time, f32Rate = size * sizeof(float) / f32Time;
      std::printf("%6lld %6lld %5lld | %10.3f %10.3f %6.2fx | %9.1f %9.1f %7.0f%%\n",
                  static_cast<long long>(in), static_cast<long long>(out),
                  static_cast<long long>(rows), int8Time * 1e3, f32Time * 1e3,
                  f32Time / int8Time, int8Rate / 1e9, f32Rate / 1e9, 100 * int8Rate / bandwidth);
    }
  }
  return 0;
}
