//===- FixtureTest.h - tests over imported fixture checkpoints -*- C++ -*-===//

#ifndef MEGATRON_TEST_UNIT_COMPILER_FIXTURETEST_H
#define MEGATRON_TEST_UNIT_COMPILER_FIXTURETEST_H

#include "compiler/Registration.h"
#include "frontends/Importer.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

#include "gtest/gtest.h"

#include <memory>
#include <string>

namespace megatron {

/// A context with the project's dialects, and the generated fixtures.
class FixtureTest : public ::testing::Test {
protected:
  FixtureTest() {
    mlir::DialectRegistry registry;
    registerAllDialects(registry);
    context.appendDialectRegistry(registry);
  }

  std::unique_ptr<Checkpoint> openFixture(const std::string &relative) {
    auto ckpt = Checkpoint::open(std::string(MEGATRON_FIXTURES_DIR) + "/" +
                                 relative);
    if (!ckpt) {
      ADD_FAILURE() << relative << ": " << llvm::toString(ckpt.takeError());
      return nullptr;
    }
    return std::move(*ckpt);
  }

  /// Imports `ckpt` with default options into `module`; returns its forward
  /// function, or null (with a test failure).
  mlir::func::FuncOp importForward(const Checkpoint &ckpt) {
    auto imported = importCheckpoint(context, ckpt, ImportOptions{});
    if (!imported) {
      ADD_FAILURE() << llvm::toString(imported.takeError());
      return nullptr;
    }
    module = std::move(*imported);
    return *module->getOps<mlir::func::FuncOp>().begin();
  }

  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
};

} // namespace megatron

#endif // MEGATRON_TEST_UNIT_COMPILER_FIXTURETEST_H
