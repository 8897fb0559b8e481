/* Fault injection for the MPI failure tests (test_e2e.Errors): preloaded
 * into megatron-run under mpirun, it wraps MPI's collectives through the
 * standard PMPI profiling interface. On rank MEGATRON_FAULT_RANK, the
 * MEGATRON_FAULT_CALL-th collective (1-based) first raises
 * MEGATRON_FAULT_SIGNAL on its own process: 9 (KILL) is a rank that dies
 * mid-collective, 19 (STOP) one that hangs there. Test code only. */
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>

static void maybe_fail(void) {
  static long calls = 0;
  const char *rank = getenv("MEGATRON_FAULT_RANK");
  const char *call = getenv("MEGATRON_FAULT_CALL");
  const char *sig = getenv("MEGATRON_FAULT_SIGNAL");
  int me = -1;
  if (!rank || !call || !sig)
    return;
  PMPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (me == atoi(rank) && ++calls == atol(call))
    raise(atoi(sig));
}

int MPI_Iallreduce(const void *in, void *out, int count, MPI_Datatype type, MPI_Op op,
                   MPI_Comm comm, MPI_Request *request) {
  maybe_fail();
  return PMPI_Iallreduce(in, out, count, type, op, comm, request);
}

int MPI_Iallgather(const void *in, int inCount, MPI_Datatype inType, void *out, int outCount,
                   MPI_Datatype outType, MPI_Comm comm, MPI_Request *request) {
  maybe_fail();
  return PMPI_Iallgather(in, inCount, inType, out, outCount, outType, comm, request);
}
