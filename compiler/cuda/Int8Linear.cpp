//===- Int8Linear.cpp - linears with int8 weights on the GPU --------------===//
//
// linear_int8: warp w of a block takes output channel 4 blk + w. Its row
// of q is in / 16 vectors of 16 weights; lane l takes vectors l, l + 32,
// ..., kInt8GemvVectors of them at once (a chunk: 2 KB of the row per
// warp), all loaded before any is used; then for each row of x it sums
// their weights' products (with their scales: one per word, a group being
// a multiple of 4), and the warp adds up its lanes. Lane 0 writes y after
// the first chunk (with the bias and residual) and adds to it after the
// others: a row of more than 2048 columns takes several chunks.
//
// matmul_w8a16: a block takes 8 output channels (one n8 tile) and every row (up to two
// m16 tiles); its four warps split the input columns into contiguous runs
// of 16-column steps and add up their partial tiles through shared memory
// at the end. Per step a lane reads one word of W: the four int8 weights
// of channel g at columns 16s + 4t .. 16s + 4t + 3 (one group, since a
// group is a multiple of 4), which it scales in f32 and rounds to the
// 16-bit type, as the widening kernel does, for its two B pairs.
//
// The mma's k order is a permutation of the columns: its pairs (2t, 2t +
// 1) and (2t + 8, 2t + 9) are columns 4t, 4t + 1 and 4t + 2, 4t + 3, for
// B as for A, whose pairs are then two consecutive words of a row of x. A
// dot product does not mind the order.
//
//===----------------------------------------------------------------------===//

#include "compiler/cuda/Int8Linear.h"
#include "compiler/cuda/KernelEmitter.h"

using namespace mlir;
using megatron::cuda::KernelEmitter;
using megatron::cuda::Tile;

namespace {

constexpr int64_t kWarps = megatron::kInt8MatmulThreads / 32;
constexpr int64_t kTiles = megatron::kInt8MatmulRows / 16;
static_assert(megatron::kInt8MatmulChannels == 8, "one n8 tile per block");
static_assert(megatron::kInt8MatmulRows % 16 == 0, "whole m16 tiles");
static_assert(megatron::kInt8MatmulRows * megatron::kInt8MatmulChannels %
                      megatron::kInt8MatmulThreads ==
                  0,
              "the epilogue's threads take the block's outputs evenly");

/// A kernel of the parameters both take: x, q, scales, bias, addend, y (x
/// and q of the element types given), rows, in, out, group, has_bias,
/// has_addend; the builder then at the start of its body.
struct Int8LinearKernel {
  gpu::GPUFuncOp func;
  Value x, q, scales, bias, addend, y, rows, in, out, group, hasBias, hasAddend;

  Int8LinearKernel(ImplicitLocOpBuilder &b, const std::string &name, Type xElement,
                   Type qElement, TypeRange workgroup = {}) {
    auto dynamic = [](Type t) { return MemRefType::get({ShapedType::kDynamic}, t); };
    Type f32 = b.getF32Type(), index = b.getIndexType(), i1 = b.getI1Type();
    SmallVector<Type> params = {dynamic(xElement), dynamic(qElement), dynamic(f32), dynamic(f32),
                                dynamic(f32),      dynamic(f32),      index,        index,
                                index,             index,             i1,           i1};
    func = gpu::GPUFuncOp::create(b, name, b.getFunctionType(params, {}), workgroup);
    func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    Block &entry = func.getBody().front();
    b.setInsertionPointToStart(&entry);
    auto arg = [&](unsigned i) -> Value { return entry.getArgument(i); };
    x = arg(0), q = arg(1), scales = arg(2), bias = arg(3), addend = arg(4), y = arg(5);
    rows = arg(6), in = arg(7), out = arg(8), group = arg(9), hasBias = arg(10),
    hasAddend = arg(11);
  }

  /// The bias of channel o plus the residual at y's index `at`, each where
  /// the kernel has it.
  Value biasAndResidual(KernelEmitter &e, Value o, Value at) {
    return e.fadd(e.loadIf(hasBias, bias, o), e.loadIf(hasAddend, addend, at));
  }
};

} // namespace

void megatron::addInt8GemvKernel(gpu::GPUModuleOp module) {
  MLIRContext *ctx = module.getContext();
  ImplicitLocOpBuilder b(module.getLoc(), ctx);
  b.setInsertionPointToEnd(module.getBody());
  KernelEmitter e(b, /*bf16=*/false);
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  Int8LinearKernel k(b, "linear_int8", VectorType::get({4}, f32), VectorType::get({4}, i32));
  Value x = k.x, q = k.q, scales = k.scales, y = k.y, rows = k.rows, in = k.in, out = k.out,
        group = k.group;
  auto element = [&](Value vector, int32_t i) -> Value {
    return LLVM::ExtractElementOp::create(b, vector, arith::ConstantIntOp::create(b, i, 32));
  };

  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value blk = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value lane = e.rem(tid, 32);
  Value o = e.add(e.mul(blk, kInt8GemvThreads / 32), e.div(tid, 32));
  e.ifThen(e.less(o, out), [&] {
    Value vectors = e.div(in, 16), lastVector = e.add(vectors, -1);
    Value qRow = e.mul(o, vectors), xVectors = e.div(in, 4);
    Value groups = e.div(in, group), scaleRow = e.mul(o, groups);
    Value perChannel = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, groups, e.c(1));
    Value channelScale = e.load(scales, scaleRow);
    Value firstLane = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, lane, e.c(0));
    constexpr int64_t chunkVectors = 32 * kInt8GemvVectors;
    e.forEach(e.div(e.add(vectors, chunkVectors - 1), chunkVectors), [&](Value chunk) {
      // The lane's vectors of this chunk (a lane past the row's end repeats
      // its last, then counts nothing) and each word's scale.
      std::array<Value, kInt8GemvVectors> index, inside, weights;
      SmallVector<Type> scaleTypes(4 * kInt8GemvVectors, f32);
      for (int64_t j = 0; j < kInt8GemvVectors; ++j) {
        Value v = e.add(e.add(e.mul(chunk, chunkVectors), lane), 32 * j);
        inside[j] = e.less(v, vectors);
        index[j] = e.min(v, lastVector);
        weights[j] = e.load(q, e.add(qRow, index[j]));
      }
      auto scaleIf = scf::IfOp::create(b, scaleTypes, perChannel, true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(scaleIf.thenBlock());
        scf::YieldOp::create(b, SmallVector<Value>(4 * kInt8GemvVectors, channelScale));
        // Groups of a multiple of 16 columns give a vector's four words one
        // scale: a division per vector rather than per word.
        b.setInsertionPointToStart(scaleIf.elseBlock());
        Value wholeVectors = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                                   e.rem(group, 16), e.c(0));
        auto groupedIf = scf::IfOp::create(b, scaleTypes, wholeVectors, true);
        scf::YieldOp::create(b, groupedIf.getResults());
        auto scalesOf = [&](bool perVector) {
          SmallVector<Value> grouped;
          for (int64_t j = 0; j < kInt8GemvVectors; ++j) {
            Value column = e.mul(index[j], 16);
            Value vectorScale = e.load(scales, e.add(scaleRow, e.div(column, group)));
            for (int64_t w = 0; w < 4; ++w)
              grouped.push_back(
                  perVector || w == 0
                      ? vectorScale
                      : e.load(scales, e.add(scaleRow, e.div(e.add(column, 4 * w), group))));
          }
          scf::YieldOp::create(b, grouped);
        };
        b.setInsertionPointToStart(groupedIf.thenBlock());
        scalesOf(true);
        b.setInsertionPointToStart(groupedIf.elseBlock());
        scalesOf(false);
      }
      Value first = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, chunk, e.c(0));
      e.forEach(rows, [&](Value r) {
        Value sum = e.f(0);
        for (int64_t j = 0; j < kInt8GemvVectors; ++j) {
          Value xBase = e.add(e.mul(r, xVectors), e.mul(index[j], 4));
          Value partial = e.f(0);
          for (int32_t w = 0; w < 4; ++w) {
            Value word = element(weights[j], w), xs = e.load(x, e.add(xBase, w));
            Value dot = e.fmul(element(xs, 0), e.byteAsFloat(word, 0));
            for (int32_t k = 1; k < 4; ++k)
              dot = math::FmaOp::create(b, element(xs, k), e.byteAsFloat(word, k), dot);
            partial = math::FmaOp::create(b, dot, scaleIf.getResult(4 * j + w), partial);
          }
          sum = e.fadd(sum, e.select(inside[j], partial, e.f(0)));
        }
        sum = e.warpSum(sum);
        e.ifThen(firstLane, [&] {
          Value at = e.add(e.mul(r, out), o);
          auto before = scf::IfOp::create(b, TypeRange{f32}, first, true);
          {
            OpBuilder::InsertionGuard guard(b);
            b.setInsertionPointToStart(before.thenBlock());
            scf::YieldOp::create(b, k.biasAndResidual(e, o, at));
            b.setInsertionPointToStart(before.elseBlock());
            scf::YieldOp::create(b, e.load(y, at));
          }
          e.store(e.fadd(before.getResult(0), sum), y, at);
        });
      });
    });
  });
  gpu::ReturnOp::create(b);
}

std::string megatron::int8MatmulKernelName(bool bf16) {
  return std::string("matmul_w8a16_") + (bf16 ? "bf16" : "f16");
}

void megatron::addInt8MatmulKernel(gpu::GPUModuleOp module, bool bf16) {
  MLIRContext *ctx = module.getContext();
  ImplicitLocOpBuilder b(module.getLoc(), ctx);
  b.setInsertionPointToEnd(module.getBody());
  KernelEmitter e(b, bf16);
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  // Each warp's partial tiles, [warp][row][channel].
  constexpr int64_t tileOutputs = kInt8MatmulRows * kInt8MatmulChannels;
  auto shared = MemRefType::get({kWarps * tileOutputs}, f32, MemRefLayoutAttrInterface{},
                                gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
  Int8LinearKernel k(b, int8MatmulKernelName(bf16), i32, i32, TypeRange{shared});
  Value x = k.x, q = k.q, scales = k.scales, rows = k.rows, in = k.in, out = k.out,
        group = k.group;
  Value partial = k.func.getWorkgroupAttributions()[0];

  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value blk = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value lane = e.rem(tid, 32), warp = e.div(tid, 32);
  Value g = e.div(lane, 4), t = e.rem(lane, 4);
  Value firstChannel = e.mul(blk, kInt8MatmulChannels);
  // A channel or row past the end reads the last one; its sums are not
  // stored.
  Value channel = e.min(e.add(firstChannel, g), e.add(out, -1));
  Value lastRow = e.add(rows, -1);
  Value steps = e.div(in, 16), perWarp = e.div(e.add(steps, kWarps - 1), kWarps);
  Value begin = e.min(e.mul(warp, perWarp), steps), end = e.min(e.add(begin, perWarp), steps);
  Value qRow = e.mul(channel, e.div(in, 4)), scaleRow = e.mul(channel, e.div(in, group));
  Value xWords = e.div(in, 2);
  // Per m16 tile: the words where the lane's pairs of rows g and g + 8
  // start, and whether the tile has rows at all.
  std::array<Value, kTiles> xLow, xHigh, active;
  for (int64_t m = 0; m < kTiles; ++m) {
    auto start = [&](int64_t row) {
      return e.add(e.mul(e.min(e.add(g, row), lastRow), xWords), e.mul(t, 2));
    };
    xLow[m] = start(16 * m);
    xHigh[m] = start(16 * m + 8);
    active[m] = e.less(e.c(16 * m), rows);
  }

  SmallVector<Value> init(4 * kTiles, e.f(0));
  auto loop = scf::ForOp::create(b, begin, end, e.c(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value s = loop.getInductionVar();
    ValueRange carried = loop.getRegionIterArgs();
    Value word = e.load(q, e.add(e.add(qRow, e.mul(s, 4)), t));
    Value column = e.add(e.mul(s, 16), e.mul(t, 4));
    Value scale = e.load(scales, e.add(scaleRow, e.div(column, group)));
    std::array<Value, 4> w;
    for (int32_t i = 0; i < 4; ++i)
      w[i] = e.fmul(e.byteAsFloat(word, i), scale);
    Value b0 = e.pack(w[0], w[1]), b1 = e.pack(w[2], w[3]);
    Value xStep = e.mul(s, 8);
    SmallVector<Value> next;
    for (int64_t m = 0; m < kTiles; ++m) {
      Tile acc = {carried[4 * m], carried[4 * m + 1], carried[4 * m + 2], carried[4 * m + 3]};
      auto product = [&] {
        Value low = e.add(xLow[m], xStep), high = e.add(xHigh[m], xStep);
        std::array<Value, 4> a = {
            e.operand(e.load(x, low)), e.operand(e.load(x, high)),
            e.operand(e.load(x, e.add(low, 1))), e.operand(e.load(x, e.add(high, 1)))};
        return e.mma(a, b0, b1, acc);
      };
      if (m == 0) { // there is a row
        Tile p = product();
        next.append(p.begin(), p.end());
        continue;
      }
      auto ifActive = scf::IfOp::create(b, TypeRange{f32, f32, f32, f32}, active[m], true);
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(ifActive.thenBlock());
        Tile p = product();
        scf::YieldOp::create(b, ValueRange(p));
        b.setInsertionPointToStart(ifActive.elseBlock());
        scf::YieldOp::create(b, ValueRange(acc));
      }
      next.append(ifActive.getResults().begin(), ifActive.getResults().end());
    }
    scf::YieldOp::create(b, next);
  }

  // The warps' partial tiles to shared memory, then each thread sums the
  // four of its outputs and adds the bias and residual.
  ValueRange sums = loop.getResults();
  Value warpBase = e.mul(warp, tileOutputs);
  for (int64_t m = 0; m < kTiles; ++m)
    for (int64_t i = 0; i < 4; ++i) {
      Value row = e.add(g, 16 * m + (i >= 2 ? 8 : 0));
      Value col = e.add(e.mul(t, 2), i & 1);
      e.store(sums[4 * m + i], partial,
              e.add(warpBase, e.add(e.mul(row, kInt8MatmulChannels), col)));
    }
  gpu::BarrierOp::create(b);
  for (int64_t j = 0; j < tileOutputs / kInt8MatmulThreads; ++j) {
    Value i = e.add(tid, j * kInt8MatmulThreads);
    Value row = e.div(i, kInt8MatmulChannels);
    Value o = e.add(firstChannel, e.rem(i, kInt8MatmulChannels));
    Value inside = arith::AndIOp::create(b, e.less(row, rows), e.less(o, out));
    e.ifThen(inside, [&] {
      Value sum = e.load(partial, i);
      for (int64_t k = 1; k < kWarps; ++k)
        sum = e.fadd(sum, e.load(partial, e.add(i, k * tileOutputs)));
      Value at = e.add(e.mul(row, out), o);
      e.store(e.fadd(sum, k.biasAndResidual(e, o, at)), k.y, at);
    });
  }
  gpu::ReturnOp::create(b);
}
