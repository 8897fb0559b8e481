//===- Driver.h - what megatron-compile does, as a library -----*- C++ -*-===//

#ifndef MEGATRON_COMPILER_DRIVER_H
#define MEGATRON_COMPILER_DRIVER_H

#include "compiler/Pipelines.h"
#include "frontends/Importer.h"

#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace megatron {

struct CompileOptions {
  std::string input;
  std::string output = "-";
  std::optional<ModelType> modelType;
  std::optional<Task> task;
  std::string configFile;          ///< --config: Hugging Face config keys
  std::vector<std::string> sets;   ///< --set KEY=VALUE overrides
  std::optional<Phase> compileTo;  ///< print this phase's IR
  /// --vocab / --merges; when empty, tokenizer files next to the checkpoint
  /// are embedded if there are any.
  std::string vocabFile, mergesFile;
  /// --target cuda: PTX of the kernel library for each --cuda-arch.
  std::string target = "cpu";
  std::vector<std::string> cudaArchs;
  std::string cudaRoot;
  PipelineOptions pipeline;
};

/// Makes running out of memory (an address-space limit, say) end the
/// process with `error: out of memory ...` and status 1, after removing the
/// half-written artifact, rather than with LLVM's crash report.
void installOutOfMemoryHandler();

/// Runs the compiler as the command line asked. Every failure is an Error
/// with a message fit for `error: ...`.
llvm::Error runCompile(const CompileOptions &options);

} // namespace megatron

#endif // MEGATRON_COMPILER_DRIVER_H
