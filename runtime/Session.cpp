//===- Session.cpp - run an artifact's entries on the CPU or a GPU --------===//
//
// A session binds one rank of an artifact to memory: weights (used in place
// from the mapped file when stored as f32, widened once otherwise) and one
// arena for activations, inputs, outputs and KV caches. A call evaluates
// every buffer's symbolic shape for the inputs at hand, checks that each
// fits its reserved bytes and that each step's shapes agree, and only then
// runs the steps; so a bad input or a corrupt plan is an error, never an
// out-of-bounds access. With the CUDA backend the same checks pass each
// step to the executor (runtime/cuda/CudaExecutor.h), which holds the
// weights and the arena on the device; the host arena stages the inputs.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Session.h"

#include "megatron/runtime/StepSignature.h"
#include "megatron/runtime/Communicator.h"
#include "runtime/cpu/Blas.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"
#include "runtime/DTypes.h"
#include "runtime/Shape.h"
#include "runtime/Steps.h"
#include "runtime/schema/artifact_generated.h"
#ifdef MEGATRON_HAVE_CUDA_BACKEND
#include "runtime/cuda/CudaExecutor.h"
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

using namespace megatron::runtime;
namespace fb = megatron::artifact;

namespace {

constexpr size_t kSymbols = 5; // Batch, Sequence, Choices, Past, Keys

std::string str(int64_t v) { return std::to_string(v); }

std::string shapeText(const Shape &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + str(shape[i]);
  return text + "]";
}


struct FreeDeleter {
  void operator()(void *p) const { std::free(p); }
};

} // namespace

namespace {

/// One tensor-parallel rank of an artifact bound to memory: its weights,
/// its arena, its KV caches.
struct RankRunner {
  const Artifact &artifact;
  const fb::Rank &rank;
  int index = 0;                  ///< the rank
  Communicator *comm = nullptr;   ///< null for a single rank
  uint64_t collectiveBytes = 0;   ///< sent into collectives, all calls
  uint64_t weightBytes = 0;       ///< as the kernels read them
  std::unique_ptr<uint8_t, FreeDeleter> arena;
  std::vector<uint8_t *> data;                ///< per buffer
  std::vector<std::vector<float>> widened;    ///< f16/bf16 weights as f32
  std::vector<bool> bf16;                     ///< per buffer: a bf16 weight kept as is
  /// Per buffer: a linear's weight also packed for oneDNN (packLinearWeights), or null.
  std::vector<cpu::dnnl::PackedWeightPtr> packed;
  /// Some GEMM weights are bf16: the model computes in bf16 (attention's
  /// products too).
  bool computesInBf16 = false;
  int64_t past = 0, cacheBatch = 0;
  /// Evaluated shapes of the call in progress.
  std::vector<Shape> shapes;
  /// The steps run on a GPU (SessionOptions::backend): runStep checks each
  /// step's shapes here, then hands it to the executor. The host arena
  /// stages the inputs and outputs.
  bool onGpu = false, gpuGraphs = false;
#ifdef MEGATRON_HAVE_CUDA_BACKEND
  std::unique_ptr<cuda::Executor> gpu;
#endif

  RankRunner(const Artifact &artifact, const fb::Rank &rank, int index,
             Communicator *comm)
      : artifact(artifact), rank(rank), index(index), comm(comm) {}

  const fb::Buffer &buffer(uint32_t i) const { return *rank.buffers()->Get(i); }
  std::string name(uint32_t i) const {
    return buffer(i).name() ? buffer(i).name()->str() : "#" + str(i);
  }
  const fb::Entry *entry(const std::string &name) const {
    if (rank.entries())
      for (const fb::Entry *e : *rank.entries())
        if (e->name() && e->name()->str() == name)
          return e;
    return nullptr;
  }

  /// Opens the GPU (device >= 0) or readies the CPU kernels (device < 0);
  /// `graphs`: decode steps on the GPU replay as CUDA graphs.
  Status prepare(int device, bool graphs);
  /// Tokens the KV caches hold; 0 without one.
  int64_t cacheCapacity() const {
    int64_t context = 0;
    for (uint32_t i = 0; i < rank.buffers()->size(); ++i)
      if (buffer(i).kind() == fb::BufferKind::KVCache && buffer(i).shape() &&
          buffer(i).shape()->size() == 4)
        context = buffer(i).shape()->Get(2)->constant();
    return context;
  }
  /// bf16 weights that only ever serve as a step's weight operand (a GEMM's
  /// matrix, an embedding table): the kernels read those as bf16, half the
  /// bytes of widening them. Any other use (a bias, LayerNorm's gamma) widens.
  std::vector<bool> narrowBf16Weights() const;
  /// Packs the weights that linears multiply through oneDNN (packed[]):
  /// narrow bf16 ones, int8 ones with per-channel scales, and in a
  /// forward-only artifact f32 ones.
  void packLinearWeights();
  Status evaluateShapes(const int64_t symbols[kSymbols]);
  Status checkStep(const fb::Step &step, size_t index) const;
  Status checkInt8Input(const fb::Step &step, bool quantized, const std::string &where) const;
  /// Whether the step's weight operand is int8 (followed by its scales).
  bool quantizedOperand(const fb::Step &step) const {
    int q = quantizableOperand(static_cast<unsigned>(step.kind()));
    return q >= 0 && step.inputs() && size_t(q) < step.inputs()->size() &&
           buffer(step.inputs()->Get(q)).dtype() == fb::DType::I8;
  }
  Status runStep(const fb::Step &step, int64_t pastTokens);
  /// Before an abort of the collectives: see cuda::Executor::dropGraphs.
  void dropGraphs() {
#ifdef MEGATRON_HAVE_CUDA_BACKEND
    if (gpu)
      gpu->dropGraphs();
#endif
  }
  Status runOnGpu(const fb::Step &step, int64_t pastTokens);
  /// The bound entry's steps, in order.
  Status runSteps();
  /// Runs the bound entry's steps on the GPU, inputs copied there first and
  /// outputs back after.
  Status executeOnGpu();
  /// Checks the inputs and binds them: nothing runs, nothing changes when
  /// this fails.
  Status bind(const std::string &entryName, const Inputs &inputs);
  /// Runs the bound entry's steps.
  Status execute();
  Status readOutputs(Outputs &outputs) const;

  /// SessionOptions::profile, on the first rank of this process: per
  /// (entry, step label) the steps timed and their seconds; per entry its
  /// calls timed.
  bool profiling = false;
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, double>> stepTimes;
  std::map<std::string, int64_t> callsTimed;
  std::string stepLabel(const fb::Step &step) const;
  void recordStepTime(const fb::Step &step, double seconds) {
    auto &[count, total] = stepTimes[{bound->name()->str(), stepLabel(step)}];
    ++count;
    total += seconds;
  }

  /// The call bound last.
  const fb::Entry *bound = nullptr;
  int64_t symbols[kSymbols] = {};
  bool cachedCall = false, decodeCall = false;
};

} // namespace

std::vector<bool> RankRunner::narrowBf16Weights() const {
  const size_t count = rank.buffers()->size();
  std::vector<bool> asWeight(count, false), otherwise(count, false);
  if (rank.entries())
    for (const fb::Entry *e : *rank.entries())
      if (e->steps())
        for (const fb::Step *step : *e->steps()) {
          if (!step->inputs())
            continue;
          int q = quantizableOperand(static_cast<unsigned>(step->kind()));
          for (size_t i = 0; i < step->inputs()->size(); ++i) {
            uint32_t id = step->inputs()->Get(i);
            if (id < count)
              (int(i) == q ? asWeight : otherwise)[id] = true;
          }
        }
  std::vector<bool> narrow(count, false);
  for (size_t i = 0; i < count; ++i)
    narrow[i] = buffer(uint32_t(i)).kind() == fb::BufferKind::Weight &&
                buffer(uint32_t(i)).dtype() == fb::DType::BF16 && asWeight[i] && !otherwise[i];
  return narrow;
}

void RankRunner::packLinearWeights() {
  packed.resize(rank.buffers()->size());
  if (!rank.entries())
    return;
  // Without decode steps (whose single rows read the stored weights) the
  // stored copy is read again only by an embedding's few rows or a call of
  // a few rows: its pages can go, and f32 weights are packed too (in a
  // GPT-2 artifact they would double its largest part).
  const bool forwardOnly = !entry("decode");
  // A buffer's constant 2-D shape (weights and scales have one; checkStep
  // rejects a linear whose weight has any other).
  auto constant2d = [&](uint32_t id, int64_t &rows, int64_t &cols) {
    const fb::Buffer &b = buffer(id);
    if (!b.shape() || b.shape()->size() != 2)
      return false;
    for (const fb::Dim *d : *b.shape())
      if ((d->symbols() && d->symbols()->size()) || d->constant() <= 0)
        return false;
    rows = b.shape()->Get(0)->constant();
    cols = b.shape()->Get(1)->constant();
    return true;
  };
  for (const fb::Entry *e : *rank.entries())
    for (const fb::Step *step : *e->steps()) {
      if ((step->kind() != fb::StepKind::Linear &&
           step->kind() != fb::StepKind::LinearAddLayerNorm) ||
          !step->inputs() || step->inputs()->size() < 2)
        continue;
      const uint32_t id = step->inputs()->Get(1);
      int64_t out = 0, in = 0, scaleRows = 0, groups = 0;
      // int8 with one scale per output channel, rows staying 16-bit (dynamic
      // W8A8 multiplies the int8 weights as they are stored).
      const bool int8 = quantizedOperand(*step) && !quantizesInput(*step) &&
                        step->inputs()->size() >= 3 &&
                        constant2d(step->inputs()->Get(2), scaleRows, groups) && groups == 1;
      const bool f32 = forwardOnly && id < packed.size() &&
                       buffer(id).dtype() == fb::DType::F32 && !quantizedOperand(*step);
      if (id >= packed.size() || packed[id] || !(bf16[id] || int8 || f32) ||
          !constant2d(id, out, in) ||
          uint64_t(out) * uint64_t(in) * (int8 ? 1 : f32 ? 4 : 2) != buffer(id).size())
        continue;
      packed[id] = int8  ? cpu::dnnl::packWeight(reinterpret_cast<const int8_t *>(data[id]), out, in)
                   : f32 ? cpu::dnnl::packWeight(reinterpret_cast<const float *>(data[id]), out, in)
                         : cpu::dnnl::packWeight(reinterpret_cast<const uint16_t *>(data[id]), out, in);
      if (packed[id] && forwardOnly)
        artifact.evict(data[id], buffer(id).size());
    }
}

/// Binds weights and the arena and checks each step's operands, once.
Status RankRunner::prepare(int device, bool graphs) {
  if (device >= 0) {
#ifdef MEGATRON_HAVE_CUDA_BACKEND
    if (Status s = cuda::Executor::create(artifact, index, device, comm, gpu); !s.ok())
      return s;
    onGpu = true;
    gpuGraphs = graphs;
#else
    return Status::error("this runtime was built without the CUDA toolkit: no CUDA backend");
#endif
  }
  const uint8_t *weights = artifact.weights(index);
  data.resize(rank.buffers()->size());
  bf16 = narrowBf16Weights();
  computesInBf16 = std::find(bf16.begin(), bf16.end(), true) != bf16.end();
  uint64_t arenaSize = std::max<uint64_t>(rank.arena_size(), 64);
  arena.reset(static_cast<uint8_t *>(std::aligned_alloc(64, (arenaSize + 63) / 64 * 64)));
  if (!arena)
    return Status::error("cannot allocate an arena of " + str(arenaSize) + " bytes");
  // Not cleared: every step writes its buffer before any step reads it, so
  // only the pages a call touches are ever committed (the arena is sized
  // for the largest batch and sequence, most calls use a corner of it).
  for (uint32_t i = 0; i < data.size(); ++i) {
    const fb::Buffer &b = buffer(i);
    if (b.kind() != fb::BufferKind::Weight) {
      data[i] = arena.get() + b.offset();
      continue;
    }
    const uint8_t *stored = weights + b.offset();
    // f32, int8 (quantized) and narrow bf16 weights are used in place, read
    // only like the mapping; on the GPU the executor holds them all.
    if (b.dtype() == fb::DType::F32 || b.dtype() == fb::DType::I8 || bf16[i] || onGpu) {
      data[i] = const_cast<uint8_t *>(stored);
      weightBytes += b.size();
      continue;
    }
    if (b.dtype() != fb::DType::F16 && b.dtype() != fb::DType::BF16)
      return Status::error("weight '" + name(i) + "': this runtime computes "
                           "with f32, f16, bf16 or int8 weights only");
    std::vector<float> &wide = widened.emplace_back(b.size() / 2);
    weightBytes += wide.size() * sizeof(float);
    widenToF32(b.dtype(), stored, wide.size(), wide.data());
    data[i] = reinterpret_cast<uint8_t *>(wide.data());
  }
  if (!rank.entries() || rank.entries()->size() == 0)
    return Status::error(artifact.path() + ": rank 0 has no entries");
  for (const fb::Entry *e : *rank.entries()) {
    if (!e->name() || !e->steps() || !e->inputs() || !e->outputs())
      return Status::error(artifact.path() + ": an entry lacks its name, inputs, outputs or steps");
    for (size_t s = 0; s < e->steps()->size(); ++s)
      if (Status status = checkStep(*e->steps()->Get(s), s); !status.ok())
        return Status::error(artifact.path() + ": entry '" + e->name()->str() +
                             "': " + status.message());
  }
#ifdef MEGATRON_HAVE_CUDA_BACKEND
  if (onGpu)
    weightBytes = gpu->weightBytesRead();
#endif
  if (!onGpu)
    packLinearWeights();
  return Status::success();
}


/// A linear step's int8-input flag (its second parameter): 0, or 1 with an
/// int8 weight.
Status RankRunner::checkInt8Input(const fb::Step &step, bool quantized,
                                  const std::string &where) const {
  int64_t flag = step.ints()->Get(1);
  if (flag != 0 && flag != 1)
    return Status::error(where + ": int8-input flag " + str(flag) + " is not 0 or 1");
  if (flag && !quantized)
    return Status::error(where + ": quantizes its input to int8 but its weight is not int8");
  return Status::success();
}

/// Arity, parameters and element types of a step: what can be checked
/// before any shape is known.
Status RankRunner::checkStep(const fb::Step &step, size_t index) const {
  auto sig = stepSignature(static_cast<unsigned>(step.kind()));
  std::string where = "step " + str(index);
  if (!sig)
    return Status::error(where + " has unknown kind " + str(int(step.kind())));
  where += " (" + std::string(sig->name) + ")";
  size_t inputs = step.inputs() ? step.inputs()->size() : 0;
  size_t ints = step.ints() ? step.ints()->size() : 0;
  size_t floats = step.floats() ? step.floats()->size() : 0;
  if (inputs < sig->minInputs || inputs > sig->maxInputs || !step.outputs() ||
      step.outputs()->size() != sig->outputs || ints != sig->ints || floats != sig->floats)
    return Status::error(where + " has the wrong number of operands or parameters");
  for (uint32_t id : *step.outputs()) {
    const fb::Buffer &written = buffer(id);
    if (written.kind() == fb::BufferKind::Weight || written.kind() == fb::BufferKind::Input)
      return Status::error(where + " writes the read-only buffer '" + name(id) + "'");
  }
  // An int8 weight operand comes with its f32 scales right after it.
  int q = quantizableOperand(static_cast<unsigned>(step.kind()));
  size_t quantized = quantizedOperand(step) ? 1 : 0;
  if (quantized && size_t(q) + 1 >= inputs)
    return Status::error(where + ": its int8 weight '" + name(step.inputs()->Get(q)) +
                         "' has no scales after it");
  for (size_t i = 0; i < inputs; ++i) {
    const fb::Buffer &in = buffer(step.inputs()->Get(i));
    bool values = quantized && i == size_t(q), scales = quantized && i == size_t(q) + 1;
    if ((in.dtype() == fb::DType::I8) != values ||
        ((values || scales) && in.kind() != fb::BufferKind::Weight) ||
        (scales && in.dtype() != fb::DType::F32))
      return Status::error(where + ": operand '" + name(step.inputs()->Get(i)) +
                           (values || scales ? "' is not an int8 weight followed by f32 scales"
                                             : "' is int8 where no quantized weight belongs"));
  }
  bool idOperand[3] = {false, false, false}; // which inputs hold ids
  bool idResult = false;
  switch (step.kind()) {
  case fb::StepKind::Embedding:
    if (inputs != 2 + quantized)
      return Status::error(where + ": expected a table [and its scales] and ids");
    idOperand[1 + quantized] = true;
    break;
  case fb::StepKind::Linear:
    if (inputs - quantized > 3)
      return Status::error(where + ": expected x, a weight [and its scales] and a bias");
    if (Status status = checkInt8Input(step, quantized, where); !status.ok())
      return status;
    break;
  case fb::StepKind::Positions: idOperand[0] = idResult = true; break;
  case fb::StepKind::AttentionMask: idOperand[1] = true; break;
  case fb::StepKind::Attention: {
    // qkv [, mask] [, k cache, v cache], as the flags say.
    bool mask = step.ints()->Get(2) != 0, cached = step.ints()->Get(3) != 0;
    if (inputs != 1 + size_t(mask) + 2 * size_t(cached))
      return Status::error(where + ": its operands do not match its mask and cache flags");
    idOperand[1] = mask;
    for (size_t i = 1 + size_t(mask); i < inputs; ++i)
      if (buffer(step.inputs()->Get(i)).kind() != fb::BufferKind::KVCache)
        return Status::error(where + ": operand '" + name(step.inputs()->Get(i)) +
                             "' is not a KV cache");
    break;
  }
  case fb::StepKind::LinearAddLayerNorm:
    if (inputs != 5 + quantized + size_t(step.ints()->Get(0) != 0))
      return Status::error(where + ": its operands do not match its bias flag");
    if (Status status = checkInt8Input(step, quantized, where); !status.ok())
      return status;
    break;
  case fb::StepKind::Copy: // reshapes move ids too
    idResult = buffer(step.inputs()->Get(0)).dtype() == fb::DType::I64;
    idOperand[0] = idResult;
    break;
  case fb::StepKind::AllReduce:
  case fb::StepKind::AllGather:
    if (!comm)
      return Status::error(where + ": a collective in an artifact of one rank");
    break;
  default: break;
  }
  auto floatLike = [](fb::DType t) {
    return t == fb::DType::F32 || t == fb::DType::F16 || t == fb::DType::BF16;
  };
  for (size_t i = 0; i < inputs; ++i) {
    if (quantized && (i == size_t(q) || i == size_t(q) + 1))
      continue; // checked above
    const fb::Buffer &in = buffer(step.inputs()->Get(i));
    bool ok = (i < 3 && idOperand[i]) ? in.dtype() == fb::DType::I64
                                      : floatLike(in.dtype());
    if (!ok)
      return Status::error(where + ": operand '" + name(step.inputs()->Get(i)) +
                           "' has the wrong element type");
  }
  for (uint32_t id : *step.outputs())
    if (idResult ? buffer(id).dtype() != fb::DType::I64 : buffer(id).dtype() != fb::DType::F32)
      return Status::error(where + ": result '" + name(id) + "' has the wrong element type");
  return Status::success();
}

/// Every buffer's shape at these symbol values, each within its bytes.
Status RankRunner::evaluateShapes(const int64_t symbols[kSymbols]) {
  shapes.assign(rank.buffers()->size(), Shape());
  for (uint32_t i = 0; i < shapes.size(); ++i) {
    const fb::Buffer &b = buffer(i);
    if (!b.shape())
      return Status::error("buffer '" + name(i) + "' has no shape");
    // 128-bit arithmetic: a corrupt constant must not wrap around.
    unsigned __int128 bytes = elementSize(b.dtype());
    for (const fb::Dim *dim : *b.shape()) {
      if (dim->constant() < 0)
        return Status::error("buffer '" + name(i) + "' has a negative size");
      unsigned __int128 extent = static_cast<uint64_t>(dim->constant());
      if (dim->symbols())
        for (auto s : *dim->symbols()) {
          if (static_cast<size_t>(s) >= kSymbols)
            return Status::error("buffer '" + name(i) + "' names an unknown size");
          extent *= static_cast<uint64_t>(symbols[static_cast<size_t>(s)]);
          if (extent > static_cast<uint64_t>(INT64_MAX))
            return Status::error("buffer '" + name(i) + "' is too large");
        }
      shapes[i].push_back(static_cast<int64_t>(extent));
      bytes *= extent;
      if (bytes > b.size() && extent != 0)
        return Status::error("buffer '" + name(i) + "' needs more than the " +
                             str(b.size()) + " bytes the artifact reserved for it");
    }
  }
  return Status::success();
}

Status RankRunner::runStep(const fb::Step &step, int64_t pastTokens) {
  auto in = [&](size_t i) { return step.inputs()->Get(i); };
  uint32_t outId = step.outputs()->Get(0);
  const Shape &out = shapes[outId];
  auto f = [&](uint32_t id) { return reinterpret_cast<float *>(data[id]); };
  auto ids = [&](uint32_t id) { return reinterpret_cast<int64_t *>(data[id]); };
  auto mismatch = [&](const std::string &what) {
    std::string text = "step '" +
                       std::string(stepSignature(unsigned(step.kind()))->name) +
                       "' -> '" + name(outId) + "': " + what + " (shapes";
    for (size_t i = 0; i < step.inputs()->size(); ++i)
      text += " " + shapeText(shapes[in(i)]);
    return Status::error(text + " -> " + shapeText(out) + ")");
  };
  auto last = [](const Shape &s) { return s.empty() ? int64_t(1) : s.back(); };
  // The step's weight operand: f32, bf16 kept narrow, or int8 values with
  // their scales.
  bool quantized = quantizedOperand(step);
  bool int8Input = quantizesInput(step);
  auto weights = [&](size_t i) -> cpu::Weights {
    cpu::Weights w = bf16[in(i)] ? cpu::Weights(reinterpret_cast<const uint16_t *>(data[in(i)]))
                     : !quantized ? cpu::Weights(f(in(i)))
                                  : cpu::Weights(reinterpret_cast<const int8_t *>(data[in(i)]),
                                                 f(in(i + 1)), shapes[in(i + 1)][1]);
    w.int8Input = quantized && int8Input;
    w.int16Rows = quantized && computesInBf16;
    w.packed = packed[in(i)].get();
    return w;
  };
  if (quantized) {
    int q = quantizableOperand(static_cast<unsigned>(step.kind()));
    const Shape &values = shapes[in(q)], &scales = shapes[in(q + 1)];
    if (values.size() != 2 || scales.size() != 2 || scales[0] != values[0] ||
        scales[1] <= 0 || values[1] % scales[1] != 0)
      return mismatch("int8 values [rows, cols] need scales [rows, groups], groups dividing cols");
    if (int8Input && scales[1] != 1)
      return mismatch("an int8 input needs one weight scale per output channel");
  }
  int64_t n = elements(out);
  // Below about this many floats a step is not worth splitting.
  constexpr int64_t kGrain = 16384;
  auto rowGrain = [&](int64_t width) {
    return std::max<int64_t>(1, kGrain / std::max<int64_t>(width, 1));
  };

  switch (step.kind()) {
  case fb::StepKind::Embedding: {
    uint32_t idsId = in(quantized ? 2 : 1);
    const Shape &table = shapes[in(0)], &index = shapes[idsId];
    if (table.size() != 2 || n != elements(index) * table[1])
      return mismatch("the table must be [rows, width] and the result ids x width");
    if (step.ints()->Get(0) < 0 || step.ints()->Get(1) < step.ints()->Get(0) + table[0])
      return mismatch("the table's rows lie outside the valid ids");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    if (Status s = cpu::embedding(weights(0), table[0], table[1], ids(idsId),
                                  elements(index), f(outId), step.ints()->Get(0),
                                  step.ints()->Get(1));
        !s.ok())
      return Status::error("embedding '" + name(in(0)) + "': " + s.message());
    return Status::success();
  }
  case fb::StepKind::Positions: {
    if (shapes[in(0)] != out)
      return mismatch("positions have the shape of their ids");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    int64_t seq = last(out);
    for (int64_t i = 0; i < n; ++i)
      ids(outId)[i] = pastTokens + i % seq;
    return Status::success();
  }
  case fb::StepKind::Add: {
    int64_t na = elements(shapes[in(0)]), nb = elements(shapes[in(1)]);
    const float *a = f(in(0)), *b = f(in(1));
    if (na < nb)
      std::swap(a, b), std::swap(na, nb);
    if (na != n || nb == 0 || n % nb != 0)
      return mismatch("the operands do not broadcast to the result");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    float *y = f(outId);
    cpu::parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
      cpu::add(a, b, nb, begin, end, y);
    });
    return Status::success();
  }
  case fb::StepKind::Linear: {
    const Shape &x = shapes[in(0)], &w = shapes[in(1)];
    size_t biasIndex = quantized ? 3 : 2;
    bool bias = step.inputs()->size() > biasIndex;
    if (w.size() != 2 || x.empty() || x.back() != w[1] || last(out) != w[0] ||
        n != elements(x) / w[1] * w[0] ||
        (bias && elements(shapes[in(biasIndex)]) != w[0]))
      return mismatch("expected x[..., in], w[out, in], b[out] -> [..., out]");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    std::optional<cpu::GeluKind> gelu;
    if (int64_t epilogue = step.ints()->Get(0))
      gelu = epilogue == 2 ? cpu::GeluKind::Tanh : cpu::GeluKind::Erf;
    cpu::linear(f(in(0)), elements(x) / w[1], w[1], weights(1),
                bias ? f(in(biasIndex)) : nullptr, w[0], f(outId), gelu);
    return Status::success();
  }
  case fb::StepKind::AddLayerNorm:
  case fb::StepKind::LinearAddLayerNorm: {
    // sum = lhs + rhs, or x W^T (+ b) + residual; then normalized = LN(sum).
    bool linear = step.kind() == fb::StepKind::LinearAddLayerNorm;
    size_t norm = step.inputs()->size() - 2; // gamma, beta come last
    uint32_t normId = step.outputs()->Get(1);
    int64_t width = last(out);
    if (shapes[normId] != out || elements(shapes[in(norm)]) != width ||
        elements(shapes[in(norm + 1)]) != width)
      return mismatch("sum and norm share a shape; gamma and beta its last dimension");
    float *sum = f(outId);
    if (linear) {
      const Shape &x = shapes[in(0)], &w = shapes[in(1)];
      bool bias = step.ints()->Get(0) != 0;
      size_t biasIndex = quantized ? 3 : 2;
      uint32_t residual = in(biasIndex + (bias ? 1 : 0));
      if (w.size() != 2 || x.empty() || x.back() != w[1] || w[0] != width ||
          shapes[residual] != out || elements(x) / w[1] * w[0] != n ||
          (bias && elements(shapes[in(biasIndex)]) != width))
        return mismatch("expected x[..., in], w[out, in], b[out], residual [..., out]");
      if (onGpu)
        return runOnGpu(step, pastTokens);
      // The GEMM accumulates into the residual (plus the bias).
      const float *r = f(residual), *b = bias ? f(in(biasIndex)) : nullptr;
      cpu::parallelFor(n / std::max<int64_t>(width, 1), rowGrain(width),
                       [&](int64_t begin, int64_t end) {
                         for (int64_t row = begin; row < end; ++row)
                           for (int64_t i = 0; i < width; ++i)
                             sum[row * width + i] =
                                 r[row * width + i] + (b ? b[i] : 0.0f);
                       });
      cpu::linearAccumulate(f(in(0)), n / width, w[1], weights(1), w[0], sum);
    } else {
      if (shapes[in(0)] != out || shapes[in(1)] != out)
        return mismatch("a residual add of two tensors of one shape");
      if (onGpu)
        return runOnGpu(step, pastTokens);
      const float *a = f(in(0)), *b = f(in(1));
      cpu::parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
        cpu::add(a, b, n, begin, end, sum);
      });
    }
    const float *gamma = f(in(norm)), *beta = f(in(norm + 1));
    float eps = static_cast<float>(step.floats()->Get(0));
    float *y = f(normId);
    cpu::parallelFor(n / std::max<int64_t>(width, 1), rowGrain(width),
                     [&](int64_t begin, int64_t end) {
                       cpu::layerNorm(sum + begin * width, end - begin, width, gamma,
                                      beta, eps, y + begin * width);
                     });
    return Status::success();
  }
  case fb::StepKind::Attention: {
    const Shape &qkv = shapes[in(0)];
    int64_t heads = step.ints()->Get(0);
    bool causal = step.ints()->Get(1) != 0, hasMask = step.ints()->Get(2) != 0,
         cached = step.ints()->Get(3) != 0;
    if (qkv.size() != 3 || heads <= 0 || qkv[2] % (3 * heads) != 0 || out.size() != 3 ||
        out[0] != qkv[0] || out[1] != qkv[1] || out[2] * 3 != qkv[2])
      return mismatch("expected qkv [batch, seq, 3 * heads * dim] -> [batch, seq, heads * dim]");
    cpu::AttentionShape a{qkv[0], qkv[1], heads, qkv[2] / (3 * heads),
                          static_cast<float>(step.floats()->Get(0)), causal};
    a.bf16 = computesInBf16;
    float *kCache = nullptr, *vCache = nullptr;
    if (cached) {
      uint32_t k = in(hasMask ? 2 : 1), v = in(hasMask ? 3 : 2);
      const Shape &cache = shapes[k];
      if (cache.size() != 4 || shapes[v] != cache || cache[0] != a.batch ||
          cache[1] != heads || cache[3] != a.dim)
        return mismatch("the caches must be [batch, heads, capacity, dim]");
      if (pastTokens + a.seq > cache[2])
        return Status::error("the KV cache holds " + str(cache[2]) + " tokens; " +
                             str(pastTokens) + " cached + " + str(a.seq) +
                             " new ones do not fit");
      a.past = pastTokens;
      a.capacity = cache[2];
      kCache = f(k);
      vCache = f(v);
    }
    const int64_t *mask = nullptr;
    if (hasMask) {
      if (shapes[in(1)] != Shape{a.batch, a.past + a.seq})
        return mismatch("the attention mask must be [batch, keys]");
      mask = ids(in(1));
    }
    if (onGpu)
      return runOnGpu(step, pastTokens);
    cpu::attention(a, f(in(0)), mask, kCache, vCache, f(outId));
    return Status::success();
  }
  case fb::StepKind::Matmul: {
    const Shape &a = shapes[in(0)], &b = shapes[in(1)];
    bool transposeB = step.ints()->Get(0) != 0;
    if (a.size() < 2 || b.size() != a.size() || out.size() != a.size())
      return mismatch("operands must be batched matrices of one rank");
    int64_t m = a[a.size() - 2], k = a.back(), nn = out.back();
    int64_t rows = b[b.size() - 2], cols = b.back();
    int64_t batch = span(a, 0, a.size() - 2);
    // The rhs may hold spare rows (a KV cache): only the first k (or n) count.
    bool fits = transposeB ? cols == k && rows >= nn : cols == nn && rows >= k;
    if (!fits || out[out.size() - 2] != m || span(b, 0, b.size() - 2) != batch ||
        span(out, 0, out.size() - 2) != batch)
      return mismatch("the matrix dimensions do not agree");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    cpu::batchedMatmul(f(in(0)), f(in(1)), batch, m, k, nn, transposeB,
                       rows * cols, f(outId));
    return Status::success();
  }
  case fb::StepKind::LayerNorm: {
    int64_t width = last(out);
    if (shapes[in(0)] != out || elements(shapes[in(1)]) != width ||
        elements(shapes[in(2)]) != width)
      return mismatch("gamma and beta must match the last dimension");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    const float *x = f(in(0)), *gamma = f(in(1)), *beta = f(in(2));
    float *y = f(outId);
    float eps = static_cast<float>(step.floats()->Get(0));
    cpu::parallelFor(n / std::max<int64_t>(width, 1), rowGrain(width),
                      [&](int64_t begin, int64_t end) {
                        cpu::layerNorm(x + begin * width, end - begin, width,
                                       gamma, beta, eps, y + begin * width);
                      });
    return Status::success();
  }
  case fb::StepKind::Gelu:
  case fb::StepKind::Tanh:
  case fb::StepKind::Scale:
  case fb::StepKind::Softmax: {
    if (elements(shapes[in(0)]) != n)
      return mismatch("an elementwise step keeps its shape");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    const float *x = f(in(0));
    float *y = f(outId);
    if (step.kind() == fb::StepKind::Softmax) {
      int64_t width = std::max<int64_t>(last(out), 1);
      cpu::parallelFor(n / width, rowGrain(width), [&](int64_t begin, int64_t end) {
        std::memmove(y + begin * width, x + begin * width,
                     (end - begin) * width * sizeof(float));
        cpu::softmax(y + begin * width, end - begin, width);
      });
      return Status::success();
    }
    cpu::GeluKind gelu = step.kind() == fb::StepKind::Gelu && step.ints()->Get(0)
                             ? cpu::GeluKind::Tanh
                             : cpu::GeluKind::Erf;
    float factor = step.kind() == fb::StepKind::Scale
                       ? static_cast<float>(step.floats()->Get(0))
                       : 1.0f;
    cpu::parallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
      if (step.kind() == fb::StepKind::Gelu)
        cpu::gelu(x + begin, end - begin, gelu, y + begin);
      else if (step.kind() == fb::StepKind::Tanh)
        cpu::tanh(x + begin, end - begin, y + begin);
      else
        for (int64_t i = begin; i < end; ++i)
          y[i] = x[i] * factor;
    });
    return Status::success();
  }
  case fb::StepKind::AttentionMask: {
    if (out.size() != 4 || shapes[in(0)] != out)
      return mismatch("scores must be [batch, heads, queries, keys]");
    const int64_t *padding = nullptr;
    if (step.inputs()->size() == 2) {
      if (shapes[in(1)] != Shape{out[0], out[3]})
        return mismatch("the attention mask must be [batch, keys]");
      padding = ids(in(1));
    }
    if (out[3] < out[2])
      return mismatch("fewer keys than queries");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    const float *x = f(in(0));
    float *y = f(outId);
    bool causal = step.ints()->Get(0) != 0;
    cpu::parallelFor(out[0] * out[1] * out[2], rowGrain(out[3]),
                      [&](int64_t begin, int64_t end) {
                        std::memmove(y + begin * out[3], x + begin * out[3],
                                     (end - begin) * out[3] * sizeof(float));
                        cpu::attentionMask(y, out[1], out[2], out[3], padding,
                                           causal, begin, end);
                      });
    return Status::success();
  }
  case fb::StepKind::SwapMiddleAxes: {
    const Shape &x = shapes[in(0)];
    // [a, b, c*d] -> [a, c, b, d] when splitting heads; [a, b, c, d] -> [a, c, b*d] when merging.
    Shape dims = x.size() == 4 ? x
                 : out.size() == 4 ? Shape{out[0], out[2], out[1], out[3]}
                                   : Shape();
    if (dims.empty() || elements(dims) != elements(x) || n != elements(x))
      return mismatch("one side must be [a, b, c, d]");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    cpu::swapMiddleAxes(f(in(0)), dims[0], dims[1], dims[2], dims[3], f(outId));
    return Status::success();
  }
  case fb::StepKind::Slice:
  case fb::StepKind::Concat: {
    // Both are block copies along `dim`: slice reads [start, start + size)
    // of its input (start counted from the end when negative); concat
    // writes each input after the previous one.
    int64_t dim = step.ints()->Get(0);
    if (dim < 0 || static_cast<size_t>(dim) >= out.size())
      return mismatch("the dimension is out of range");
    int64_t outer = span(out, 0, dim), inner = span(out, dim + 1, out.size());
    bool slice = step.kind() == fb::StepKind::Slice;
    int64_t filled = 0;
    for (size_t i = 0; i < step.inputs()->size(); ++i) {
      const Shape &x = shapes[in(i)];
      int64_t offset = slice && x.size() == out.size() ? sliceStart(step, x[dim]) : 0;
      int64_t extent = slice ? out[dim] : (x.size() == out.size() ? x[dim] : -1);
      if (x.size() != out.size() || span(x, 0, dim) != outer ||
          span(x, dim + 1, x.size()) != inner || offset < 0 ||
          (slice ? offset + extent > x[dim] : filled + extent > out[dim]))
        return mismatch("the blocks do not fit");
      for (int64_t o = 0; o < outer && !onGpu; ++o)
        std::memcpy(f(outId) + (o * out[dim] + filled) * inner,
                    f(in(i)) + (o * x[dim] + offset) * inner,
                    extent * inner * sizeof(float));
      filled += extent;
    }
    if (filled != out[dim])
      return mismatch("the inputs do not fill the result");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    return Status::success();
  }
  case fb::StepKind::Copy: {
    size_t size = elementSize(buffer(outId).dtype());
    if (elements(shapes[in(0)]) != n || elementSize(buffer(in(0)).dtype()) != size)
      return mismatch("a copy keeps its element count");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    std::memmove(data[outId], data[in(0)], n * size);
    return Status::success();
  }
  case fb::StepKind::CacheWrite: {
    const Shape &x = shapes[in(0)];
    if (x.size() != 4 || out.size() != 4 || x[0] != out[0] || x[1] != out[1] ||
        x[3] != out[3])
      return mismatch("the cache must be [batch, heads, capacity, dim]");
    if (pastTokens + x[2] > out[2])
      return Status::error("the KV cache holds " + str(out[2]) + " tokens; " +
                           str(pastTokens) + " cached + " + str(x[2]) +
                           " new ones do not fit");
    if (onGpu)
      return runOnGpu(step, pastTokens);
    for (int64_t r = 0; r < x[0] * x[1]; ++r)
      std::memcpy(f(outId) + (r * out[2] + pastTokens) * x[3],
                  f(in(0)) + r * x[2] * x[3], x[2] * x[3] * sizeof(float));
    return Status::success();
  }
  case fb::StepKind::AllReduce: {
    if (elements(shapes[in(0)]) != n)
      return mismatch("an all-reduce keeps its shape");
    collectiveBytes += n * sizeof(float);
    if (Status s = onGpu ? runOnGpu(step, pastTokens)
                         : comm->allReduceSum(index, f(in(0)), f(outId), n);
        !s.ok())
      return Status::error("all-reduce '" + name(outId) + "': " + s.message());
    return Status::success();
  }
  case fb::StepKind::AllGather: {
    const Shape &x = shapes[in(0)];
    int64_t axis = step.ints()->Get(0);
    int ranks = comm->size();
    if (axis != static_cast<int64_t>(x.size()) - 1 || out.size() != x.size() ||
        out.back() != x.back() * ranks || elements(x) * ranks != n)
      return mismatch("an all-gather concatenates the ranks' last dimensions");
    collectiveBytes += elements(x) * sizeof(float);
    if (Status s = onGpu ? runOnGpu(step, pastTokens)
                         : comm->allGather(index, f(in(0)),
                                           elements(x) / std::max<int64_t>(x.back(), 1), x.back(),
                                           f(outId));
        !s.ok())
      return Status::error("all-gather '" + name(outId) + "': " + s.message());
    return Status::success();
  }
  }
  return mismatch("this runtime cannot run it");
}

Status RankRunner::bind(const std::string &entryName, const Inputs &inputs) {
  const fb::Entry *e = entry(entryName);
  if (!e) {
    std::string names;
    for (const fb::Entry *x : *rank.entries())
      names += (names.empty() ? "" : ", ") + x->name()->str();
    return Status::error("the artifact has no entry '" + entryName +
                         "' (it has: " + names + ")");
  }
  const fb::Model &model = *artifact.root().model();
  for (const auto &[inputName, tensor] : inputs) {
    bool known = false;
    for (uint32_t id : *e->inputs())
      known |= name(id) == inputName;
    if (!known)
      return Status::error("entry '" + entryName + "' has no input '" + inputName + "'");
    if (elements(tensor.shape) != static_cast<int64_t>(tensor.data.size()))
      return Status::error("input '" + inputName + "': shape " +
                           shapeText(tensor.shape) + " does not hold its " +
                           str(tensor.data.size()) + " values");
  }
  auto idsIt = inputs.find("input_ids");
  if (idsIt == inputs.end())
    return Status::error("input_ids is required");
  const Shape &idShape = idsIt->second.shape;
  uint32_t idsBuffer = 0;
  for (uint32_t id : *e->inputs())
    if (name(id) == "input_ids")
      idsBuffer = id;
  size_t rankWanted = buffer(idsBuffer).shape() ? buffer(idsBuffer).shape()->size() : 2;
  if (idShape.size() != rankWanted)
    return Status::error("input_ids must be " +
                         std::string(rankWanted == 3 ? "[batch, choices, sequence]"
                                                     : "[batch, sequence]") +
                         ", got " + shapeText(idShape));
  for (int64_t d : idShape)
    if (d <= 0)
      return Status::error("input_ids " + shapeText(idShape) + " is empty");

  bool decode = entryName == "decode",
       cached = decode || entryName == "prefill" || entryName == "prefill_last";
  symbols[0] = idShape[0];
  symbols[1] = idShape.back();
  symbols[2] = idShape.size() == 3 ? idShape[1] : 1;
  symbols[3] = decode ? past : 0;
  symbols[4] = symbols[3] + symbols[1];
  if (decode && past == 0)
    return Status::error("decode continues a sequence: run prefill first");
  if (decode && symbols[0] != cacheBatch)
    return Status::error("decode got a batch of " + str(symbols[0]) +
                         " but the cache holds " + str(cacheBatch) + " sequences");
  if (symbols[0] > model.max_batch())
    return Status::error("batch of " + str(symbols[0]) + " exceeds the " +
                         str(model.max_batch()) +
                         " this artifact was compiled for (--max-batch)");
  if (idShape.size() == 3 && symbols[2] > model.max_choices())
    return Status::error(str(symbols[2]) + " choices exceed the " +
                         str(model.max_choices()) +
                         " this artifact was compiled for (--max-choices)");
  if (symbols[1] > model.max_sequence())
    return Status::error("a sequence of " + str(symbols[1]) +
                         " tokens exceeds the " + str(model.max_sequence()) +
                         " this artifact was compiled for (--max-seq)");
  if (cached) {
    int64_t context = cacheCapacity();
    if (symbols[4] > context)
      return Status::error(str(symbols[3]) + " cached + " + str(symbols[1]) +
                           " new tokens exceed the model's context of " +
                           str(context) + " positions");
  }
  if (Status s = evaluateShapes(symbols); !s.ok())
    return s;

  for (uint32_t id : *e->inputs()) {
    std::string inputName = name(id);
    int64_t *dst = reinterpret_cast<int64_t *>(data[id]);
    int64_t count = elements(shapes[id]);
    auto it = inputs.find(inputName);
    if (it == inputs.end()) {
      // Hugging Face's defaults: one segment, every token attended.
      if (inputName != "token_type_ids" && inputName != "attention_mask")
        return Status::error("missing input '" + inputName + "'");
      std::fill(dst, dst + count, inputName == "attention_mask" ? 1 : 0);
      continue;
    }
    if (it->second.shape != shapes[id])
      return Status::error("input '" + inputName + "' has shape " +
                           shapeText(it->second.shape) + ", expected " +
                           shapeText(shapes[id]) +
                           (decode && inputName == "attention_mask"
                                ? " (cached and new tokens)"
                                : ""));
    std::copy(it->second.data.begin(), it->second.data.end(), dst);
  }

  // Ids are checked before any step runs, so a bad one cannot leave a
  // half-updated KV cache behind.
  for (const fb::Step *step : *e->steps()) {
    if (step->kind() != fb::StepKind::Embedding)
      continue;
    // The ids come last, after an int8 table's scales.
    uint32_t idBuf = step->inputs()->Get(step->inputs()->size() - 1);
    if (buffer(idBuf).kind() != fb::BufferKind::Input)
      continue;
    int64_t rows = step->ints()->Get(1); // valid ids, all ranks' rows
    const int64_t *v = reinterpret_cast<int64_t *>(data[idBuf]);
    for (int64_t i = 0; i < elements(shapes[idBuf]); ++i)
      if (v[i] < 0 || v[i] >= rows)
        return Status::error(name(idBuf) + " " + str(v[i]) + " at position " + str(i) +
                             " is outside [0, " + str(rows) + ")");
  }

  bound = e;
  cachedCall = cached;
  decodeCall = decode;
  return Status::success();
}

Status RankRunner::execute() {
  if (cachedCall && !decodeCall)
    past = 0; // a prefill starts a new sequence
  if (Status s = onGpu ? executeOnGpu() : runSteps(); !s.ok()) {
    past = 0; // the cache may be partly written
    return s;
  }
  if (cachedCall) {
    past = symbols[4];
    cacheBatch = symbols[0];
  }
  if (profiling)
    ++callsTimed[bound->name()->str()];
  return Status::success();
}

std::string RankRunner::stepLabel(const fb::Step &step) const {
  std::string label = stepSignature(static_cast<unsigned>(step.kind()))->name;
  if (step.kind() == fb::StepKind::Linear || step.kind() == fb::StepKind::LinearAddLayerNorm) {
    uint32_t w = step.inputs()->Get(1);
    label += std::string(" ") + fb::EnumNameDType(buffer(w).dtype()) + " " + shapeText(shapes[w]);
  }
  return label;
}

Status RankRunner::runSteps() {
  for (const fb::Step *step : *bound->steps()) {
#ifdef MEGATRON_HAVE_CUDA_BACKEND
    if (profiling && onGpu) // the step's start on the device
      if (Status s = gpu->mark(); !s.ok())
        return s;
#endif
    auto start = std::chrono::steady_clock::now();
    if (Status s = runStep(*step, symbols[3]); !s.ok())
      return s;
    if (profiling && !onGpu)
      recordStepTime(*step,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return Status::success();
}

Status RankRunner::runOnGpu(const fb::Step &step, int64_t pastTokens) {
#ifdef MEGATRON_HAVE_CUDA_BACKEND
  return gpu->run(step, shapes, pastTokens);
#else
  (void)step, (void)pastTokens;
  return Status::error("no CUDA backend in this build");
#endif
}

Status RankRunner::executeOnGpu() {
#ifdef MEGATRON_HAVE_CUDA_BACKEND
  auto bytes = [&](uint32_t id) { return elements(shapes[id]) * elementSize(buffer(id).dtype()); };
  for (uint32_t id : *bound->inputs())
    if (Status s = gpu->upload(id, data[id], bytes(id)); !s.ok())
      return s;
  // A decode step of one token per sequence: the same launches each step.
  bool graph = gpuGraphs && decodeCall && symbols[1] == 1;
  if (Status s = gpu->beginCall(symbols[3], graph ? bound : nullptr, symbols[0]); !s.ok())
    return s;
  Status s = runSteps();
  if (s.ok() && profiling) // the last step's end
    s = gpu->mark();
  if (Status ended = gpu->endCall(s.ok()); s.ok())
    s = ended;
  if (!s.ok())
    return s;
  // A kernel's failure shows here; readOutputs copies the outputs.
  if (Status synchronized = gpu->synchronize(); !synchronized.ok() || !profiling)
    return synchronized;
  std::vector<double> seconds;
  if (Status timed = gpu->markIntervals(seconds); !timed.ok())
    return timed;
  for (size_t i = 0; i < seconds.size() && i < bound->steps()->size(); ++i)
    recordStepTime(*bound->steps()->Get(i), seconds[i]);
  return Status::success();
#else
  return Status::error("no CUDA backend in this build");
#endif
}

Status RankRunner::readOutputs(Outputs &outputs) const {
  // Tensors the caller passes in again keep their storage: a repeated call
  // copies into memory already paged in (BERT-345M's logits at 8 x 512 are
  // 500 MB, whose fresh pages cost a third of a second), on all threads;
  // from the GPU, straight into them.
  Outputs kept;
  for (uint32_t id : *bound->outputs()) {
    auto found = outputs.find(name(id));
    FloatTensor &t = kept[name(id)];
    if (found != outputs.end())
      t = std::move(found->second);
    t.shape = shapes[id];
    t.data.resize(elements(shapes[id]));
    float *dst = t.data.data();
#ifdef MEGATRON_HAVE_CUDA_BACKEND
    if (onGpu) {
      if (Status s = gpu->download(dst, id, t.data.size() * sizeof(float)); !s.ok())
        return s;
      continue;
    }
#endif
    const float *src = reinterpret_cast<const float *>(data[id]);
    cpu::parallelFor(elements(shapes[id]), 1 << 16, [&](int64_t begin, int64_t end) {
      std::memcpy(dst + begin, src + begin, (end - begin) * sizeof(float));
    });
  }
  outputs = std::move(kept);
  return Status::success();
}

/// All ranks this process runs: one (a single-rank artifact, or one rank
/// of an MPI job) or all of them, as threads.
struct Session::Impl {
  const Artifact &artifact;
  std::shared_ptr<Communicator> comm;
  std::vector<std::unique_ptr<RankRunner>> ranks;
  int threadsPerRank = 1;

  explicit Impl(const Artifact &artifact) : artifact(artifact) {}
  RankRunner &first() { return *ranks.front(); }
  const RankRunner &first() const { return *ranks.front(); }
  /// Runs `entry` on every rank; copies its outputs into `outputs` if any.
  Status run(const std::string &entry, const Inputs &inputs, Outputs *outputs);
};

Status Session::Impl::run(const std::string &entry, const Inputs &inputs,
                          Outputs *outputs) {
  // Every rank checks the same inputs the same way; bind them all before
  // anything runs, so a bad input changes no rank's state.
  for (auto &r : ranks)
    if (Status s = r->bind(entry, inputs); !s.ok())
      return s;
  if (ranks.size() == 1 && (!comm || comm->size() == 1)) {
    if (Status s = first().execute(); !s.ok())
      return s;
    return outputs ? first().readOutputs(*outputs) : Status::success();
  }
  comm->reset();
  std::vector<Status> results(ranks.size(), Status::success());
  auto runRank = [&](size_t i) {
    cpu::setThreads(threadsPerRank);
    results[i] = ranks[i]->execute();
    if (results[i].ok())
      return;
    ranks[i]->dropGraphs(); // which an NCCL abort would wait for
    // Wake the ranks waiting for this one.
    comm->abort("rank " + std::to_string(ranks[i]->index) + " failed: " + results[i].message());
  };
  std::vector<std::thread> threads;
  for (size_t i = 1; i < ranks.size(); ++i)
    threads.emplace_back(runRank, i);
  runRank(0);
  for (std::thread &t : threads)
    t.join();
  for (const Status &s : results)
    if (!s.ok())
      return s;
  return outputs ? first().readOutputs(*outputs) : Status::success();
}

/// The CUDA device rank `r` of `ranks` runs on: the communicator's for it
/// (NCCL); else options.device for a single rank, and for more, devices
/// from options.device on, one per rank, wrapping around (the processes
/// of an MPI job so too, by their index on the host: one GPU each on a
/// host of as many, a shared GPU on one).
static Status deviceOfRank(const SessionOptions &options, Communicator *comm, int r, int ranks,
                           int &device) {
  if (DeviceCollectives *collectives = comm ? comm->deviceCollectives() : nullptr) {
    device = collectives->device(r);
    if (device < 0)
      return Status::error("the " + comm->kind() + " communicator has no device for rank " +
                           str(r));
    return Status::success();
  }
  device = options.device;
  if (ranks == 1)
    return Status::success();
#ifdef MEGATRON_HAVE_CUDA_BACKEND
  int count = 0;
  if (Status s = cuda::Device::count(count); !s.ok())
    return s;
  if (options.device >= count)
    return Status::error("no CUDA device " + str(options.device) + " (this machine has " +
                         str(count) + ")");
  int index = options.rank >= 0 && options.localRank >= 0 ? options.localRank : r;
  device = (options.device + index) % count;
#endif
  return Status::success();
}

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

Status Session::create(const Artifact &artifact, const SessionOptions &options,
                       std::unique_ptr<Session> &out) {
  bool gpu = options.backend == SessionOptions::Backend::Cuda;
  auto impl = std::make_unique<Impl>(artifact);
  int ranks = static_cast<int>(artifact.root().ranks()->size());
  if (Status s = gpu ? Status::success() : cpu::loadBlas(); !s.ok())
    return s;
  std::vector<int> mine;
  impl->comm = options.communicator;
  if (impl->comm && impl->comm->size() != ranks)
    return Status::error(artifact.path() + " has " + str(ranks) +
                         " tensor-parallel rank(s), but the " + impl->comm->kind() +
                         " communicator has " + str(impl->comm->size()) +
                         (options.rank >= 0 ? " (run it with as many processes as ranks)"
                                            : ""));
  if (options.rank >= 0) {
    // One rank of a job whose other ranks are elsewhere (MPI).
    if (!impl->comm)
      return Status::error("running one rank (" + str(options.rank) +
                           ") needs the communicator of its job");
    if (options.rank >= ranks)
      return Status::error("rank " + str(options.rank) + " is not one of the artifact's " +
                           str(ranks) + " ranks");
    mine = {options.rank};
  } else {
    for (int r = 0; r < ranks; ++r)
      mine.push_back(r);
    if (ranks > 1 && !impl->comm)
      impl->comm = makeInProcessCommunicator(ranks, options.collectiveTimeoutSeconds);
  }
  int cores = options.threads > 0
                  ? options.threads
                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // Ranks that share this process share its cores.
  impl->threadsPerRank = std::max(1, cores / static_cast<int>(mine.size()));
  cpu::setThreads(impl->threadsPerRank);
  for (int r : mine) {
    int device = -1;
    if (gpu)
      if (Status s = deviceOfRank(options, impl->comm.get(), r, ranks, device); !s.ok())
        return s;
    impl->ranks.push_back(std::make_unique<RankRunner>(
        artifact, *artifact.root().ranks()->Get(r), r, impl->comm.get()));
    // Profiling times steps between events, which a replayed graph has
    // none of: every rank then launches its steps (the ranks of a decode
    // step wait on one another in its collectives). Nor do several ranks of
    // one process record graphs: NCCL warns that graphs of several GPUs per
    // process may deadlock, and a failed rank could not drop the others'
    // graphs, which NCCL's abort waits for.
    bool graphs = options.cudaGraphs && !options.profile && mine.size() == 1;
    if (Status s = impl->ranks.back()->prepare(device, graphs); !s.ok())
      return s;
  }
  impl->first().profiling = options.profile;
  out.reset(new Session(std::move(impl)));
  return Status::success();
}

std::vector<std::string> Session::entries() const {
  std::vector<std::string> names;
  for (const fb::Entry *e : *impl_->first().rank.entries())
    names.push_back(e->name()->str());
  return names;
}

std::vector<std::string> Session::inputNames(const std::string &entry) const {
  std::vector<std::string> names;
  if (const fb::Entry *e = impl_->first().entry(entry))
    for (uint32_t id : *e->inputs())
      names.push_back(impl_->first().name(id));
  return names;
}

std::vector<std::string> Session::outputNames(const std::string &entry) const {
  std::vector<std::string> names;
  if (const fb::Entry *e = impl_->first().entry(entry))
    for (uint32_t id : *e->outputs())
      names.push_back(impl_->first().name(id));
  return names;
}

Status Session::run(const std::string &entry, const Inputs &inputs,
                    Outputs &outputs) {
  return impl_->run(entry, inputs, &outputs);
}

Status Session::run(const std::string &entry, const Inputs &inputs) {
  return impl_->run(entry, inputs, nullptr);
}

int64_t Session::cachedTokens() const { return impl_->first().past; }
Status Session::traffic(const std::string &entryName, int64_t batch, int64_t sequence,
                        std::vector<StepTraffic> &out) const {
  RankRunner &r = *impl_->ranks.front();
  const fb::Entry *e = r.entry(entryName);
  if (!e)
    return Status::error("the artifact has no entry '" + entryName + "'");
  if (batch < 1 || sequence < 1)
    return Status::error("batch and sequence must be positive");
  int64_t symbols[kSymbols] = {batch, sequence, 1, 0, sequence};
  if (Status s = r.evaluateShapes(symbols); !s.ok())
    return s;
  out.clear();
  auto bytes = [&](uint32_t id) {
    return static_cast<uint64_t>(elements(r.shapes[id])) * elementSize(r.buffer(id).dtype());
  };
  for (const fb::Step *step : *e->steps()) {
    StepTraffic t;
    t.kind = stepSignature(static_cast<unsigned>(step->kind()))->name;
    // A cache moves the rows of the tokens in use, not its capacity; a
    // fused attention appends to the caches it reads.
    auto used = [&](uint32_t id) {
      bool cache = r.buffer(id).kind() == fb::BufferKind::KVCache && r.shapes[id].size() == 4;
      return cache ? bytes(id) / std::max<int64_t>(r.shapes[id][2], 1) * sequence : bytes(id);
    };
    for (uint32_t id : *step->inputs()) {
      const fb::Buffer &b = r.buffer(id);
      if (b.kind() == fb::BufferKind::Weight)
        continue;
      t.bytesRead += used(id);
      if (b.kind() == fb::BufferKind::KVCache && step->kind() == fb::StepKind::Attention)
        t.bytesWritten += used(id);
    }
    for (uint32_t id : *step->outputs())
      t.bytesWritten += used(id);
    out.push_back(std::move(t));
  }
  return Status::success();
}

uint64_t Session::collectiveBytes() const { return impl_->first().collectiveBytes; }

std::vector<StepTime> Session::profile() const {
  const RankRunner &r = impl_->first();
  std::vector<StepTime> times;
  for (const auto &[key, timed] : r.stepTimes) {
    auto calls = r.callsTimed.find(key.first);
    times.push_back({key.first, key.second, timed.first,
                     calls == r.callsTimed.end() ? 0 : calls->second, timed.second});
  }
  std::sort(times.begin(), times.end(), [](const StepTime &a, const StepTime &b) {
    return a.entry != b.entry ? a.entry < b.entry : a.seconds > b.seconds;
  });
  return times;
}

void Session::resetProfile() {
  impl_->first().stepTimes.clear();
  impl_->first().callsTimed.clear();
}
Session::LinearCounts Session::linearCounts(const std::string &entryName) const {
  LinearCounts counts;
  RankRunner &r = *impl_->ranks.front();
  const fb::Entry *e = r.entry(entryName);
  if (!e)
    return counts;
  for (const fb::Step *step : *e->steps()) {
    if (step->kind() != fb::StepKind::Linear && step->kind() != fb::StepKind::LinearAddLayerNorm)
      continue;
    ++counts.linears;
    if (r.quantizedOperand(*step)) {
      ++counts.int8Weights;
      counts.int8Inputs += quantizesInput(*step);
    }
  }
  return counts;
}

uint64_t Session::weightBytes() const {
  uint64_t bytes = 0;
  for (const auto &rank : impl_->ranks)
    bytes += rank->weightBytes;
  return bytes;
}
int Session::ranks() const {
  return static_cast<int>(impl_->artifact.root().ranks()->size());
}
int64_t Session::maxBatch() const { return impl_->artifact.root().model()->max_batch(); }
int64_t Session::maxContext() const {
  int64_t capacity = impl_->first().cacheCapacity();
  return capacity > 0 ? capacity : maxSequence();
}

int64_t Session::maxSequence() const {
  return impl_->artifact.root().model()->max_sequence();
}
