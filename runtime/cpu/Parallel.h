//===- Parallel.h - split a kernel's rows across cores ---------*- C++ -*-===//
//
// GEMMs are threaded inside OpenBLAS; everything else a plan runs
// (LayerNorm, softmax, GELU, adds) is split here. Both run on the same
// OpenMP team: the runtime links OpenBLAS's OpenMP build, so its GEMM
// threads and ours are one set of threads, never two pools spinning for the
// same cores (with the pthreads build a second pool made LayerNorm and the
// adds 2x slower than doing them on one core).
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CPU_PARALLEL_H
#define MEGATRON_RUNTIME_CPU_PARALLEL_H

#include <cstdint>
#include <functional>

namespace megatron::runtime::cpu {

/// Threads for kernels and GEMMs from now on, process-wide; 0 means all
/// cores.
void setThreads(int threads);
int threads();

/// Calls fn(begin, end) on disjoint ranges covering [0, count), each at
/// least `grain` long unless there is only one, and returns when all are
/// done.
void parallelFor(int64_t count, int64_t grain,
                 const std::function<void(int64_t, int64_t)> &fn);

} // namespace megatron::runtime::cpu

#endif // MEGATRON_RUNTIME_CPU_PARALLEL_H
