//===- QuantizeWeights.cpp - int8 weights (and inputs) of the linears -----===//

#include "compiler/Passes.h"
#include "compiler/WeightEvaluator.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

namespace megatron {
#define GEN_PASS_DEF_QUANTIZEWEIGHTS
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;

namespace {

/// The checkpoint tensors a weight value is computed from.
void collectTensors(Value value, llvm::StringSet<> &names) {
  mlir::Operation *op = value.getDefiningOp();
  if (auto weight = mlir::dyn_cast<mm::WeightOp>(op)) {
    names.insert(weight.getName());
    return;
  }
  for (Value operand : op->getOperands())
    collectTensors(operand, names);
}

/// Whether `embedding` looks up the model's input_ids (the word embedding,
/// not positions or token types).
bool isWordEmbedding(mm::EmbeddingOp embedding) {
  Value ids = embedding.getIds();
  while (auto reshape = ids.getDefiningOp<mm::ReshapeOp>())
    ids = reshape.getInput();
  auto arg = mlir::dyn_cast<mlir::BlockArgument>(ids);
  if (!arg)
    return false;
  auto func = mlir::dyn_cast<mlir::func::FuncOp>(arg.getOwner()->getParentOp());
  auto name = func ? func.getArgAttrOfType<mlir::StringAttr>(
                         arg.getArgNumber(), mm::MegatronDialect::kInputAttrName)
                   : nullptr;
  return name && name.getValue() == "input_ids";
}

struct QuantizeWeightsPass : impl::QuantizeWeightsBase<QuantizeWeightsPass> {
  using QuantizeWeightsBase::QuantizeWeightsBase;

  void runOnOperation() override {
    for (auto func : getOperation().getOps<mlir::func::FuncOp>())
      if (mlir::failed(quantizeFunction(func)))
        return signalPassFailure();
  }

private:
  mlir::LogicalResult quantizeFunction(mlir::func::FuncOp func) {
    if (activations && groupSize > 0)
      return func.emitError() << "int8 activations need one weight scale per output channel, "
                                 "not groups of "
                              << int64_t(groupSize);
    llvm::StringSet<> wordEmbedding;
    llvm::SmallVector<mlir::OpOperand *> targets;
    func.walk([&](mm::EmbeddingOp e) {
      if (!isWordEmbedding(e))
        return;
      collectTensors(e.getTable(), wordEmbedding);
      if (embeddings)
        targets.push_back(&e.getTableMutable());
    });
    // A linear reading the word embedding is the tied LM head.
    auto addLinearWeight = [&](mlir::OpOperand &weight) {
      if (!isWeightValue(weight.get()))
        return;
      llvm::StringSet<> read;
      collectTensors(weight.get(), read);
      bool tied = llvm::any_of(read, [&](const auto &name) {
        return wordEmbedding.contains(name.getKey());
      });
      if (!tied || embeddings)
        targets.push_back(&weight);
    };
    func.walk([&](mm::LinearOp l) { addLinearWeight(l.getWeightMutable()); });
    func.walk([&](mm::LinearAddLayerNormOp l) { addLinearWeight(l.getWeightMutable()); });

    // One quantized copy per weight value, however many ops read it (the
    // tied embedding and LM head share theirs).
    llvm::DenseMap<Value, Value> dequantized;
    mlir::OpBuilder b(func.getContext());
    for (mlir::OpOperand *use : targets) {
      Value weight = use->get();
      auto [it, inserted] = dequantized.try_emplace(weight);
      if (inserted) {
        auto type = mlir::cast<mlir::RankedTensorType>(weight.getType());
        int64_t cols = type.getDimSize(1);
        int64_t group = groupSize > 0 ? groupSize : cols;
        if (cols % group != 0) {
          use->getOwner()->emitError()
              << "--group-size " << int64_t(groupSize) << " does not divide the " << cols
              << " input columns of this weight";
          return mlir::failure();
        }
        b.setInsertionPointAfterValue(weight);
        auto quantized = mm::QuantizeOp::create(
            b, weight.getLoc(),
            mlir::RankedTensorType::get(type.getShape(), b.getI8Type()),
            mlir::RankedTensorType::get({type.getDimSize(0), cols / group},
                                        b.getF32Type()),
            weight);
        it->second = mm::DequantizeOp::create(b, weight.getLoc(), type,
                                              quantized.getValues(),
                                              quantized.getScales());
      }
      use->set(it->second);
      if (activations)
        mlir::TypeSwitch<mlir::Operation *>(use->getOwner())
            .Case<mm::LinearOp, mm::LinearAddLayerNormOp>(
                [&](auto linear) { linear.setInt8Input(true); });
    }
    return mlir::success();
  }
};

} // namespace
