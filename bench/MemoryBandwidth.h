//===- MemoryBandwidth.h - the machine's streaming read rate ---*- C++ -*-===//
//
// What a memory-bound kernel is judged by: bytes per second of a sum over a
// buffer far larger than the caches, split across the runtime's threads as
// the kernels are. Shared by megatron-bench (the decode roofline) and
// megatron-int8-linear-bench.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_BENCH_MEMORYBANDWIDTH_H
#define MEGATRON_BENCH_MEMORYBANDWIDTH_H

#include "runtime/cpu/Parallel.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace megatron::bench {

/// Bytes per second: the best of five passes over 1 GiB.
inline double readBandwidth() {
  using namespace megatron::runtime;
  const int64_t count = int64_t(1) << 28; // 1 GiB of floats
  std::vector<float> data(count);
  cpu::parallelFor(count, 1 << 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      data[i] = static_cast<float>(i & 7);
  });
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<float> partial(cpu::threads() * 16); // a cache line apart
    auto begin = std::chrono::steady_clock::now();
    cpu::parallelFor(count, 1 << 20, [&](int64_t begin, int64_t end) {
      // Eight independent sums, so the adds keep up with memory.
      float sums[8] = {};
      for (int64_t i = begin; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; ++j)
          sums[j] += data[i + j];
      float total = 0;
      for (float s : sums)
        total += s;
      partial[16 * (begin * cpu::threads() / count)] = total;
    });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    for (float p : partial)
      if (p < 0) // keeps the sums alive
        std::printf("%f\n", p);
    best = std::max(best, count * sizeof(float) / s);
  }
  return best;
}

} // namespace megatron::bench

#endif // MEGATRON_BENCH_MEMORYBANDWIDTH_H
