//===- FuseAttention.cpp - the attention core as one op -------------------===//
//
// Matches, from the heads merge backwards:
//   merge_heads(matmul(softmax([attention_mask](
//       [scale](matmul(split_heads(Q), split_heads(K), transpose_rhs)))),
//     split_heads(V)))
// where Q, K and V are the three equal slices, in that order, of one
// tensor's last dimension (a fused QKV projection, or FuseQKV's merge).
// Every intermediate must have no other use.
//
//===----------------------------------------------------------------------===//

#include "compiler/Passes.h"

namespace megatron {
#define GEN_PASS_DEF_FUSEATTENTION
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;

namespace {

/// The op defining `v` if it is an OpTy used only once.
template <typename OpTy> OpTy single(Value v) {
  auto op = v.getDefiningOp<OpTy>();
  return op && v.hasOneUse() ? op : OpTy();
}

/// `v` = split_heads(slice(qkv, last dim, part * width, width)); returns
/// the split, and sets qkv/width/heads on the first call, checks them after.
mm::SplitHeadsOp qkvPart(Value v, int64_t part, Value &qkv, int64_t &width, int64_t &heads) {
  auto split = single<mm::SplitHeadsOp>(v);
  if (!split)
    return {};
  auto slice = single<mm::SliceOp>(split.getInput());
  if (!slice)
    return {};
  auto type = slice.getInput().getType();
  int64_t last = type.getRank() - 1;
  if (int64_t(slice.getDim()) != last || type.getRank() != 3 ||
      mlir::ShapedType::isDynamic(type.getDimSize(last)) ||
      type.getDimSize(last) != 3 * int64_t(slice.getSize()))
    return {};
  if (!qkv) {
    qkv = slice.getInput();
    width = slice.getSize();
    heads = split.getNumHeads();
  }
  if (slice.getInput() != qkv || int64_t(slice.getSize()) != width ||
      int64_t(slice.getStart()) != part * width || int64_t(split.getNumHeads()) != heads)
    return {};
  return split;
}

struct FuseAttentionPass : impl::FuseAttentionBase<FuseAttentionPass> {
  void runOnOperation() override {
    getOperation().walk([](mm::MergeHeadsOp merge) {
      auto context = single<mm::MatmulOp>(merge.getInput());
      if (!context || context.getTransposeRhs())
        return;
      auto softmax = single<mm::SoftmaxOp>(context.getLhs());
      if (!softmax)
        return;
      llvm::SmallVector<mlir::Operation *> dead = {merge, context, softmax};
      Value scores = softmax.getInput(), mask;
      bool causal = false;
      if (auto m = single<mm::AttentionMaskOp>(scores)) {
        mask = m.getPaddingMask();
        causal = m.getCausal();
        scores = m.getScores();
        dead.push_back(m);
      }
      double scale = 1.0;
      if (auto s = single<mm::ScaleOp>(scores)) {
        scale = s.getFactor().convertToDouble();
        scores = s.getInput();
        dead.push_back(s);
      }
      auto qk = single<mm::MatmulOp>(scores);
      if (!qk || !qk.getTransposeRhs())
        return;
      dead.push_back(qk);
      Value qkv;
      int64_t width = 0, heads = 0;
      mm::SplitHeadsOp parts[3] = {qkvPart(qk.getLhs(), 0, qkv, width, heads),
                                   qkvPart(qk.getRhs(), 1, qkv, width, heads),
                                   qkvPart(context.getRhs(), 2, qkv, width, heads)};
      if (!parts[0] || !parts[1] || !parts[2])
        return;
      for (mm::SplitHeadsOp split : parts) {
        dead.push_back(split);
        dead.push_back(split.getInput().getDefiningOp());
      }
      mlir::OpBuilder b(merge);
      auto attention = mm::AttentionOp::create(
          b, merge.getLoc(), merge.getType(), qkv, mask, static_cast<uint64_t>(heads),
          llvm::APFloat(scale), causal, mlir::IntegerAttr());
      merge.getResult().replaceAllUsesWith(attention.getResult());
      for (mlir::Operation *op : dead) // users first
        op->erase();
    });
  }
};

} // namespace
