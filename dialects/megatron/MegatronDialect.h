//===- MegatronDialect.h - megatron dialect declarations -------*- C++ -*-===//

#ifndef MEGATRON_DIALECT_MEGATRONDIALECT_H
#define MEGATRON_DIALECT_MEGATRONDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"

#include "dialects/megatron/MegatronDialect.h.inc"
#include "dialects/megatron/MegatronEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/megatron/MegatronAttrs.h.inc"

#endif // MEGATRON_DIALECT_MEGATRONDIALECT_H
