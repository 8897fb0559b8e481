//===- FuseBiasGelu.cpp - GELU as a linear's epilogue ---------------------===//

#include "compiler/Passes.h"

namespace megatron {
#define GEN_PASS_DEF_FUSEBIASGELU
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
namespace mm = mlir::megatron;

namespace {
struct FuseBiasGeluPass : impl::FuseBiasGeluBase<FuseBiasGeluPass> {
  void runOnOperation() override {
    getOperation().walk([](mm::GeluOp gelu) {
      auto linear = gelu.getInput().getDefiningOp<mm::LinearOp>();
      // The linear's own result must not be needed without the GELU.
      if (!linear || linear.getGelu() || !linear.getResult().hasOneUse())
        return;
      linear.setGeluAttr(gelu.getApproximationAttr());
      gelu.getResult().replaceAllUsesWith(linear.getResult());
      gelu.erase();
    });
  }
};
} // namespace
