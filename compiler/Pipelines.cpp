//===- Pipelines.cpp - the compilation phases, in one place ---------------===//

#include "compiler/Pipelines.h"

#include "compiler/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"

using namespace megatron;

std::optional<Phase> megatron::parsePhase(llvm::StringRef text) {
  return llvm::StringSwitch<std::optional<Phase>>(text)
      .Case("import", Phase::Import)
      .Case("shard", Phase::Shard)
      .Case("fuse", Phase::Fuse)
      .Case("quantize", Phase::Quantize)
      .Case("lower", Phase::Lower)
      .Default(std::nullopt);
}

void megatron::buildPipeline(mlir::OpPassManager &pm, Phase last,
                             const PipelineOptions &options) {
  if (last == Phase::Import)
    return;
  ShardTensorParallelOptions shard;
  shard.tp = options.tensorParallel;
  pm.addPass(createShardTensorParallel(shard));
  if (last == Phase::Shard)
    return;
  if (options.fuse) {
    // QKV first: the attention pattern wants one Q/K/V tensor.
    pm.addPass(createFuseQKV());
    pm.addPass(mlir::createCSEPass());
    pm.addPass(createFuseAttention());
    pm.addPass(createFuseBiasGelu());
    pm.addPass(createFuseResidualLayerNorm());
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  }
  if (last == Phase::Fuse)
    return;
  if (options.quantizeInt8) {
    // Unfused graphs have not been through CSE: merge equal weight values
    // first so that each is quantized (and stored) once.
    if (!options.fuse)
      pm.addPass(mlir::createCSEPass());
    QuantizeWeightsOptions quantize;
    quantize.groupSize = options.groupSize;
    quantize.embeddings = options.quantizeEmbeddings;
    quantize.activations = options.quantizeActivations;
    pm.addPass(createQuantizeWeights(quantize));
  }
  if (last == Phase::Quantize)
    return;
  pm.addPass(createInsertKVCache());
  pm.addPass(mlir::createCSEPass());
  LowerToPlanOptions lower;
  lower.maxBatch = options.maxBatch;
  lower.maxSequence = options.maxSequence;
  lower.maxChoices = options.maxChoices;
  lower.weightType = options.weightType;
  pm.addPass(createLowerToPlan(lower));
  pm.addPass(createAddPrefillLast());
}

void megatron::registerPipelines() {
  mlir::PassPipelineRegistration<>(
      "megatron-lower", "import -> plan with default options",
      [](mlir::OpPassManager &pm) {
        buildPipeline(pm, Phase::Lower, PipelineOptions());
      });
}
