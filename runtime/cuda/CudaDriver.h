//===- CudaDriver.h - the CUDA driver API, loaded at run time --*- C++ -*-===//
//
// The CUDA backend talks to the driver (libcuda.so.1) through dlopen, so a
// runtime built with the toolkit still starts, and runs on the CPU, on a
// machine without a GPU or driver: opening the driver is then an error to
// report, not a missing library at load time.
//
// A device context, a PTX module loaded with its JIT error log, device
// memory, and kernel launches on one stream, in order; what is queued can
// be recorded once as a CUDA graph and replayed.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CUDA_CUDADRIVER_H
#define MEGATRON_RUNTIME_CUDA_CUDADRIVER_H

#include "megatron/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace megatron::runtime::cuda {

class Device {
public:
  /// Opens the driver and device `ordinal`'s primary context.
  static Status open(int ordinal, std::unique_ptr<Device> &out);
  /// How many CUDA devices the driver sees.
  static Status count(int &devices);
  ~Device();

  /// Compute capability as "sm_XY".
  const std::string &arch() const { return arch_; }

  /// JIT-compiles PTX (a newer device runs an older architecture's PTX).
  Status loadModule(const std::string &ptx);
  Status allocate(size_t bytes, uint64_t &pointer);
  Status free(uint64_t pointer);
  /// Both copies are queued after the work before them and return once
  /// they are done.
  Status copyToDevice(uint64_t pointer, const void *host, size_t bytes);
  Status copyToHost(void *host, uint64_t pointer, size_t bytes);
  /// Queued after the work before it.
  Status copyOnDevice(uint64_t to, uint64_t from, size_t bytes);
  /// `rows` rows of `rowBytes`, `fromPitch` bytes apart, to rows
  /// `toPitch` bytes apart; queued likewise.
  Status copyRows(uint64_t to, size_t toPitch, uint64_t from, size_t fromPitch,
                  size_t rowBytes, size_t rows);
  /// Queues kernel `name` of the loaded module after the work queued
  /// before; `params` point at each kernel parameter's value. A kernel's
  /// own failure shows in the next synchronize() or copy to the host.
  Status launch(const std::string &name, const unsigned grid[3], const unsigned block[3],
                unsigned sharedBytes, std::vector<void *> params);
  Status synchronize();
  /// The CUstream everything is queued on (for cuBLASLt).
  void *stream() const;

  /// Records timing event `index` after the work queued so far.
  Status recordEvent(size_t index);
  /// The time between two recorded events, once the device has passed both
  /// (after synchronize()).
  Status eventSeconds(size_t from, size_t to, double &seconds);

  /// From here to endCapture() the queued work is recorded, not run (a
  /// CUDA graph); nothing may wait for the device meanwhile.
  Status beginCapture();
  /// Ends the recording: with `graph`, keeps it as graph *graph for
  /// launchGraph(); without, drops it (a call that failed half-way).
  Status endCapture(uint32_t *graph);
  /// Queues a kept graph's work, as it was recorded.
  Status launchGraph(uint32_t graph);
  /// Destroys every kept graph (their numbers are free again).
  void dropGraphs();

  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;

private:
  struct Api;
  Device() = default;
  std::unique_ptr<Api> api_;
  std::string arch_;
};

/// The parameters a memref<?xT> argument of an MLIR gpu.func becomes:
/// allocated and aligned pointers, offset, size and stride.
struct MemRef1D {
  uint64_t allocated, aligned;
  int64_t offset, size, stride;
  explicit MemRef1D(uint64_t pointer, int64_t n)
      : allocated(pointer), aligned(pointer), offset(0), size(n), stride(1) {}
  void append(std::vector<void *> &params) {
    for (void *p : {(void *)&allocated, (void *)&aligned, (void *)&offset, (void *)&size,
                    (void *)&stride})
      params.push_back(p);
  }
};

} // namespace megatron::runtime::cuda

#endif // MEGATRON_RUNTIME_CUDA_CUDADRIVER_H
