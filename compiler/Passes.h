//===- Passes.h - megatron-compiler passes ---------------------*- C++ -*-===//

#ifndef MEGATRON_COMPILER_PASSES_H
#define MEGATRON_COMPILER_PASSES_H

#include "dialects/megatron/MegatronOps.h"
#include "dialects/plan/PlanDialect.h"

#include "mlir/Dialect/Shard/IR/ShardDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace megatron {

#define GEN_PASS_DECL
#include "compiler/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "compiler/Passes.h.inc"

} // namespace megatron

#endif // MEGATRON_COMPILER_PASSES_H
