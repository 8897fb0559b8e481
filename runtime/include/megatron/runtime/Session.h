//===- Session.h - run an artifact's entries -------------------*- C++ -*-===//
//
// The public API of the runtime:
//
//   std::unique_ptr<Artifact> artifact;
//   if (Status s = Artifact::open("bert.mtc", artifact)) ... s.message()
//   std::unique_ptr<Session> session;
//   if (Status s = Session::create(*artifact, {}, session)) ...
//   Inputs in;  in["input_ids"] = IdTensor{{1, 3}, {101, 2003, 102}};
//   Outputs out;
//   if (Status s = session->run("forward", in, out)) ...
//   out["logits"].shape, out["logits"].data
//
// GPT-2 artifacts have `prefill` (starts a sequence: fills the KV cache),
// `prefill_last` (the same, returning only the last position's logits, as
// `last_logits`: what generation reads) and `decode` (appends tokens to the
// cache); BERT artifacts have `forward`. An omitted
// `token_type_ids` is all zeros and an omitted `attention_mask` all ones, as
// in Hugging Face. For `decode` the attention mask covers the cached tokens
// and the new ones.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_SESSION_H
#define MEGATRON_RUNTIME_SESSION_H

#include "megatron/runtime/Artifact.h"
#include "megatron/runtime/Communicator.h"
#include "megatron/runtime/Status.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace megatron::runtime {

/// Token ids, token types or an attention mask, row-major.
struct IdTensor {
  std::vector<int64_t> shape;
  std::vector<int64_t> data;
};

/// A float32 output, row-major.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

/// What one step of a plan moves: activation bytes (everything but
/// weights) read and written.
struct StepTraffic {
  std::string kind; ///< "linear", "attention", ...
  uint64_t bytesRead = 0, bytesWritten = 0;
};

/// Where rank 0's time went (SessionOptions::profile), per entry and step
/// label: the step's kind, a linear's with its weight's type and shape
/// ("linear I8 [3072, 1024]").
struct StepTime {
  std::string entry, step;
  int64_t count = 0; ///< such steps timed: the entry's calls x their number
  int64_t calls = 0; ///< calls of the entry timed
  double seconds = 0;
};

using Inputs = std::map<std::string, IdTensor>;
using Outputs = std::map<std::string, FloatTensor>;

struct SessionOptions {
  /// Worker threads for kernels and GEMMs, shared by the ranks this process
  /// runs; 0 means all cores.
  int threads = 0;
  /// An artifact of several tensor-parallel ranks runs them all in this
  /// process as threads, with in-process collectives or `communicator`
  /// (e.g. NCCL over local GPUs). With `rank` >= 0 this process runs only
  /// that rank and the communicator's other ranks run elsewhere (MPI).
  std::shared_ptr<Communicator> communicator;
  int rank = -1;
  /// With `rank`: this process's index among the job's processes on its
  /// host (-1: take `rank`), which picks its GPU.
  int localRank = -1;
  /// How long a rank waits in a collective for the others (in-process).
  double collectiveTimeoutSeconds = 60;
  /// Where the steps run: the CPU, or CUDA device `device` (a runtime built
  /// with the CUDA toolkit; an artifact compiled with --target cuda). A
  /// tensor-parallel artifact's rank r takes
  /// device (`device` + r) mod the devices there are (one GPU can run them
  /// all; a process of an MPI job counts by `localRank`), or the
  /// communicator's device for it (NCCL).
  enum class Backend { Cpu, Cuda } backend = Backend::Cpu;
  int device = 0;
  /// On the GPU, a decode step (one new token per sequence) runs eagerly
  /// the first time for its entry and batch, is recorded as a CUDA graph
  /// the second, and replayed after: one launch instead of hundreds. Not
  /// for ranks whose collectives go through host memory (threads, MPI),
  /// nor where several ranks share a process (NCCL warns that graphs of
  /// several GPUs in one process may deadlock).
  bool cudaGraphs = true;
  /// Times each step of rank 0 (Session::profile): on the CPU around the
  /// step, on the GPU between CUDA events queued around it (decode steps
  /// of every rank then run without graphs, which would hide the steps).
  bool profile = false;
};

class Session {
public:
  /// Prepares rank 0 of `artifact` (which must outlive the session): checks
  /// every step against its buffers and allocates the arena.
  static Status create(const Artifact &artifact, const SessionOptions &options,
                       std::unique_ptr<Session> &out);
  ~Session();

  /// The entries this artifact has, e.g. {"forward"} or {"prefill", "prefill_last", "decode"}.
  std::vector<std::string> entries() const;
  /// Names of an entry's inputs and outputs, in order.
  std::vector<std::string> inputNames(const std::string &entry) const;
  std::vector<std::string> outputNames(const std::string &entry) const;

  /// Runs `entry`. Shapes, id ranges, the artifact's maximum batch and
  /// sequence, and (for decode) the context left are checked first; a
  /// failed check leaves the session as it was. `outputs` then holds the
  /// entry's outputs and nothing else; passing the same map again reuses
  /// its tensors' storage.
  Status run(const std::string &entry, const Inputs &inputs, Outputs &outputs);
  /// The same, leaving the outputs where the steps wrote them (on the GPU,
  /// in device memory): for a call whose outputs are not wanted (a prompt
  /// that only fills the KV cache), and to time the device's work alone.
  Status run(const std::string &entry, const Inputs &inputs);

  /// The steps of `entry` on rank 0 and their activation traffic for a
  /// batch x sequence call (no cached tokens), without running anything.
  Status traffic(const std::string &entry, int64_t batch, int64_t sequence,
                 std::vector<StepTraffic> &out) const;

  /// The linear layers of an entry (rank 0's share): how many, how many
  /// read int8 weights, and how many of those quantize their input too
  /// (dynamic W8A8). All zero for an entry the artifact lacks.
  struct LinearCounts {
    int64_t linears = 0, int8Weights = 0, int8Inputs = 0;
  };
  LinearCounts linearCounts(const std::string &entry) const;

  /// Rank 0's step times since the session started or resetProfile(), per
  /// entry the longest first; empty without SessionOptions::profile.
  std::vector<StepTime> profile() const;
  void resetProfile();

  /// Tensor-parallel ranks of the artifact.
  int ranks() const;
  /// Bytes one rank has put into all-reduces and all-gathers so far.
  uint64_t collectiveBytes() const;
  /// Bytes of weights the kernels read, over the ranks this session runs
  /// (all of them unless under MPI): as stored for f32 and
  /// int8, as widened (f32) for f16 and bf16. A decode step of batch 1
  /// reads each once, so this over its time is the achieved bandwidth.
  uint64_t weightBytes() const;

  /// Tokens held in the KV cache (GPT-2), 0 before the first prefill.
  int64_t cachedTokens() const;

  /// The largest batch and sequence the artifact was planned for.
  int64_t maxBatch() const;
  int64_t maxSequence() const;
  /// Tokens a KV cache holds (GPT-2: the model's positions); maxSequence()
  /// for artifacts without one.
  int64_t maxContext() const;

  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

private:
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_SESSION_H
