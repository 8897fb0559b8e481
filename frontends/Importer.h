//===- Importer.h - checkpoint -> megatron dialect --------------*- C++ -*-===//

#ifndef MEGATRON_FRONTENDS_IMPORTER_H
#define MEGATRON_FRONTENDS_IMPORTER_H

#include "frontends/Checkpoint.h"
#include "frontends/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>
#include <string>

namespace megatron {

/// The heads of DESIGN.md section 6, by their command-line names.
enum class Task {
  Base,
  MaskedLM,
  Pretraining,
  NextSentence,
  SequenceClassification,
  MultipleChoice,
  TokenClassification,
  QuestionAnswering,
  CausalLM,
};

llvm::StringRef toString(Task task);
std::optional<Task> parseTask(llvm::StringRef text);

struct ImportOptions {
  std::optional<ModelType> modelType; ///< autodetected when unset
  std::optional<Task> task;           ///< the model type's default when unset
  /// Highest-precedence configuration first: --set overrides, then --config.
  std::vector<ConfigLayer> overrides;
};

/// What the checkpoint says or its tensor names show; nullopt when unclear.
std::optional<ModelType> detectModelType(const Checkpoint &checkpoint);

/// Resolves the configuration (overrides, checkpoint, defaults) and checks it
/// against the weights.
llvm::Expected<ModelConfig> resolveConfig(const Checkpoint &checkpoint,
                                          const ImportOptions &options);

/// Builds the `forward` function of the model and head in a new module.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importCheckpoint(mlir::MLIRContext &context, const Checkpoint &checkpoint,
                 const ImportOptions &options);

} // namespace megatron

#endif // MEGATRON_FRONTENDS_IMPORTER_H
