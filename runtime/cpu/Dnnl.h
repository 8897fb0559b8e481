//===- Dnnl.h - matrix products through oneDNN -----------------*- C++ -*-===//
//
// Many-row products with bf16 weights are bound by arithmetic, and CPUs with
// AVX512-BF16 (or AMX) multiply bf16 pairs at twice the f32 rate. oneDNN's
// matmul does that well; OpenBLAS (Debian's 0.3.21) has no bf16 GEMM. With
// AVX512-VNNI, int8 pairs go at twice the bf16 rate again. For f32,
// oneDNN's AVX-512 kernels beat OpenBLAS at some shapes.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_CPU_DNNL_H
#define MEGATRON_RUNTIME_CPU_DNNL_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>
#include <memory>
#include <optional>

namespace megatron::runtime::cpu::dnnl {

/// What a matmul does to each product before it is stored, in this order
/// (each optional): times scales[column], plus bias[column], GELU, plus the
/// value y held (accumulate). Inside the GEMM kernel these cost nothing
/// next to a separate pass over y.
struct Epilogue {
  const float *scales = nullptr;
  const float *bias = nullptr;
  std::optional<GeluKind> gelu;
  bool accumulate = false;
};

/// Whether this CPU multiplies bf16 natively (oneDNN's AVX512-BF16 or AMX
/// kernels); elsewhere bf16 weights are widened for f32 GEMMs instead.
bool bf16Native();

/// Whether this CPU sums int8 products natively (AVX512-VNNI or AMX): int8
/// matmuls then run at twice the bf16 rate. Without it oneDNN's int8
/// kernels may saturate 16-bit partial sums.
bool int8Native();

/// y[rows, out] = x[rows, in] w[out, in]^T through `epilogue`, with x and w
/// bf16 (raw bits) and y f32. False (nothing written) when oneDNN has no
/// fast kernel for it here (its reference kernels are 100x slower).
bool matmulBf16(const uint16_t *x, int64_t rows, int64_t in, const uint16_t *w,
                int64_t out, const Epilogue &epilogue, float *y);

/// The same in f32. Against OpenBLAS it wins some shapes and loses others,
/// so the caller measures.
bool matmulF32(const float *x, int64_t rows, int64_t in, const float *w, int64_t out,
               const Epilogue &epilogue, float *y);

/// A linear's weight [out, in] rearranged once into the blocked layout
/// oneDNN's matmul reads: from the stored one, every call rearranges the
/// whole weight before multiplying (7-8% of a BERT-345M layer's bf16
/// products at 128 rows on Zen 4, 4% at 512 and 4096; f32 6 and 4.5%). f32
/// or bf16 values, or int8 ones in bf16's layout, which widen element by
/// element into it.
struct PackedWeight;
struct PackedWeightDeleter {
  void operator()(PackedWeight *p) const;
};
using PackedWeightPtr = std::unique_ptr<PackedWeight, PackedWeightDeleter>;

/// w packed, or null where oneDNN has no better layout for it here (it
/// reads w as stored, or, for bf16 and int8, the CPU lacks bf16 arithmetic).
PackedWeightPtr packWeight(const uint16_t *w, int64_t out, int64_t in);
PackedWeightPtr packWeight(const int8_t *w, int64_t out, int64_t in);
PackedWeightPtr packWeight(const float *w, int64_t out, int64_t in);

/// Elements of the layout, padding included.
int64_t packedElements(const PackedWeight &w);
/// The int8 values of an int8 weight (packedElements of them); null for a
/// bf16 one.
const int8_t *packedInt8(const PackedWeight &w);

/// matmulBf16 with a packed weight: an int8 one as `widened`, its values
/// widened to bf16 (exactly, padding and all); a bf16 one as it is (widened
/// unused). False (nothing written) unless it was packed as [out, in] for
/// bf16.
bool matmulBf16(const uint16_t *x, int64_t rows, int64_t in, const PackedWeight &w,
                const uint16_t *widened, int64_t out, const Epilogue &epilogue, float *y);
/// matmulF32 with an f32 weight packed as [out, in] (else false).
bool matmulF32(const float *x, int64_t rows, int64_t in, const PackedWeight &w, int64_t out,
               const Epilogue &epilogue, float *y);

/// y[rows, out] = x[rows, in] w[out, in]^T summed exactly in int32, x and w
/// int8 (symmetric, -127..127: no sum of `in` < 2^17 products overflows).
bool matmulInt8(const int8_t *x, int64_t rows, int64_t in, const int8_t *w, int64_t out,
                int32_t *y);

/// c[i] = a[i] b[i] for `batch` products: a [batch, m, k] and b [batch, k, n]
/// (stored [batch, n, k] with transposeB) bf16 or f32, c [batch, m, n] f32,
/// all contiguous. False (nothing written) when oneDNN cannot run it here.
bool batchedMatmul(const uint16_t *a, const uint16_t *b, int64_t batch, int64_t m, int64_t k,
                   int64_t n, bool transposeB, float *c);
bool batchedMatmul(const float *a, const float *b, int64_t batch, int64_t m, int64_t k,
                   int64_t n, bool transposeB, float *c);

} // namespace megatron::runtime::cpu::dnnl

#endif // MEGATRON_RUNTIME_CPU_DNNL_H
