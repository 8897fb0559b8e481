//===- Registration.cpp - dialects and passes of megatron-compiler --------===//

#include "compiler/Registration.h"

#include "compiler/Passes.h"
#include "compiler/Pipelines.h"
#include "dialects/megatron/MegatronDialect.h"
#include "dialects/plan/PlanDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Transforms/Passes.h"

void megatron::registerAllDialects(mlir::DialectRegistry &registry) {
  registry.insert<mlir::megatron::MegatronDialect, mlir::plan::PlanDialect,
                  mlir::func::FuncDialect, mlir::shard::ShardDialect,
                  mlir::arith::ArithDialect, mlir::tensor::TensorDialect>();
}

void megatron::registerAllPasses() {
  // Upstream cleanups the pipelines use, so each can be run alone.
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  registerMegatronPasses();
  registerPipelines();
}
