//===- Int8Matmul.cpp - int8 weights on the tensor cores ------------------===//
//
// A block takes 8 output channels (one n8 tile) and every row (up to two
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

#include "compiler/cuda/Int8Matmul.h"
#include "compiler/cuda/MmaEmitter.h"

using namespace mlir;
using megatron::cuda::MmaEmitter;
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

} // namespace

std::string megatron::int8MatmulKernelName(bool bf16) {
  return std::string("matmul_w8a16_") + (bf16 ? "bf16" : "f16");
}

void megatron::addInt8MatmulKernel(gpu::GPUModuleOp module, bool bf16) {
  MLIRContext *ctx = module.getContext();
  ImplicitLocOpBuilder b(module.getLoc(), ctx);
  b.setInsertionPointToEnd(module.getBody());
  MmaEmitter e(b, bf16);
  Type f32 = b.getF32Type(), i32 = b.getI32Type(), index = b.getIndexType(),
       i1 = b.getI1Type();
  auto dynamic = [](Type t) { return MemRefType::get({ShapedType::kDynamic}, t); };
  // Each warp's partial tiles, [warp][row][channel].
  constexpr int64_t tileOutputs = kInt8MatmulRows * kInt8MatmulChannels;
  auto shared = MemRefType::get({kWarps * tileOutputs}, f32, MemRefLayoutAttrInterface{},
                                gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
  SmallVector<Type> params = {dynamic(i32), dynamic(i32), dynamic(f32), dynamic(f32),
                              dynamic(f32), dynamic(f32), index,        index,
                              index,        index,        i1,           i1};
  auto func = gpu::GPUFuncOp::create(b, int8MatmulKernelName(bf16),
                                     b.getFunctionType(params, {}), TypeRange{shared});
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto arg = [&](unsigned i) -> Value { return entry.getArgument(i); };
  Value x = arg(0), q = arg(1), scales = arg(2), bias = arg(3), addend = arg(4), y = arg(5),
        rows = arg(6), in = arg(7), out = arg(8), group = arg(9), hasBias = arg(10),
        hasAddend = arg(11);
  Value partial = func.getWorkgroupAttributions()[0];
  auto i32Constant = [&](int32_t v) { return arith::ConstantIntOp::create(b, v, 32); };

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
    // The word's bytes, little-endian, sign-extended, scaled.
    std::array<Value, 4> w;
    for (int32_t i = 0; i < 4; ++i) {
      Value top = i == 3 ? word : arith::ShLIOp::create(b, word, i32Constant(24 - 8 * i));
      Value v = arith::ShRSIOp::create(b, top, i32Constant(24));
      w[i] = e.fmul(arith::SIToFPOp::create(b, f32, v), scale);
    }
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
  auto loadIf = [&](Value cond, Value memref, Value i) {
    auto op = scf::IfOp::create(b, TypeRange{f32}, cond, true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(op.thenBlock());
    scf::YieldOp::create(b, e.load(memref, i));
    b.setInsertionPointToStart(op.elseBlock());
    scf::YieldOp::create(b, e.f(0));
    return op.getResult(0);
  };
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
      sum = e.fadd(sum, loadIf(hasBias, bias, o));
      sum = e.fadd(sum, loadIf(hasAddend, addend, at));
      e.store(sum, y, at);
    });
  }
  gpu::ReturnOp::create(b);
}
