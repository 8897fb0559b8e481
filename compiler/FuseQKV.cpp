//===- FuseQKV.cpp - one GEMM for separate Q, K, V projections ------------===//
//
// Hugging Face's BERT keeps query, key and value as three linears of the
// same input. Where they feed one attention (Q K^T with transpose_rhs, then
// softmax(...) V), they become one linear over the concatenated weights,
// sliced back into Q, K and V: one GEMM instead of three, and the fused
// layout FuseAttention expects.
//
//===----------------------------------------------------------------------===//

#include "compiler/Passes.h"

namespace megatron {
#define GEN_PASS_DEF_FUSEQKV
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;

namespace {

/// The linear whose only use is the split_heads that produced `v`.
mm::LinearOp projection(Value v) {
  auto split = v.getDefiningOp<mm::SplitHeadsOp>();
  if (!split || !v.hasOneUse())
    return {};
  auto linear = split.getInput().getDefiningOp<mm::LinearOp>();
  return linear && split.getInput().hasOneUse() && !linear.getGelu() ? linear
                                                                      : mm::LinearOp();
}

/// The values matmul `context = softmax(...) V` reads as V, following the
/// scores of `qk` forward through scale / mask / softmax.
Value valuesOf(mm::MatmulOp qk) {
  Value v = qk.getResult();
  while (v.hasOneUse()) {
    mlir::Operation *user = *v.getUsers().begin();
    if (mlir::isa<mm::ScaleOp, mm::AttentionMaskOp, mm::SoftmaxOp>(user)) {
      v = user->getResult(0);
      continue;
    }
    auto context = mlir::dyn_cast<mm::MatmulOp>(user);
    if (context && !context.getTransposeRhs() && context.getLhs() == v)
      return context.getRhs();
    break;
  }
  return {};
}

Value concat(mlir::OpBuilder &b, mlir::Location loc, llvm::ArrayRef<Value> parts) {
  auto type = mlir::cast<mlir::RankedTensorType>(parts[0].getType());
  llvm::SmallVector<int64_t> shape(type.getShape());
  shape[0] *= static_cast<int64_t>(parts.size());
  return mm::ConcatOp::create(b, loc, mlir::RankedTensorType::get(shape, type.getElementType()),
                              parts, 0);
}

struct FuseQKVPass : impl::FuseQKVBase<FuseQKVPass> {
  void runOnOperation() override {
    getOperation().walk([](mm::MatmulOp qk) {
      if (!qk.getTransposeRhs())
        return;
      Value values = valuesOf(qk);
      mm::LinearOp q = projection(qk.getLhs()), k = projection(qk.getRhs()),
                   v = values ? projection(values) : mm::LinearOp();
      if (!q || !k || !v || q == k || k == v || q == v)
        return;
      // One input, same shapes, biases on all or none.
      for (mm::LinearOp l : {k, v})
        if (l.getInput() != q.getInput() || l.getWeight().getType() != q.getWeight().getType() ||
            bool(l.getBias()) != bool(q.getBias()))
          return;
      // Insert after the last of the three, so every operand dominates.
      mlir::Operation *last = q;
      for (mm::LinearOp l : {k, v})
        if (last->isBeforeInBlock(l))
          last = l;
      mlir::OpBuilder b(last->getContext());
      b.setInsertionPointAfter(last);
      mlir::Location loc = q.getLoc();
      Value weight = concat(b, loc, {q.getWeight(), k.getWeight(), v.getWeight()});
      Value bias = q.getBias() ? concat(b, loc, {q.getBias(), k.getBias(), v.getBias()}) : Value();
      auto type = q.getType();
      llvm::SmallVector<int64_t> shape(type.getShape());
      int64_t width = shape.back();
      shape.back() *= 3;
      auto fused = mm::LinearOp::create(
          b, loc, mlir::RankedTensorType::get(shape, type.getElementType()), q.getInput(),
          weight, bias);
      int64_t lastDim = type.getRank() - 1;
      mm::LinearOp projections[] = {q, k, v};
      for (int64_t i = 0; i < 3; ++i) {
        auto part = mm::SliceOp::create(b, loc, type, fused, lastDim, i * width, width);
        projections[i].getResult().replaceAllUsesWith(part.getResult());
        projections[i].erase();
      }
    });
  }
};

} // namespace
