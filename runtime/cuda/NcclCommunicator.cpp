//===- NcclCommunicator.cpp - collectives on CUDA devices -----------------===//

#include "megatron/runtime/NcclCommunicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <vector>

using namespace megatron::runtime;

namespace {

Status cudaStatus(cudaError_t code, const char *what) {
  if (code == cudaSuccess)
    return Status::success();
  return Status::error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(code));
}

Status ncclStatus(ncclResult_t code, const char *what) {
  if (code == ncclSuccess)
    return Status::success();
  return Status::error(std::string("NCCL: ") + what + ": " + ncclGetErrorString(code));
}

/// Needs `ranks` devices in this process.
Status checkDevices(int ranks) {
  int devices = 0;
  if (Status s = cudaStatus(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"); !s.ok())
    return Status::error(s.message() + " (NCCL collectives need CUDA devices)");
  if (devices < ranks)
    return Status::error("NCCL: " + std::to_string(ranks) + " rank(s) here need as many "
                         "CUDA devices, this machine has " + std::to_string(devices));
  return Status::success();
}

/// One rank's NCCL communicator, stream and device staging buffers.
struct Rank {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  float *send = nullptr, *receive = nullptr;
  size_t capacity = 0; ///< floats in each staging buffer

  Status reserve(size_t floats) {
    if (floats <= capacity)
      return Status::success();
    cudaFree(send);
    cudaFree(receive);
    send = receive = nullptr;
    capacity = 0;
    if (Status s = cudaStatus(cudaMalloc(&send, floats * sizeof(float)), "cudaMalloc"); !s.ok())
      return s;
    if (Status s = cudaStatus(cudaMalloc(&receive, floats * sizeof(float)), "cudaMalloc"); !s.ok())
      return s;
    capacity = floats;
    return Status::success();
  }
  void release() {
    cudaSetDevice(device);
    cudaFree(send);
    cudaFree(receive);
    if (stream)
      cudaStreamDestroy(stream);
    if (comm)
      ncclCommDestroy(comm);
  }
};

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(int size, std::vector<Rank> ranks, int firstRank)
      : size_(size), ranks_(std::move(ranks)), firstRank_(firstRank) {}
  ~NcclCommunicator() override {
    for (Rank &r : ranks_)
      r.release();
  }

  int size() const override { return size_; }
  std::string kind() const override { return "NCCL"; }

  Status allReduceSum(int rank, const float *in, float *out, int64_t n) override {
    return collective(rank, in, n, n, [&](Rank &r) {
      return ncclAllReduce(r.send, r.receive, n, ncclFloat, ncclSum, r.comm, r.stream);
    }, [&](const float *result) { std::memcpy(out, result, n * sizeof(float)); });
  }

  Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                   float *out) override {
    int64_t n = outer * inner;
    return collective(rank, in, n, n * size_, [&](Rank &r) {
      return ncclAllGather(r.send, r.receive, n, ncclFloat, r.comm, r.stream);
    }, [&](const float *blocks) { // rank-major blocks -> rows side by side
      for (int k = 0; k < size_; ++k)
        for (int64_t o = 0; o < outer; ++o)
          std::memcpy(out + (o * size_ + k) * inner, blocks + (k * outer + o) * inner,
                      inner * sizeof(float));
    });
  }

  void abort(const std::string &why) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_.empty())
      return;
    aborted_ = why;
    for (Rank &r : ranks_) // wakes ranks blocked in a collective
      if (r.comm)
        ncclCommAbort(r.comm), r.comm = nullptr;
  }

private:
  template <typename Call, typename Unpack>
  Status collective(int rank, const float *in, int64_t sent, int64_t received, Call call,
                    Unpack unpack) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_.empty())
        return Status::error(aborted_);
    }
    if (rank - firstRank_ < 0 || rank - firstRank_ >= static_cast<int>(ranks_.size()))
      return Status::error("NCCL: rank " + std::to_string(rank) + " is not in this process");
    Rank &r = ranks_[rank - firstRank_];
    if (Status s = cudaStatus(cudaSetDevice(r.device), "cudaSetDevice"); !s.ok())
      return s;
    if (Status s = r.reserve(static_cast<size_t>(received)); !s.ok())
      return s;
    if (Status s = cudaStatus(cudaMemcpyAsync(r.send, in, sent * sizeof(float),
                                              cudaMemcpyHostToDevice, r.stream),
                              "copy to the device");
        !s.ok())
      return s;
    if (Status s = ncclStatus(call(r), "collective"); !s.ok())
      return s;
    std::vector<float> host(static_cast<size_t>(received));
    if (Status s = cudaStatus(cudaMemcpyAsync(host.data(), r.receive, received * sizeof(float),
                                              cudaMemcpyDeviceToHost, r.stream),
                              "copy to the host");
        !s.ok())
      return s;
    if (Status s = cudaStatus(cudaStreamSynchronize(r.stream), "cudaStreamSynchronize"); !s.ok())
      return s;
    unpack(host.data());
    return Status::success();
  }

  int size_;
  std::vector<Rank> ranks_;
  int firstRank_;
  std::mutex mutex_;
  std::string aborted_;
};

} // namespace

Status nccl::uniqueId(UniqueId &id) {
  ncclUniqueId raw;
  if (Status s = ncclStatus(ncclGetUniqueId(&raw), "ncclGetUniqueId"); !s.ok())
    return s;
  static_assert(sizeof(raw) == sizeof(UniqueId), "NCCL's unique id is 128 bytes");
  std::memcpy(id.data(), &raw, sizeof(raw));
  return Status::success();
}

Status nccl::joinRank(int size, int rank, int device, const UniqueId &id,
                      std::shared_ptr<Communicator> &out) {
  if (Status s = checkDevices(device + 1); !s.ok())
    return s;
  Rank r;
  r.device = device;
  if (Status s = cudaStatus(cudaSetDevice(device), "cudaSetDevice"); !s.ok())
    return s;
  ncclUniqueId raw;
  std::memcpy(&raw, id.data(), sizeof(raw));
  if (Status s = ncclStatus(ncclCommInitRank(&r.comm, size, raw, rank), "ncclCommInitRank"); !s.ok())
    return s;
  if (Status s = cudaStatus(cudaStreamCreate(&r.stream), "cudaStreamCreate"); !s.ok()) {
    r.release();
    return s;
  }
  std::vector<Rank> ranks;
  ranks.push_back(r);
  out = std::make_shared<NcclCommunicator>(size, std::move(ranks), rank);
  return Status::success();
}

Status nccl::joinLocal(int size, std::shared_ptr<Communicator> &out) {
  if (Status s = checkDevices(size); !s.ok())
    return s;
  std::vector<ncclComm_t> comms(size);
  std::vector<int> devices(size);
  for (int d = 0; d < size; ++d)
    devices[d] = d;
  if (Status s = ncclStatus(ncclCommInitAll(comms.data(), size, devices.data()), "ncclCommInitAll");
      !s.ok())
    return s;
  std::vector<Rank> ranks(size);
  for (int d = 0; d < size; ++d) {
    ranks[d].device = d;
    ranks[d].comm = comms[d];
    cudaSetDevice(d);
    if (Status s = cudaStatus(cudaStreamCreate(&ranks[d].stream), "cudaStreamCreate"); !s.ok()) {
      for (Rank &r : ranks)
        r.release();
      return s;
    }
  }
  out = std::make_shared<NcclCommunicator>(size, std::move(ranks), 0);
  return Status::success();
}
