//===- Blas.cpp - OpenBLAS, loaded when the first session starts ----------===//

#include "runtime/cpu/Blas.h"

#include <dlfcn.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace megatron::runtime;

namespace {

/// The address space OpenBLAS 0.3 takes: a 128 MiB buffer per thread of its
/// own when it loads (at most one per core), and one per concurrent caller
/// (a GEMM per head from each kernel thread, see Kernels.cpp) when first
/// called, plus the caller's.
size_t blasReservation() {
  constexpr size_t kBuffer = size_t(128) << 20;
  return (2 * std::max(1u, std::thread::hardware_concurrency()) + 2) * kBuffer;
}

/// A GEMM this size takes a buffer (smaller ones may not).
constexpr int kWarmUp = 128;

cpu::Blas loaded;
Status status;
std::atomic<bool> ready{false};

Status load() {
  // Fail here, with a message, where OpenBLAS's constructor would spin.
  size_t reserve = blasReservation();
  void *probe = mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
  if (probe == MAP_FAILED)
    return Status::error("not enough address space for OpenBLAS's GEMM buffers (" +
                         std::to_string(reserve >> 20) +
                         " MiB): raise the address-space limit (ulimit -v)");
  munmap(probe, reserve);
  void *library = dlopen(MEGATRON_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!library)
    return Status::error(std::string("cannot load OpenBLAS: ") + dlerror());
  auto symbol = [&](const char *name, auto &fn) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(library, name));
    return fn != nullptr;
  };
  if (!symbol("cblas_sgemm", loaded.sgemm) || !symbol("cblas_sgemv", loaded.sgemv) ||
      !symbol("openblas_set_num_threads", loaded.setThreads))
    return Status::error(std::string(MEGATRON_OPENBLAS_LIBRARY) +
                         " lacks cblas_sgemm, cblas_sgemv or openblas_set_num_threads");
  loaded.setThreads(omp_get_max_threads()); // what setThreads asked for so far
  // Take the buffers of concurrent callers now, while the probe says they
  // fit; OpenBLAS keeps them, so no later call allocates (and an allocation
  // that fails later would hang as the constructor does).
  std::vector<float> a(size_t(omp_get_max_threads()) * 3 * kWarmUp * kWarmUp, 0.0f);
#pragma omp parallel
  {
    float *m = a.data() + size_t(omp_get_thread_num()) * 3 * kWarmUp * kWarmUp;
    loaded.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kWarmUp, kWarmUp, kWarmUp, 1.0f, m,
                 kWarmUp, m + kWarmUp * kWarmUp, kWarmUp, 0.0f, m + 2 * kWarmUp * kWarmUp,
                 kWarmUp);
  }
  ready = true;
  return Status::success();
}

} // namespace

Status cpu::loadBlas() {
  static std::once_flag once;
  std::call_once(once, [] { status = load(); });
  return status;
}

void cpu::setBlasThreads(int threads) {
  if (ready)
    loaded.setThreads(threads);
}

const cpu::Blas &cpu::blas() {
  if (Status s = loadBlas(); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    std::exit(1);
  }
  return loaded;
}
