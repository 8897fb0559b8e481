//===- FlashAttention.cpp - the tensor-core attention kernel --------------===//
//
// One block of four warps takes 64 queries of one (batch, head); warp w
// owns query rows 16w..16w+15. The block walks the keys in tiles of 64:
// it stages the tile's K (row-major) and V (transposed) in shared memory
// as 16-bit pairs, each warp multiplies its Q rows (A fragments kept in
// registers) by K^T into a 16 x 64 tile of scores, masks and scales them,
// folds them into the running row maxima and sums, and multiplies the
// probabilities (re-packed from the score registers as A fragments, no
// trip through memory) by V into its 16 x dim accumulators. The fragment
// layouts are in KernelEmitter.h.
//
//===----------------------------------------------------------------------===//

#include "compiler/cuda/FlashAttention.h"
#include "compiler/cuda/KernelEmitter.h"

#include <limits>

using namespace mlir;
using megatron::cuda::KernelEmitter;
using megatron::cuda::Tile;

namespace {

// Q is staged through the K tile's memory, and every staging loop moves 64
// rows with 128 threads: four warps of 16 query rows.
static_assert(megatron::kFlashQueries == megatron::kFlashKeys &&
                  megatron::kFlashThreads == 2 * megatron::kFlashQueries,
              "the block's shape");

} // namespace

std::string megatron::flashAttentionKernelName(bool bf16, int64_t dim) {
  return std::string("flash_attention_") + (bf16 ? "bf16" : "f16") + "_d" + std::to_string(dim);
}

void megatron::addFlashAttentionKernel(gpu::GPUModuleOp module, bool bf16, int64_t dim) {
  MLIRContext *ctx = module.getContext();
  ImplicitLocOpBuilder b(module.getLoc(), ctx);
  b.setInsertionPointToEnd(module.getBody());
  KernelEmitter e(b, bf16);
  Type f32 = b.getF32Type(), index = b.getIndexType(), i32 = b.getI32Type();
  auto dynamic = [](Type t) { return MemRefType::get({ShapedType::kDynamic}, t); };
  auto shared = [&](int64_t words) {
    return MemRefType::get({words}, i32, MemRefLayoutAttrInterface{},
                           gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
  };
  // Shared rows are padded by four words so that the eight row groups of a
  // fragment load fall in distinct banks (row stride = 4 mod 32 words).
  const int64_t pairs = dim / 2, kRow = pairs + 4, vRow = kFlashKeys / 2 + 4;
  SmallVector<Type> params = {dynamic(f32), dynamic(f32), dynamic(f32), dynamic(b.getI64Type()),
                              dynamic(f32)};
  params.append({index, index, index, dynamic(b.getI64Type()), index, index, index, f32,
                 b.getI1Type(), b.getI1Type()}); // seq .. has_mask
  auto func = gpu::GPUFuncOp::create(
      b, flashAttentionKernelName(bf16, dim), b.getFunctionType(params, {}),
      TypeRange{shared(kFlashKeys * kRow), shared(dim * vRow), shared(kFlashKeys)});
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value qkv = entry.getArgument(0), keysSrc = entry.getArgument(1),
        valuesSrc = entry.getArgument(2), mask = entry.getArgument(3), out = entry.getArgument(4),
        seq = entry.getArgument(5), heads = entry.getArgument(6),
        pastRef = entry.getArgument(8), kvBatch = entry.getArgument(9),
        kvHead = entry.getArgument(10), kvRow = entry.getArgument(11),
        scale = entry.getArgument(12), causal = entry.getArgument(13),
        hasMask = entry.getArgument(14);
  Value kTile = func.getWorkgroupAttributions()[0], vTile = func.getWorkgroupAttributions()[1],
        keep = func.getWorkgroupAttributions()[2];

  Value past = arith::IndexCastOp::create(b, index, e.load(pastRef, e.c(0)));
  Value keys = e.add(past, seq);
  Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  Value blk = gpu::BlockIdOp::create(b, gpu::Dimension::x);
  Value lane = e.rem(tid, 32), warp = e.div(tid, 32);
  Value g = e.div(lane, 4), t = e.rem(lane, 4);
  Value queryTiles = e.div(e.add(seq, kFlashQueries - 1), kFlashQueries);
  Value bh = e.div(blk, queryTiles), h = e.rem(bh, heads), batch = e.div(bh, heads);
  Value q0 = e.mul(e.rem(blk, queryTiles), kFlashQueries);
  Value width = e.mul(heads, dim), qkvRow = e.mul(width, 3), headOffset = e.mul(h, dim);
  Value kvBase = e.add(e.mul(batch, kvBatch), e.mul(h, kvHead));
  Value lastKey = e.add(keys, -1), lastQuery = e.add(seq, -1);
  // Each staging loop moves 64 rows of `pairs` words: dim / 4 per thread.
  Value stagingSteps = e.c(kFlashKeys * pairs / kFlashThreads);

  // Q's 64 rows as 16-bit pairs (through the K tile's memory), then each
  // warp's A fragments into registers. Rows past the sequence repeat its
  // last query and are never stored.
  e.forEach(stagingSteps, [&](Value step) {
    Value i = e.add(e.mul(step, kFlashThreads), tid);
    Value r = e.div(i, pairs), p = e.rem(i, pairs);
    Value q = e.min(e.add(q0, r), lastQuery);
    Value src = e.add(e.add(e.mul(e.add(e.mul(batch, seq), q), qkvRow), headOffset), e.mul(p, 2));
    e.store(e.pack(e.load(qkv, src), e.load(qkv, e.add(src, 1))), kTile,
            e.add(e.mul(r, kRow), p));
  });
  gpu::BarrierOp::create(b);
  Value rowA = e.add(e.mul(warp, 16), g);
  Value aBase0 = e.add(e.mul(rowA, kRow), t), aBase1 = e.add(aBase0, 8 * kRow);
  std::vector<std::array<Value, 4>> qFragments;
  for (int64_t k = 0; k < dim / 16; ++k)
    qFragments.push_back({e.operand(e.load(kTile, e.add(aBase0, 8 * k))),
                          e.operand(e.load(kTile, e.add(aBase1, 8 * k))),
                          e.operand(e.load(kTile, e.add(aBase0, 8 * k + 4))),
                          e.operand(e.load(kTile, e.add(aBase1, 8 * k + 4)))});

  // Causal: no query of the block sees past its last row's position.
  Value causalEnd = e.min(keys, e.add(e.add(q0, past), kFlashQueries));
  Value keyEnd = e.select(causal, causalEnd, keys);
  const float lowest = std::numeric_limits<float>::lowest();
  const float negInf = -std::numeric_limits<float>::infinity();
  const int64_t outTiles = dim / 8;
  SmallVector<Value> init = {e.f(lowest), e.f(lowest), e.f(0), e.f(0)}; // m, l per row half
  init.append(outTiles * 4, e.f(0));
  auto keyLoop = scf::ForOp::create(b, e.c(0), keyEnd, e.c(kFlashKeys), init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(keyLoop.getBody());
    Value k0 = keyLoop.getInductionVar();
    ValueRange carried = keyLoop.getRegionIterArgs();
    // The previous tile (or Q) is read by every warp before it is replaced.
    gpu::BarrierOp::create(b);
    e.forEach(stagingSteps, [&](Value step) {
      Value i = e.add(e.mul(step, kFlashThreads), tid);
      Value r = e.div(i, pairs), p = e.rem(i, pairs);
      Value key = e.min(e.add(k0, r), lastKey);
      Value src = e.add(e.add(kvBase, e.mul(key, kvRow)), e.mul(p, 2));
      e.store(e.pack(e.load(keysSrc, src), e.load(keysSrc, e.add(src, 1))), kTile,
              e.add(e.mul(r, kRow), p));
    });
    // V transposed: word (d, p) pairs keys 2p and 2p + 1 of dimension d;
    // neighbouring threads take neighbouring dimensions (coalesced reads).
    e.forEach(stagingSteps, [&](Value step) {
      Value i = e.add(e.mul(step, kFlashThreads), tid);
      Value d = e.rem(i, dim), p = e.div(i, dim);
      Value key = e.add(k0, e.mul(p, 2));
      auto value = [&](Value k) {
        return e.load(valuesSrc, e.add(e.add(kvBase, e.mul(e.min(k, lastKey), kvRow)), d));
      };
      e.store(e.pack(value(key), value(e.add(key, 1))), vTile, e.add(e.mul(d, vRow), p));
    });
    // keep[j]: key k0 + j is not padding.
    e.ifThen(e.less(tid, e.c(kFlashKeys)), [&] {
      Value one = arith::ConstantIntOp::create(b, 1, 32);
      e.ifThen(
          hasMask,
          [&] {
            Value key = e.min(e.add(k0, tid), lastKey);
            Value m = e.load(mask, e.add(e.mul(batch, keys), key));
            Value zero = arith::ConstantIntOp::create(b, 0, 64);
            Value on = arith::CmpIOp::create(b, arith::CmpIPredicate::ne, m, zero);
            e.store(arith::ExtUIOp::create(b, i32, on), keep, tid);
          },
          [&] { e.store(one, keep, tid); });
    });
    gpu::BarrierOp::create(b);

    // Scores: 8 tiles of 8 keys, each dim / 16 mma steps.
    std::vector<Tile> s(kFlashKeys / 8);
    for (int64_t n = 0; n < kFlashKeys / 8; ++n) {
      Tile acc = {e.f(0), e.f(0), e.f(0), e.f(0)};
      Value bBase = e.add(e.mul(e.add(g, 8 * n), kRow), t);
      for (int64_t k = 0; k < dim / 16; ++k)
        acc = e.mma(qFragments[k], e.load(kTile, e.add(bBase, 8 * k)),
                    e.load(kTile, e.add(bBase, 8 * k + 4)), acc);
      s[n] = acc;
    }
    // Scaled; keys past the block's last (keyEnd): -inf, out of the
    // softmax; (causal) after the query or padding: the lowest float, as on
    // the CPU, so that a query that sees no key averages keys [0, keyEnd)
    // as the CPU's does.
    Value firstRow = e.add(e.add(q0, rowA), past);
    Value query[2] = {firstRow, e.add(firstRow, 8)};
    Value one = arith::ConstantIntOp::create(b, 1, 32);
    for (int64_t n = 0; n < kFlashKeys / 8; ++n)
      for (int64_t j = 0; j < 2; ++j) {
        Value column = e.add(e.mul(t, 2), 8 * n + j);
        Value key = e.add(k0, column);
        Value outside = arith::CmpIOp::create(b, arith::CmpIPredicate::uge, key, keyEnd);
        Value padded =
            arith::CmpIOp::create(b, arith::CmpIPredicate::ne, e.load(keep, column), one);
        for (int64_t r = 0; r < 2; ++r) {
          Value future = arith::AndIOp::create(
              b, causal, arith::CmpIOp::create(b, arith::CmpIPredicate::ugt, key, query[r]));
          Value masked = arith::OrIOp::create(b, padded, future);
          Value &v = s[n][2 * r + j];
          v = e.select(outside, e.f(negInf), e.select(masked, e.f(lowest), e.fmul(v, scale)));
        }
      }
    // Online softmax per row half (r = 0: row g, r = 1: row g + 8). The
    // sums stay per thread until the end; the maxima are the row's.
    SmallVector<Value> next(carried.begin(), carried.end());
    Value correction[2];
    for (int64_t r = 0; r < 2; ++r) {
      Value tileMax = s[0][2 * r];
      for (int64_t n = 0; n < kFlashKeys / 8; ++n)
        for (int64_t j = 0; j < 2; ++j)
          tileMax = e.fmax(tileMax, s[n][2 * r + j]);
      tileMax = e.rowReduce(tileMax, &KernelEmitter::fmax);
      Value m = carried[r], newMax = e.fmax(m, tileMax);
      correction[r] = e.exp(arith::SubFOp::create(b, m, newMax));
      Value sum = e.fmul(carried[2 + r], correction[r]);
      for (int64_t n = 0; n < kFlashKeys / 8; ++n)
        for (int64_t j = 0; j < 2; ++j) {
          Value &v = s[n][2 * r + j];
          v = e.exp(arith::SubFOp::create(b, v, newMax));
          sum = e.fadd(sum, v);
        }
      next[r] = newMax;
      next[2 + r] = sum;
    }
    std::vector<Tile> acc(outTiles);
    for (int64_t n = 0; n < outTiles; ++n)
      for (int64_t i = 0; i < 4; ++i)
        acc[n][i] = e.fmul(carried[4 + 4 * n + i], correction[i / 2]);
    // P V: the score tiles 2k and 2k + 1 are the A fragment of keys 16k..
    // 16k + 15.
    for (int64_t k = 0; k < kFlashKeys / 16; ++k) {
      const Tile &lo = s[2 * k], &hi = s[2 * k + 1];
      std::array<Value, 4> p = {e.operand(e.pack(lo[0], lo[1])), e.operand(e.pack(lo[2], lo[3])),
                                e.operand(e.pack(hi[0], hi[1])), e.operand(e.pack(hi[2], hi[3]))};
      for (int64_t n = 0; n < outTiles; ++n) {
        Value bBase = e.add(e.mul(e.add(g, 8 * n), vRow), e.add(t, 8 * k));
        acc[n] = e.mma(p, e.load(vTile, bBase), e.load(vTile, e.add(bBase, 4)), acc[n]);
      }
    }
    for (int64_t n = 0; n < outTiles; ++n)
      for (int64_t i = 0; i < 4; ++i)
        next[4 + 4 * n + i] = acc[n][i];
    scf::YieldOp::create(b, next);
  }

  // out = acc / the row's sum, rows inside the sequence only.
  ValueRange result = keyLoop.getResults();
  for (int64_t r = 0; r < 2; ++r) {
    Value inverse = arith::DivFOp::create(b, e.f(1), e.rowReduce(result[2 + r], &KernelEmitter::fadd));
    Value q = e.add(e.add(q0, rowA), 8 * r);
    e.ifThen(e.less(q, seq), [&] {
      Value base = e.add(e.add(e.mul(e.add(e.mul(batch, seq), q), width), headOffset),
                         e.mul(t, 2));
      for (int64_t n = 0; n < outTiles; ++n)
        for (int64_t j = 0; j < 2; ++j)
          e.store(e.fmul(result[4 + 4 * n + 2 * r + j], inverse), out, e.add(base, 8 * n + j));
    });
  }
  gpu::ReturnOp::create(b);
}
