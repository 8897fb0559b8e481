//===- CudaExecutor.cpp - one rank's plan on a GPU ------------------------===//

#include "runtime/cuda/CudaExecutor.h"

#include "megatron/runtime/StepSignature.h"
#include "runtime/DTypes.h"
#include "runtime/Steps.h"
#include "runtime/cuda/KernelShapes.h"

#include <deque>
#include <optional>
#include <string>
#include <utility>

using namespace megatron::runtime;
using namespace megatron::runtime::cuda;
namespace fb = megatron::artifact;

namespace {

/// A kernel's parameters in the order of its MLIR signature, kept at
/// stable addresses until the launch.
class Args {
public:
  Args &buffer(uint64_t pointer, int64_t n) {
    memrefs_.emplace_back(pointer, n).append(params_);
    return *this;
  }
  Args &index(int64_t v) {
    params_.push_back(&indices_.emplace_back(v));
    return *this;
  }
  Args &f32(float v) {
    params_.push_back(&floats_.emplace_back(v));
    return *this;
  }
  Args &i32(int32_t v) {
    params_.push_back(&words_.emplace_back(v));
    return *this;
  }
  /// An i1 parameter, passed as a byte.
  Args &flag(bool v) {
    params_.push_back(&flags_.emplace_back(v ? 1 : 0));
    return *this;
  }
  std::vector<void *> params() const { return params_; }

private:
  std::deque<MemRef1D> memrefs_;
  std::deque<int64_t> indices_;
  std::deque<float> floats_;
  std::deque<int32_t> words_;
  std::deque<uint8_t> flags_;
  std::vector<void *> params_;
};

/// The kernels every artifact's steps need (compiler/cuda/kernels.mlir);
/// those of rarer steps (unfused graphs, W8A8) are checked when launched.
constexpr const char *kKernels[] = {
    "gelu",       "add",         "tanh",          "to_bf16",   "to_f16",
    "layer_norm", "positions",   "kv_append",     "attention", "decode_attention",
    "linear_int8", "dequantize_int8", "embedding"};

constexpr unsigned kElementwiseBlock = 256, kRowBlock = 256, kAttentionBlock = 128;
/// The attention kernel's lanes hold four dimensions of a head each; the
/// decode kernel keeps a row of scores in shared memory.
constexpr int64_t kMaxHeadDim = 128, kMaxDecodeKeys = 4096;
constexpr uint64_t kWorkspaceBytes = 32 << 20;

/// The kernels' %half for a 16-bit type (1 f16, 2 bf16), 0 for f32.
int32_t halfKind(fb::DType type) {
  return type == fb::DType::F16 ? 1 : type == fb::DType::BF16 ? 2 : 0;
}

/// cuBLASLt's operand type for x and w of `type`.
CublasLt::Operands operandsOf(fb::DType type) {
  using Operands = CublasLt::Operands;
  return type == fb::DType::F16 ? Operands::F16 : type == fb::DType::BF16 ? Operands::BF16
                                                                          : Operands::F32;
}

} // namespace

const KernelModuleInfo *cuda::moduleFor(const std::vector<KernelModuleInfo> &modules,
                                        const std::string &arch) {
  auto version = [](const std::string &a) {
    return a.rfind("sm_", 0) == 0 ? std::atoi(a.c_str() + 3) : -1;
  };
  const KernelModuleInfo *best = nullptr;
  int bestVersion = -1; // a name that is not sm_N never qualifies
  for (const KernelModuleInfo &m : modules)
    if (int v = version(m.arch); v <= version(arch) && v > bestVersion) {
      best = &m;
      bestVersion = v;
    }
  return best;
}

Executor::~Executor() {
  if (!device_)
    return;
  for (uint64_t p : {quantizedRows_, staging_, scratch_, workspace_, arena_, past_, weights_})
    if (p)
      (void)device_->free(p);
}

Status Executor::create(const Artifact &artifact, uint32_t rankIndex, int ordinal,
                        Communicator *comm, std::unique_ptr<Executor> &out) {
  std::unique_ptr<Executor> e(new Executor());
  const fb::Rank &rank = *artifact.root().ranks()->Get(rankIndex);
  e->rank_ = &rank;
  e->rankIndex_ = rankIndex;
  e->comm_ = comm;
  e->deviceCollectives_ = comm ? comm->deviceCollectives() : nullptr;
  if (Status s = e->placeWeights(); !s.ok())
    return s;
  if (Status s = Device::open(ordinal, e->device_); !s.ok())
    return s;
  std::vector<KernelModuleInfo> modules = artifact.kernelModules();
  const KernelModuleInfo *chosen = moduleFor(modules, e->device_->arch());
  std::string archs;
  for (const KernelModuleInfo &m : modules)
    archs += (archs.empty() ? "" : ", ") + m.arch;
  if (archs.empty())
    return Status::error(artifact.path() +
                         " carries no GPU code: compile it with --target cuda");
  if (!chosen)
    return Status::error(artifact.path() + " has PTX for " + archs + ", none of which a " +
                         e->device_->arch() + " device runs (add it to --cuda-arch)");
  // Every kernel this runtime launches, with its parameter count.
  for (size_t k = 0; k < chosen->kernels.size() && k < chosen->parameters.size(); ++k)
    e->parameters_[chosen->kernels[k]] = chosen->parameters[k];
  for (const char *kernel : kKernels)
    if (!e->parameters_.count(kernel))
      return Status::error(artifact.path() + ": its GPU code lacks kernel '" + kernel +
                           "' (or its parameters): compile it again with this release");
  if (Status s = e->device_->loadModule(chosen->ptx); !s.ok())
    return s;
  if (Status s = CublasLt::open(e->device_->stream(), e->blas_); !s.ok())
    return s;
  Device &d = *e->device_;
  uint64_t arenaBytes = std::max<uint64_t>(rank.arena_size(), 64);
  for (auto [pointer, bytes] : {std::pair{&e->weights_, std::max<uint64_t>(e->weightBytes_, 64)},
                                std::pair{&e->past_, uint64_t(sizeof(int64_t))},
                                std::pair{&e->arena_, arenaBytes},
                                std::pair{&e->workspace_, kWorkspaceBytes},
                                std::pair{&e->scratch_, std::max<uint64_t>(e->scratchBytes_, 64)},
                                std::pair{&e->staging_,
                                          std::max<uint64_t>(e->stagingBytes_, 64)},
                                std::pair{&e->quantizedRows_,
                                          std::max<uint64_t>(e->quantizedRowsBytes_, 64)}})
    if (Status s = d.allocate(bytes, *pointer); !s.ok())
      return Status::error(s.message() + " (" + std::to_string(bytes) + " bytes)");
  const uint8_t *stored = artifact.weights(rankIndex);
  std::vector<float> wide;
  for (uint32_t i = 0; i < rank.buffers()->size(); ++i) {
    const fb::Buffer &b = *rank.buffers()->Get(i);
    if (b.kind() != fb::BufferKind::Weight)
      continue;
    const uint8_t *data = stored + b.offset();
    if (e->narrowOffsets_[i] >= 0)
      if (Status s = d.copyToDevice(e->weights_ + e->narrowOffsets_[i], data, b.size()); !s.ok())
        return s;
    if (e->wideOffsets_[i] < 0)
      continue;
    uint64_t bytes = b.size();
    if (b.dtype() == fb::DType::F16 || b.dtype() == fb::DType::BF16) {
      wide.resize(b.size() / 2);
      widenToF32(b.dtype(), data, wide.size(), wide.data());
      data = reinterpret_cast<const uint8_t *>(wide.data());
      bytes = wide.size() * sizeof(float);
    }
    if (Status s = d.copyToDevice(e->weights_ + e->wideOffsets_[i], data, bytes); !s.ok())
      return s;
  }
  out = std::move(e);
  return Status::success();
}

Status Executor::placeWeights() {
  const auto &buffers = *rank_->buffers();
  // How each weight is used: as the matrix of a linear, or otherwise.
  enum : uint8_t { kMatrix = 1, kOther = 2 };
  std::vector<uint8_t> use(buffers.size(), 0);
  std::vector<const fb::Step *> linears;
  for (const fb::Entry *e : *rank_->entries())
    for (const fb::Step *step : *e->steps()) {
      bool linear = step->kind() == fb::StepKind::Linear ||
                    step->kind() == fb::StepKind::LinearAddLayerNorm;
      for (uint32_t k = 0; k < step->inputs()->size(); ++k)
        use[step->inputs()->Get(k)] |= linear && k == 1 ? kMatrix : kOther;
      if (linear)
        linears.push_back(step);
      if (quantizesInput(*step))
        quantizedRowsBytes_ =
            std::max<uint64_t>(quantizedRowsBytes_, buffers.Get(step->inputs()->Get(0))->size());
      // An unfused attention's launches take the number of keys from the
      // host, which a recorded graph would keep.
      if (step->kind() == fb::StepKind::Matmul || step->kind() == fb::StepKind::Softmax ||
          step->kind() == fb::StepKind::AttentionMask)
        graphable_ = false;
      if (step->kind() == fb::StepKind::AllGather && deviceCollectives_)
        stagingBytes_ = std::max<uint64_t>(stagingBytes_,
                                           buffers.Get(step->outputs()->Get(0))->size());
    }
  // 16-bit matrices stay 16-bit for the tensor cores; every other weight
  // (and a 16-bit matrix that is also an embedding table: GPT-2's tied LM
  // head) is f32 on the device, 16-bit ones widened as they are copied.
  wideOffsets_.assign(buffers.size(), -1);
  narrowOffsets_.assign(buffers.size(), -1);
  auto place = [&](std::vector<int64_t> &offsets, uint32_t i, uint64_t bytes) {
    offsets[i] = int64_t(weightBytes_);
    weightBytes_ += (bytes + 255) / 256 * 256;
  };
  for (uint32_t i = 0; i < buffers.size(); ++i) {
    const fb::Buffer &b = *buffers.Get(i);
    if (b.kind() != fb::BufferKind::Weight)
      continue;
    std::string name = b.name() ? b.name()->str() : "#" + std::to_string(i);
    if (b.dtype() != fb::DType::F32 && b.dtype() != fb::DType::F16 &&
        b.dtype() != fb::DType::BF16 && b.dtype() != fb::DType::I8)
      return Status::error("weight '" + name + "' is " + fb::EnumNameDType(b.dtype()) +
                           ": the CUDA backend takes f32, f16, bf16 and int8 weights");
    bool narrow = (b.dtype() == fb::DType::BF16 || b.dtype() == fb::DType::F16) &&
                  (use[i] & kMatrix);
    // int8 matrices stay int8; f16 and bf16 weights the kernels read widen.
    uint64_t wide = b.dtype() == fb::DType::I8
                        ? b.size()
                        : b.size() / elementSize(b.dtype()) * sizeof(float);
    if (b.dtype() == fb::DType::I8)
      stagingBytes_ = std::max<uint64_t>(stagingBytes_, b.size() * sizeof(float));
    if (narrow)
      place(narrowOffsets_, i, b.size());
    if (b.dtype() == fb::DType::F16 || b.dtype() == fb::DType::BF16)
      halfType_ = b.dtype();
    if (!narrow || (use[i] & kOther))
      place(wideOffsets_, i, wide);
    // A tied LM head's GEMM reads the 16-bit copy; its embedding, a few rows.
    weightBytesRead_ += narrow ? b.size() : wide;
  }
  // A linear with a 16-bit matrix (or, in a 16-bit artifact, an int8 one
  // beyond the GEMV's rows, unless it quantizes its input: W8A8)
  // multiplies its input rounded to 16 bits, here.
  auto roundedInput = [&](const fb::Step &linear) {
    uint32_t matrix = linear.inputs()->Get(1);
    if (narrowOffsets_[matrix] >= 0)
      return buffers.Get(matrix)->dtype();
    bool int8 = buffers.Get(matrix)->dtype() == fb::DType::I8 && !quantizesInput(linear);
    return int8 ? halfType_ : fb::DType::F32;
  };
  for (const fb::Step *linear : linears)
    if (roundedInput(*linear) != fb::DType::F32)
      scratchBytes_ =
          std::max<uint64_t>(scratchBytes_, buffers.Get(linear->inputs()->Get(0))->size() / 2);
  // A LayerNorm, GELU or decode attention whose result the next step's
  // 16-bit linear takes writes it rounded too (its copy in scratch_),
  // sparing that linear's rounding launch: a layer's QKV, fc1 and fc2
  // inputs, and a decode step's attention projection's. (Unused where an
  // int8 linear's few rows take the GEMV, which reads x in f32.)
  for (const fb::Entry *e : *rank_->entries())
    for (uint32_t i = 0; i + 1 < e->steps()->size(); ++i) {
      const fb::Step &step = *e->steps()->Get(i), &next = *e->steps()->Get(i + 1);
      std::optional<uint32_t> result;
      if (step.kind() == fb::StepKind::LayerNorm || step.kind() == fb::StepKind::Gelu ||
          step.kind() == fb::StepKind::Attention ||
          (step.kind() == fb::StepKind::Linear && step.ints()->Get(0) != 0))
        result = step.outputs()->Get(0);
      else if (step.kind() == fb::StepKind::AddLayerNorm ||
               step.kind() == fb::StepKind::LinearAddLayerNorm)
        result = step.outputs()->Get(1);
      bool linear = next.kind() == fb::StepKind::Linear ||
                    next.kind() == fb::StepKind::LinearAddLayerNorm;
      if (!result || !linear || next.inputs()->Get(0) != *result)
        continue;
      if (fb::DType type = roundedInput(next); type != fb::DType::F32)
        sixteenBitCopies_[&step] = halfKind(type);
    }
  return Status::success();
}

uint64_t Executor::pointer(uint32_t id) const {
  const fb::Buffer &b = *rank_->buffers()->Get(id);
  return b.kind() == fb::BufferKind::Weight ? weights_ + wideOffsets_[id] : arena_ + b.offset();
}

Status Executor::upload(uint32_t buffer, const void *host, size_t bytes) {
  return device_->copyToDevice(pointer(buffer), host, bytes);
}

Status Executor::download(void *host, uint32_t buffer, size_t bytes) {
  return device_->copyToHost(host, pointer(buffer), bytes);
}

Status Executor::launch(const char *kernel, int64_t blocks, unsigned threads,
                        std::vector<void *> params) {
  auto found = parameters_.find(kernel);
  if (found == parameters_.end())
    return Status::error(std::string("the artifact's GPU code lacks kernel '") + kernel +
                         "' (compile it again with this release)");
  if (params.size() != found->second)
    return Status::error(std::string("kernel '") + kernel + "' takes " +
                         std::to_string(found->second) +
                         " parameters in this artifact; this runtime passes " +
                         std::to_string(params.size()) + " (compile the artifact again)");
  unsigned grid[3] = {unsigned(blocks), 1, 1}, block[3] = {threads, 1, 1};
  return device_->launch(kernel, grid, block, 0, std::move(params));
}

Status Executor::elementwise(const char *kernel, std::vector<void *> params, int64_t n) {
  return launch(kernel, (n + kElementwiseBlock - 1) / kElementwiseBlock, kElementwiseBlock,
                std::move(params));
}

Status Executor::unary(const char *kernel, uint64_t x, uint64_t y, int64_t n) {
  Args a;
  a.buffer(x, n).buffer(y, n).index(n);
  return elementwise(kernel, a.params(), n);
}

int32_t Executor::sixteenBitCopy(const fb::Step &step, uint32_t out) {
  auto copy = sixteenBitCopies_.find(&step);
  if (copy == sixteenBitCopies_.end())
    return 0;
  nextCopy_ = out;
  return copy->second;
}

Status Executor::gelu(const fb::Step &step, uint32_t x, uint32_t y, int64_t n, bool tanh) {
  int32_t half = sixteenBitCopy(step, y);
  Args a;
  a.buffer(pointer(x), n).buffer(pointer(y), n).buffer(scratch_, n).index(n).flag(tanh);
  return elementwise("gelu", a.i32(half).params(), n);
}

Status Executor::layerNorm(const fb::Step &step, uint32_t x, uint32_t gamma, uint32_t beta,
                           uint32_t out, int64_t rows, int64_t width, float eps) {
  int32_t half = sixteenBitCopy(step, out);
  Args a;
  a.buffer(pointer(x), rows * width).buffer(pointer(gamma), width).buffer(pointer(beta), width);
  a.buffer(pointer(out), rows * width).buffer(scratch_, rows * width).index(width).f32(eps);
  return launch("layer_norm", rows, kRowBlock, a.i32(half).params());
}

Status Executor::linear(const fb::Step &step, const std::vector<Shape> &shapes) {
  auto in = [&](size_t i) { return step.inputs()->Get(i); };
  uint32_t x = in(0), w = in(1), y = step.outputs()->Get(0);
  int64_t out = shapes[w][0], columns = shapes[w][1], rows = elements(shapes[y]) / out;
  // Operands as the CPU takes them: x, w [, scales of an int8 w] [, bias]
  // [, residual, gamma, beta].
  bool int8 = rank_->buffers()->Get(w)->dtype() == fb::DType::I8;
  size_t biasIndex = int8 ? 3 : 2;
  bool residual = step.kind() == fb::StepKind::LinearAddLayerNorm;
  bool hasBias = residual ? step.ints()->Get(0) != 0 : step.inputs()->size() > biasIndex;
  uint64_t bias = hasBias ? pointer(in(biasIndex)) : 0;
  uint64_t addend = residual ? pointer(in(biasIndex + (hasBias ? 1 : 0))) : 0;
  if (int8)
    return linearInt8(step, shapes, bias, addend);
  bool narrow = narrowOffsets_[w] >= 0;
  fb::DType type = narrow ? rank_->buffers()->Get(w)->dtype() : fb::DType::F32;
  uint64_t input = pointer(x), weight = narrow ? weights_ + narrowOffsets_[w] : pointer(w);
  if (narrow)
    if (Status s = roundInput(type, x, rows * columns, input); !s.ok())
      return s;
  return blas_->linear(input, weight, bias, addend, pointer(y), rows, columns, out,
                       operandsOf(type), workspace_, kWorkspaceBytes);
}

Status Executor::roundInput(fb::DType type, uint32_t x, int64_t n, uint64_t &input) {
  // As the CPU's 16-bit GEMMs round theirs; unless the step before left it
  // so in scratch_.
  input = scratch_;
  if (x == previousCopy_)
    return Status::success();
  return unary(type == fb::DType::F16 ? "to_f16" : "to_bf16", pointer(x), scratch_, n);
}

Status Executor::linearInt8(const fb::Step &step, const std::vector<Shape> &shapes,
                            uint64_t bias, uint64_t addend) {
  auto in = [&](size_t i) { return step.inputs()->Get(i); };
  uint32_t x = in(0), w = in(1), scales = in(2), y = step.outputs()->Get(0);
  int64_t out = shapes[w][0], columns = shapes[w][1], rows = elements(shapes[y]) / out;
  int64_t groups = shapes[scales][1], group = columns / groups;
  // The kernels read four int8 weights (one word) at a time, of one group.
  if (columns % 4 != 0 || group % 4 != 0)
    return Status::error("int8 weight of " + std::to_string(columns) + " columns in groups of " +
                         std::to_string(group) +
                         ": the CUDA kernels take multiples of 4 (--group-size)");
  // Dynamic W8A8 (--quantize-activations): x quantized per row as the CPU
  // does and multiplied from there in f32, never rounded to 16 bits.
  uint64_t wide = pointer(x);
  fb::DType inputType = halfType_;
  if (quantizesInput(step)) {
    Args q;
    q.buffer(pointer(x), rows * columns).buffer(quantizedRows_, rows * columns).index(columns);
    if (Status s = launch("quantize_rows", rows, kRowBlock, q.params()); !s.ok())
      return s;
    wide = quantizedRows_;
    inputType = fb::DType::F32;
  }
  // The GEMV and tensor-core kernels take the same operands but for the
  // elements of x (f32 in vectors of four, or 16-bit in words of two) and
  // of q (vectors of sixteen weights, or words of four).
  auto readingInt8 = [&](uint64_t input, int64_t xElements, int64_t qElements) {
    Args a;
    a.buffer(input, xElements).buffer(pointer(w), qElements);
    a.buffer(pointer(scales), out * groups);
    // The kernels read neither pointer when told there is none.
    a.buffer(bias ? bias : pointer(x), out).buffer(addend ? addend : pointer(x), rows * out);
    a.buffer(pointer(y), rows * out).index(rows).index(columns).index(out).index(group);
    a.flag(bias != 0).flag(addend != 0);
    return a;
  };
  // Up to kInt8GemvRows (decode) the GEMV; up to kInt8MatmulRows, in a
  // 16-bit artifact, the tensor-core kernel; both read sixteen weights of
  // a row at a time. Otherwise the matrix is widened for cuBLASLt.
  if (rows <= kInt8GemvRows && columns % 16 == 0) {
    int64_t perBlock = kInt8GemvThreads / 32; // one warp per output channel
    return launch("linear_int8", (out + perBlock - 1) / perBlock, kInt8GemvThreads,
                  readingInt8(wide, rows * columns / 4, out * columns / 16).params());
  }
  std::string tensorCores = tensorCoreKernel("matmul_w8a16");
  if (rows <= kInt8MatmulRows && columns % 16 == 0 && inputType != fb::DType::F32 &&
      !tensorCores.empty()) {
    uint64_t input = 0;
    if (Status s = roundInput(halfType_, x, rows * columns, input); !s.ok())
      return s;
    return launch(tensorCores.c_str(), (out + kInt8MatmulChannels - 1) / kInt8MatmulChannels,
                  kInt8MatmulThreads,
                  readingInt8(input, rows * columns / 2, out * columns / 4).params());
  }
  // Many rows: the matrix widened once per call, then cuBLASLt; in a
  // 16-bit artifact to its type, for the tensor cores (the input rounded
  // to it too), else to f32.
  int64_t weights = out * columns;
  Args a;
  a.buffer(pointer(w), weights).buffer(pointer(scales), out * groups);
  a.buffer(staging_, weights).buffer(staging_, weights);
  a.index(weights).index(columns).index(group).i32(halfKind(inputType));
  if (Status s = elementwise("dequantize_int8", a.params(), weights); !s.ok())
    return s;
  uint64_t input = wide;
  if (inputType != fb::DType::F32)
    if (Status s = roundInput(inputType, x, rows * columns, input); !s.ok())
      return s;
  return blas_->linear(input, staging_, bias, addend, pointer(y), rows, columns, out,
                       operandsOf(inputType), workspace_, kWorkspaceBytes);
}

Status Executor::attention(const fb::Step &step, const std::vector<Shape> &shapes,
                           int64_t past) {
  auto in = [&](size_t i) { return step.inputs()->Get(i); };
  const Shape &qkv = shapes[in(0)];
  int64_t heads = step.ints()->Get(0);
  bool causal = step.ints()->Get(1) != 0, hasMask = step.ints()->Get(2) != 0,
       cached = step.ints()->Get(3) != 0;
  int64_t batch = qkv[0], seq = qkv[1], dim = qkv[2] / (3 * heads), width = heads * dim;
  // The kernels attend to past + seq keys: an uncached attention's call has
  // no past.
  if (!cached && past != 0)
    return Status::error("an attention step without a cache in a call after " +
                         std::to_string(past) + " cached tokens");
  int64_t keys = past + seq;
  // A decode step's single query per sequence: the keys spread over a
  // block's threads (a warp per query would walk them one by one).
  bool decode = seq == 1;
  if (decode)
    if (Status s = decodeKeysFit(keys); !s.ok())
      return s;
  if (!decode && dim > kMaxHeadDim)
    return Status::error("attention heads of " + std::to_string(dim) +
                         " dimensions: the CUDA kernel takes at most " +
                         std::to_string(kMaxHeadDim));
  uint64_t qkvPointer = pointer(in(0));
  uint64_t keysPointer = qkvPointer + width * sizeof(float),
           valuesPointer = qkvPointer + 2 * width * sizeof(float);
  int64_t kvBatch = seq * 3 * width, kvHead = dim, kvRow = 3 * width;
  if (cached) {
    uint32_t k = in(hasMask ? 2 : 1), v = in(hasMask ? 3 : 2);
    int64_t capacity = shapes[k][2], n = batch * seq * width;
    // A decode step's attention kernel appends its keys itself.
    if (!decode) {
      Args a;
      a.buffer(qkvPointer, elements(qkv)).buffer(pointer(k), elements(shapes[k]));
      a.buffer(pointer(v), elements(shapes[v]));
      a.index(n).index(seq).index(heads).index(dim).index(capacity).buffer(past_, 1);
      if (Status s = elementwise("kv_append", a.params(), n); !s.ok())
        return s;
    }
    keysPointer = pointer(k);
    valuesPointer = pointer(v);
    kvBatch = heads * capacity * dim;
    kvHead = capacity * dim;
    kvRow = dim;
  }
  Args a;
  a.buffer(qkvPointer, elements(qkv)).buffer(keysPointer, 0).buffer(valuesPointer, 0);
  // Without a mask the kernel never reads its pointer.
  a.buffer(hasMask ? pointer(in(1)) : qkvPointer, hasMask ? batch * keys : 0);
  a.buffer(pointer(step.outputs()->Get(0)), batch * seq * width);
  a.index(seq).index(heads).index(dim).buffer(past_, 1); // past + seq keys
  a.index(kvBatch).index(kvHead).index(kvRow);
  a.f32(static_cast<float>(step.floats()->Get(0))).flag(causal).flag(hasMask);
  int64_t queries = batch * seq * heads;
  if (decode) {
    int32_t half = sixteenBitCopy(step, step.outputs()->Get(0));
    a.flag(cached).buffer(scratch_, batch * seq * width).i32(half);
    return launch("decode_attention", queries, kAttentionBlock, a.params());
  }
  // A 16-bit artifact's attention multiplies on the tensor cores, in its
  // type (as PyTorch's f16 and bf16 attention do), where the artifact has
  // the kernel for this head size; f32 ones stay exact.
  std::string flash = tensorCoreKernel("flash_attention", "_d" + std::to_string(dim));
  if (!flash.empty())
    return launch(flash.c_str(), batch * heads * ((seq + kFlashQueries - 1) / kFlashQueries),
                  kFlashThreads, a.params());
  a.index(queries); // a warp each
  return launch("attention", (queries * 32 + kAttentionBlock - 1) / kAttentionBlock,
                kAttentionBlock, a.params());
}

Status Executor::collective(const fb::Step &step, const std::vector<Shape> &shapes) {
  // The session checked the shapes: an all-gather concatenates the ranks'
  // last dimensions.
  uint32_t x = step.inputs()->Get(0), y = step.outputs()->Get(0);
  int64_t n = elements(shapes[x]);
  int64_t inner = shapes[x].empty() ? 1 : shapes[x].back(), outer = inner ? n / inner : 0;
  bool reduce = step.kind() == fb::StepKind::AllReduce;
  if (!comm_)
    return Status::error("a collective without a communicator");
  int ranks = comm_->size();
  constexpr size_t f = sizeof(float);
  if (deviceCollectives_) {
    if (reduce)
      return deviceCollectives_->allReduceSum(rankIndex_, pointer(x), pointer(y), n,
                                              device_->stream());
    // NCCL gathers rank-major blocks; each becomes a column block of y.
    if (uint64_t(n) * ranks * f > stagingBytes_)
      return Status::error("an all-gather larger than its output buffer");
    if (Status s = deviceCollectives_->allGather(rankIndex_, pointer(x), staging_, n,
                                                 device_->stream());
        !s.ok())
      return s;
    for (int r = 0; r < ranks; ++r)
      if (Status s = device_->copyRows(pointer(y) + r * inner * f, ranks * inner * f,
                                       staging_ + r * n * f, inner * f, inner * f, outer);
          !s.ok())
        return s;
    return Status::success();
  }
  // Host collectives (threads, MPI) go through host memory, once the steps
  // before are done (the copy to the host waits for them).
  int64_t total = reduce ? n : n * ranks;
  hostStaging_.resize(size_t(n + total));
  float *in = hostStaging_.data(), *out = in + n;
  if (Status s = device_->copyToHost(in, pointer(x), n * f); !s.ok())
    return s;
  Status s = reduce ? comm_->allReduceSum(int(rankIndex_), in, out, n)
                    : comm_->allGather(int(rankIndex_), in, outer, inner, out);
  if (!s.ok())
    return s;
  return device_->copyToDevice(pointer(y), out, total * f);
}

std::string Executor::tensorCoreKernel(const char *family, const std::string &suffix) const {
  if (halfType_ == fb::DType::F32)
    return "";
  std::string name = std::string(family) + (halfType_ == fb::DType::BF16 ? "_bf16" : "_f16") +
                     suffix;
  return parameters_.count(name) ? name : "";
}

Status Executor::decodeKeysFit(int64_t keys) const {
  if (keys <= kMaxDecodeKeys)
    return Status::success();
  return Status::error("attention over " + std::to_string(keys) +
                       " keys: the CUDA decode kernel takes at most " +
                       std::to_string(kMaxDecodeKeys));
}

Status Executor::markIntervals(std::vector<double> &seconds) const {
  seconds.assign(marks_ ? marks_ - 1 : 0, 0.0);
  for (size_t i = 0; i < seconds.size(); ++i)
    if (Status s = device_->eventSeconds(i, i + 1, seconds[i]); !s.ok())
      return s;
  return Status::success();
}

Status Executor::beginCall(int64_t past, const fb::Entry *graphEntry, int64_t batch) {
  mode_ = Mode::Eager;
  firstCall_ = false;
  marks_ = 0;
  nextCopy_ = kNoBuffer;
  if (Status s = device_->copyToDevice(past_, &past, sizeof(past)); !s.ok())
    return s;
  if (!graphEntry || !graphable_ || (comm_ && comm_->size() > 1 && !deviceCollectives_))
    return Status::success();
  // What a replay skips of attention(): its one past-dependent check.
  if (Status s = decodeKeysFit(past + 1); !s.ok())
    return s;
  graphKey_ = {graphEntry, batch};
  // The first call runs as it comes, so that nothing is first done inside
  // a capture: NCCL connecting its channels, the driver loading a kernel.
  auto found = graphs_.find(graphKey_);
  if (found == graphs_.end()) {
    firstCall_ = true;
    return Status::success();
  }
  if (found->second) {
    mode_ = Mode::Replaying;
    graph_ = *found->second;
    return Status::success();
  }
  if (Status s = device_->beginCapture(); !s.ok())
    return s;
  mode_ = Mode::Capturing;
  return Status::success();
}

Status Executor::endCall(bool ok) {
  Mode mode = std::exchange(mode_, Mode::Eager);
  if (std::exchange(firstCall_, false) && ok)
    graphs_.emplace(graphKey_, std::nullopt);
  if (mode == Mode::Capturing) {
    if (Status s = device_->endCapture(ok ? &graph_ : nullptr); !s.ok() || !ok)
      return s;
    graphs_[graphKey_] = graph_;
  }
  if (mode == Mode::Eager || !ok)
    return Status::success();
  return device_->launchGraph(graph_);
}

void Executor::dropGraphs() {
  graphs_.clear();
  device_->dropGraphs();
}

Status Executor::run(const fb::Step &step, const std::vector<Shape> &shapes, int64_t past) {
  if (mode_ == Mode::Replaying)
    return Status::success(); // recorded already
  previousCopy_ = std::exchange(nextCopy_, kNoBuffer);
  auto in = [&](size_t i) { return step.inputs()->Get(i); };
  uint32_t outId = step.outputs()->Get(0);
  const Shape &out = shapes[outId];
  int64_t n = elements(out);
  auto last = [](const Shape &s) { return s.empty() ? int64_t(1) : s.back(); };
  switch (step.kind()) {
  case fb::StepKind::Embedding: {
    // table [, its scales if int8], ids
    const Shape &table = shapes[in(0)];
    bool int8 = rank_->buffers()->Get(in(0))->dtype() == fb::DType::I8;
    uint32_t ids = in(int8 ? 2 : 1);
    int64_t tokens = elements(shapes[ids]), rows = table[0], width = table[1];
    int64_t groups = int8 ? shapes[in(1)][1] : 1;
    // The kernel reads either the f32 table or q and its scales.
    uint64_t scales = int8 ? pointer(in(1)) : pointer(in(0));
    Args a;
    a.buffer(pointer(in(0)), rows * width).buffer(pointer(in(0)), rows * width);
    a.buffer(scales, int8 ? rows * groups : 0).buffer(pointer(ids), tokens);
    a.buffer(pointer(outId), n).index(width).index(rows).index(step.ints()->Get(0));
    a.index(width / groups).flag(int8);
    return launch("embedding", tokens, kRowBlock, a.params());
  }
  case fb::StepKind::Positions: {
    Args a;
    a.buffer(pointer(outId), n).index(n).index(last(out)).buffer(past_, 1);
    return elementwise("positions", a.params(), n);
  }
  case fb::StepKind::Add: {
    uint32_t big = in(0), small = in(1);
    if (elements(shapes[big]) < elements(shapes[small]))
      std::swap(big, small);
    Args a;
    a.buffer(pointer(big), n).buffer(pointer(small), elements(shapes[small]));
    a.buffer(pointer(outId), n).index(n).index(elements(shapes[small]));
    return elementwise("add", a.params(), n);
  }
  case fb::StepKind::Linear: {
    if (Status s = linear(step, shapes); !s.ok())
      return s;
    if (int64_t epilogue = step.ints()->Get(0))
      return gelu(step, outId, outId, n, epilogue == 2);
    return Status::success();
  }
  case fb::StepKind::LinearAddLayerNorm:
  case fb::StepKind::AddLayerNorm: {
    size_t norm = step.inputs()->size() - 2;
    int64_t width = last(out);
    if (step.kind() == fb::StepKind::LinearAddLayerNorm) {
      if (Status s = linear(step, shapes); !s.ok()) // sum = x W^T (+ b) + residual
        return s;
    } else {
      Args a;
      a.buffer(pointer(in(0)), n).buffer(pointer(in(1)), n).buffer(pointer(outId), n);
      a.index(n).index(n);
      if (Status s = elementwise("add", a.params(), n); !s.ok())
        return s;
    }
    return layerNorm(step, outId, in(norm), in(norm + 1), step.outputs()->Get(1), n / width,
                     width, static_cast<float>(step.floats()->Get(0)));
  }
  case fb::StepKind::LayerNorm:
    return layerNorm(step, in(0), in(1), in(2), outId, n / last(out), last(out),
                     static_cast<float>(step.floats()->Get(0)));
  case fb::StepKind::Attention:
    return attention(step, shapes, past);
  case fb::StepKind::Gelu:
    return gelu(step, in(0), outId, n, step.ints()->Get(0) != 0);
  case fb::StepKind::Tanh:
    return unary("tanh", pointer(in(0)), pointer(outId), n);
  case fb::StepKind::Slice:
  case fb::StepKind::Concat: {
    // Blocks along `dim`, as on the CPU: per input, `outer` rows of them.
    size_t dim = size_t(step.ints()->Get(0));
    int64_t outer = span(out, 0, dim), inner = span(out, dim + 1, out.size());
    bool slice = step.kind() == fb::StepKind::Slice;
    int64_t filled = 0;
    constexpr size_t f = sizeof(float);
    for (size_t i = 0; i < step.inputs()->size(); ++i) {
      const Shape &x = shapes[in(i)];
      int64_t extent = slice ? out[dim] : x[dim], offset = slice ? sliceStart(step, x[dim]) : 0;
      if (Status s = device_->copyRows(pointer(outId) + filled * inner * f, out[dim] * inner * f,
                                       pointer(in(i)) + offset * inner * f, x[dim] * inner * f,
                                       extent * inner * f, outer);
          !s.ok())
        return s;
      filled += extent;
    }
    return Status::success();
  }
  case fb::StepKind::AllReduce:
  case fb::StepKind::AllGather:
    return collective(step, shapes);
  // The primitive steps of an unfused graph (--no-fuse).
  case fb::StepKind::Matmul: {
    const Shape &a = shapes[in(0)], &b = shapes[in(1)];
    int64_t m = a[a.size() - 2], k = a.back(), columns = last(out);
    int64_t batch = span(a, 0, a.size() - 2), stride = b[b.size() - 2] * b.back();
    Args args;
    args.buffer(pointer(in(0)), batch * m * k).buffer(pointer(in(1)), batch * stride);
    args.buffer(pointer(outId), n).index(n).index(m).index(k).index(columns).index(stride);
    return elementwise("batched_matmul", args.flag(step.ints()->Get(0) != 0).params(), n);
  }
  case fb::StepKind::Scale: {
    Args a;
    a.buffer(pointer(in(0)), n).buffer(pointer(outId), n).index(n);
    return elementwise("scale", a.f32(static_cast<float>(step.floats()->Get(0))).params(), n);
  }
  case fb::StepKind::Softmax: {
    Args a;
    a.buffer(pointer(in(0)), n).buffer(pointer(outId), n).index(last(out));
    return launch("softmax", n / std::max<int64_t>(last(out), 1), kRowBlock, a.params());
  }
  case fb::StepKind::AttentionMask: {
    // scores [batch, heads, queries, keys] [, mask [batch, keys]]
    bool hasMask = step.inputs()->size() == 2;
    Args a;
    a.buffer(pointer(in(0)), n).buffer(pointer(outId), n);
    a.buffer(hasMask ? pointer(in(1)) : pointer(in(0)), hasMask ? out[0] * out[3] : 0);
    a.index(n).index(out[1]).index(out[2]).index(out[3]);
    a.flag(step.ints()->Get(0) != 0).flag(hasMask);
    return elementwise("attention_mask", a.params(), n);
  }
  case fb::StepKind::SwapMiddleAxes: {
    // [a, b, c*d] -> [a, c, b, d] when splitting heads; [a, b, c, d] ->
    // [a, c, b*d] when merging (the session checked one side is 4-D).
    const Shape &x = shapes[in(0)];
    Shape dims = x.size() == 4 ? x : Shape{out[0], out[2], out[1], out[3]};
    Args a;
    a.buffer(pointer(in(0)), n).buffer(pointer(outId), n).index(n);
    a.index(dims[1]).index(dims[2]).index(dims[3]);
    return elementwise("swap_middle_axes", a.params(), n);
  }
  case fb::StepKind::CacheWrite: {
    // x [batch, heads, seq, dim] after the cached rows of [batch, heads,
    // capacity, dim].
    const Shape &x = shapes[in(0)];
    int64_t count = elements(x);
    Args a;
    a.buffer(pointer(in(0)), count).buffer(pointer(outId), n).index(count);
    a.index(x[2] * x[3]).index(out[2]).index(x[3]).buffer(past_, 1);
    return elementwise("cache_write", a.params(), count);
  }
  case fb::StepKind::Copy:
    return device_->copyOnDevice(pointer(outId), pointer(in(0)),
                                 n * elementSize(rank_->buffers()->Get(outId)->dtype()));
  }
  return Status::error(std::string("the CUDA backend does not run '") +
                       stepSignature(unsigned(step.kind()))->name + "' steps");
}
