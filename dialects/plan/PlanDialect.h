//===- PlanDialect.h - plan dialect declarations ---------------*- C++ -*-===//

#ifndef MEGATRON_DIALECT_PLANDIALECT_H
#define MEGATRON_DIALECT_PLANDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/RegionKindInterface.h"
#include "mlir/IR/SymbolTable.h"

#include "dialects/plan/PlanDialect.h.inc"
#include "dialects/plan/PlanEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/plan/PlanAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/plan/PlanOps.h.inc"

namespace mlir::plan {

/// The run-time sizes a dimension may name. Keys is Past + Sequence: every
/// token an attention query can see once a KV cache holds Past of them.
inline constexpr llvm::StringLiteral kSymbolNames[] = {
    "Batch", "Sequence", "Choices", "Past", "Keys"};

/// A dimension as the plan writes it: "64", "Batch", "2*Batch*Choices".
struct DimExpr {
  int64_t constant = 1;
  llvm::SmallVector<unsigned, 2> symbols; ///< indices into kSymbolNames
};
std::optional<DimExpr> parseDim(llvm::StringRef text);

} // namespace mlir::plan

#endif // MEGATRON_DIALECT_PLANDIALECT_H
