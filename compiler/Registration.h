//===- Registration.h - dialects and passes of megatron-compiler -*- C++ -*-===//
//
// One place that lists what the tools load, so megatron-opt, megatron-compile
// and the tests see the same dialects and passes.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_REGISTRATION_H
#define MEGATRON_COMPILER_REGISTRATION_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace megatron {
void registerAllDialects(mlir::DialectRegistry &registry);
void registerAllPasses();
} // namespace megatron

#endif // MEGATRON_COMPILER_REGISTRATION_H
