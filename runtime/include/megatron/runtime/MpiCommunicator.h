//===- MpiCommunicator.h - one tensor-parallel rank per process -*- C++ -*-===//
//
// For `mpirun -np N megatron-run ...`: each process runs one rank of the
// artifact and the collectives go through MPI. Built when MPI is found
// (MEGATRON_HAVE_MPI); the library is MegatronRuntimeMPI.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_MPICOMMUNICATOR_H
#define MEGATRON_RUNTIME_MPICOMMUNICATOR_H

#include "megatron/runtime/Communicator.h"

namespace megatron::runtime::mpi {

/// Whether this process was started by an MPI launcher (mpirun/srun set
/// the environment), so megatron-run should join an MPI job.
bool launchedByMpi();

/// Initialises MPI (once) and returns a communicator over MPI_COMM_WORLD,
/// this process's rank, and its index among the ranks on this host and
/// their number. A collective that waits longer than `timeoutSeconds` for
/// the other ranks fails.
Status join(int &argc, char **&argv, double timeoutSeconds,
            std::shared_ptr<Communicator> &out, int &rank, int &localRank,
            int &localRanks);

/// Rank `root`'s `bytes` at `data` on every rank (e.g. NCCL's unique id).
Status broadcast(void *data, size_t bytes, int root);

/// MPI_Finalize, when MPI was initialised.
void finish();

} // namespace megatron::runtime::mpi

#endif // MEGATRON_RUNTIME_MPICOMMUNICATOR_H
