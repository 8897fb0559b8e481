//===- Blas.h - OpenBLAS, loaded when the first session starts -*- C++ -*-===//
//
// The runtime does not link OpenBLAS: it loads it (the OpenMP build, so its
// GEMM threads are the kernels' threads, see Parallel.h) when a session is
// created. Linked, OpenBLAS reserves 128 MiB of address space per core in
// its load-time constructor, before main, and under an address-space limit
// (ulimit -v) that the reservation does not fit, the constructor retries
// forever: the process hangs without a word. Loaded here, that case is an
// error that says so.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CPU_BLAS_H
#define MEGATRON_RUNTIME_CPU_BLAS_H

#include "megatron/runtime/Status.h"

#include <cblas.h>

namespace megatron::runtime::cpu {

/// The BLAS functions the kernels call.
struct Blas {
  decltype(&cblas_sgemm) sgemm;
  decltype(&cblas_sgemv) sgemv;
  decltype(&openblas_set_num_threads) setThreads;
};

/// Loads OpenBLAS once; later calls return the first call's status.
Status loadBlas();

/// Sets OpenBLAS's threads if it is loaded (loading applies the OpenMP
/// thread count of the time).
void setBlasThreads(int threads);

/// The loaded functions. Sessions load them when created; code that calls
/// kernels without a session (tests, benchmarks) loads them here, and a
/// failure then ends the process with the message.
const Blas &blas();

} // namespace megatron::runtime::cpu

#endif // MEGATRON_RUNTIME_CPU_BLAS_H
