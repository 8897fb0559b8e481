//===- MemoryPlanner.cpp - arena offsets from liveness --------------------===//

#include "compiler/MemoryPlanner.h"

#include "compiler/WeightEvaluator.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <vector>

using namespace megatron;
using llvm::createStringError;
using mlir::Value;

llvm::Expected<int64_t> megatron::maxExtent(const SymbolicDim &dim,
                                            const PlanBounds &bounds) {
  int64_t extent = dim.constant;
  for (Symbol s : dim.symbols) {
    auto it = bounds.maxima.find(s);
    if (it == bounds.maxima.end())
      return createStringError(
          llvm::formatv("no maximum is set for {0}",
                        SymbolicDim{1, {s}}.str()));
    if (it->second <= 0 || extent > INT64_MAX / it->second)
      return createStringError("buffer sizes overflow at these bounds");
    extent *= it->second;
  }
  return extent;
}

static uint64_t alignUp(uint64_t v) {
  return (v + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
}

llvm::Expected<ArenaPlan>
megatron::planArena(mlir::func::FuncOp func,
                    const llvm::DenseMap<Value, SymbolicShape> &shapes,
                    const PlanBounds &bounds,
                    const llvm::DenseSet<Value> &external) {
  // Program positions: arguments at 0, op i at i + 1, the return last.
  llvm::DenseMap<mlir::Operation *, unsigned> position;
  unsigned end = 1;
  for (mlir::Operation &op : func.getBody().front())
    position[&op] = end++;

  std::vector<Value> values;
  auto isActivation = [&](Value v) {
    return mlir::isa<mlir::RankedTensorType>(v.getType()) &&
           !isWeightValue(v) && !external.contains(v);
  };
  for (Value arg : func.getArguments())
    values.push_back(arg);
  for (mlir::Operation &op : func.getBody().front().without_terminator())
    for (Value result : op.getResults())
      if (isActivation(result))
        values.push_back(result);

  ArenaPlan plan;
  mlir::Operation *terminator = func.getBody().front().getTerminator();
  for (Value v : values) {
    auto shape = shapes.find(v);
    if (shape == shapes.end())
      return createStringError("a tensor has no symbolic shape");
    auto type = mlir::cast<mlir::RankedTensorType>(v.getType());
    uint64_t bytes = type.getElementTypeBitWidth() / 8;
    for (const SymbolicDim &dim : shape->second) {
      auto extent = maxExtent(dim, bounds);
      if (!extent)
        return extent.takeError();
      if (*extent != 0 && bytes > UINT64_MAX / 2 / *extent)
        return createStringError("buffer sizes overflow at these bounds");
      bytes *= *extent;
    }
    ArenaSlot slot;
    slot.size = alignUp(bytes);
    slot.firstUse = v.getDefiningOp() ? position[v.getDefiningOp()] : 0;
    slot.lastUse = slot.firstUse;
    bool escapes = !v.getDefiningOp(); // inputs stay bound for the call
    for (mlir::Operation *user : v.getUsers()) {
      slot.lastUse = std::max(slot.lastUse, position[user]);
      escapes |= user == terminator;
    }
    if (escapes)
      slot.lastUse = end;
    plan.unsharedSize += slot.size;
    plan.slots[v] = slot;
  }

  // Greedy by size, largest first (the usual best heuristic for this
  // interval-packing problem): each slot takes the lowest offset that no
  // already-placed, overlapping-in-time slot occupies.
  std::sort(values.begin(), values.end(), [&](Value a, Value b) {
    const ArenaSlot &x = plan.slots[a], &y = plan.slots[b];
    return x.size != y.size ? x.size > y.size : x.firstUse < y.firstUse;
  });
  std::vector<Value> placed;
  for (Value v : values) {
    ArenaSlot &slot = plan.slots[v];
    std::vector<std::pair<uint64_t, uint64_t>> taken;
    for (Value other : placed) {
      const ArenaSlot &o = plan.slots[other];
      if (o.firstUse <= slot.lastUse && slot.firstUse <= o.lastUse)
        taken.emplace_back(o.offset, o.offset + o.size);
    }
    std::sort(taken.begin(), taken.end());
    uint64_t offset = 0;
    for (auto [begin, finish] : taken) {
      if (offset + slot.size <= begin)
        break;
      offset = std::max(offset, finish);
    }
    slot.offset = offset;
    plan.arenaSize = std::max(plan.arenaSize, offset + slot.size);
    placed.push_back(v);
  }
  return plan;
}
