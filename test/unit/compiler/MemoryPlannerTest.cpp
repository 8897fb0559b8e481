//===- MemoryPlannerTest.cpp - arena plans of imported models -------------===//

#include "compiler/MemoryPlanner.h"

#include "FixtureTest.h"

using namespace megatron;

namespace {

class MemoryPlannerTest : public FixtureTest {
protected:
  mlir::func::FuncOp import(const std::string &fixture) {
    ckpt = openFixture(fixture);
    return ckpt ? importForward(*ckpt) : nullptr;
  }
  std::unique_ptr<Checkpoint> ckpt;
};

TEST_F(MemoryPlannerTest, LiveTensorsNeverShareBytes) {
  mlir::func::FuncOp func = import("megatron/bert_v3_tp1");
  ASSERT_TRUE(func);
  auto shapes = inferSymbolicShapes(func);
  ASSERT_TRUE(bool(shapes)) << llvm::toString(shapes.takeError());
  PlanBounds bounds{{{Symbol::Batch, 2}, {Symbol::Sequence, 16}}};
  auto plan = planArena(func, *shapes, bounds);
  ASSERT_TRUE(bool(plan)) << llvm::toString(plan.takeError());

  std::vector<ArenaSlot> slots;
  for (auto &[value, slot] : plan->slots)
    slots.push_back(slot);
  ASSERT_GT(slots.size(), 40u);
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i].offset % kArenaAlignment, 0u);
    EXPECT_LE(slots[i].offset + slots[i].size, plan->arenaSize);
    for (size_t j = i + 1; j < slots.size(); ++j) {
      const ArenaSlot &a = slots[i], &b = slots[j];
      bool liveTogether = a.firstUse <= b.lastUse && b.firstUse <= a.lastUse;
      bool shareBytes = a.offset < b.offset + b.size && b.offset < a.offset + a.size;
      EXPECT_FALSE(liveTogether && shareBytes)
          << "slots " << i << " and " << j << " overlap";
    }
  }
  // Reuse: far smaller than giving every tensor its own bytes.
  EXPECT_LT(plan->arenaSize * 3, plan->unsharedSize);

  // The logits [2, 16, 128] f32 live to the end of the function.
  mlir::Value logits =
      func.getBody().front().getTerminator()->getOperand(0);
  const ArenaSlot &out = plan->slots.lookup(logits);
  EXPECT_EQ(out.size, 2u * 16 * 128 * 4);
  EXPECT_GT(out.lastUse, plan->slots.lookup(func.getArgument(0)).firstUse);
  // Weights are not activations.
  func.walk([&](mlir::Operation *op) {
    if (op->getName().getStringRef() == "megatron.weight") {
      EXPECT_FALSE(plan->slots.count(op->getResult(0)));
    }
  });
}

TEST_F(MemoryPlannerTest, EveryDynamicSymbolNeedsABound) {
  mlir::func::FuncOp func = import("hf/megatron_bert_multichoice");
  ASSERT_TRUE(func);
  auto shapes = inferSymbolicShapes(func);
  ASSERT_TRUE(bool(shapes)) << llvm::toString(shapes.takeError());
  PlanBounds bounds{{{Symbol::Batch, 2}, {Symbol::Sequence, 16}}};
  auto plan = planArena(func, *shapes, bounds);
  ASSERT_FALSE(bool(plan));
  EXPECT_EQ(llvm::toString(plan.takeError()), "no maximum is set for Choices");
  bounds.maxima[Symbol::Choices] = 4;
  auto withChoices = planArena(func, *shapes, bounds);
  EXPECT_TRUE(bool(withChoices));
  if (!withChoices)
    llvm::consumeError(withChoices.takeError());
}

} // namespace
