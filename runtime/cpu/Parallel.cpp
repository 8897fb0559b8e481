//===- Parallel.cpp - split a kernel's rows across cores ------------------===//

#include "runtime/cpu/Parallel.h"
#include "runtime/cpu/Blas.h"

#include <omp.h>

#include <algorithm>
#include <thread>

using namespace megatron::runtime;

void cpu::setThreads(int threads) {
  if (threads <= 0)
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  omp_set_num_threads(threads);
  setBlasThreads(threads);
}

int cpu::threads() { return omp_get_max_threads(); }

void cpu::parallelFor(int64_t count, int64_t grain,
                      const std::function<void(int64_t, int64_t)> &fn) {
  if (count <= 0)
    return;
  grain = std::max<int64_t>(grain, 1);
  int parts = static_cast<int>(
      std::min<int64_t>(omp_get_max_threads(), (count + grain - 1) / grain));
  if (parts <= 1) {
    fn(0, count);
    return;
  }
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part)
    fn(count * part / parts, count * (part + 1) / parts);
}
