//===- NcclCommunicator.cpp - collectives on CUDA devices -----------------===//

#include "megatron/runtime/NcclCommunicator.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <vector>

using namespace megatron::runtime;

namespace {

// NCCL and the CUDA runtime are loaded when first used, not linked: they
// map hundreds of MB, and megatron-run must start (and run on the CPU) on
// machines without them.
struct Api {
  cudaError_t (*cudaGetDeviceCount)(int *) = nullptr;
  cudaError_t (*cudaSetDevice)(int) = nullptr;
  cudaError_t (*cudaMalloc)(void **, size_t) = nullptr;
  cudaError_t (*cudaFree)(void *) = nullptr;
  cudaError_t (*cudaMemcpyAsync)(void *, const void *, size_t, cudaMemcpyKind,
                                 cudaStream_t) = nullptr;
  cudaError_t (*cudaStreamCreate)(cudaStream_t *) = nullptr;
  cudaError_t (*cudaStreamDestroy)(cudaStream_t) = nullptr;
  cudaError_t (*cudaStreamSynchronize)(cudaStream_t) = nullptr;
  const char *(*cudaGetErrorString)(cudaError_t) = nullptr;
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId *) = nullptr;
  ncclResult_t (*ncclCommInitRank)(ncclComm_t *, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*ncclCommInitAll)(ncclComm_t *, int, const int *) = nullptr;
  ncclResult_t (*ncclAllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                                ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclAllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
                                cudaStream_t) = nullptr;
  ncclResult_t (*ncclCommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*ncclCommDestroy)(ncclComm_t) = nullptr;
  const char *(*ncclGetErrorString)(ncclResult_t) = nullptr;
};

#define MEGATRON_NCCL_FUNCTIONS(X)                                             \
  X(cudart, cudaGetDeviceCount) X(cudart, cudaSetDevice) X(cudart, cudaMalloc) \
  X(cudart, cudaFree) X(cudart, cudaMemcpyAsync) X(cudart, cudaStreamCreate)   \
  X(cudart, cudaStreamDestroy) X(cudart, cudaStreamSynchronize)                \
  X(cudart, cudaGetErrorString) X(nccl, ncclGetUniqueId)                       \
  X(nccl, ncclCommInitRank) X(nccl, ncclCommInitAll) X(nccl, ncclAllReduce)    \
  X(nccl, ncclAllGather) X(nccl, ncclCommAbort) X(nccl, ncclCommDestroy)       \
  X(nccl, ncclGetErrorString)

/// The loaded libraries, or why they could not be loaded.
const Api *api(std::string &error) {
  static Api loaded;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    auto open = [](std::initializer_list<const char *> names) -> void * {
      for (const char *name : names)
        if (void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL))
          return h;
      return nullptr;
    };
    void *cudart = open({MEGATRON_CUDA_LIB_DIR "/libcudart.so", "libcudart.so",
                         "libcudart.so.13", "libcudart.so.12"});
    void *nccl = open({MEGATRON_CUDA_LIB_DIR "/libnccl.so.2", "libnccl.so.2"});
    if (!cudart || !nccl) {
      failure = std::string("NCCL collectives need ") +
                (!cudart ? "the CUDA runtime (libcudart)" : "NCCL (libnccl.so.2)") +
                ", which cannot be loaded here";
      return;
    }
#define MEGATRON_NCCL_RESOLVE(library, name)                                   \
  loaded.name = reinterpret_cast<decltype(loaded.name)>(dlsym(library, #name)); \
  if (!loaded.name && failure.empty())                                         \
    failure = "the loaded CUDA libraries lack " #name;
    MEGATRON_NCCL_FUNCTIONS(MEGATRON_NCCL_RESOLVE)
#undef MEGATRON_NCCL_RESOLVE
  });
  error = failure;
  return failure.empty() ? &loaded : nullptr;
}

const Api &A() {
  std::string ignored;
  return *api(ignored); // only after a successful load (checkDevices)
}

Status cudaStatus(cudaError_t code, const char *what) {
  if (code == cudaSuccess)
    return Status::success();
  return Status::error(std::string("CUDA: ") + what + ": " + A().cudaGetErrorString(code));
}

Status ncclStatus(ncclResult_t code, const char *what) {
  if (code == ncclSuccess)
    return Status::success();
  return Status::error(std::string("NCCL: ") + what + ": " + A().ncclGetErrorString(code));
}

/// Needs `ranks` devices in this process.
Status checkDevices(int ranks) {
  std::string error;
  if (!api(error))
    return Status::error(error);
  int devices = 0;
  if (Status s = cudaStatus(A().cudaGetDeviceCount(&devices), "cudaGetDeviceCount"); !s.ok())
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
    A().cudaFree(send);
    A().cudaFree(receive);
    send = receive = nullptr;
    capacity = 0;
    if (Status s = cudaStatus(A().cudaMalloc(reinterpret_cast<void **>(&send), floats * sizeof(float)), "cudaMalloc"); !s.ok())
      return s;
    if (Status s = cudaStatus(A().cudaMalloc(reinterpret_cast<void **>(&receive), floats * sizeof(float)), "cudaMalloc"); !s.ok())
      return s;
    capacity = floats;
    return Status::success();
  }
  void release() {
    A().cudaSetDevice(device);
    A().cudaFree(send);
    A().cudaFree(receive);
    if (stream)
      A().cudaStreamDestroy(stream);
    if (comm)
      A().ncclCommDestroy(comm);
  }
};

class NcclCommunicator final : public Communicator, public DeviceCollectives {
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
      return A().ncclAllReduce(r.send, r.receive, n, ncclFloat, ncclSum, r.comm, r.stream);
    }, [&](const float *result) { std::memcpy(out, result, n * sizeof(float)); });
  }

  Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                   float *out) override {
    int64_t n = outer * inner;
    return collective(rank, in, n, n * size_, [&](Rank &r) {
      return A().ncclAllGather(r.send, r.receive, n, ncclFloat, r.comm, r.stream);
    }, [&](const float *blocks) { // rank-major blocks -> rows side by side
      for (int k = 0; k < size_; ++k)
        for (int64_t o = 0; o < outer; ++o)
          std::memcpy(out + (o * size_ + k) * inner, blocks + (k * outer + o) * inner,
                      inner * sizeof(float));
    });
  }

  DeviceCollectives *deviceCollectives() override { return this; }

  int device(int rank) const override {
    const Rank *r = local(rank);
    return r ? r->device : -1;
  }

  Status allReduceSum(int rank, uint64_t in, uint64_t out, int64_t n, void *stream) override {
    return onDevice(rank, [&](Rank &r) {
      return A().ncclAllReduce(reinterpret_cast<const void *>(in), reinterpret_cast<void *>(out),
                               n, ncclFloat, ncclSum, r.comm, static_cast<cudaStream_t>(stream));
    });
  }

  Status allGather(int rank, uint64_t in, uint64_t out, int64_t n, void *stream) override {
    return onDevice(rank, [&](Rank &r) {
      return A().ncclAllGather(reinterpret_cast<const void *>(in), reinterpret_cast<void *>(out),
                               n, ncclFloat, r.comm, static_cast<cudaStream_t>(stream));
    });
  }

  void abort(const std::string &why) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_.empty())
      return;
    aborted_ = why;
    for (Rank &r : ranks_) // wakes ranks blocked in a collective
      if (r.comm)
        A().ncclCommAbort(r.comm), r.comm = nullptr;
  }

private:
  const Rank *local(int rank) const {
    int i = rank - firstRank_;
    return i >= 0 && i < static_cast<int>(ranks_.size()) ? &ranks_[i] : nullptr;
  }

  /// The rank's communicator, unless it is not in this process or the
  /// collectives were aborted.
  Status lookUp(int rank, Rank *&r) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_.empty())
        return Status::error(aborted_);
    }
    r = const_cast<Rank *>(local(rank));
    if (!r)
      return Status::error("NCCL: rank " + std::to_string(rank) + " is not in this process");
    return Status::success();
  }

  /// A collective the CUDA backend queues on its own stream, the caller's
  /// context (the device's primary one) current.
  template <typename Call> Status onDevice(int rank, Call call) {
    Rank *r = nullptr;
    if (Status s = lookUp(rank, r); !s.ok())
      return s;
    return ncclStatus(call(*r), "collective");
  }

  /// A collective on host memory: staged through the rank's device.
  template <typename Call, typename Unpack>
  Status collective(int rank, const float *in, int64_t sent, int64_t received, Call call,
                    Unpack unpack) {
    Rank *found = nullptr;
    if (Status s = lookUp(rank, found); !s.ok())
      return s;
    Rank &r = *found;
    if (Status s = cudaStatus(A().cudaSetDevice(r.device), "cudaSetDevice"); !s.ok())
      return s;
    if (Status s = r.reserve(static_cast<size_t>(received)); !s.ok())
      return s;
    if (Status s = cudaStatus(A().cudaMemcpyAsync(r.send, in, sent * sizeof(float),
                                              cudaMemcpyHostToDevice, r.stream),
                              "copy to the device");
        !s.ok())
      return s;
    if (Status s = ncclStatus(call(r), "collective"); !s.ok())
      return s;
    std::vector<float> host(static_cast<size_t>(received));
    if (Status s = cudaStatus(A().cudaMemcpyAsync(host.data(), r.receive, received * sizeof(float),
                                              cudaMemcpyDeviceToHost, r.stream),
                              "copy to the host");
        !s.ok())
      return s;
    if (Status s = cudaStatus(A().cudaStreamSynchronize(r.stream), "cudaStreamSynchronize"); !s.ok())
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
  std::string error;
  if (!api(error))
    return Status::error(error);
  ncclUniqueId raw;
  if (Status s = ncclStatus(A().ncclGetUniqueId(&raw), "ncclGetUniqueId"); !s.ok())
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
  if (Status s = cudaStatus(A().cudaSetDevice(device), "cudaSetDevice"); !s.ok())
    return s;
  ncclUniqueId raw;
  std::memcpy(&raw, id.data(), sizeof(raw));
  if (Status s = ncclStatus(A().ncclCommInitRank(&r.comm, size, raw, rank), "ncclCommInitRank"); !s.ok())
    return s;
  if (Status s = cudaStatus(A().cudaStreamCreate(&r.stream), "cudaStreamCreate"); !s.ok()) {
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
  if (Status s = ncclStatus(A().ncclCommInitAll(comms.data(), size, devices.data()), "ncclCommInitAll");
      !s.ok())
    return s;
  std::vector<Rank> ranks(size);
  for (int d = 0; d < size; ++d) {
    ranks[d].device = d;
    ranks[d].comm = comms[d];
    A().cudaSetDevice(d);
    if (Status s = cudaStatus(A().cudaStreamCreate(&ranks[d].stream), "cudaStreamCreate"); !s.ok()) {
      for (Rank &r : ranks)
        r.release();
      return s;
    }
  }
  out = std::make_shared<NcclCommunicator>(size, std::move(ranks), 0);
  return Status::success();
}
