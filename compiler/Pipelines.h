//===- Pipelines.h - the compilation phases, in one place ------*- C++ -*-===//

#ifndef MEGATRON_COMPILER_PIPELINES_H
#define MEGATRON_COMPILER_PIPELINES_H

#include "mlir/Pass/PassManager.h"

#include <optional>
#include <string>

namespace megatron {

/// The phases of DESIGN.md section 2 that this build has, in order.
enum class Phase { Import, Shard, Fuse, Quantize, Lower };

std::optional<Phase> parsePhase(llvm::StringRef text);

struct PipelineOptions {
  int64_t maxBatch = 8;
  int64_t maxSequence = 0; ///< 0: the model's max positions
  int64_t maxChoices = 4;
  std::string weightType = "f32";
  int64_t tensorParallel = 1; ///< --tp
  bool fuse = true;           ///< --no-fuse keeps the primitive graph
  bool quantizeInt8 = false;  ///< --quantize int8
  int64_t groupSize = 0;      ///< --group-size (0: per output channel)
  bool quantizeEmbeddings = false; ///< --quantize-embeddings
  bool quantizeActivations = false; ///< --quantize-activations (dynamic W8A8)
};

/// Adds the passes that take an imported module through `last`.
void buildPipeline(mlir::OpPassManager &pm, Phase last,
                   const PipelineOptions &options);

/// Registers the phases as megatron-opt pipelines (`--megatron-lower`).
void registerPipelines();

} // namespace megatron

#endif // MEGATRON_COMPILER_PIPELINES_H
