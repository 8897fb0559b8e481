//===- ShardTensorParallel.cpp - Megatron's tensor parallelism ------------===//
//
// One function per rank, each with local shapes and its weight slices. The
// rewrite walks the function in order and keeps, for every value, how it is
// laid out across ranks:
//   - replicated (every rank holds all of it; the default);
//   - split along one dimension (rank r holds the r-th contiguous part);
//   - split in blocks (a fused QKV output: Q, K and V each split, so the
//     local tensor is [Q_r, K_r, V_r]).
// Column-parallel linears create split values, the ops between them and a
// row-parallel linear keep them split (shrinking their shapes), and the
// row-parallel linear ends the region with an all-reduce. An op that would
// read a split value with no rule for it is an error, never a silent
// replicated computation on partial data.
//
//===----------------------------------------------------------------------===//

#include "compiler/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

namespace megatron {
#define GEN_PASS_DEF_SHARDTENSORPARALLEL
#include "compiler/Passes.h.inc"
} // namespace megatron

using namespace megatron;
using mlir::Value;
namespace mm = mlir::megatron;

namespace {

constexpr llvm::StringLiteral kGrid = "tp";

/// How a value is laid out across the ranks.
struct Layout {
  enum Kind { Replicated, Split, Blocks } kind = Replicated;
  int64_t dim = 0;    ///< the split dimension
  int64_t blocks = 1; ///< Blocks: equal blocks of `dim`, each split
};

class RankSharder {
public:
  RankSharder(mlir::func::FuncOp func, int64_t rank, int64_t ranks)
      : func(func), rank(rank), ranks(ranks), b(func.getContext()) {}

  mlir::LogicalResult run();

private:
  mlir::InFlightDiagnostic error(mlir::Operation *op, const llvm::Twine &why) {
    return op->emitOpError() << "cannot be split across " << ranks
                             << " tensor-parallel ranks: " << why;
  }
  Layout layout(Value v) const {
    auto it = layouts.find(v);
    return it == layouts.end() ? Layout() : it->second;
  }
  /// Divides dimension `dim` of `v`'s type by the number of ranks.
  void shrink(Value v, int64_t dim) {
    auto type = mlir::cast<mlir::RankedTensorType>(v.getType());
    llvm::SmallVector<int64_t> shape(type.getShape());
    if (!mlir::ShapedType::isDynamic(shape[dim]))
      shape[dim] /= ranks;
    v.setType(mlir::RankedTensorType::get(shape, type.getElementType()));
  }
  /// This rank's part of weight `w` along `dim`, in `blocks` equal blocks
  /// each split across the ranks (Q, K and V of a fused projection).
  Value weightSlice(Value w, int64_t dim, int64_t blocks = 1);
  mlir::Value allReduce(Value v);

  bool isColumnParallel(mm::LinearOp linear, int64_t &blocks) const;
  mlir::LogicalResult shardColumn(mm::LinearOp linear, int64_t blocks);
  mlir::LogicalResult shardRow(mm::LinearOp linear);
  mlir::LogicalResult shardVocabEmbedding(mm::EmbeddingOp embedding);
  mlir::LogicalResult shardLMHead(mm::LinearOp linear, int64_t rows);
  mlir::LogicalResult propagate(mlir::Operation *op);

  mlir::func::FuncOp func;
  int64_t rank, ranks;
  mlir::OpBuilder b;
  llvm::DenseMap<Value, Layout> layouts;
  Value wordEmbeddings; ///< the table the input ids index (tied LM head)
};

Value RankSharder::weightSlice(Value w, int64_t dim, int64_t blocks) {
  auto type = mlir::cast<mlir::RankedTensorType>(w.getType());
  mlir::Location loc = w.getLoc();
  llvm::SmallVector<int64_t> shape(type.getShape());
  llvm::SmallVector<int64_t> local = shape;
  local[dim] /= ranks;
  auto localType = mlir::RankedTensorType::get(local, type.getElementType());
  if (blocks == 1) {
    int64_t size = shape[dim] / ranks;
    return mm::SliceOp::create(b, loc, localType, w, dim, rank * size, size);
  }
  // [..., N, ...] -> [..., blocks, N / blocks, ...], slice the inner
  // dimension, and back.
  llvm::SmallVector<int64_t> blocked(shape.begin(), shape.begin() + dim);
  blocked.push_back(blocks);
  blocked.push_back(shape[dim] / blocks);
  blocked.append(shape.begin() + dim + 1, shape.end());
  auto blockedType = mlir::RankedTensorType::get(blocked, type.getElementType());
  Value r = mm::ReshapeOp::create(b, loc, blockedType, w, mlir::ValueRange());
  llvm::SmallVector<int64_t> part = blocked;
  int64_t size = blocked[dim + 1] / ranks;
  part[dim + 1] = size;
  r = mm::SliceOp::create(b, loc, mlir::RankedTensorType::get(part, type.getElementType()),
                          r, dim + 1, rank * size, size);
  return mm::ReshapeOp::create(b, loc, localType, r, mlir::ValueRange());
}

Value RankSharder::allReduce(Value v) {
  b.setInsertionPointAfterValue(v);
  auto reduce = mlir::shard::AllReduceOp::create(
      b, v.getLoc(), v.getType(), kGrid, b.getDenseI16ArrayAttr({0}), v,
      mlir::shard::ReductionKind::Sum);
  v.replaceAllUsesExcept(reduce.getResult(), reduce);
  return reduce.getResult();
}

/// A linear is column parallel when it starts a split region Megatron
/// splits: an attention projection (its output is cut into heads, perhaps
/// after cutting a fused QKV into equal blocks) or the MLP's first linear
/// (GELU, then another linear). `blocks` is the number of equal blocks its
/// output is cut into (3 for a fused QKV).
bool RankSharder::isColumnParallel(mm::LinearOp linear, int64_t &blocks) const {
  Value out = linear.getResult();
  if (out.use_empty())
    return false;
  auto allUsers = [](Value v, auto predicate) {
    return !v.use_empty() && llvm::all_of(v.getUsers(), predicate);
  };
  auto isHeads = [](mlir::Operation *u) { return mlir::isa<mm::SplitHeadsOp>(u); };
  blocks = 1;
  if (allUsers(out, isHeads))
    return true;
  int64_t width = linear.getType().getShape().back(), last = linear.getType().getRank() - 1;
  int64_t blockSize = 0;
  llvm::SmallDenseSet<int64_t> starts;
  bool slices = allUsers(out, [&](mlir::Operation *u) {
    auto s = mlir::dyn_cast<mm::SliceOp>(u);
    if (!s || int64_t(s.getDim()) != last || !allUsers(s.getResult(), isHeads))
      return false;
    if (blockSize == 0)
      blockSize = s.getSize();
    starts.insert(s.getStart());
    return int64_t(s.getSize()) == blockSize && s.getStart() % blockSize == 0;
  });
  if (slices && blockSize > 0 && width % blockSize == 0 &&
      int64_t(starts.size()) == width / blockSize) {
    blocks = width / blockSize;
    return true;
  }
  // The MLP: linear -> GELU -> linear.
  auto gelu = out.hasOneUse() ? mlir::dyn_cast<mm::GeluOp>(*out.getUsers().begin())
                              : nullptr;
  return gelu && allUsers(gelu.getResult(), [&](mlir::Operation *u) {
           auto next = mlir::dyn_cast<mm::LinearOp>(u);
           return next && next.getInput() == gelu.getResult();
         });
}

mlir::LogicalResult RankSharder::shardColumn(mm::LinearOp linear, int64_t blocks) {
  b.setInsertionPoint(linear);
  linear.getWeightMutable().assign(weightSlice(linear.getWeight(), 0, blocks));
  if (Value bias = linear.getBias())
    linear.getBiasMutable().assign(weightSlice(bias, 0, blocks));
  int64_t last = linear.getType().getRank() - 1;
  shrink(linear.getResult(), last);
  layouts[linear.getResult()] = blocks == 1 ? Layout{Layout::Split, last, 1}
                                            : Layout{Layout::Blocks, last, blocks};
  return mlir::success();
}

mlir::LogicalResult RankSharder::shardRow(mm::LinearOp linear) {
  Layout in = layout(linear.getInput());
  int64_t last = linear.getInput().getType().getRank() - 1;
  if (in.kind != Layout::Split || in.dim != last)
    return error(linear, "a row-parallel linear needs its input split along "
                         "the features");
  b.setInsertionPoint(linear);
  linear.getWeightMutable().assign(weightSlice(linear.getWeight(), 1));
  // Each rank's product is a partial sum: reduce it, then add the bias once.
  Value bias = linear.getBias();
  if (bias)
    linear.getBiasMutable().clear();
  Value reduced = allReduce(linear.getResult());
  if (bias) {
    b.setInsertionPointAfterValue(reduced);
    auto add = mm::AddOp::create(b, linear.getLoc(), reduced.getType(), reduced, bias);
    reduced.replaceAllUsesExcept(add.getResult(), add);
  }
  return mlir::success();
}

mlir::LogicalResult RankSharder::shardVocabEmbedding(mm::EmbeddingOp embedding) {
  int64_t rows = embedding.getTable().getType().getDimSize(0);
  wordEmbeddings = embedding.getTable();
  b.setInsertionPoint(embedding);
  embedding.getTableMutable().assign(weightSlice(embedding.getTable(), 0));
  embedding.setRowOffset(rank * (rows / ranks));
  embedding.setNumIds(rows);
  allReduce(embedding.getResult());
  return mlir::success();
}

mlir::LogicalResult RankSharder::shardLMHead(mm::LinearOp linear, int64_t rows) {
  int64_t width = linear.getType().getShape().back();
  int64_t last = linear.getType().getRank() - 1;
  b.setInsertionPoint(linear);
  // The logits of this rank's vocabulary rows; a head over the first
  // `width` rows only (GPT-2's 50257 of 50304) computes all padded rows
  // and drops the padding after the gather.
  linear.getWeightMutable().assign(weightSlice(wordEmbeddings, 0));
  if (Value bias = linear.getBias())
    linear.getBiasMutable().assign(weightSlice(bias, 0));
  auto type = linear.getType();
  llvm::SmallVector<int64_t> full(type.getShape());
  full[last] = rows;
  llvm::SmallVector<int64_t> local = full;
  local[last] = rows / ranks;
  linear.getResult().setType(mlir::RankedTensorType::get(local, type.getElementType()));
  b.setInsertionPointAfter(linear);
  auto gather = mlir::shard::AllGatherOp::create(
      b, linear.getLoc(), mlir::RankedTensorType::get(full, type.getElementType()),
      mlir::FlatSymbolRefAttr::get(b.getContext(), kGrid), b.getDenseI16ArrayAttr({0}),
      linear.getResult(), b.getIndexAttr(last));
  Value logits = gather.getResult();
  if (width != rows)
    logits = mm::SliceOp::create(b, linear.getLoc(), type, logits, last, 0, width);
  linear.getResult().replaceAllUsesExcept(logits, gather);
  return mlir::success();
}

mlir::LogicalResult RankSharder::propagate(mlir::Operation *op) {
  auto keep = [&](Value from, Value to) {
    Layout l = layout(from);
    shrink(to, l.dim);
    layouts[to] = l;
    return mlir::success();
  };
  return llvm::TypeSwitch<mlir::Operation *, mlir::LogicalResult>(op)
      .Case([&](mm::SliceOp s) -> mlir::LogicalResult {
        Layout in = layout(s.getInput());
        int64_t width = s.getInput().getType().getDimSize(in.dim) * ranks;
        if (in.kind != Layout::Blocks || int64_t(s.getDim()) != in.dim ||
            int64_t(s.getSize()) * in.blocks != width)
          return error(op, "only whole Q/K/V blocks of a fused projection can be sliced");
        int64_t local = s.getSize() / ranks;
        s.setStart(s.getStart() / ranks);
        s.setSize(local);
        shrink(s.getResult(), in.dim);
        layouts[s.getResult()] = {Layout::Split, in.dim, 1};
        return mlir::success();
      })
      .Case([&](mm::SplitHeadsOp h) -> mlir::LogicalResult {
        Layout in = layout(h.getInput());
        if (in.kind != Layout::Split || in.dim != 2)
          return error(op, "heads are split only from features split whole");
        h.setNumHeads(h.getNumHeads() / ranks);
        shrink(h.getResult(), 1);
        layouts[h.getResult()] = {Layout::Split, 1, 1};
        return mlir::success();
      })
      .Case([&](mm::MatmulOp m) -> mlir::LogicalResult {
        Layout l = layout(m.getLhs()), r = layout(m.getRhs());
        if (l.kind != Layout::Split || l.dim != 1 || r.kind != Layout::Split || r.dim != 1)
          return error(op, "attention matmuls need both sides split by heads");
        return keep(m.getLhs(), m.getResult());
      })
      .Case<mm::ScaleOp, mm::SoftmaxOp, mm::GeluOp, mm::AttentionMaskOp>(
          [&](auto o) -> mlir::LogicalResult {
            for (Value operand : op->getOperands().drop_front())
              if (layout(operand).kind != Layout::Replicated)
                return error(op, "its second operand is split");
            return keep(op->getOperand(0), op->getResult(0));
          })
      .Case([&](mm::MergeHeadsOp h) -> mlir::LogicalResult {
        Layout in = layout(h.getInput());
        if (in.kind != Layout::Split || in.dim != 1)
          return error(op, "merging heads needs them split by heads");
        shrink(h.getResult(), 2);
        layouts[h.getResult()] = {Layout::Split, 2, 1};
        return mlir::success();
      })
      .Case([&](mm::LinearOp l) { return shardRow(l); })
      .Default([&](mlir::Operation *) {
        return error(op, "it reads a tensor that is split across the ranks");
      });
}

mlir::LogicalResult RankSharder::run() {
  Value inputIds;
  for (auto [i, arg] : llvm::enumerate(func.getArguments()))
    if (auto name = func.getArgAttrOfType<mlir::StringAttr>(
            i, mm::MegatronDialect::kInputAttrName);
        name && name.getValue() == "input_ids")
      inputIds = arg;
  auto ops = llvm::map_to_vector(func.getBody().front().without_terminator(),
                                 [](mlir::Operation &op) { return &op; });
  for (mlir::Operation *op : ops) {
    bool split = llvm::any_of(op->getOperands(), [&](Value v) {
      return layout(v).kind != Layout::Replicated;
    });
    if (split) {
      if (mlir::failed(propagate(op)))
        return mlir::failure();
      continue;
    }
    if (auto e = mlir::dyn_cast<mm::EmbeddingOp>(op); e && e.getIds() == inputIds) {
      if (mlir::failed(shardVocabEmbedding(e)))
        return mlir::failure();
      continue;
    }
    auto linear = mlir::dyn_cast<mm::LinearOp>(op);
    if (!linear)
      continue;
    // The tied LM head: the word embeddings, or their first rows.
    Value w = linear.getWeight();
    auto head = w.getDefiningOp<mm::SliceOp>();
    if (wordEmbeddings &&
        (w == wordEmbeddings ||
         (head && head.getInput() == wordEmbeddings && head.getDim() == 0 &&
          head.getStart() == 0 && !linear.getBias()))) {
      int64_t rows =
          mlir::cast<mlir::RankedTensorType>(wordEmbeddings.getType()).getDimSize(0);
      if (mlir::failed(shardLMHead(linear, rows)))
        return mlir::failure();
      continue;
    }
    int64_t blocks;
    if (isColumnParallel(linear, blocks) && mlir::failed(shardColumn(linear, blocks)))
      return mlir::failure();
  }
  return mlir::success();
}

struct ShardTensorParallelPass
    : impl::ShardTensorParallelBase<ShardTensorParallelPass> {
  using ShardTensorParallelBase::ShardTensorParallelBase;

  void runOnOperation() override {
    mlir::ModuleOp module = getOperation();
    if (tp == 1)
      return;
    if (tp < 1) {
      module.emitError() << "the tensor-parallel degree must be positive, got " << static_cast<int64_t>(tp);
      return signalPassFailure();
    }
    auto config = module->getAttrOfType<mlir::DictionaryAttr>(
        mm::MegatronDialect::kConfigAttrName);
    auto get = [&](llvm::StringRef key) {
      auto a = config ? config.getAs<mlir::IntegerAttr>(key) : nullptr;
      return a ? a.getInt() : 0;
    };
    for (auto [key, what] : {std::pair{"num_heads", "attention heads"},
                             {"ffn_size", "FFN size"},
                             {"padded_vocab_size", "padded vocabulary"}})
      if (get(key) <= 0 || get(key) % static_cast<int64_t>(tp) != 0) {
        module.emitError() << "--tp " << static_cast<int64_t>(tp) << " does not divide the model's "
                           << what << " (" << get(key)
                           << "): Megatron splits whole heads, FFN columns and "
                              "vocabulary rows evenly across ranks";
        return signalPassFailure();
      }
    auto funcs = llvm::to_vector(module.getOps<mlir::func::FuncOp>());
    if (funcs.size() != 1) {
      module.emitError() << "expected one function to shard, found " << funcs.size();
      return signalPassFailure();
    }
    mlir::func::FuncOp original = funcs.front();
    mlir::OpBuilder b(module.getBodyRegion());
    mlir::shard::GridOp::create(b, module.getLoc(), kGrid, llvm::ArrayRef<int64_t>{tp});
    b.setInsertionPoint(original);
    for (int64_t r = 0; r < tp; ++r) {
      auto copy = mlir::cast<mlir::func::FuncOp>(b.clone(*original));
      copy.setSymName((original.getSymName() + "_rank" + llvm::Twine(r)).str());
      copy->setAttr(mm::MegatronDialect::kRankAttrName, b.getI64IntegerAttr(r));
      if (mlir::failed(RankSharder(copy, r, tp).run()))
        return signalPassFailure();
    }
    original.erase();
  }
};

} // namespace
