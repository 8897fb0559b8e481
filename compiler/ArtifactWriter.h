//===- ArtifactWriter.h - plan module -> .mtc file -------------*- C++ -*-===//
//
// The serialize phase: the FlatBuffer mirrors the plan ops, and each weight
// is evaluated from the checkpoint (its transforms applied), converted to
// its storage type and streamed into the weight segment, one at a time, so
// memory holds at most one weight beyond the mapped checkpoint.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_ARTIFACTWRITER_H
#define MEGATRON_COMPILER_ARTIFACTWRITER_H

#include "frontends/Checkpoint.h"
#include "compiler/cuda/CudaCodegen.h"
#include "megatron/runtime/Tokenizer.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

namespace megatron {

/// Writes the plan `module` (after the lower phase) to `path`.
/// Writes the lowered `module` with the weights of `checkpoint` and, when
/// given, the tokenizer.
llvm::Error writeArtifact(mlir::ModuleOp module, const Checkpoint &checkpoint,
                          const runtime::TokenizerSpec *tokenizer,
                          llvm::ArrayRef<PtxModule> kernels, llvm::StringRef path);

} // namespace megatron

#endif // MEGATRON_COMPILER_ARTIFACTWRITER_H
