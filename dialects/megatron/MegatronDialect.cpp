//===- MegatronDialect.cpp - megatron dialect ---------------------------===//

#include "dialects/megatron/MegatronDialect.h"
#include "dialects/megatron/MegatronOps.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::megatron;

#include "dialects/megatron/MegatronDialect.cpp.inc"
#include "dialects/megatron/MegatronEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/megatron/MegatronAttrs.cpp.inc"

void MegatronDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/megatron/MegatronOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/megatron/MegatronAttrs.cpp.inc"
      >();
}

LogicalResult MegatronDialect::verifyOperationAttribute(Operation *op,
                                                        NamedAttribute attr) {
  if (attr.getName() == kRankAttrName) {
    auto rank = dyn_cast<IntegerAttr>(attr.getValue());
    if (!isa<FunctionOpInterface>(op) || !rank || rank.getInt() < 0)
      return op->emitError() << "'" << kRankAttrName
                             << "' must be a non-negative integer on a function";
    return success();
  }
  if (attr.getName() != kConfigAttrName)
    return op->emitError() << "unknown megatron attribute '"
                           << attr.getName().getValue() << "'";
  if (!isa<ModuleOp>(op))
    return op->emitError() << "'" << kConfigAttrName
                           << "' belongs on the module";
  auto config = dyn_cast<DictionaryAttr>(attr.getValue());
  if (!config)
    return op->emitError() << "'" << kConfigAttrName
                           << "' must be a dictionary";
  auto modelType = config.getAs<StringAttr>("model_type");
  if (!modelType ||
      (modelType.getValue() != "bert" && modelType.getValue() != "gpt2"))
    return op->emitError() << "'" << kConfigAttrName
                           << "' needs model_type = \"bert\" or \"gpt2\"";
  if (!config.getAs<StringAttr>("task"))
    return op->emitError() << "'" << kConfigAttrName
                           << "' needs a string 'task'";
  return success();
}

/// Input and output names are how the runtime binds tensors, so each must be a
/// string and unique within its function.
static LogicalResult verifyIoName(Operation *op, NamedAttribute attr,
                                  unsigned index, bool isResult) {
  auto name = dyn_cast<StringAttr>(attr.getValue());
  if (!name || name.getValue().empty())
    return op->emitError() << "'" << attr.getName().getValue()
                           << "' must be a non-empty string";
  auto func = dyn_cast<FunctionOpInterface>(op);
  if (!func)
    return op->emitError() << "'" << attr.getName().getValue()
                           << "' belongs on a function";
  unsigned count = isResult ? func.getNumResults() : func.getNumArguments();
  for (unsigned i = 0; i < count; ++i) {
    if (i == index)
      continue;
    Attribute other = isResult ? func.getResultAttr(i, attr.getName())
                               : func.getArgAttr(i, attr.getName());
    if (other == name)
      return op->emitError() << "two " << (isResult ? "results" : "arguments")
                             << " are named '" << name.getValue() << "'";
  }
  return success();
}

LogicalResult MegatronDialect::verifyRegionArgAttribute(Operation *op,
                                                        unsigned regionIndex,
                                                        unsigned argIndex,
                                                        NamedAttribute attr) {
  if (attr.getName() != kInputAttrName)
    return op->emitError() << "unknown argument attribute '"
                           << attr.getName().getValue() << "'";
  return verifyIoName(op, attr, argIndex, /*isResult=*/false);
}

LogicalResult MegatronDialect::verifyRegionResultAttribute(
    Operation *op, unsigned regionIndex, unsigned resultIndex,
    NamedAttribute attr) {
  if (attr.getName() != kOutputAttrName)
    return op->emitError() << "unknown result attribute '"
                           << attr.getName().getValue() << "'";
  return verifyIoName(op, attr, resultIndex, /*isResult=*/true);
}
