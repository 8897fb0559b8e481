//===- Attention.cpp - fused multi-head attention -------------------------===//
//
// softmax(Q K^T * scale + mask) V per (batch, head), heads merged into the
// result. Without a KV cache (BERT) all heads' products go to oneDNN at
// once (attentionBatched). With one (GPT-2's prefill and decode steps),
// or where oneDNN cannot, Q, K and V are read straight from the fused QKV
// projection and the keys taken in blocks with an online softmax: a
// running row maximum and sum rescale the partial output, so memory is a
// block of scores per thread, never [heads, seq, seq]. Those products are
// small GEMMs (single-threaded inside the parallel loop over batch x heads).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Blas.h"
#include "runtime/cpu/Dnnl.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Parallel.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

using namespace megatron::runtime;

namespace {

/// Q, K or V as the products take them: bf16 (raw bits) rounded from f32,
/// or f32 as they are.
void store(const float *x, int64_t n, uint16_t *out) { cpu::toBf16(x, n, out); }
void store(const float *x, int64_t n, float *out) { std::memcpy(out, x, n * sizeof(float)); }

/// Without a cache (BERT): the heads' products through oneDNN's batched
/// matmul, in bf16 (T = uint16_t) for a model computed in bf16 as PyTorch's
/// bf16 attention does, else in f32. Q, K and V of every sequence go into
/// [batch, 3, heads, seq, dim] blocks first. Then each unit of work, a
/// chunk of queries of a group of heads of one sequence, takes the scores
/// [heads, chunk, keys], softmaxes them in f32 (rounding to bf16) and
/// multiplies them with V: scores for a chunk, never [heads, seq, seq]. The
/// units run on all threads, each product on one, with no barrier between
/// them (oneDNN threading each small product waited on its threads for a
/// tenth of the time). 2-2.5x the rate of the blocked path's small GEMMs
/// at BERT-345M's 8 x 512. False where oneDNN cannot run a product; the
/// blocked path then writes all of `out` again.
template <typename T>
bool attentionBatched(const cpu::AttentionShape &a, const float *qkv, const int64_t *mask,
                      float *out) {
  // 128 queries: measured 2x faster than 64 on Zen 4 at BERT-345M's 512.
  constexpr int64_t kQueryChunk = 128;
  const int64_t heads = a.heads, dim = a.dim, seq = a.seq, width = heads * dim;
  const int64_t chunk = std::min(kQueryChunk, seq), chunks = (seq + chunk - 1) / chunk;
  // Enough units to balance the threads: halve the groups of heads while
  // there are fewer than four per thread.
  int64_t groupHeads = heads;
  while (a.batch * chunks * (heads / groupHeads) < 4 * cpu::threads() && groupHeads % 2 == 0)
    groupHeads /= 2;
  const int64_t groups = heads / groupHeads;
  thread_local std::vector<T> qkvBuffer;
  T *blocks = cpu::scratch(qkvBuffer, a.batch * 3 * heads * seq * dim);
  // In the order of qkv's rows: each row's 3 x heads pieces go to as many
  // blocks, whose cache lines fill in step (the blocks' order read qkv at a
  // stride of rows, 3x slower).
  cpu::parallelFor(a.batch * seq, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / seq, s = row % seq;
      for (int64_t piece = 0; piece < 3 * heads; ++piece) // piece = part * heads + h
        store(qkv + row * 3 * width + piece * dim, dim,
              blocks + ((b * 3 * heads + piece) * seq + s) * dim);
    }
  });
  std::atomic<bool> failed = false;
  cpu::parallelFor(a.batch * chunks * groups, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<T> queriesBuffer, probabilitiesBuffer;
    thread_local std::vector<float> scoresBuffer, contextBuffer;
    thread_local std::vector<uint8_t> keepBuffer;
    T *queries = cpu::scratch(queriesBuffer, groupHeads * chunk * dim);
    float *scores = cpu::scratch(scoresBuffer, groupHeads * chunk * seq);
    // f32 probabilities stay where the scores were.
    T *probabilities = std::is_same_v<T, float>
                           ? reinterpret_cast<T *>(scores)
                           : cpu::scratch(probabilitiesBuffer, groupHeads * chunk * seq);
    float *context = cpu::scratch(contextBuffer, groupHeads * chunk * dim);
    uint8_t *keep = cpu::scratch(keepBuffer, seq);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t b = unit / (chunks * groups), q0 = unit / groups % chunks * chunk,
                    h0 = unit % groups * groupHeads, nq = std::min(chunk, seq - q0);
      const T *q = blocks + (b * 3 * heads + h0) * seq * dim, *k = q + heads * seq * dim,
              *v = k + heads * seq * dim;
      if (mask)
        for (int64_t j = 0; j < seq; ++j)
          keep[j] = mask[b * seq + j] != 0;
      // The chunk's queries of the group's heads, [groupHeads, nq, dim].
      for (int64_t h = 0; h < groupHeads; ++h)
        std::memcpy(queries + h * nq * dim, q + (h * seq + q0) * dim, nq * dim * sizeof(T));
      if (!cpu::dnnl::batchedMatmul(queries, k, groupHeads, nq, dim, seq, /*transposeB=*/true,
                                    scores)) {
        failed = true;
        return;
      }
      for (int64_t r = 0; r < groupHeads * nq; ++r)
        cpu::scoresToProbabilities(scores + r * seq, seq, a.scale,
                                   a.causal ? q0 + r % nq + 1 : seq, mask ? keep : nullptr,
                                   probabilities + r * seq);
      if (!cpu::dnnl::batchedMatmul(probabilities, v, groupHeads, nq, seq, dim,
                                    /*transposeB=*/false, context)) {
        failed = true;
        return;
      }
      for (int64_t h = 0; h < groupHeads; ++h)
        for (int64_t i = 0; i < nq; ++i)
          std::memcpy(out + (b * seq + q0 + i) * width + (h0 + h) * dim,
                      context + (h * nq + i) * dim, dim * sizeof(float));
    }
  });
  return !failed;
}

} // namespace

void cpu::attention(const AttentionShape &a, const float *qkv, const int64_t *mask,
                    float *kCache, float *vCache, float *out) {
  if (!kCache && (a.bf16 && dnnl::bf16Native() ? attentionBatched<uint16_t>(a, qkv, mask, out)
                                                : attentionBatched<float>(a, qkv, mask, out)))
    return;
  constexpr int64_t kQueryBlock = 64, kKeyBlock = 256;
  const int64_t width = a.heads * a.dim, stride = 3 * width; // qkv row
  const int64_t keys = a.past + a.seq;
  const float lowest = std::numeric_limits<float>::lowest();
  parallelFor(a.batch * a.heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scoresBuffer, accBuffer, rowMaxBuffer, rowSumBuffer;
    thread_local std::vector<uint8_t> keepBuffer;
    float *scores = cpu::scratch(scoresBuffer, kQueryBlock * kKeyBlock),
          *acc = cpu::scratch(accBuffer, kQueryBlock * a.dim),
          *rowMax = cpu::scratch(rowMaxBuffer, kQueryBlock),
          *rowSum = cpu::scratch(rowSumBuffer, kQueryBlock);
    uint8_t *keep = mask ? cpu::scratch(keepBuffer, keys) : nullptr;
    int64_t keepRow = -1; // the sequence keep holds
    for (int64_t bh = begin; bh < end; ++bh) {
      int64_t b = bh / a.heads, h = bh % a.heads;
      for (int64_t j = 0; keep && b != keepRow && j < keys; ++j)
        keep[j] = mask[b * keys + j] != 0;
      keepRow = b;
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
        // Causal: query i (absolute position past + q0 + i) sees keys up to it.
        int64_t lastKey = a.causal ? std::min(keys, a.past + q0 + nq) : keys;
        float *first = out + (b * a.seq + q0) * width + h * a.dim;
        if (lastKey <= kKeyBlock) {
          // One block of keys (prompts and caches of up to kKeyBlock
          // tokens): each row's plain softmax, vectorized, and the product
          // with V straight into out.
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, lastKey, a.dim, 1.0f,
                       q + q0 * stride, stride, k, keyStride, 0.0f, scores, lastKey);
          for (int64_t i = 0; i < nq; ++i)
            scoresToProbabilities(scores + i * lastKey, lastKey, a.scale,
                                  a.causal ? a.past + q0 + i + 1 : lastKey, keep,
                                  scores + i * lastKey);
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, a.dim, lastKey, 1.0f,
                       scores, lastKey, v, keyStride, 0.0f, first, width);
          continue;
        }
        std::fill(rowMax, rowMax + nq, lowest);
        std::fill(rowSum, rowSum + nq, 0.0f);
        std::fill(acc, acc + nq * a.dim, 0.0f);
        for (int64_t k0 = 0; k0 < lastKey; k0 += kKeyBlock) {
          int64_t nk = std::min(kKeyBlock, lastKey - k0);
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, a.dim, a.scale,
                      q + q0 * stride, stride, k + k0 * keyStride, keyStride, 0.0f,
                      scores, nk);
          for (int64_t i = 0; i < nq; ++i) {
            float *row = scores + i * nk;
            for (int64_t j = 0; j < nk; ++j)
              if ((keep && !keep[k0 + j]) || (a.causal && k0 + j > a.past + q0 + i))
                row[j] = lowest;
            float previous = rowMax[i];
            float blockMax = *std::max_element(row, row + nk);
            rowMax[i] = std::max(previous, blockMax);
            float correction = expShift(&previous, 1, rowMax[i]);
            float sum = expShift(row, nk, rowMax[i]);
            rowSum[i] = rowSum[i] * correction + sum;
            float *o = acc + i * a.dim;
            for (int64_t d = 0; d < a.dim; ++d)
              o[d] *= correction;
          }
          blas().sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, a.dim, nk, 1.0f,
                      scores, nk, v + k0 * keyStride, keyStride, 1.0f, acc, a.dim);
        }
        for (int64_t i = 0; i < nq; ++i) {
          float inv = rowSum[i] > 0 ? 1.0f / rowSum[i] : 0.0f;
          float *dst = first + i * width;
          const float *o = acc + i * a.dim;
          for (int64_t d = 0; d < a.dim; ++d)
            dst[d] = o[d] * inv;
        }
      }
    }
  });
}
