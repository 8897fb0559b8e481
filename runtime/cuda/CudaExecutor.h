//===- CudaExecutor.h - one rank's plan on a GPU --------------*- C++ -*-===//
//
// The CUDA backend: a rank's weights copied to the device once, its arena
// in device memory (the KV caches live there between calls), the plan's
// linears as cuBLASLt matmuls and every other step as a kernel of the PTX
// the artifact carries (megatron-compile --target cuda). The session checks
// each step's shapes on the host first (as for the CPU), so the executor
// only turns shapes into launches. Activations are f32. A bf16 or f16
// artifact's linears multiply on the tensor cores (16-bit weights and
// inputs, f32 accumulation), and so does its prefill attention for the
// head sizes the artifact has a flash-attention kernel for; int8 linear
// weights stay int8 (a GEMV kernel for decode's few rows; in a 16-bit
// artifact a tensor-core kernel that widens them in registers for up to
// 32 rows; widened for cuBLASLt beyond, to the artifact's 16-bit type in a
// 16-bit artifact); every other 16-bit weight is widened to f32 once, when
// copied to the device. A tensor-parallel rank's collectives go through
// its communicator, on the device with NCCL.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CUDA_CUDAEXECUTOR_H
#define MEGATRON_RUNTIME_CUDA_CUDAEXECUTOR_H

#include "megatron/runtime/Artifact.h"
#include "megatron/runtime/Communicator.h"
#include "megatron/runtime/Status.h"
#include "runtime/Shape.h"
#include "runtime/cuda/CublasLt.h"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/schema/artifact_generated.h"

#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

namespace megatron::runtime::cuda {

/// The module of `modules` a device of compute capability `arch` ("sm_90")
/// runs best: the newest architecture not newer than it (PTX JIT-compiles
/// forward); null where there is none.
const KernelModuleInfo *moduleFor(const std::vector<KernelModuleInfo> &modules,
                                  const std::string &arch);

class Executor {
public:
  /// Opens device `ordinal`, loads the artifact's PTX for it and copies
  /// rank `rank`'s weights there. A tensor-parallel rank's collectives go
  /// through `comm`: on the device where it has DeviceCollectives (NCCL),
  /// else staged through host memory.
  static Status create(const Artifact &artifact, uint32_t rank, int ordinal, Communicator *comm,
                       std::unique_ptr<Executor> &out);
  ~Executor();

  Status upload(uint32_t buffer, const void *host, size_t bytes);
  /// Starts a call after `past` cached tokens (the inputs uploaded). With
  /// `graphEntry`, a decode step (one new token per sequence, `batch` of
  /// them), whose launches are the same every step: the second of that
  /// entry and batch is recorded as a CUDA graph (the first runs as it
  /// comes), and later ones replay it (their run()s queue nothing); not
  /// where collectives stage through the host, which a graph cannot hold,
  /// nor for an unfused graph (--no-fuse), whose launches change with the
  /// cached tokens.
  Status beginCall(int64_t past, const artifact::Entry *graphEntry, int64_t batch);
  /// Ends the call: queues the recorded graph, or with !ok (a step failed)
  /// drops what was being recorded.
  Status endCall(bool ok);
  /// Destroys the recorded graphs (later decode steps run as they come and
  /// record anew): NCCL's abort of a communicator waits until no graph
  /// holds one of its collectives.
  void dropGraphs();
  /// Waits for the queued steps, then copies.
  Status download(void *host, uint32_t buffer, size_t bytes);
  /// Queues one step; `shapes` are the call's buffer shapes, checked.
  Status run(const artifact::Step &step, const std::vector<Shape> &shapes, int64_t past);
  Status synchronize() { return device_->synchronize(); }
  /// Profiling: a timestamp after the work queued so far in this call;
  /// after synchronize(), markIntervals() gives the seconds between its
  /// consecutive marks.
  Status mark() { return device_->recordEvent(marks_++); }
  Status markIntervals(std::vector<double> &seconds) const;
  /// Bytes of weights the steps read (what bounds a memory-bound decode).
  uint64_t weightBytesRead() const { return weightBytesRead_; }
  /// The device's compute capability, "sm_90".
  const std::string &arch() const { return device_->arch(); }

private:
  Executor() = default;
  uint64_t pointer(uint32_t buffer) const;
  /// Queues `kernel` on `blocks` blocks of `threads`, once its parameters
  /// are as many as the artifact says it takes.
  Status launch(const char *kernel, int64_t blocks, unsigned threads, std::vector<void *> params);
  /// One thread per element of n.
  Status elementwise(const char *kernel, std::vector<void *> params, int64_t n);
  /// A kernel of signature (x, y, n): y[i] = f(x[i]).
  Status unary(const char *kernel, uint64_t x, uint64_t y, int64_t n);
  /// The 16-bit copy of `out` that `step` writes for the next step's
  /// linear: layer_norm's, gelu's and decode_attention's %half (0: none).
  /// Only a kernel that writes it may ask.
  int32_t sixteenBitCopy(const artifact::Step &step, uint32_t out);
  /// y = GELU(x) of `step` (erf's, or the tanh approximation).
  Status gelu(const artifact::Step &step, uint32_t x, uint32_t y, int64_t n, bool tanh);
  /// `step`'s LayerNorm (with the 16-bit copy of its result where the
  /// next step wants one).
  Status layerNorm(const artifact::Step &step, uint32_t x, uint32_t gamma, uint32_t beta,
                   uint32_t out, int64_t rows, int64_t width, float eps);
  /// A Linear or LinearAddLayerNorm step's x W^T (+ b) (+ residual) into
  /// its first output.
  Status linear(const artifact::Step &step, const std::vector<Shape> &shapes);
  /// The same with an int8 W (its scales the step's third operand).
  Status linearInt8(const artifact::Step &step, const std::vector<Shape> &shapes,
                    uint64_t bias, uint64_t addend);
  /// x rounded to `type` (f16 or bf16) for a 16-bit GEMM: `input` is
  /// scratch_, where it is written unless the step before left it there.
  Status roundInput(artifact::DType type, uint32_t x, int64_t n, uint64_t &input);
  Status attention(const artifact::Step &step, const std::vector<Shape> &shapes, int64_t past);
  /// An AllReduce or AllGather step.
  Status collective(const artifact::Step &step, const std::vector<Shape> &shapes);
  /// Whether the decode attention kernel takes `keys` keys.
  Status decodeKeysFit(int64_t keys) const;
  /// The tensor-core kernel of `family` ("flash_attention", with suffix
  /// "_d64" for heads of 64 dimensions; "matmul_w8a16") in this artifact's
  /// 16-bit type; empty where it has none.
  std::string tensorCoreKernel(const char *family, const std::string &suffix = "") const;

  const artifact::Rank *rank_ = nullptr;
  uint32_t rankIndex_ = 0;
  Communicator *comm_ = nullptr;
  DeviceCollectives *deviceCollectives_ = nullptr;
  /// A collective's floats, where they stage through the host.
  std::vector<float> hostStaging_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<CublasLt> blas_;
  /// Per kernel of the loaded module, its parameter count.
  std::map<std::string, uint32_t> parameters_;
  /// Lays out the weights on the device (wideOffsets_, narrowOffsets_,
  /// weightBytes_) and sizes the scratch.
  Status placeWeights();

  uint64_t weights_ = 0, arena_ = 0, workspace_ = 0;
  /// The call's past tokens (one i64), which the kernels read from here.
  uint64_t past_ = 0;
  /// Per decode entry and batch seen, its recorded graph; none yet after
  /// its first call succeeded, which runs as it comes.
  std::map<std::pair<const artifact::Entry *, int64_t>, std::optional<uint32_t>> graphs_;
  /// Eager also for a graph key's first call (firstCall_), whose success
  /// makes the next one record.
  enum class Mode { Eager, Capturing, Replaying } mode_ = Mode::Eager;
  bool firstCall_ = false;
  /// Whether decode steps may be recorded: not an unfused graph's.
  bool graphable_ = true;
  /// mark()s in this call.
  size_t marks_ = 0;
  std::pair<const artifact::Entry *, int64_t> graphKey_;
  uint32_t graph_ = 0;
  /// Per buffer: a weight's f32 copy in weights_, and a 16-bit matrix's
  /// copy as stored; -1 where it has none.
  std::vector<int64_t> wideOffsets_, narrowOffsets_;
  uint64_t weightBytes_ = 0, weightBytesRead_ = 0;
  /// The 16-bit type the artifact computes in (its f16 or bf16 weights'),
  /// F32 where it has none.
  artifact::DType halfType_ = artifact::DType::F32;
  /// A 16-bit linear's input, rounded to 16 bits.
  uint64_t scratch_ = 0, scratchBytes_ = 0;
  /// The steps whose result the next step's 16-bit linear reads rounded:
  /// 1 f16, 2 bf16 (written to scratch_ by the kernels that can).
  std::map<const artifact::Step *, int32_t> sixteenBitCopies_;
  /// The buffer whose 16-bit copy scratch_ holds for the next step, and
  /// for this one.
  static constexpr uint32_t kNoBuffer = ~0u;
  uint32_t nextCopy_ = kNoBuffer, previousCopy_ = kNoBuffer;
  /// An int8 matrix widened (to f32, or halfType_), for a linear of many
  /// rows; an all-gather's rank-major blocks.
  uint64_t staging_ = 0, stagingBytes_ = 0;
  /// A linear's input quantized per row (dynamic W8A8), in f32.
  uint64_t quantizedRows_ = 0, quantizedRowsBytes_ = 0;
};

} // namespace megatron::runtime::cuda

#endif // MEGATRON_RUNTIME_CUDA_CUDAEXECUTOR_H
