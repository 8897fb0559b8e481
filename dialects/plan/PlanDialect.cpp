//===- PlanDialect.cpp - plan dialect and its verifiers -------------------===//

#include "dialects/plan/PlanDialect.h"

#include "megatron/runtime/StepSignature.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::plan;

#include "dialects/plan/PlanDialect.cpp.inc"
#include "dialects/plan/PlanEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/plan/PlanAttrs.cpp.inc"

#define GET_OP_CLASSES
#include "dialects/plan/PlanOps.cpp.inc"

void PlanDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/plan/PlanOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/plan/PlanAttrs.cpp.inc"
      >();
}

std::optional<DimExpr> mlir::plan::parseDim(llvm::StringRef text) {
  DimExpr dim;
  llvm::SmallVector<llvm::StringRef> factors;
  text.split(factors, '*');
  bool sawConstant = false;
  for (llvm::StringRef factor : factors) {
    int64_t value;
    if (!factor.getAsInteger(10, value)) {
      if (sawConstant || value < 0)
        return std::nullopt;
      dim.constant = value;
      sawConstant = true;
      continue;
    }
    auto *it = llvm::find(kSymbolNames, factor);
    if (it == std::end(kSymbolNames))
      return std::nullopt;
    dim.symbols.push_back(it - std::begin(kSymbolNames));
  }
  return dim;
}

/// Bytes of one element of an arena or weight buffer.
static std::optional<int64_t> elementBytes(Type type) {
  if (!type.isIntOrFloat() || type.getIntOrFloatBitWidth() % 8)
    return std::nullopt;
  return type.getIntOrFloatBitWidth() / 8;
}

LogicalResult RankOp::verify() {
  for (auto buffer : getBody().getOps<BufferOp>())
    if (buffer.getOffset() + buffer.getSize() > getArenaSize())
      return buffer.emitOpError()
             << "bytes [" << buffer.getOffset() << ", +" << buffer.getSize()
             << ") lie outside the arena of " << getArenaSize() << " bytes";
  return success();
}

LogicalResult BufferOp::verify() {
  if (!elementBytes(getElementType()))
    return emitOpError() << "element type " << getElementType()
                         << " is not a whole number of bytes";
  for (Attribute dim : getShape())
    if (!parseDim(cast<StringAttr>(dim).getValue()))
      return emitOpError() << "dimension '" << cast<StringAttr>(dim).getValue()
                           << "' is not a constant times symbols of "
                              "Batch, Sequence, Choices, Past, Keys";
  return success();
}

Value WeightOp::getValue() {
  return cast<YieldOp>(getBody().front().getTerminator()).getValue();
}

LogicalResult WeightOp::verify() {
  auto type = dyn_cast<RankedTensorType>(getType());
  if (!type || !type.hasStaticShape())
    return emitOpError() << "needs a static tensor type, has " << getType();
  if (getBody().front().empty() || !isa<YieldOp>(getBody().front().back()))
    return emitOpError() << "body must end in plan.yield";
  if (getValue().getType() != type)
    return emitOpError() << "yields " << getValue().getType()
                         << " but is declared " << type;
  Type storage = getStorageType();
  if (!storage.isF32() && !storage.isF16() && !storage.isBF16() &&
      !storage.isInteger(8))
    return emitOpError() << "cannot store weights as " << storage;
  if (storage.isInteger(8) != type.getElementType().isInteger(8))
    return emitOpError() << "stores " << type.getElementType() << " values as "
                         << storage << ": int8 values are stored as i8, and only they";
  uint64_t bytes = type.getNumElements() * *elementBytes(storage);
  if (bytes != getSize())
    return emitOpError() << "holds " << bytes << " bytes, its size says "
                         << getSize();
  return success();
}

/// The buffer or weight `name` of the rank around `op`.
static Operation *lookupInRank(Operation *op, FlatSymbolRefAttr name) {
  auto rank = op->getParentOfType<RankOp>();
  return rank ? SymbolTable::lookupSymbolIn(rank, name.getAttr()) : nullptr;
}

LogicalResult EntryOp::verify() {
  for (auto [list, kind] : {std::pair(getInputs(), BufferKind::Input),
                            std::pair(getOutputs(), BufferKind::Output)})
    for (auto name : list.getAsRange<FlatSymbolRefAttr>()) {
      auto buffer = dyn_cast_or_null<BufferOp>(lookupInRank(*this, name));
      if (!buffer || buffer.getKind() != kind)
        return emitOpError() << name << " is not an " << stringifyEnum(kind)
                             << " buffer of this rank";
    }
  return success();
}

LogicalResult StepOp::verify() {
  auto sig = *megatron::runtime::stepSignature(static_cast<unsigned>(getKind()));
  unsigned inputs = getInputs().size();
  if (inputs < sig.minInputs || inputs > sig.maxInputs)
    return emitOpError() << sig.name << " takes " << sig.minInputs
                         << (sig.maxInputs == sig.minInputs ? "" : " or more")
                         << " inputs, has " << inputs;
  if (getOutputs().size() != sig.outputs)
    return emitOpError() << sig.name << " writes " << sig.outputs << " buffer(s), has "
                         << getOutputs().size();
  if (getInts().size() != sig.ints || getFloats().size() != sig.floats)
    return emitOpError() << sig.name << " takes " << sig.ints
                         << " ints and " << sig.floats << " floats";
  auto names = llvm::to_vector(getInputs().getAsRange<FlatSymbolRefAttr>());
  int quantizable = megatron::runtime::quantizableOperand(static_cast<unsigned>(getKind()));
  for (auto [i, name] : llvm::enumerate(names)) {
    Operation *input = lookupInRank(*this, name);
    if (!isa_and_nonnull<BufferOp, WeightOp>(input))
      return emitOpError() << "reads " << name
                           << ", which is no buffer or weight of this rank";
    auto weight = dyn_cast<WeightOp>(input);
    if (!weight || !weight.getStorageType().isInteger(8))
      continue;
    auto scales = i + 1 < names.size()
                      ? dyn_cast_or_null<WeightOp>(lookupInRank(*this, names[i + 1]))
                      : WeightOp();
    if (int(i) != quantizable || !scales || !scales.getStorageType().isF32())
      return emitOpError() << "reads the int8 weight " << name
                           << " where it takes none, or without f32 scales after it";
  }
  for (auto name : getOutputs().getAsRange<FlatSymbolRefAttr>()) {
    auto out = dyn_cast_or_null<BufferOp>(lookupInRank(*this, name));
    if (!out || out.getKind() == BufferKind::Input)
      return emitOpError() << "writes " << name
                           << ", which is no writable buffer of this rank";
    if ((getKind() == StepKind::CacheWrite) != (out.getKind() == BufferKind::KVCache))
      return emitOpError() << "only cache_write writes a kv_cache buffer";
  }
  return success();
}
