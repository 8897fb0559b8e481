//===- Attention.cpp - fused multi-head attention -------------------------===//
//
// softmax(Q K^T * scale + mask) V per (batch, head), heads merged, read
// straight from the fused QKV projection (no head split copies). Keys are
// taken in blocks with an online softmax: a running row maximum and sum
// rescale the partial output, so memory is a block of scores per thread,
// never [heads, seq, seq]. The products are small GEMMs (single-threaded
// inside the parallel loop over batch x heads). Models computed in bf16
// take another path without a cache (attentionBf16).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Blas.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

using namespace megatron::runtime;

namespace {

/// A model computed in bf16, without a cache (BERT): the products in bf16 as
/// PyTorch's bf16 attention does, through oneDNN's batched bf16 matmul over
/// all heads at once. Per sequence, Q, K and V are rounded to bf16 into
/// [heads, seq, dim] blocks; per chunk of queries the scores [heads, chunk,
/// keys] are softmaxed in f32 and rounded to bf16 for P V. Scores for a
/// chunk, not [heads, seq, seq]. False where oneDNN cannot run a product;
/// the f32 path then writes all of `out` again.
bool attentionBf16(const cpu::AttentionShape &a, const float *qkv, const int64_t *mask,
                   float *out) {
  // 128 queries: measured 2x faster than 64 on Zen 4 at BERT-345M's 512.
  constexpr int64_t kQueryChunk = 128;
  const int64_t heads = a.heads, dim = a.dim, seq = a.seq, width = heads * dim;
  const int64_t chunk = std::min(kQueryChunk, seq);
  thread_local std::vector<uint16_t> qkvBuffer, queriesBuffer, probabilitiesBuffer;
  thread_local std::vector<float> scoresBuffer, contextBuffer;
  // q, k, v: [heads, seq, dim] each, one after the other.
  uint16_t *q = cpu::scratch(qkvBuffer, 3 * heads * seq * dim), *k = q + heads * seq * dim,
           *v = k + heads * seq * dim;
  uint16_t *queries = cpu::scratch(queriesBuffer, heads * chunk * dim);
  uint16_t *probabilities = cpu::scratch(probabilitiesBuffer, heads * chunk * seq);
  float *scores = cpu::scratch(scoresBuffer, heads * chunk * seq);
  float *context = cpu::scratch(contextBuffer, heads * chunk * dim);
  thread_local std::vector<uint8_t> keepBuffer;
  uint8_t *keep = cpu::scratch(keepBuffer, seq);
  for (int64_t b = 0; b < a.batch; ++b) {
    if (mask)
      for (int64_t j = 0; j < seq; ++j)
        keep[j] = mask[b * seq + j] != 0;
    cpu::parallelFor(3 * heads * seq, 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t part = i / (heads * seq), h = i / seq % heads, s = i % seq;
        cpu::toBf16(qkv + (b * seq + s) * 3 * width + part * width + h * dim, dim,
                    q + i * dim);
      }
    });
    for (int64_t q0 = 0; q0 < seq; q0 += chunk) {
      const int64_t nq = std::min(chunk, seq - q0);
      // The chunk's queries of every head, [heads, nq, dim].
      for (int64_t h = 0; h < heads; ++h)
        std::memcpy(queries + h * nq * dim, q + (h * seq + q0) * dim, nq * dim * sizeof(uint16_t));
      if (!cpu::dnnl::batchedMatmulBf16(queries, k, heads, nq, dim, seq, /*transposeB=*/true,
                                        scores))
        return false;
      cpu::parallelFor(heads * nq, 8, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t query = q0 + r % nq;
          cpu::scoresToBf16Probabilities(scores + r * seq, seq, a.scale,
                                         a.causal ? query + 1 : seq, mask ? keep : nullptr,
                                         probabilities + r * seq);
        }
      });
      if (!cpu::dnnl::batchedMatmulBf16(probabilities, v, heads, nq, seq, dim,
                                        /*transposeB=*/false, context))
        return false;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < nq; ++i)
          std::memcpy(out + (b * seq + q0 + i) * width + h * dim, context + (h * nq + i) * dim,
                      dim * sizeof(float));
    }
  }
  return true;
}

} // namespace

void cpu::attention(const AttentionShape &a, const float *qkv, const int64_t *mask,
                    float *kCache, float *vCache, float *out) {
  if (a.bf16 && !kCache && dnnl::bf16Native() && attentionBf16(a, qkv, mask, out))
    return;
  constexpr int64_t kQueryBlock = 64, kKeyBlock = 256;
  const int64_t width = a.heads * a.dim, stride = 3 * width; // qkv row
  const int64_t keys = a.past + a.seq;
  const float lowest = std::numeric_limits<float>::lowest();
  parallelFor(a.batch * a.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(kQueryBlock * kKeyBlock), acc(kQueryBlock * a.dim);
    std::vector<float> rowMax(kQueryBlock), rowSum(kQueryBlock);
    for (int64_t bh = begin; bh < end; ++bh) {
      int64_t b = bh / a.heads, h = bh % a.heads;
      const float *q = qkv + b * a.seq * stride + h * a.dim;
      const float *k = q + width, *v = q + 2 * width;
      int64_t keyStride = stride;
      if (kCache) {
        // Append this call's keys and values; attend to all cached ones.
        float *kc = kCache + bh * a.capacity * a.dim, *vc = vCache + bh * a.capacity * a.dim;
        for (int64_t s = 0; s < a.seq; ++s) {
          std::memcpy(kc + (a.past + s) * a.dim, k + s * stride, a.dim * sizeof(float));
          std::memcpy(vc + (a.past + s) * a.dim, v + s * stride, a.dim * sizeof(float));
        }
        k = kc;
        v = vc;
        keyStride = a.dim;
      }
      for (int64_t q0 = 0; q0 < a.seq; q0 += kQueryBlock) {
        int64_t nq = std::min(kQueryBlock, a.seq - q0);
        std::fill(rowMax.begin(), rowMax.begin() + nq, lowest);
        std::fill(rowSum.begin(), rowSum.begin() + nq, 0.0f);
        std::fill(acc.begin(), acc.begin() + nq * a.dim, 0.0f);
        // Causal: query i (absolute position past + q0 + i) sees keys up to it.
        int64_t lastKey = a.causal ? std::min(keys, a.past + q0 + nq) : keys;
        for (int64_t k0 = 0; k0 < lastKey; k0 += kKeyBlock) {
          int64_t nk = std::min(kKeyBlock, lastKey - k0);
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, a.dim, a.scale,
                      q + q0 * stride, stride, k + k0 * keyStride, keyStride, 0.0f,
                      scores.data(), nk);
          for (int64_t i = 0; i < nq; ++i) {
            float *row = scores.data() + i * nk;
            for (int64_t j = 0; j < nk; ++j)
              if ((mask && mask[b * keys + k0 + j] == 0) ||
                  (a.causal && k0 + j > a.past + q0 + i))
                row[j] = lowest;
            float previous = rowMax[i];
            float blockMax = *std::max_element(row, row + nk);
            rowMax[i] = std::max(previous, blockMax);
            float correction = expShift(&previous, 1, rowMax[i]);
            float sum = expShift(row, nk, rowMax[i]);
            rowSum[i] = rowSum[i] * correction + sum;
            float *o = acc.data() + i * a.dim;
            for (int64_t d = 0; d < a.dim; ++d)
              o[d] *= correction;
          }
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, a.dim, nk, 1.0f,
                      scores.data(), nk, v + k0 * keyStride, keyStride, 1.0f, acc.data(),
                      a.dim);
        }
        for (int64_t i = 0; i < nq; ++i) {
          float inv = rowSum[i] > 0 ? 1.0f / rowSum[i] : 0.0f;
          float *dst = out + (b * a.seq + q0 + i) * width + h * a.dim;
          const float *o = acc.data() + i * a.dim;
          for (int64_t d = 0; d < a.dim; ++d)
            dst[d] = o[d] * inv;
        }
      }
    }
  });
}
