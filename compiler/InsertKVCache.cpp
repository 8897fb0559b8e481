//===- InsertKVCache.cpp - incremental decoding for causal LMs ------------===//

#include "compiler/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace megatron {
#define GEN_PASS_DEF_INSERTKVCACHE
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
namespace mm = mlir::megatron;

namespace {

struct InsertKVCachePass : impl::InsertKVCacheBase<InsertKVCachePass> {
  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    auto config = module->getAttrOfType<mlir::DictionaryAttr>(
        mm::MegatronDialect::kConfigAttrName);
    auto type = config ? config.getAs<mlir::StringAttr>("model_type") : nullptr;
    if (!type || type.getValue() != "gpt2")
      return;
    bool already = false;
    module.walk([&](mm::KVCacheOp) { already = true; });
    module.walk([&](mm::AttentionOp a) { already |= a.getKvSlot().has_value(); });
    if (already)
      return;

    // Attention is scores = Q K^T (a matmul with transpose_rhs) and
    // context = softmax(...) V: the right-hand sides are the keys and values.
    // Slots count per function: each tensor-parallel rank has its own. A
    // fused attention keeps its cache itself; unfused, the keys and values
    // go through megatron.kv_cache.
    for (auto func : module.getOps<mlir::func::FuncOp>()) {
      int64_t slot = 0;
      func.walk([&](mm::AttentionOp attention) {
        attention.setKvSlot(slot++);
      });
      func.walk([&](mm::MatmulOp matmul) {
        mlir::OpBuilder b(matmul);
        mlir::Value rhs = matmul.getRhs();
        auto cache = mm::KVCacheOp::create(b, matmul.getLoc(), rhs, slot++);
        matmul.getRhsMutable().assign(cache);
      });
    }
    module.walk([&](mm::PositionsOp positions) {
      positions.setAfterCache(true);
    });
  }
};

} // namespace
