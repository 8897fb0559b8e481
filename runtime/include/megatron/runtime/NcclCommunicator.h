//===- NcclCommunicator.h - collectives on CUDA devices --------*- C++ -*-===//
//
// NCCL behind the Communicator interface, built when the CUDA toolkit and
// NCCL are found (MEGATRON_HAVE_NCCL; library MegatronRuntimeNCCL). Each
// rank uses its own device. The CPU backend's buffers are in host memory,
// so each of its collectives stages through device buffers; the CUDA
// backend queues them on its device memory and stream (DeviceCollectives).
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_NCCLCOMMUNICATOR_H
#define MEGATRON_RUNTIME_NCCLCOMMUNICATOR_H

#include "megatron/runtime/Communicator.h"

#include <array>

namespace megatron::runtime::nccl {

/// NCCL's unique id, made by rank 0 and shared with the others (over MPI
/// when launched by mpirun).
using UniqueId = std::array<char, 128>;
Status uniqueId(UniqueId &id);

/// Rank `rank` of `size` ranks, one process each, on CUDA device `device`.
Status joinRank(int size, int rank, int device, const UniqueId &id,
                std::shared_ptr<Communicator> &out);

/// `size` ranks in this process (threads), rank r on device r.
Status joinLocal(int size, std::shared_ptr<Communicator> &out);

} // namespace megatron::runtime::nccl

#endif // MEGATRON_RUNTIME_NCCLCOMMUNICATOR_H
