//===- Communicator.h - collectives between tensor-parallel ranks -*- C++ -*-===//
//
// The steps a sharded plan needs (DESIGN.md section 3), behind one
// interface: in-process ranks (threads of one session, the CPU default),
// MPI (one process per rank, `mpirun -np N megatron-run ...`), and NCCL
// for GPUs. A rank that fails calls abort(), so the others return an error
// instead of waiting for it; waits also end with an error after a timeout.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_COMMUNICATOR_H
#define MEGATRON_RUNTIME_COMMUNICATOR_H

#include "megatron/runtime/Status.h"

#include <cstdint>
#include <memory>
#include <string>

namespace megatron::runtime {

/// Collectives over CUDA device memory, queued on a stream (NCCL): what
/// the CUDA backend uses where its communicator has them. Device addresses
/// are integers and streams opaque, so this header needs no CUDA.
class DeviceCollectives {
public:
  virtual ~DeviceCollectives();
  /// The CUDA device rank `rank` must run on.
  virtual int device(int rank) const = 0;
  /// As Communicator::allReduceSum, on n floats at device addresses,
  /// queued on `stream` (a CUstream of that device).
  virtual Status allReduceSum(int rank, uint64_t in, uint64_t out, int64_t n,
                              void *stream) = 0;
  /// Rank r's n floats land at out + r * n floats (rank-major blocks).
  virtual Status allGather(int rank, uint64_t in, uint64_t out, int64_t n, void *stream) = 0;
};

class Communicator {
public:
  virtual ~Communicator();
  virtual int size() const = 0;
  /// What the communicator is, for messages ("in-process", "MPI", ...).
  virtual std::string kind() const = 0;
  /// out = the sum over the ranks of their `in` (n floats each); in and out
  /// may be the same buffer.
  virtual Status allReduceSum(int rank, const float *in, float *out, int64_t n) = 0;
  /// Rank r's in[o, :] (inner floats) lands at out[o, r * inner:(r + 1) *
  /// inner] for o < outer: a concatenation along the last axis.
  virtual Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                           float *out) = 0;
  /// Makes every pending and later collective fail with `why`.
  virtual void abort(const std::string &why) = 0;
  /// Clears a previous abort before a new call (in-process only; others
  /// cannot recover and keep failing).
  virtual void reset() {}
  /// The same collectives on device memory, where this communicator has
  /// them (NCCL); null where it reduces host memory only.
  virtual DeviceCollectives *deviceCollectives() { return nullptr; }
};

/// `size` ranks that are threads of this process; a rank that waits longer
/// than `timeoutSeconds` for the others fails.
std::shared_ptr<Communicator> makeInProcessCommunicator(int size,
                                                        double timeoutSeconds = 60);

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_COMMUNICATOR_H
