//===- MegatronOps.h - megatron dialect operations -------------*- C++ -*-===//

#ifndef MEGATRON_DIALECT_MEGATRONOPS_H
#define MEGATRON_DIALECT_MEGATRONOPS_H

#include "dialects/megatron/MegatronDialect.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/megatron/MegatronOps.h.inc"

#endif // MEGATRON_DIALECT_MEGATRONOPS_H
