//===- MemoryPlanner.h - arena offsets from liveness -------------*- C++ -*-===//
//
// Every activation of a forward pass gets a byte range in one arena, sized
// at the maximum batch and sequence. Two tensors share bytes only when their
// lifetimes (definition to last use, in program order) do not overlap.
// Inputs and outputs are live for the whole function; weights are not
// activations and are left out.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_MEMORYPLANNER_H
#define MEGATRON_COMPILER_MEMORYPLANNER_H

#include "compiler/SymbolicShapes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/Error.h"

#include <map>

namespace megatron {

/// The sizes the artifact is planned for.
struct PlanBounds {
  std::map<Symbol, int64_t> maxima; ///< e.g. Batch -> 8, Sequence -> 512
};

struct ArenaSlot {
  uint64_t offset = 0;
  uint64_t size = 0;
  unsigned firstUse = 0, lastUse = 0; ///< positions in program order
};

struct ArenaPlan {
  llvm::DenseMap<mlir::Value, ArenaSlot> slots;
  uint64_t arenaSize = 0;
  /// Sum of all slot sizes: what the arena would be without reuse.
  uint64_t unsharedSize = 0;
};

/// Alignment of every slot, so vector kernels may assume it.
constexpr uint64_t kArenaAlignment = 64;

/// Evaluates a symbolic dimension at the bounds.
llvm::Expected<int64_t> maxExtent(const SymbolicDim &dim,
                                  const PlanBounds &bounds);

/// Plans every activation of `func` except those in `external` (values
/// that live elsewhere, such as KV caches).
llvm::Expected<ArenaPlan>
planArena(mlir::func::FuncOp func,
          const llvm::DenseMap<mlir::Value, SymbolicShape> &shapes,
          const PlanBounds &bounds,
          const llvm::DenseSet<mlir::Value> &external = {});

} // namespace megatron

#endif // MEGATRON_COMPILER_MEMORYPLANNER_H
