//===- KernelEmitter.h - building GPU kernels with OpBuilder ---*- C++ -*-===//
//
// What the OpBuilder-built kernels (FlashAttention.cpp, Int8Linear.cpp)
// share: index, f32 and 32-bit word arithmetic, warp reductions, 16-bit
// packing, int8 unpacking, and mma.sync m16n8k16 with f16 or bf16
// operands and f32 accumulators.
//
// Fragment layouts of mma.sync.m16n8k16 (PTX ISA, "Matrix Fragments for
// mma.m16n8k16"), lane = 4 g + t: A (16 x 16, row-major) pairs (g, 2t),
// (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8); B (16 x 8, k x n) pairs
// (2t, g), (2t + 8, g) along k; C (16 x 8) (g, 2t), (g, 2t + 1), (g + 8,
// 2t), (g + 8, 2t + 1). A pair is one 32-bit word, its first element in
// the low half.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_COMPILER_CUDA_KERNELEMITTER_H
#define MEGATRON_COMPILER_CUDA_KERNELEMITTER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>
#include <initializer_list>

namespace megatron::cuda {

using mlir::Value;

/// One thread's part of a 16 x 8 f32 tile.
using Tile = std::array<Value, 4>;

/// A kernel's arithmetic, in index, f32 and 32-bit words.
class KernelEmitter {
public:
  KernelEmitter(mlir::ImplicitLocOpBuilder &b, bool bf16) : b(b), bf16(bf16) {}

  Value c(int64_t v) { return mlir::arith::ConstantIndexOp::create(b, v); }
  Value f(float v) {
    return mlir::arith::ConstantFloatOp::create(b, b.getF32Type(), mlir::APFloat(v));
  }
  Value add(Value x, Value y) { return mlir::arith::AddIOp::create(b, x, y); }
  Value add(Value x, int64_t y) { return y ? add(x, c(y)) : x; }
  Value mul(Value x, Value y) { return mlir::arith::MulIOp::create(b, x, y); }
  Value mul(Value x, int64_t y) { return mul(x, c(y)); }
  Value div(Value x, int64_t y) { return mlir::arith::DivUIOp::create(b, x, c(y)); }
  Value div(Value x, Value y) { return mlir::arith::DivUIOp::create(b, x, y); }
  Value rem(Value x, int64_t y) { return mlir::arith::RemUIOp::create(b, x, c(y)); }
  Value rem(Value x, Value y) { return mlir::arith::RemUIOp::create(b, x, y); }
  Value min(Value x, Value y) { return mlir::arith::MinUIOp::create(b, x, y); }
  Value less(Value x, Value y) {
    return mlir::arith::CmpIOp::create(b, mlir::arith::CmpIPredicate::ult, x, y);
  }
  Value fadd(Value x, Value y) { return mlir::arith::AddFOp::create(b, x, y); }
  Value fmul(Value x, Value y) { return mlir::arith::MulFOp::create(b, x, y); }
  Value fmax(Value x, Value y) { return mlir::arith::MaximumFOp::create(b, x, y); }
  Value exp(Value x) { return mlir::math::ExpOp::create(b, x); }
  Value select(Value c, Value x, Value y) { return mlir::arith::SelectOp::create(b, c, x, y); }
  Value load(Value m, Value i) { return mlir::memref::LoadOp::create(b, m, mlir::ValueRange{i}); }
  void store(Value v, Value m, Value i) {
    mlir::memref::StoreOp::create(b, v, m, mlir::ValueRange{i});
  }

  /// x combined with the lanes `offsets` away (xor), in turn.
  Value butterfly(Value x, Value (KernelEmitter::*combine)(Value, Value),
                  std::initializer_list<int32_t> offsets) {
    for (int32_t offset : offsets) {
      Value other =
          mlir::gpu::ShuffleOp::create(b, x, offset, 32, mlir::gpu::ShuffleMode::XOR).getResult(0);
      x = (this->*combine)(x, other);
    }
    return x;
  }
  /// x combined over the four lanes that hold one row of a C fragment.
  Value rowReduce(Value x, Value (KernelEmitter::*combine)(Value, Value)) {
    return butterfly(x, combine, {1, 2});
  }
  /// The sum of x over the warp, in every lane.
  Value warpSum(Value x) { return butterfly(x, &KernelEmitter::fadd, {16, 8, 4, 2, 1}); }

  /// Byte `i` (little-endian) of a 32-bit word, sign-extended, as f32.
  Value byteAsFloat(Value word, int32_t i) {
    auto constant = [&](int32_t v) { return mlir::arith::ConstantIntOp::create(b, v, 32); };
    Value top = i == 3 ? word : mlir::arith::ShLIOp::create(b, word, constant(24 - 8 * i));
    Value v = mlir::arith::ShRSIOp::create(b, top, constant(24));
    return mlir::arith::SIToFPOp::create(b, b.getF32Type(), v);
  }

  /// memref[i] where `cond` holds, else 0 (f32; the load only then).
  Value loadIf(Value cond, Value memref, Value i) {
    auto op = mlir::scf::IfOp::create(b, mlir::TypeRange{b.getF32Type()}, cond, true);
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(op.thenBlock());
    mlir::scf::YieldOp::create(b, load(memref, i));
    b.setInsertionPointToStart(op.elseBlock());
    mlir::scf::YieldOp::create(b, f(0));
    return op.getResult(0);
  }

  /// Two f32 rounded to the operand type, packed in a word (lo first).
  Value pack(Value lo, Value hi) {
    mlir::Type half = bf16 ? mlir::Type(b.getBF16Type()) : mlir::Type(b.getF16Type());
    auto bits = [&](Value x) {
      Value h = mlir::arith::TruncFOp::create(b, half, x);
      Value i = mlir::arith::BitcastOp::create(b, b.getI16Type(), h);
      return mlir::arith::ExtUIOp::create(b, b.getI32Type(), i).getResult();
    };
    Value high =
        mlir::arith::ShLIOp::create(b, bits(hi), mlir::arith::ConstantIntOp::create(b, 16, 32));
    return mlir::arith::OrIOp::create(b, bits(lo), high);
  }

  /// A word as an mma operand register: f16x2 for f16, the word for bf16.
  Value operand(Value word) {
    if (bf16)
      return word;
    return mlir::LLVM::BitcastOp::create(b, mlir::VectorType::get({2}, b.getF16Type()), word);
  }

  /// acc + A B for one m16n8k16 step (a: 4 words, bPair: 2 words).
  Tile mma(const std::array<Value, 4> &a, Value b0, Value b1, const Tile &acc) {
    mlir::Type f32 = b.getF32Type();
    mlir::Type result =
        mlir::LLVM::LLVMStructType::getLiteral(b.getContext(), {f32, f32, f32, f32});
    mlir::NVVM::MMATypes type = bf16 ? mlir::NVVM::MMATypes::bf16 : mlir::NVVM::MMATypes::f16;
    Value d = mlir::NVVM::MmaOp::create(
        b, result, mlir::ValueRange{a[0], a[1], a[2], a[3]},
        mlir::ValueRange{operand(b0), operand(b1)},
        mlir::ValueRange{acc[0], acc[1], acc[2], acc[3]}, mlir::ArrayRef<int64_t>{16, 8, 16},
        std::nullopt, std::nullopt, std::array<mlir::NVVM::MMATypes, 2>{type, type},
        std::array<mlir::NVVM::MMALayout, 2>{mlir::NVVM::MMALayout::row,
                                             mlir::NVVM::MMALayout::col});
    Tile out;
    for (int64_t i = 0; i < 4; ++i)
      out[i] = mlir::LLVM::ExtractValueOp::create(b, d, mlir::ArrayRef<int64_t>{i});
    return out;
  }

  /// for (i = 0; i < n; ++i) body(i).
  void forEach(Value n, mlir::function_ref<void(Value)> body) {
    auto loop = mlir::scf::ForOp::create(b, c(0), n, c(1));
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    body(loop.getInductionVar());
  }

  void ifThen(Value cond, mlir::function_ref<void()> then,
              mlir::function_ref<void()> otherwise = {}) {
    auto op = mlir::scf::IfOp::create(b, cond, static_cast<bool>(otherwise));
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(op.thenBlock());
    then();
    if (otherwise) {
      b.setInsertionPointToStart(op.elseBlock());
      otherwise();
    }
  }

  mlir::ImplicitLocOpBuilder &b;
  const bool bf16;
};

} // namespace megatron::cuda

#endif // MEGATRON_COMPILER_CUDA_KERNELEMITTER_H
