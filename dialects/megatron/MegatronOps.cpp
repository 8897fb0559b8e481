//===- MegatronOps.cpp - megatron op verifiers ----------------------------===//
//
// Shapes mix static model dimensions with dynamic batch/sequence dimensions.
// Two dimensions conflict only when both are static and differ; the checks
// below compare whole shapes that way and print both in the diagnostic.
//
//===----------------------------------------------------------------------===//

#include "dialects/megatron/MegatronOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"

using namespace mlir;
using namespace mlir::megatron;

namespace {
using Shape = SmallVector<int64_t>;

std::string formatShape(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          os << "?";
        else
          os << d;
      },
      ", ");
  os << "]";
  return text;
}

bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

bool shapesCompatible(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  return a.size() == b.size() &&
         llvm::all_of(llvm::zip_equal(a, b), [](auto dims) {
           return dimsCompatible(std::get<0>(dims), std::get<1>(dims));
         });
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getShape();
}

Type elementTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

/// The result must have `expected` shape (up to dynamic dimensions) and the
/// element type of `like`.
LogicalResult verifyResult(Operation *op, ArrayRef<int64_t> expected,
                           Value like) {
  Value result = op->getResult(0);
  if (!shapesCompatible(shapeOf(result), expected))
    return op->emitOpError() << "result shape " << formatShape(shapeOf(result))
                             << " does not match the expected "
                             << formatShape(expected);
  if (elementTypeOf(result) != elementTypeOf(like))
    return op->emitOpError() << "result element type " << elementTypeOf(result)
                             << " differs from the operand's "
                             << elementTypeOf(like);
  return success();
}

/// Operands combined arithmetically must share one element type.
LogicalResult verifySameElementType(Operation *op, ValueRange values) {
  Type first = elementTypeOf(values.front());
  for (Value v : values.drop_front())
    if (elementTypeOf(v) != first)
      return op->emitOpError() << "mixes element types " << first << " and "
                               << elementTypeOf(v);
  return success();
}

/// `v` must have exactly one dimension, of size `size` (when known).
LogicalResult verifyVector(Operation *op, Value v, StringRef what,
                           int64_t size) {
  ArrayRef<int64_t> shape = shapeOf(v);
  if (shape.size() != 1 || !dimsCompatible(shape[0], size))
    return op->emitOpError() << what << " has shape " << formatShape(shape)
                             << ", expected " << formatShape({size});
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// Weights and embeddings
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("needs a non-empty tensor name");
  if (!getType().hasStaticShape())
    return emitOpError() << "weight '" << getName()
                         << "' must have a static shape, got "
                         << formatShape(getType().getShape());
  return success();
}

/// int8 `values` [rows, cols] and `scales` [rows, groups] of one quantized
/// weight, with groups dividing cols.
static LogicalResult verifyQuantized(Operation *op, ArrayRef<int64_t> values,
                                     ArrayRef<int64_t> scales) {
  if (values.size() != 2 || ShapedType::isDynamicShape(values))
    return op->emitOpError() << "quantizes a static [rows, cols] weight, got "
                             << formatShape(values);
  if (scales.size() != 2 || scales[0] != values[0] || scales[1] < 1 ||
      values[1] % scales[1] != 0)
    return op->emitOpError() << "scales " << formatShape(scales)
                             << " must be [rows, groups] with groups dividing the "
                             << values[1] << " columns of " << formatShape(values);
  return success();
}

LogicalResult QuantizeOp::verify() {
  if (shapeOf(getValues()) != shapeOf(getInput()))
    return emitOpError() << "values " << formatShape(shapeOf(getValues()))
                         << " must have the input's shape "
                         << formatShape(shapeOf(getInput()));
  return verifyQuantized(*this, shapeOf(getInput()), shapeOf(getScales()));
}

LogicalResult DequantizeOp::verify() {
  if (shapeOf(getResult()) != shapeOf(getValues()))
    return emitOpError() << "result " << formatShape(shapeOf(getResult()))
                         << " must have the values' shape "
                         << formatShape(shapeOf(getValues()));
  return verifyQuantized(*this, shapeOf(getValues()), shapeOf(getScales()));
}

LogicalResult EmbeddingOp::verify() {
  ArrayRef<int64_t> table = shapeOf(getTable());
  if (table.size() != 2)
    return emitOpError() << "table must be [rows, width], got "
                         << formatShape(table);
  // The I64Attr getters return uint64_t: a negative offset reads as a huge one.
  int64_t rowOffset = static_cast<int64_t>(getRowOffset());
  if (rowOffset < 0)
    return emitOpError() << "row_offset must not be negative, got " << rowOffset;
  if (getNumIds() && !ShapedType::isDynamic(table[0]) &&
      static_cast<int64_t>(*getNumIds()) < rowOffset + table[0])
    return emitOpError() << "rows [" << rowOffset << ", "
                         << rowOffset + table[0] << ") exceed num_ids "
                         << static_cast<int64_t>(*getNumIds());
  Shape expected(shapeOf(getIds()));
  expected.push_back(table[1]);
  return verifyResult(*this, expected, getTable());
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

LogicalResult AddOp::verify() {
  if (failed(verifySameElementType(*this, {getLhs(), getRhs()})))
    return failure();
  ArrayRef<int64_t> lhs = shapeOf(getLhs()), rhs = shapeOf(getRhs());
  size_t rank = std::max(lhs.size(), rhs.size());
  Shape expected(rank);
  for (size_t i = 0; i < rank; ++i) {
    // Align at the trailing dimension; a missing leading dimension acts as 1.
    int64_t a = i + lhs.size() >= rank ? lhs[i + lhs.size() - rank] : 1;
    int64_t b = i + rhs.size() >= rank ? rhs[i + rhs.size() - rank] : 1;
    if (a == 1)
      expected[i] = b;
    else if (b == 1)
      expected[i] = a;
    else if (dimsCompatible(a, b))
      expected[i] = ShapedType::isDynamic(a) ? b : a;
    else
      return emitOpError() << "cannot broadcast " << formatShape(lhs)
                           << " with " << formatShape(rhs);
  }
  return verifyResult(*this, expected, getLhs());
}

//===----------------------------------------------------------------------===//
// Contractions
//===----------------------------------------------------------------------===//

/// `int8_input` quantizes the input for an int8 GEMM: the weight must be
/// int8 values with one scale per output channel.
static LogicalResult verifyInt8Input(Operation *op, bool int8Input, Value weight) {
  if (!int8Input)
    return success();
  auto dequantize = weight.getDefiningOp<DequantizeOp>();
  if (!dequantize)
    return op->emitOpError("int8_input needs an int8 weight (a dequantize of int8 values)");
  ArrayRef<int64_t> scales = shapeOf(dequantize.getScales());
  if (scales.size() != 2 || scales[1] != 1)
    return op->emitOpError() << "int8_input needs one weight scale per output channel, got "
                                "scales "
                             << formatShape(scales);
  return success();
}

LogicalResult LinearOp::verify() {
  SmallVector<Value> operands{getInput(), getWeight()};
  if (getBias())
    operands.push_back(getBias());
  if (failed(verifySameElementType(*this, operands)))
    return failure();
  ArrayRef<int64_t> input = shapeOf(getInput()), weight = shapeOf(getWeight());
  if (input.empty())
    return emitOpError("input must have at least one dimension");
  if (weight.size() != 2)
    return emitOpError() << "weight must be [out, in], got "
                         << formatShape(weight);
  if (!dimsCompatible(input.back(), weight[1]))
    return emitOpError() << "input features " << formatShape(input)
                         << " do not match weight [out, in] "
                         << formatShape(weight);
  if (getBias() &&
      failed(verifyVector(*this, getBias(), "bias", weight[0])))
    return failure();
  if (failed(verifyInt8Input(*this, getInt8Input(), getWeight())))
    return failure();
  Shape expected(input);
  expected.back() = weight[0];
  return verifyResult(*this, expected, getInput());
}

/// The LayerNorm half of a fused op: gamma and beta match the last
/// dimension, epsilon is positive, and both results (sum, normalised) have
/// `shape`.
static LogicalResult verifyNormedResults(Operation *op, Value gamma, Value beta,
                                         APFloat epsilon, ArrayRef<int64_t> shape) {
  if (failed(verifyVector(op, gamma, "gamma", shape.back())) ||
      failed(verifyVector(op, beta, "beta", shape.back())))
    return failure();
  if (!(epsilon.convertToDouble() > 0.0))
    return op->emitOpError() << "epsilon must be positive";
  for (Value r : op->getResults())
    if (!shapesCompatible(shapeOf(r), shape))
      return op->emitOpError() << "results must be " << formatShape(shape);
  return success();
}

LogicalResult AddLayerNormOp::verify() {
  if (failed(verifySameElementType(*this, {getLhs(), getRhs(), getGamma(), getBeta()})))
    return failure();
  ArrayRef<int64_t> lhs = shapeOf(getLhs());
  if (lhs.empty() || !shapesCompatible(lhs, shapeOf(getRhs())))
    return emitOpError() << "operands must have one shape, got " << formatShape(lhs)
                         << " and " << formatShape(shapeOf(getRhs()));
  return verifyNormedResults(*this, getGamma(), getBeta(), getEpsilon(), lhs);
}

LogicalResult LinearAddLayerNormOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput()), weight = shapeOf(getWeight());
  if (input.empty() || weight.size() != 2 || !dimsCompatible(input.back(), weight[1]))
    return emitOpError() << "input " << formatShape(input)
                         << " does not match weight [out, in] " << formatShape(weight);
  if (getBias() && failed(verifyVector(*this, getBias(), "bias", weight[0])))
    return failure();
  if (failed(verifyInt8Input(*this, getInt8Input(), getWeight())))
    return failure();
  Shape expected(input);
  expected.back() = weight[0];
  if (!shapesCompatible(shapeOf(getResidual()), expected))
    return emitOpError() << "residual " << formatShape(shapeOf(getResidual()))
                         << " does not match the product " << formatShape(expected);
  return verifyNormedResults(*this, getGamma(), getBeta(), getEpsilon(), expected);
}

LogicalResult AttentionOp::verify() {
  ArrayRef<int64_t> qkv = shapeOf(getQkv());
  if (qkv.size() != 3)
    return emitOpError() << "qkv must be [batch, seq, 3 * heads * dim], got "
                         << formatShape(qkv);
  int64_t heads = getNumHeads();
  if (!ShapedType::isDynamic(qkv[2]) && qkv[2] % (3 * heads) != 0)
    return emitOpError() << "qkv width " << qkv[2] << " is not 3 x " << heads
                         << " heads x a head size";
  if (getMask() && shapeOf(getMask()).size() != 2)
    return emitOpError() << "mask must be [batch, keys]";
  Shape expected{qkv[0], qkv[1],
                 ShapedType::isDynamic(qkv[2]) ? ShapedType::kDynamic : qkv[2] / 3};
  return verifyResult(*this, expected, getQkv());
}

LogicalResult MatmulOp::verify() {
  if (failed(verifySameElementType(*this, {getLhs(), getRhs()})))
    return failure();
  ArrayRef<int64_t> lhs = shapeOf(getLhs()), rhs = shapeOf(getRhs());
  if (lhs.size() < 2 || lhs.size() != rhs.size())
    return emitOpError() << "operands must have equal rank >= 2, got "
                         << formatShape(lhs) << " and " << formatShape(rhs);
  size_t rank = lhs.size();
  if (!shapesCompatible(lhs.drop_back(2), rhs.drop_back(2)))
    return emitOpError() << "batch dimensions differ: " << formatShape(lhs)
                         << " and " << formatShape(rhs);
  int64_t rhsK = getTransposeRhs() ? rhs[rank - 1] : rhs[rank - 2];
  int64_t n = getTransposeRhs() ? rhs[rank - 2] : rhs[rank - 1];
  if (!dimsCompatible(lhs[rank - 1], rhsK))
    return emitOpError() << "contraction dimensions differ: "
                         << formatShape(lhs) << " and " << formatShape(rhs)
                         << (getTransposeRhs() ? " (rhs transposed)" : "");
  Shape expected(lhs);
  expected.back() = n;
  return verifyResult(*this, expected, getLhs());
}

//===----------------------------------------------------------------------===//
// Normalisation and attention pieces
//===----------------------------------------------------------------------===//

LogicalResult LayerNormOp::verify() {
  if (failed(verifySameElementType(*this, {getInput(), getGamma(), getBeta()})))
    return failure();
  ArrayRef<int64_t> input = shapeOf(getInput());
  if (input.empty())
    return emitOpError("input must have at least one dimension");
  if (failed(verifyVector(*this, getGamma(), "gamma", input.back())) ||
      failed(verifyVector(*this, getBeta(), "beta", input.back())))
    return failure();
  if (!(getEpsilon().convertToDouble() > 0.0))
    return emitOpError() << "epsilon must be positive, got "
                         << getEpsilon().convertToDouble();
  return verifyResult(*this, input, getInput());
}

LogicalResult AttentionMaskOp::verify() {
  ArrayRef<int64_t> scores = shapeOf(getScores());
  if (scores.size() != 4)
    return emitOpError() << "scores must be [batch, heads, query, key], got "
                         << formatShape(scores);
  if (!getPaddingMask() && !getCausal())
    return emitOpError("masks nothing: give a padding mask, 'causal', or both");
  if (getPaddingMask()) {
    ArrayRef<int64_t> mask = shapeOf(getPaddingMask());
    if (!shapesCompatible(mask, {scores[0], scores[3]}))
      return emitOpError() << "padding mask must be [batch, key] = "
                           << formatShape({scores[0], scores[3]}) << ", got "
                           << formatShape(mask);
  }
  return verifyResult(*this, scores, getScores());
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

LogicalResult SplitHeadsOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  int64_t heads = getNumHeads();
  if (input.size() != 3 || ShapedType::isDynamic(input[2]) ||
      input[2] % heads != 0)
    return emitOpError() << "input must be [batch, seq, heads*dim] with a "
                            "static last dimension divisible by "
                         << heads << " heads, got " << formatShape(input);
  return verifyResult(*this, {input[0], heads, input[1], input[2] / heads},
                      getInput());
}

LogicalResult MergeHeadsOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  if (input.size() != 4 || ShapedType::isDynamic(input[1]) ||
      ShapedType::isDynamic(input[3]))
    return emitOpError() << "input must be [batch, heads, seq, dim] with "
                            "static heads and dim, got "
                         << formatShape(input);
  return verifyResult(*this, {input[0], input[2], input[1] * input[3]},
                      getInput());
}

LogicalResult TransposeOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  ArrayRef<int64_t> perm = getPermutation();
  if (perm.size() != input.size())
    return emitOpError() << "permutation has " << perm.size()
                         << " entries for a rank-" << input.size() << " input";
  SmallVector<bool> seen(perm.size(), false);
  Shape expected;
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(perm.size()) || seen[p])
      return emitOpError() << "is not a permutation: "
                           << formatShape(perm);
    seen[p] = true;
    expected.push_back(input[p]);
  }
  return verifyResult(*this, expected, getInput());
}

LogicalResult ReshapeOp::verify() {
  auto inputType = cast<RankedTensorType>(getInput().getType());
  auto resultType = cast<RankedTensorType>(getResult().getType());
  if (inputType.getElementType() != resultType.getElementType())
    return emitOpError("cannot change the element type");
  int64_t dynamicDims = resultType.getNumDynamicDims();
  if (static_cast<int64_t>(getDynamicSizes().size()) != dynamicDims)
    return emitOpError() << "result has " << dynamicDims
                         << " dynamic dimensions but "
                         << getDynamicSizes().size() << " sizes were given";
  if (inputType.hasStaticShape() && resultType.hasStaticShape() &&
      inputType.getNumElements() != resultType.getNumElements())
    return emitOpError() << "cannot reshape " << formatShape(inputType.getShape())
                         << " (" << inputType.getNumElements()
                         << " elements) to "
                         << formatShape(resultType.getShape()) << " ("
                         << resultType.getNumElements() << " elements)";
  return success();
}

LogicalResult SliceOp::verify() {
  ArrayRef<int64_t> input = shapeOf(getInput());
  uint64_t dim = getDim();
  if (dim >= input.size())
    return emitOpError() << "dimension " << dim << " is out of range for "
                         << formatShape(input);
  // A dynamic dimension (the sequence) is checked when the size is known.
  int64_t end = static_cast<int64_t>(getStart() + getSize());
  if (!ShapedType::isDynamic(input[dim]) && end > input[dim])
    return emitOpError() << "range [" << getStart() << ", " << end
                         << ") does not fit dimension " << dim << " of "
                         << formatShape(input);
  Shape expected(input);
  expected[dim] = getSize();
  return verifyResult(*this, expected, getInput());
}

LogicalResult ConcatOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one input");
  if (failed(verifySameElementType(*this, getInputs())))
    return failure();
  Shape expected(shapeOf(getInputs().front()));
  uint64_t dim = getDim();
  if (dim >= expected.size())
    return emitOpError() << "dimension " << dim << " is out of range for "
                         << formatShape(expected);
  for (Value input : getInputs().drop_front()) {
    ArrayRef<int64_t> shape = shapeOf(input);
    if (shape.size() != expected.size())
      return emitOpError("inputs have different ranks");
    for (auto [i, d] : llvm::enumerate(shape)) {
      if (i == dim) {
        expected[i] = ShapedType::isDynamic(d) ||
                              ShapedType::isDynamic(expected[i])
                          ? ShapedType::kDynamic
                          : expected[i] + d;
      } else if (!dimsCompatible(expected[i], d)) {
        return emitOpError() << "inputs differ outside dimension " << dim
                             << ": " << formatShape(shapeOf(getInputs()[0]))
                             << " and " << formatShape(shape);
      }
    }
  }
  return verifyResult(*this, expected, getInputs().front());
}

#define GET_OP_CLASSES
#include "dialects/megatron/MegatronOps.cpp.inc"

LogicalResult KVCacheOp::verify() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  if (shape.size() != 4 || ShapedType::isDynamic(shape[1]) ||
      ShapedType::isDynamic(shape[3]) || !ShapedType::isDynamic(shape[2]))
    return emitOpError() << "caches [batch, heads, seq, head_dim] with static "
                            "heads and head_dim and a dynamic seq, got "
                         << formatShape(shape);
  return success();
}
