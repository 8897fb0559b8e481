//===- SymbolicShapes.cpp - run-time dimensions of a megatron graph -------===//

#include "compiler/SymbolicShapes.h"

#include "dialects/megatron/MegatronOps.h"
#include "dialects/plan/PlanDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

using namespace megatron;
using llvm::createStringError;
using mlir::Value;
namespace mm = mlir::megatron;

SymbolicDim SymbolicDim::operator*(const SymbolicDim &other) const {
  SymbolicDim product{constant * other.constant, symbols};
  product.symbols.append(other.symbols.begin(), other.symbols.end());
  llvm::sort(product.symbols);
  return product;
}

std::string SymbolicDim::str() const {
  std::string text = constant != 1 || symbols.empty()
                         ? std::to_string(constant)
                         : std::string();
  for (Symbol s : symbols)
    text += (text.empty() ? "" : "*") + mlir::plan::kSymbolNames[static_cast<int>(s)].str();
  return text;
}

namespace {

SymbolicDim constantDim(int64_t value) { return SymbolicDim{value, {}}; }

class Inference {
public:
  llvm::Error run(mlir::func::FuncOp func) {
    bool cached = false;
    func.walk([&](mm::KVCacheOp) { cached = true; });
    func.walk([&](mm::AttentionOp a) { cached |= a.getKvSlot().has_value(); });
    for (Value arg : func.getArguments()) {
      auto type = mlir::dyn_cast<mlir::RankedTensorType>(arg.getType());
      if (!type || (type.getRank() != 2 && type.getRank() != 3))
        return createStringError(
            "model inputs must be [batch, seq] or [batch, choices, seq]");
      SymbolicShape shape = {SymbolicDim{1, {Symbol::Batch}}};
      if (type.getRank() == 3)
        shape.push_back(SymbolicDim{1, {Symbol::Choices}});
      auto name = func.getArgAttrOfType<mlir::StringAttr>(
          mlir::cast<mlir::BlockArgument>(arg).getArgNumber(),
          mm::MegatronDialect::kInputAttrName);
      bool keys = cached && name && name.getValue() == "attention_mask";
      shape.push_back(SymbolicDim{1, {keys ? Symbol::Keys : Symbol::Sequence}});
      shapes[arg] = shape;
    }
    for (mlir::Operation &op : func.getBody().front().without_terminator()) {
      auto inferred = infer(&op);
      if (!inferred)
        return inferred.takeError();
      // A static dimension is its own constant, whatever the rule said.
      // Ops with several results (fused sum + norm) give each that shape.
      for (Value result : op.getResults()) {
        SymbolicShape shape = *inferred;
        if (auto type = mlir::dyn_cast<mlir::RankedTensorType>(result.getType())) {
          if (shape.size() != static_cast<size_t>(type.getRank()))
            return error(&op, "rank mismatch");
          for (auto [i, d] : llvm::enumerate(type.getShape()))
            if (!mlir::ShapedType::isDynamic(d))
              shape[i] = constantDim(d);
        }
        shapes[result] = std::move(shape);
      }
    }
    return llvm::Error::success();
  }

  llvm::DenseMap<Value, SymbolicShape> shapes;

private:
  static llvm::Error error(mlir::Operation *op, llvm::StringRef why) {
    return createStringError(llvm::formatv("cannot size the results of '{0}': {1}",
                                           op->getName(), why));
  }

  /// Static dimensions of a value not yet seen (weights and their
  /// transforms are fully static).
  SymbolicShape of(Value v) {
    auto it = shapes.find(v);
    if (it != shapes.end())
      return it->second;
    SymbolicShape shape;
    for (int64_t d : mlir::cast<mlir::RankedTensorType>(v.getType()).getShape())
      shape.push_back(constantDim(d));
    return shape;
  }

  llvm::Expected<SymbolicShape> infer(mlir::Operation *op) {
    using Result = llvm::Expected<SymbolicShape>;
    return llvm::TypeSwitch<mlir::Operation *, Result>(op)
        .Case<mm::WeightOp, mm::ReshapeOp, mm::TransposeOp, mm::ConcatOp,
              mm::SliceOp, mm::QuantizeOp, mm::DequantizeOp>([&](auto) -> Result { return reshapeLike(op); })
        .Case([&](mm::EmbeddingOp e) -> Result {
          SymbolicShape s = of(e.getIds());
          s.push_back(constantDim(e.getType().getShape().back()));
          return s;
        })
        .Case([&](mm::KVCacheOp c) -> Result {
          SymbolicShape s = of(c.getInput());
          s[2] = SymbolicDim{1, {Symbol::Keys}};
          return s;
        })
        .Case<mm::PositionsOp, mm::LayerNormOp, mm::GeluOp, mm::TanhOp,
              mm::ScaleOp, mm::SoftmaxOp, mm::AttentionMaskOp>(
            [&](auto) -> Result { return of(op->getOperand(0)); })
        .Case([&](mm::AddOp a) -> Result {
          SymbolicShape l = of(a.getLhs()), r = of(a.getRhs());
          // Broadcasting: align at the end, take the non-unit side.
          SymbolicShape &longer = l.size() >= r.size() ? l : r;
          const SymbolicShape &shorter = l.size() >= r.size() ? r : l;
          size_t shift = longer.size() - shorter.size();
          for (size_t i = 0; i < shorter.size(); ++i)
            if (longer[shift + i] == constantDim(1))
              longer[shift + i] = shorter[i];
          return longer;
        })
        .Case([&](mm::LinearOp l) -> Result {
          SymbolicShape s = of(l.getInput());
          s.back() = constantDim(l.getType().getShape().back());
          return s;
        })
        .Case([&](mm::LinearAddLayerNormOp l) -> Result { return of(l.getResidual()); })
        .Case([&](mm::AddLayerNormOp a) -> Result { return of(a.getLhs()); })
        .Case([&](mm::AttentionOp a) -> Result {
          SymbolicShape s = of(a.getQkv());
          s.back() = constantDim(s.back().constant / 3);
          return s;
        })
        .Case([&](mm::MatmulOp m) -> Result {
          SymbolicShape s = of(m.getLhs()), r = of(m.getRhs());
          s.back() = m.getTransposeRhs() ? r[r.size() - 2] : r.back();
          return s;
        })
        .Case([&](mm::SplitHeadsOp h) -> Result {
          SymbolicShape s = of(h.getInput());
          int64_t heads = h.getNumHeads();
          return SymbolicShape{s[0], constantDim(heads), s[1],
                               constantDim(s[2].constant / heads)};
        })
        .Case([&](mm::MergeHeadsOp h) -> Result {
          SymbolicShape s = of(h.getInput());
          return SymbolicShape{s[0], s[2], s[1] * s[3]};
        })
        .Case([&](mlir::shard::AllReduceOp r) -> Result { return of(r.getInput()); })
        .Case([&](mlir::shard::AllGatherOp g) -> Result {
          // The gathered dimension is static (vocabulary rows).
          SymbolicShape s = of(g.getInput());
          int64_t axis = g.getGatherAxis().getZExtValue();
          int64_t size = g.getResult().getType().getDimSize(axis);
          if (mlir::ShapedType::isDynamic(size))
            return error(op, "a gather along a run-time dimension");
          s[axis] = constantDim(size);
          return s;
        })
        .Case([&](mlir::tensor::DimOp d) -> Result {
          std::optional<int64_t> index = d.getConstantIndex();
          if (!index)
            return error(op, "the dimension index is not a constant");
          return SymbolicShape{of(d.getSource())[*index]};
        })
        .Case([&](mlir::arith::ConstantIndexOp c) -> Result {
          return SymbolicShape{constantDim(c.value())};
        })
        .Case([&](mlir::arith::MulIOp m) -> Result {
          return SymbolicShape{shapes.lookup(m.getLhs())[0] *
                               shapes.lookup(m.getRhs())[0]};
        })
        .Default([&](mlir::Operation *) -> Result {
          return error(op, "no rule for this op");
        });
  }

  /// Ops that rearrange elements: dynamic result dimensions come from the
  /// reshape's size operands; everything else about them is static.
  llvm::Expected<SymbolicShape> reshapeLike(mlir::Operation *op) {
    auto type = mlir::cast<mlir::RankedTensorType>(op->getResult(0).getType());
    auto reshape = mlir::dyn_cast<mm::ReshapeOp>(op);
    SymbolicShape s;
    unsigned next = 0;
    for (int64_t d : type.getShape()) {
      if (!mlir::ShapedType::isDynamic(d)) {
        s.push_back(constantDim(d));
        continue;
      }
      if (auto slice = mlir::dyn_cast<mm::SliceOp>(op)) {
        s.push_back(of(slice.getInput())[s.size()]);
        continue;
      }
      if (!reshape || next >= reshape.getDynamicSizes().size())
        return error(op, "a dynamic dimension with no known size");
      s.push_back(shapes.lookup(reshape.getDynamicSizes()[next++])[0]);
    }
    return s;
  }
};
} // namespace

llvm::Expected<llvm::DenseMap<Value, SymbolicShape>>
megatron::inferSymbolicShapes(mlir::func::FuncOp func) {
  Inference inference;
  if (auto err = inference.run(func))
    return std::move(err);
  return std::move(inference.shapes);
}
