//===- LowerToPlan.cpp - megatron forward -> plan buffers and steps -------===//

#include "compiler/MemoryPlanner.h"
#include "compiler/Passes.h"
#include "compiler/SymbolicShapes.h"
#include "compiler/WeightEvaluator.h"
#include "megatron/runtime/StepSignature.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

namespace megatron {
#define GEN_PASS_DEF_LOWERTOPLAN
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;
namespace plan = mlir::plan;

namespace {

constexpr uint64_t kAlignment = 64;
uint64_t alignUp(uint64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

/// What one megatron op becomes: a step kind and its static parameters.
struct StepSpec {
  plan::StepKind kind;
  llvm::SmallVector<int64_t> ints;
  llvm::SmallVector<double> floats;
};

std::optional<StepSpec> stepFor(mlir::Operation *op) {
  using K = plan::StepKind;
  using R = std::optional<StepSpec>;
  return llvm::TypeSwitch<mlir::Operation *, R>(op)
      .Case([](mm::EmbeddingOp e) {
        int64_t rows = e.getTable().getType().getDimSize(0);
        return StepSpec{K::Embedding,
                        {e.getRowOffset(), e.getNumIds().value_or(e.getRowOffset() + rows)}};
      })
      .Case([](mm::PositionsOp) { return StepSpec{K::Positions}; })
      .Case([](mm::AddOp) { return StepSpec{K::Add}; })
      .Case([](mm::LinearOp l) {
        int64_t epilogue = !l.getGelu() ? 0
                           : *l.getGelu() == mm::GeluApproximation::Tanh ? 2
                                                                          : 1;
        return StepSpec{K::Linear, {epilogue, l.getInt8Input() ? 1 : 0}};
      })
      .Case([](mm::AddLayerNormOp n) {
        return StepSpec{K::AddLayerNorm, {}, {n.getEpsilon().convertToDouble()}};
      })
      .Case([](mm::LinearAddLayerNormOp n) {
        return StepSpec{K::LinearAddLayerNorm, {n.getBias() ? 1 : 0, n.getInt8Input() ? 1 : 0},
                        {n.getEpsilon().convertToDouble()}};
      })
      .Case([](mm::AttentionOp a) {
        return StepSpec{K::Attention,
                        {int64_t(a.getNumHeads()), a.getCausal() ? 1 : 0,
                         a.getMask() ? 1 : 0, a.getKvSlot() ? 1 : 0},
                        {a.getScale().convertToDouble()}};
      })
      .Case([](mm::MatmulOp m) {
        return StepSpec{K::Matmul, {m.getTransposeRhs() ? 1 : 0}};
      })
      .Case([](mm::LayerNormOp n) {
        return StepSpec{K::LayerNorm, {}, {n.getEpsilon().convertToDouble()}};
      })
      .Case([](mm::GeluOp g) {
        return StepSpec{K::Gelu,
                        {g.getApproximation() == mm::GeluApproximation::Tanh}};
      })
      .Case([](mm::TanhOp) { return StepSpec{K::Tanh}; })
      .Case([](mm::ScaleOp s) {
        return StepSpec{K::Scale, {}, {s.getFactor().convertToDouble()}};
      })
      .Case([](mm::SoftmaxOp) { return StepSpec{K::Softmax}; })
      .Case([](mm::AttentionMaskOp m) {
        return StepSpec{K::AttentionMask, {m.getCausal() ? 1 : 0}};
      })
      .Case<mm::SplitHeadsOp, mm::MergeHeadsOp>(
          [](auto) { return StepSpec{K::SwapMiddleAxes}; })
      .Case([](mm::SliceOp s) {
        return StepSpec{K::Slice, {int64_t(s.getDim()), int64_t(s.getStart())}};
      })
      .Case([](mm::ConcatOp c) { return StepSpec{K::Concat, {int64_t(c.getDim())}}; })
      // Same bytes, new shape: the runtime copies rather than aliasing so
      // that every buffer keeps one lifetime for the planner.
      .Case([](mm::ReshapeOp) { return StepSpec{K::Copy}; })
      .Case([](mm::KVCacheOp) { return StepSpec{K::CacheWrite}; })
      .Case([](mlir::shard::AllReduceOp) { return StepSpec{K::AllReduce, {0}}; })
      .Case([](mlir::shard::AllGatherOp g) {
        return StepSpec{K::AllGather, {int64_t(g.getGatherAxis().getZExtValue())}};
      })
      .Default([](mlir::Operation *) { return std::nullopt; });
}

mlir::ArrayAttr shapeAttr(mlir::Builder &b, const SymbolicShape &shape) {
  llvm::SmallVector<mlir::Attribute> dims;
  for (const SymbolicDim &d : shape)
    dims.push_back(b.getStringAttr(d.str()));
  return b.getArrayAttr(dims);
}

class Lowering {
public:
  Lowering(mlir::ModuleOp module, const LowerToPlanOptions &options)
      : module(module), options(options), b(module.getContext()) {}

  llvm::Error run();

private:
  /// One function (one tensor-parallel rank) -> one plan.rank.
  llvm::Error lowerFunction(mlir::func::FuncOp func, int64_t rankIndex,
                            int64_t positions, int64_t maxSequence);
  llvm::Error error(mlir::Operation *op, const llvm::Twine &why) {
    return llvm::createStringError(
        llvm::formatv("cannot lower '{0}': {1}", op->getName(), why.str()));
  }
  mlir::FlatSymbolRefAttr weightFor(Value value);
  mlir::FlatSymbolRefAttr refTo(mlir::Operation *symbol) {
    return mlir::FlatSymbolRefAttr::get(
        mlir::cast<mlir::SymbolOpInterface>(symbol).getNameAttr());
  }

  mlir::ModuleOp module;
  const LowerToPlanOptions &options;
  mlir::OpBuilder b;
  plan::RankOp rank;
  mlir::Type storageType;
  uint64_t weightBytes = 0;
  unsigned weights = 0;
  llvm::DenseMap<Value, mlir::FlatSymbolRefAttr> names;
};

/// The plan.weight holding `value` and the transforms that produce it,
/// made on first use.
mlir::FlatSymbolRefAttr Lowering::weightFor(Value value) {
  if (auto it = names.find(value); it != names.end())
    return it->second;
  auto type = mlir::cast<mlir::RankedTensorType>(value.getType());
  // Quantized values and their scales are stored as they are; other
  // weights in the artifact's weight type.
  mlir::Type storage =
      value.getDefiningOp<mm::QuantizeOp>() ? type.getElementType() : storageType;
  uint64_t size = type.getNumElements() * storage.getIntOrFloatBitWidth() / 8;
  mlir::OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(&rank.getBody().front());
  auto weight = plan::WeightOp::create(
      b, value.getLoc(), llvm::formatv("w{0}", weights++).str(), type,
      storage, weightBytes, size);
  weightBytes = alignUp(weightBytes + size);
  b.setInsertionPointToStart(&weight.getBody().emplaceBlock());
  // Clone the chain of weight ops in dependency order.
  mlir::IRMapping mapping;
  std::function<void(Value)> clone = [&](Value v) {
    if (mapping.contains(v))
      return;
    mlir::Operation *op = v.getDefiningOp();
    for (Value operand : op->getOperands())
      clone(operand);
    b.clone(*op, mapping);
  };
  clone(value);
  plan::YieldOp::create(b, value.getLoc(), mapping.lookup(value));
  return names[value] = refTo(weight);
}

llvm::Error Lowering::run() {
  // One function, or one per tensor-parallel rank (megatron.rank).
  auto funcs = llvm::to_vector(module.getOps<mlir::func::FuncOp>());
  if (funcs.empty())
    return llvm::createStringError("expected a megatron function to lower");
  auto rankOf = [](mlir::func::FuncOp f) {
    auto r = f->getAttrOfType<mlir::IntegerAttr>(mm::MegatronDialect::kRankAttrName);
    return r ? r.getInt() : 0;
  };
  llvm::sort(funcs, [&](auto a, auto b) { return rankOf(a) < rankOf(b); });
  for (auto [i, f] : llvm::enumerate(funcs))
    if (rankOf(f) != int64_t(i))
      return llvm::createStringError(llvm::formatv(
          "expected functions for ranks 0..{0}, found rank {1}", funcs.size() - 1,
          rankOf(f)));
  auto config = module->getAttrOfType<mlir::DictionaryAttr>(
      mm::MegatronDialect::kConfigAttrName);
  auto maxPositions =
      config ? config.getAs<mlir::IntegerAttr>("max_positions") : nullptr;
  if (!maxPositions)
    return llvm::createStringError("the module has no megatron.config with max_positions");
  int64_t positions = maxPositions.getInt();
  int64_t maxSequence = options.maxSequence ? options.maxSequence : positions;
  if (maxSequence > positions || maxSequence <= 0)
    return llvm::createStringError(llvm::formatv(
        "--max-seq {0} must be in [1, {1}] (the model's max positions)",
        maxSequence, positions));
  if (options.maxBatch <= 0 || options.maxChoices <= 0)
    return llvm::createStringError("--max-batch and --max-choices must be positive");
  storageType = llvm::StringSwitch<mlir::Type>(options.weightType)
                    .Case("f32", b.getF32Type())
                    .Case("f16", b.getF16Type())
                    .Case("bf16", b.getBF16Type())
                    .Default(nullptr);
  if (!storageType)
    return llvm::createStringError("weight type '" + options.weightType +
                                   "' is not one of f32, f16, bf16");
  for (auto [i, f] : llvm::enumerate(funcs))
    if (llvm::Error err = lowerFunction(f, i, positions, maxSequence))
      return err;
  module->setAttr("plan.max_batch", b.getI64IntegerAttr(options.maxBatch));
  module->setAttr("plan.max_sequence", b.getI64IntegerAttr(maxSequence));
  module->setAttr("plan.max_choices", b.getI64IntegerAttr(options.maxChoices));
  for (mlir::func::FuncOp f : funcs)
    f.erase();
  // The grid has served: collectives are plan steps now.
  for (auto grid : llvm::make_early_inc_range(module.getOps<mlir::shard::GridOp>()))
    grid.erase();
  return llvm::Error::success();
}

llvm::Error Lowering::lowerFunction(mlir::func::FuncOp func, int64_t rankIndex,
                                    int64_t positions, int64_t maxSequence) {
  weightBytes = 0;
  weights = 0;
  names.clear();
  auto shapes = inferSymbolicShapes(func);
  if (!shapes)
    return shapes.takeError();
  llvm::SmallVector<mm::KVCacheOp> caches;
  func.walk([&](mm::KVCacheOp c) { caches.push_back(c); });
  llvm::SmallVector<mm::AttentionOp> cachedAttention;
  func.walk([&](mm::AttentionOp a) {
    if (a.getKvSlot())
      cachedAttention.push_back(a);
  });
  llvm::DenseSet<Value> external;
  for (mm::KVCacheOp c : caches)
    external.insert(c.getResult());
  PlanBounds bounds;
  bounds.maxima = {{Symbol::Batch, options.maxBatch},
                   {Symbol::Sequence, maxSequence},
                   {Symbol::Choices, options.maxChoices},
                   {Symbol::Past, positions},
                   {Symbol::Keys, positions}};
  auto arena = planArena(func, *shapes, bounds, external);
  if (!arena)
    return arena.takeError();

  b.setInsertionPointToEnd(module.getBody());
  rank = plan::RankOp::create(b, func.getLoc(), rankIndex, 0);
  mlir::Block *body = &rank.getBody().emplaceBlock();

  // Arena buffers: inputs, outputs and activations.
  auto *terminator = func.getBody().front().getTerminator();
  auto bufferFor = [&](Value v, plan::BufferKind kind, llvm::StringRef name) {
    b.setInsertionPointToEnd(body);
    const ArenaSlot &slot = arena->slots.lookup(v);
    auto buffer = plan::BufferOp::create(
        b, v.getLoc(), name, kind,
        mlir::cast<mlir::RankedTensorType>(v.getType()).getElementType(),
        shapeAttr(b, shapes->lookup(v)), slot.offset, slot.size);
    names[v] = refTo(buffer);
  };
  llvm::SmallVector<mlir::Attribute> inputs, outputs;
  for (auto [i, arg] : llvm::enumerate(func.getArguments())) {
    auto name = func.getArgAttrOfType<mlir::StringAttr>(
        i, mm::MegatronDialect::kInputAttrName);
    bufferFor(arg, plan::BufferKind::Input, name.getValue());
    inputs.push_back(names[arg]);
  }
  llvm::DenseMap<Value, llvm::StringRef> outputNames;
  for (auto [i, result] : llvm::enumerate(terminator->getOperands()))
    outputNames[result] = func.getResultAttrOfType<mlir::StringAttr>(
                              i, mm::MegatronDialect::kOutputAttrName)
                              .getValue();

  // KV caches sit after the arena's reusable part: they outlive each call.
  uint64_t arenaSize = alignUp(arena->arenaSize);
  for (mm::KVCacheOp cache : caches) {
    auto type = cache.getType();
    SymbolicShape shape = shapes->lookup(cache.getResult());
    shape[2] = SymbolicDim{positions, {}};
    uint64_t size = alignUp(options.maxBatch * type.getDimSize(1) * positions *
                            type.getDimSize(3) * sizeof(float));
    b.setInsertionPointToEnd(body);
    auto buffer = plan::BufferOp::create(
        b, cache.getLoc(), llvm::formatv("kv{0}", cache.getSlot()).str(),
        plan::BufferKind::KVCache, type.getElementType(), shapeAttr(b, shape),
        arenaSize, size);
    arenaSize += size;
    names[cache.getResult()] = refTo(buffer);
  }
  // A fused attention keeps its keys and values itself: [batch, heads,
  // positions, dim] each.
  llvm::DenseMap<mlir::Operation *, std::pair<mlir::Attribute, mlir::Attribute>> kvOf;
  for (mm::AttentionOp attention : cachedAttention) {
    auto type = attention.getQkv().getType();
    int64_t heads = attention.getNumHeads();
    int64_t dim = type.getDimSize(2) / (3 * heads);
    SymbolicShape shape = {SymbolicDim{1, {Symbol::Batch}}, SymbolicDim{heads, {}},
                           SymbolicDim{positions, {}}, SymbolicDim{dim, {}}};
    uint64_t size = alignUp(options.maxBatch * heads * positions * dim * sizeof(float));
    mlir::Attribute refs[2];
    const char *parts[] = {"k", "v"};
    for (int i = 0; i < 2; ++i) {
      b.setInsertionPointToEnd(body);
      auto buffer = plan::BufferOp::create(
          b, attention.getLoc(), llvm::formatv("{0}{1}", parts[i], *attention.getKvSlot()).str(),
          plan::BufferKind::KVCache, type.getElementType(), shapeAttr(b, shape), arenaSize,
          size);
      arenaSize += size;
      refs[i] = refTo(buffer);
    }
    kvOf[attention] = {refs[0], refs[1]};
  }

  // One step per op, in program order.
  b.setInsertionPointToEnd(body);
  auto entry = plan::EntryOp::create(b, func.getLoc(), "forward",
                                     b.getArrayAttr({}), b.getArrayAttr({}));
  mlir::Block *steps = &entry.getBody().emplaceBlock();
  unsigned temporaries = 0;
  for (mlir::Operation &op : func.getBody().front().without_terminator()) {
    if (mlir::isa<mlir::tensor::DimOp, mlir::arith::ConstantIndexOp,
                  mlir::arith::MulIOp>(op) ||
        (op.getNumResults() > 0 && llvm::all_of(op.getResults(), isWeightValue)))
      continue; // shape arithmetic lives in the symbolic shapes, weights in plan.weight
    std::optional<StepSpec> spec = stepFor(&op);
    if (!spec)
      return error(&op, "no plan step computes it on activations");
    llvm::SmallVector<mlir::Attribute> reads;
    for (mlir::OpOperand &operand : op.getOpOperands()) {
      Value value = operand.get();
      if (value.getType().isIndex())
        continue;
      // A step reads a quantized weight as its int8 values followed by
      // their scales.
      if (auto dequantize = value.getDefiningOp<mm::DequantizeOp>()) {
        // The op's operands come first and in order, so its numbering is
        // the step's up to the weight.
        if (int(operand.getOperandNumber()) !=
            megatron::runtime::quantizableOperand(static_cast<unsigned>(spec->kind)))
          return error(&op, "only linear weights and embedding tables can be int8");
        reads.push_back(weightFor(dequantize.getValues()));
        reads.push_back(weightFor(dequantize.getScales()));
        continue;
      }
      reads.push_back(isWeightValue(value) ? weightFor(value) : names.lookup(value));
    }
    if (auto kv = kvOf.find(&op); kv != kvOf.end()) {
      reads.push_back(kv->second.first);
      reads.push_back(kv->second.second);
    }
    llvm::SmallVector<mlir::Attribute> writes;
    for (Value result : op.getResults()) {
      if (!names.count(result)) {
        auto output = outputNames.find(result);
        bool isOutput = output != outputNames.end();
        bufferFor(result,
                  isOutput ? plan::BufferKind::Output : plan::BufferKind::Activation,
                  isOutput ? output->second.str()
                           : llvm::formatv("t{0}", temporaries++).str());
        if (isOutput)
          outputs.push_back(names[result]);
      }
      writes.push_back(names[result]);
    }
    b.setInsertionPointToEnd(steps);
    plan::StepOp::create(b, op.getLoc(), spec->kind, b.getArrayAttr(reads),
                         b.getArrayAttr(writes),
                         b.getDenseI64ArrayAttr(spec->ints),
                         b.getDenseF64ArrayAttr(spec->floats));
  }
  if (outputs.size() != outputNames.size())
    return llvm::createStringError(
        "every output must be computed by a step of its own");
  // Outputs in the function's order.
  llvm::SmallVector<mlir::Attribute> ordered;
  for (Value result : terminator->getOperands())
    ordered.push_back(names[result]);
  entry.setInputsAttr(b.getArrayAttr(inputs));
  entry.setOutputsAttr(b.getArrayAttr(ordered));
  rank.setArenaSize(arenaSize);
  entry->moveBefore(body, body->end()); // read top-down: buffers, then steps

  // With a KV cache the same steps serve both halves of generation.
  if (!caches.empty() || !cachedAttention.empty()) {
    entry.setSymName("prefill");
    b.setInsertionPointAfter(entry);
    auto decode = mlir::cast<plan::EntryOp>(b.clone(*entry));
    decode.setSymName("decode");
  }
  return llvm::Error::success();
}

struct LowerToPlanPass : impl::LowerToPlanBase<LowerToPlanPass> {
  using LowerToPlanBase::LowerToPlanBase;
  void runOnOperation() override {
    LowerToPlanOptions opts{maxBatch, maxSequence, maxChoices, weightType};
    if (llvm::Error err = Lowering(getOperation(), opts).run()) {
      getOperation().emitError() << llvm::toString(std::move(err));
      signalPassFailure();
    }
  }
};

} // namespace
