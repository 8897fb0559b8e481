//===- FuseResidualLayerNorm.cpp - residual add + LayerNorm ---------------===//

#include "compiler/Passes.h"

namespace megatron {
#define GEN_PASS_DEF_FUSERESIDUALLAYERNORM
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;

namespace {
struct FuseResidualLayerNormPass
    : impl::FuseResidualLayerNormBase<FuseResidualLayerNormPass> {
  void runOnOperation() override {
    getOperation().walk([](mm::LayerNormOp norm) {
      auto add = norm.getInput().getDefiningOp<mm::AddOp>();
      // A residual is an add of two tensors of one shape (not a bias).
      if (!add || add.getLhs().getType() != add.getRhs().getType() ||
          add.getLhs().getType() != add.getType())
        return;
      mlir::OpBuilder b(add);
      mlir::Value sum, normalized;
      // A plain linear used only by this add folds in as well.
      mm::LinearOp linear;
      Value residual;
      for (auto [side, other] : {std::pair{add.getLhs(), add.getRhs()},
                                 std::pair{add.getRhs(), add.getLhs()}}) {
        auto l = side.getDefiningOp<mm::LinearOp>();
        if (l && !l.getGelu() && side.hasOneUse() && !linear) {
          linear = l;
          residual = other;
        }
      }
      if (linear) {
        auto fused = mm::LinearAddLayerNormOp::create(
            b, add.getLoc(), add.getType(), add.getType(), linear.getInput(),
            linear.getWeight(), linear.getBias(), residual, norm.getGamma(),
            norm.getBeta(), norm.getEpsilonAttr());
        sum = fused.getSum();
        normalized = fused.getNormalized();
      } else {
        auto fused = mm::AddLayerNormOp::create(
            b, add.getLoc(), add.getType(), add.getType(), add.getLhs(),
            add.getRhs(), norm.getGamma(), norm.getBeta(), norm.getEpsilonAttr());
        sum = fused.getSum();
        normalized = fused.getNormalized();
      }
      norm.getResult().replaceAllUsesWith(normalized);
      norm.erase();
      add.getResult().replaceAllUsesWith(sum);
      add.erase();
      if (linear)
        linear.erase();
    });
  }
};
} // namespace
