//===- MpiCommunicator.cpp - collectives over MPI -------------------------===//

#include "megatron/runtime/MpiCommunicator.h"

#include <mpi.h>

#include <cstdlib>
#include <cstring>
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
  explicit MpiCommunicator(int size) : size_(size) {}
  int size() const override { return size_; }
  std::string kind() const override { return "MPI"; }

  Status allReduceSum(int rank, const float *in, float *out, int64_t n) override {
    if (!aborted_.empty())
      return Status::error(aborted_);
    int code = MPI_Allreduce(in == out ? MPI_IN_PLACE : in, out, static_cast<int>(n),
                             MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (code != MPI_SUCCESS)
      return Status::error("MPI_Allreduce: " + mpiError(code));
    return Status::success();
  }

  Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                   float *out) override {
    if (!aborted_.empty())
      return Status::error(aborted_);
    // MPI gathers rank-major blocks; the plan wants the ranks' parts side by
    // side in every row.
    std::vector<float> blocks(outer * inner * size_);
    int code = MPI_Allgather(in, static_cast<int>(outer * inner), MPI_FLOAT, blocks.data(),
                             static_cast<int>(outer * inner), MPI_FLOAT, MPI_COMM_WORLD);
    if (code != MPI_SUCCESS)
      return Status::error("MPI_Allgather: " + mpiError(code));
    for (int r = 0; r < size_; ++r)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out + (o * size_ + r) * inner, blocks.data() + (r * outer + o) * inner,
                    inner * sizeof(float));
    return Status::success();
  }

  void abort(const std::string &why) override { aborted_ = why; }

private:
  int size_;
  std::string aborted_;
};

} // namespace

bool mpi::launchedByMpi() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var))
      return true;
  return false;
}

Status mpi::join(int &argc, char **&argv, std::shared_ptr<Communicator> &out, int &rank,
                 int &localRank, int &localRanks) {
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
  out = std::make_shared<MpiCommunicator>(size);
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
