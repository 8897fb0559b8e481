//===- MpiCommunicator.cpp - collectives over MPI -------------------------===//

#include "megatron/runtime/MpiCommunicator.h"

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

using namespace megatron::runtime;

namespace {

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

class MpiCommunicator final : public Communicator {
public:
  MpiCommunicator(int size, double timeoutSeconds)
      : size_(size), timeout_(timeoutSeconds) {}
  int size() const override { return size_; }
  std::string kind() const override { return "MPI"; }

  Status allReduceSum(int rank, const float *in, float *out, int64_t n) override {
    if (!aborted_.empty())
      return Status::error(aborted_);
    MPI_Request request;
    int code = MPI_Iallreduce(in == out ? MPI_IN_PLACE : in, out, static_cast<int>(n),
                              MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
    if (code != MPI_SUCCESS)
      return Status::error("MPI_Iallreduce: " + mpiError(code));
    if (Status s = wait(request, "all-reduce"))
      return s;
    return Status::success();
  }

  Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                   float *out) override {
    if (!aborted_.empty())
      return Status::error(aborted_);
    // MPI gathers rank-major blocks; the plan wants the ranks' parts side by
    // side in every row.
    std::vector<float> blocks(outer * inner * size_);
    MPI_Request request;
    int code = MPI_Iallgather(in, static_cast<int>(outer * inner), MPI_FLOAT, blocks.data(),
                              static_cast<int>(outer * inner), MPI_FLOAT, MPI_COMM_WORLD,
                              &request);
    if (code != MPI_SUCCESS)
      return Status::error("MPI_Iallgather: " + mpiError(code));
    if (Status s = wait(request, "all-gather"))
      return s;
    for (int r = 0; r < size_; ++r)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out + (o * size_ + r) * inner, blocks.data() + (r * outer + o) * inner,
                    inner * sizeof(float));
    return Status::success();
  }

  void abort(const std::string &why) override { aborted_ = why; }

private:
  /// Waits for a collective, but not forever: a blocking MPI collective
  /// never returns when another rank hangs (a dead one ends the job through
  /// mpirun). Spins first, as MPI's own blocking calls do, then backs off.
  Status wait(MPI_Request &request, const char *what) {
    auto start = std::chrono::steady_clock::now();
    for (long polls = 0;; ++polls) {
      int done = 0;
      int code = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS)
        return Status::error(std::string("MPI ") + what + ": " + mpiError(code));
      if (done)
        return Status::success();
      if (polls < 10000)
        continue;
      std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
      if (waited.count() > timeout_)
        return Status::error("MPI: the other ranks did not answer within " +
                             std::to_string(static_cast<int>(timeout_)) +
                             " s (--collective-timeout); a rank hangs or has died");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  int size_;
  double timeout_;
  std::string aborted_;
};

} // namespace

bool mpi::launchedByMpi() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var))
      return true;
  return false;
}

Status mpi::join(int &argc, char **&argv, double timeoutSeconds,
                 std::shared_ptr<Communicator> &out, int &rank, int &localRank,
                 int &localRanks) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized && MPI_Init(&argc, &argv) != MPI_SUCCESS)
    return Status::error("MPI_Init failed");
  // Errors come back as codes, so they become messages, not aborts.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
  MPI_Comm_size(local, &localRanks);
  MPI_Comm_rank(local, &localRank);
  MPI_Comm_free(&local);
  out = std::make_shared<MpiCommunicator>(size, timeoutSeconds);
  return Status::success();
}

Status mpi::broadcast(void *data, size_t bytes, int root) {
  int code = MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD);
  if (code != MPI_SUCCESS)
    return Status::error("MPI_Bcast: " + mpiError(code));
  return Status::success();
}

void mpi::finish() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized)
    MPI_Finalize();
}
