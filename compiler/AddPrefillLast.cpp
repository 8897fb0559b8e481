//===- AddPrefillLast.cpp - a prefill that returns one row of logits ------===//
//
// Generation reads only the last position's logits after a prefill, yet the
// LM head of `prefill` multiplies every position by the vocabulary: for a
// 345M GPT-2 and a 128-token prompt that is ~14% of the prefill's work and
// its largest output. `prefill_last` is `prefill` with the final hidden
// states sliced to their last position before the LM head, so its output
// `last_logits` is [Batch, 1, vocab]. `prefill` stays for callers that want
// every position (perplexity, the --decode-last check).
//
//===----------------------------------------------------------------------===//

#include "compiler/MemoryPlanner.h"
#include "compiler/Passes.h"

#include "llvm/ADT/StringExtras.h"

namespace megatron {
#define GEN_PASS_DEF_ADDPREFILLLAST
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
namespace plan = mlir::plan;

namespace {

/// `shape` with Sequence taken out of every dimension: the shape of one
/// position per sequence.
mlir::ArrayAttr withoutSequence(mlir::Builder &b, mlir::ArrayAttr shape) {
  llvm::SmallVector<llvm::StringRef> dims;
  for (llvm::StringRef dim : shape.getAsValueRange<mlir::StringAttr>()) {
    llvm::SmallVector<llvm::StringRef> factors;
    dim.split(factors, '*');
    llvm::erase(factors, "Sequence");
    dims.push_back(factors.empty() ? b.getStringAttr("1").getValue()
                                   : b.getStringAttr(llvm::join(factors, "*")).getValue());
  }
  return b.getStrArrayAttr(dims);
}

/// Bytes of `shape` of `type` at the maxima the module was planned for, as
/// the memory planner sizes a slot (the shapes here name Batch, Sequence or
/// Choices only).
llvm::Expected<uint64_t> bytesAtMaxima(mlir::ModuleOp module, mlir::ArrayAttr shape,
                                       mlir::Type type) {
  PlanBounds bounds;
  for (auto [symbol, name] : {std::pair{Symbol::Batch, "plan.max_batch"},
                              std::pair{Symbol::Sequence, "plan.max_sequence"},
                              std::pair{Symbol::Choices, "plan.max_choices"}})
    if (auto attr = module->getAttrOfType<mlir::IntegerAttr>(name))
      bounds.maxima[symbol] = attr.getInt();
  uint64_t bytes = type.getIntOrFloatBitWidth() / 8;
  for (llvm::StringRef text : shape.getAsValueRange<mlir::StringAttr>()) {
    plan::DimExpr parsed = *plan::parseDim(text); // the verifier parsed it
    SymbolicDim dim{parsed.constant, {}};
    for (unsigned symbol : parsed.symbols)
      dim.symbols.push_back(static_cast<Symbol>(symbol));
    llvm::Expected<int64_t> extent = maxExtent(dim, bounds);
    if (!extent)
      return extent.takeError();
    bytes *= *extent;
  }
  return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
}

struct AddPrefillLastPass : impl::AddPrefillLastBase<AddPrefillLastPass> {
  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    for (auto rank : module.getOps<plan::RankOp>())
      if (mlir::failed(addTo(module, rank)))
        return signalPassFailure();
  }

  mlir::LogicalResult addTo(mlir::ModuleOp module, plan::RankOp rank) {
    mlir::SymbolTable symbols(rank);
    auto prefill = symbols.lookup<plan::EntryOp>("prefill");
    if (!prefill || symbols.lookup("prefill_last"))
      return mlir::success();
    auto buffer = [&](mlir::Attribute ref) {
      return symbols.lookup<plan::BufferOp>(mlir::cast<mlir::FlatSymbolRefAttr>(ref).getValue());
    };
    auto steps = llvm::to_vector(prefill.getBody().front().getOps<plan::StepOp>());
    auto readers = [&](mlir::Attribute ref) {
      return llvm::count_if(steps, [&](plan::StepOp s) {
        return llvm::is_contained(s.getInputs().getValue(), ref);
      });
    };
    // The tail this rewrites: the LM head's linear, and on a
    // tensor-parallel rank the all-gather of its vocabulary slices, which
    // writes the entry's one output.
    if (prefill.getOutputs().size() != 1 || steps.empty())
      return mlir::success();
    llvm::SmallVector<plan::StepOp, 2> tail{steps.back()};
    if (tail[0].getKind() == plan::StepKind::AllGather && steps.size() > 1)
      tail.insert(tail.begin(), steps[steps.size() - 2]);
    plan::StepOp head = tail.front();
    if (head.getKind() != plan::StepKind::Linear ||
        tail.back().getOutputs()[0] != prefill.getOutputs()[0] ||
        (tail.size() == 2 && (tail[1].getInputs()[0] != head.getOutputs()[0] ||
                              readers(head.getOutputs()[0]) != 1)))
      return mlir::success();
    plan::BufferOp hidden = buffer(head.getInputs()[0]);
    if (!hidden || hidden.getShape().size() != 3 ||
        mlir::cast<mlir::StringAttr>(hidden.getShape()[1]).getValue() != "Sequence")
      return prefill.emitError("the LM head's input is not [Batch, Sequence, hidden]");

    mlir::OpBuilder b(rank.getContext());
    b.setInsertionPointAfter(prefill);
    auto entry = mlir::cast<plan::EntryOp>(b.clone(*prefill));
    entry.setSymName("prefill_last");
    symbols.insert(entry);

    // A buffer like `of` for one position per sequence. The slice's result
    // goes after everything else in the arena; the tail's results keep
    // their originals' bytes, which nothing else uses while they live.
    auto lastOf = [&](plan::BufferOp of, plan::BufferKind kind,
                      bool atEnd) -> mlir::FailureOr<mlir::FlatSymbolRefAttr> {
      b.setInsertionPointAfter(of);
      mlir::ArrayAttr shape = withoutSequence(b, of.getShape());
      llvm::Expected<uint64_t> size = bytesAtMaxima(module, shape, of.getElementType());
      if (!size)
        return of.emitError(llvm::toString(size.takeError()));
      uint64_t offset = atEnd ? rank.getArenaSize() : of.getOffset();
      if (atEnd)
        rank.setArenaSize(offset + *size);
      auto last = plan::BufferOp::create(b, of.getLoc(), ("last_" + of.getSymName()).str(),
                                         kind, of.getElementType(), shape, offset, *size);
      symbols.insert(last);
      return mlir::FlatSymbolRefAttr::get(last.getSymNameAttr());
    };
    mlir::FailureOr<mlir::FlatSymbolRefAttr> position =
        lastOf(hidden, plan::BufferKind::Activation, true);
    if (mlir::failed(position))
      return mlir::failure();
    auto cloned = llvm::to_vector(entry.getBody().front().getOps<plan::StepOp>());
    plan::StepOp clonedHead = cloned[cloned.size() - tail.size()];
    b.setInsertionPoint(clonedHead);
    plan::StepOp::create(b, clonedHead.getLoc(), plan::StepKind::Slice,
                         b.getArrayAttr({head.getInputs()[0]}), b.getArrayAttr({*position}),
                         b.getDenseI64ArrayAttr({1, -1}), b.getDenseF64ArrayAttr({}));
    // Each tail step reads the previous one-position buffer and writes its own.
    mlir::Attribute previous = *position;
    for (plan::StepOp step : llvm::ArrayRef(cloned).take_back(tail.size())) {
      llvm::SmallVector<mlir::Attribute> reads(step.getInputs().getValue());
      reads[0] = previous;
      step.setInputsAttr(b.getArrayAttr(reads));
      plan::BufferOp written = buffer(step.getOutputs()[0]);
      mlir::FailureOr<mlir::FlatSymbolRefAttr> last = lastOf(written, written.getKind(), false);
      if (mlir::failed(last))
        return mlir::failure();
      previous = *last;
      step.setOutputsAttr(b.getArrayAttr({previous}));
    }
    entry.setOutputsAttr(b.getArrayAttr({previous}));
    return mlir::success();
  }
};

} // namespace
