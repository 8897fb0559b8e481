//===- SymbolicShapes.h - run-time dimensions of a megatron graph -*- C++ -*-===//
//
// Imported graphs have dynamic batch and sequence dimensions (`?`). The plan
// and the artifact need to know what each `?` is, so buffers can be sized at
// run time and planned at the maximum batch and sequence. This names every
// dimension of every tensor as a constant times a product of symbols, e.g.
// the multiple-choice rows [Batch * Choices, Sequence].
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_SYMBOLICSHAPES_H
#define MEGATRON_COMPILER_SYMBOLICSHAPES_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Error.h"

#include <string>

namespace megatron {

/// In the order of mlir::plan::kSymbolNames. Keys = Past + Sequence: the
/// tokens attention sees when a KV cache holds Past of them.
enum class Symbol { Batch, Sequence, Choices, Past, Keys };

/// `constant` times the product of `symbols` (sorted, with repetition).
struct SymbolicDim {
  int64_t constant = 1;
  llvm::SmallVector<Symbol, 2> symbols;

  bool operator==(const SymbolicDim &other) const {
    return constant == other.constant && symbols == other.symbols;
  }
  SymbolicDim operator*(const SymbolicDim &other) const;
  /// "Batch*Choices", "4", "2*Sequence".
  std::string str() const;
};

using SymbolicShape = llvm::SmallVector<SymbolicDim, 4>;

/// The symbolic shape of every tensor and index value of `func`, whose
/// arguments are the model inputs ([Batch, Sequence] ids, or
/// [Batch, Choices, Sequence] for multiple choice; with a KV cache the
/// attention mask covers the cached tokens too: [Batch, Keys]). Index values map to a
/// one-dimension "shape" holding their value.
llvm::Expected<llvm::DenseMap<mlir::Value, SymbolicShape>>
inferSymbolicShapes(mlir::func::FuncOp func);

} // namespace megatron

#endif // MEGATRON_COMPILER_SYMBOLICSHAPES_H
