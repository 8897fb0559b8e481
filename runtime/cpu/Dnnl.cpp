//===- Dnnl.cpp - matrix products through oneDNN --------------------------===//

#include "runtime/cpu/Dnnl.h"

#include <oneapi/dnnl/dnnl.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

using namespace megatron::runtime::cpu;

namespace {

/// An epilogue as bits of a primitive's key.
constexpr unsigned kScales = 1, kBias = 2, kGeluErf = 4, kGeluTanh = 8, kAccumulate = 16;

unsigned epilogueBits(const dnnl::Epilogue &e) {
  return (e.scales ? kScales : 0) | (e.bias ? kBias : 0) |
         (e.gelu ? (*e.gelu == GeluKind::Erf ? kGeluErf : kGeluTanh) : 0) |
         (e.accumulate ? kAccumulate : 0);
}

/// How the [in, out] operand is stored: row-major, as an [out, in] matrix
/// (a linear's weight), or packed into oneDNN's blocked layout
/// (dnnl::PackedWeight).
enum class Layout { Plain, Transposed, Packed };

/// One matmul primitive, for one number of rows: oneDNN's kernels for a
/// run-time M are slower (f32 much; bf16 and int8 by 5-30% at 128 rows,
/// measured at BERT-345M's shapes on Zen 4, the same at 4096).
struct Matmul {
  dnnl_primitive_t primitive = nullptr;
  /// bias and scales: [1, out] f32 rows.
  dnnl_memory_desc_t src{}, weights{}, dst{}, row{};

  ~Matmul() {
    if (primitive)
      dnnl_primitive_destroy(primitive);
  }
};

/// oneDNN's engine and stream, and the matmuls made so far. Per thread:
/// tensor-parallel ranks run on threads of their own, and a stream and a
/// primitive's execution are not to be shared between threads.
struct Context {
  static constexpr size_t kMaxMatmuls = 256;
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  /// (type, batch, rows, in, out, epilogue bits, weights layout); batch 0
  /// for a single 2-D product.
  using Key = std::tuple<dnnl_data_type_t, int64_t, int64_t, int64_t, int64_t, unsigned, Layout>;
  std::map<Key, std::unique_ptr<Matmul>> matmuls;

  Context() {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success)
      engine = nullptr;
  }
  ~Context() {
    matmuls.clear();
    if (stream)
      dnnl_stream_destroy(stream);
    if (engine)
      dnnl_engine_destroy(engine);
  }

  /// The matmul for [rows, in] x [in, out] in `type`, f32 results (int32
  /// for int8), row-major but for the [in, out] operand's `layout` (Packed:
  /// as `packed` describes; all packed weights of a shape share it),
  /// through the epilogue `bits` (epilogueBits). With a batch, that many
  /// such products of consecutive matrices (no epilogue). Null if oneDNN has
  /// no fast kernel for it.
  Matmul *matmul(dnnl_data_type_t type, int64_t batch, int64_t rows, int64_t in, int64_t out,
                 unsigned bits, Layout layout, const dnnl_memory_desc_t *packed = nullptr) {
    // Primitives are per number of rows: prompts of ever new lengths must
    // not grow this without bound. Dropped ones are rebuilt on demand (from
    // oneDNN's own cache of generated kernels when they are still there).
    const Key key{type, batch, rows, in, out, bits, layout};
    if (matmuls.size() >= kMaxMatmuls && !matmuls.count(key))
      matmuls.clear();
    auto &slot = matmuls[key];
    // A shape without a fast kernel keeps an empty entry: not tried again.
    if (slot || !engine)
      return slot && slot->primitive ? slot.get() : nullptr;
    auto m = std::make_unique<Matmul>();
    // Without a batch the 2-D dims start past the batch's.
    const int rank = batch ? 3 : 2;
    const dnnl_dims_t src = {batch, rows, in}, weight = {batch, in, out}, dst = {batch, rows, out};
    const int64_t *srcDims = src + 3 - rank, *weightDims = weight + 3 - rank,
                  *dstDims = dst + 3 - rank;
    // ba (acb): the [in, out] operand laid out as an [out, in] matrix.
    const dnnl_format_tag_t plain = batch ? dnnl_abc : dnnl_ab,
                            swapped = batch ? dnnl_acb : dnnl_ba;
    dnnl_primitive_attr_t attr = nullptr;
    dnnl_post_ops_t postOps = nullptr;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = nullptr;
    const dnnl_dims_t rowDims = {1, out};
    // oneDNN adds its bias argument before any post-op, so after scales the
    // bias is a post-op too.
    const bool biasArgument = (bits & kBias) && !(bits & kScales);
    bool ok = dnnl_memory_desc_init_by_tag(&m->src, rank, srcDims, type, plain) == dnnl_success &&
              (layout == Layout::Packed
                   ? (m->weights = *packed, true)
                   : dnnl_memory_desc_init_by_tag(&m->weights, rank, weightDims, type,
                                                  layout == Layout::Transposed ? swapped
                                                                               : plain) ==
                         dnnl_success) &&
              dnnl_memory_desc_init_by_tag(&m->dst, rank, dstDims,
                                           type == dnnl_s8 ? dnnl_s32 : dnnl_f32,
                                           plain) == dnnl_success &&
              dnnl_memory_desc_init_by_tag(&m->row, 2, rowDims, dnnl_f32, dnnl_ab) ==
                  dnnl_success &&
              dnnl_matmul_desc_init(&desc, &m->src, &m->weights,
                                    biasArgument ? &m->row : nullptr, &m->dst) == dnnl_success &&
              dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && bits)
      ok = dnnl_post_ops_create(&postOps) == dnnl_success &&
           (!(bits & kScales) ||
            (dnnl_post_ops_append_binary(postOps, dnnl_binary_mul, &m->row) == dnnl_success &&
             (!(bits & kBias) || dnnl_post_ops_append_binary(postOps, dnnl_binary_add,
                                                             &m->row) == dnnl_success))) &&
           (!(bits & (kGeluErf | kGeluTanh)) ||
            dnnl_post_ops_append_eltwise(
                postOps, 1.0f, bits & kGeluErf ? dnnl_eltwise_gelu_erf : dnnl_eltwise_gelu_tanh,
                0.0f, 0.0f) == dnnl_success) &&
           (!(bits & kAccumulate) || dnnl_post_ops_append_sum(postOps, 1.0f) == dnnl_success) &&
           dnnl_primitive_attr_set_post_ops(attr, postOps) == dnnl_success;
    // oneDNN falls back to reference kernels ("ref:...") for what its JIT
    // kernels lack (some layouts and post-ops, by version and CPU): two
    // orders of magnitude slower than the caller's own path.
    const char *implementation = nullptr;
    ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, engine, nullptr) == dnnl_success &&
         dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &implementation) ==
             dnnl_success &&
         implementation && std::strncmp(implementation, "ref", 3) != 0 &&
         dnnl_primitive_create(&m->primitive, pd) == dnnl_success;
    if (pd)
      dnnl_primitive_desc_destroy(pd);
    if (postOps)
      dnnl_post_ops_destroy(postOps);
    if (attr)
      dnnl_primitive_attr_destroy(attr);
    slot = std::move(m); // without a primitive where !ok
    return slot->primitive ? slot.get() : nullptr;
  }
};

/// A memory object over caller-owned data, released at scope end.
struct Memory {
  dnnl_memory_t memory = nullptr;
  Memory(const dnnl_memory_desc_t &desc, dnnl_engine_t engine, const void *data) {
    if (dnnl_memory_create(&memory, &desc, engine, const_cast<void *>(data)) != dnnl_success)
      memory = nullptr;
  }
  ~Memory() {
    if (memory)
      dnnl_memory_destroy(memory);
  }
};

} // namespace

bool dnnl::bf16Native() {
  // The ISA values are sets of feature bits; AMX's include AVX512-BF16's.
  static const bool native = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_bf16) ==
                             dnnl_cpu_isa_avx512_core_bf16;
  return native;
}

bool dnnl::int8Native() {
  static const bool native = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core_vnni) ==
                             dnnl_cpu_isa_avx512_core_vnni;
  return native;
}

namespace {
bool run(dnnl_data_type_t type, int64_t batch, const void *x, int64_t rows, int64_t in,
         const void *w, int64_t out, const dnnl::Epilogue &epilogue, Layout layout, void *y,
         const dnnl_memory_desc_t *packed = nullptr) {
  thread_local Context context;
  const unsigned bits = epilogueBits(epilogue);
  Matmul *m = context.matmul(type, batch, rows, in, out, bits, layout, packed);
  if (!m)
    return false;
  Memory src(m->src, context.engine, x), weights(m->weights, context.engine, w),
      dst(m->dst, context.engine, y), scales(m->row, context.engine, epilogue.scales),
      bias(m->row, context.engine, epilogue.bias);
  if (!src.memory || !weights.memory || !dst.memory || !scales.memory || !bias.memory)
    return false;
  // In the order Context::matmul appends the post-ops.
  std::vector<dnnl_exec_arg_t> args = {{DNNL_ARG_SRC, src.memory},
                                       {DNNL_ARG_WEIGHTS, weights.memory},
                                       {DNNL_ARG_DST, dst.memory}};
  if (bits & kScales) {
    args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, scales.memory});
    if (bits & kBias)
      args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, bias.memory});
  } else if (bits & kBias) {
    args.push_back({DNNL_ARG_BIAS, bias.memory});
  }
  return dnnl_primitive_execute(m->primitive, context.stream, static_cast<int>(args.size()),
                                args.data()) == dnnl_success &&
         dnnl_stream_wait(context.stream) == dnnl_success;
}
} // namespace

struct dnnl::PackedWeight {
  /// The layout of the matmul's type (f32 or bf16); int8 values are laid
  /// out as bf16 ones (desc's with s8).
  dnnl_memory_desc_t desc{};
  dnnl_data_type_t type = dnnl_bf16;
  bool int8 = false;
  int64_t in = 0, out = 0, elements = 0;
  std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
};

void dnnl::PackedWeightDeleter::operator()(PackedWeight *p) const { delete p; }

namespace {
/// w [out, in] of `type` (f32, bf16 or s8) packed into the layout oneDNN's
/// matmul (f32 for f32, else bf16) picks for such a weight when free to:
/// the same for every number of rows here (checked at BERT's and GPT-2's
/// shapes from 1 to 4096 rows); a run whose primitive reads another falls
/// back to the stored weight.
dnnl::PackedWeightPtr pack(const void *w, dnnl_data_type_t type, int64_t out, int64_t in) {
  const dnnl_data_type_t compute = type == dnnl_f32 ? dnnl_f32 : dnnl_bf16;
  if ((compute == dnnl_bf16 && !dnnl::bf16Native()) || out <= 0 || in <= 0)
    return nullptr;
  Context context;
  if (!context.engine)
    return nullptr;
  dnnl_memory_desc_t src, any, dst, plain, stored;
  const dnnl_dims_t srcDims = {128, in}, weightDims = {in, out}, dstDims = {128, out};
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd = nullptr, reorderPd = nullptr;
  dnnl_primitive_t reorder = nullptr;
  auto packed = dnnl::PackedWeightPtr(new dnnl::PackedWeight);
  packed->type = compute;
  packed->int8 = type == dnnl_s8;
  packed->in = in;
  packed->out = out;
  const dnnl_memory_desc_t *chosen = nullptr;
  bool ok = dnnl_memory_desc_init_by_tag(&src, 2, srcDims, compute, dnnl_ab) == dnnl_success &&
            dnnl_memory_desc_init_by_tag(&any, 2, weightDims, compute, dnnl_format_tag_any) ==
                dnnl_success &&
            dnnl_memory_desc_init_by_tag(&dst, 2, dstDims, dnnl_f32, dnnl_ab) == dnnl_success &&
            dnnl_memory_desc_init_by_tag(&plain, 2, weightDims, compute, dnnl_ba) ==
                dnnl_success &&
            dnnl_memory_desc_init_by_tag(&stored, 2, weightDims, type, dnnl_ba) ==
                dnnl_success &&
            dnnl_matmul_desc_init(&desc, &src, &any, nullptr, &dst) == dnnl_success &&
            dnnl_primitive_desc_create(&pd, &desc, nullptr, context.engine, nullptr) ==
                dnnl_success &&
            (chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)) != nullptr &&
            // Nothing to gain where it reads the weight as it is stored.
            !dnnl_memory_desc_equal(chosen, &plain);
  dnnl_memory_desc_t target{};
  if (ok) {
    packed->desc = *chosen;
    // The same blocks and padding in the stored type: widening int8 to
    // bf16 element by element then gives the bf16 layout.
    target = *chosen;
    target.data_type = type;
    const size_t bytes = dnnl_memory_desc_get_size(&target);
    packed->elements = static_cast<int64_t>(dnnl_memory_desc_get_size(chosen) /
                                            (compute == dnnl_f32 ? 4 : 2));
    packed->data.reset(static_cast<uint8_t *>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    ok = packed->data != nullptr;
  }
  if (ok) {
    // Reorders fill the padding with zeros.
    Memory from(stored, context.engine, w), to(target, context.engine, packed->data.get());
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from.memory}, {DNNL_ARG_TO, to.memory}};
    ok = from.memory && to.memory &&
         dnnl_reorder_primitive_desc_create(&reorderPd, &stored, context.engine, &target,
                                            context.engine, nullptr) == dnnl_success &&
         dnnl_primitive_create(&reorder, reorderPd) == dnnl_success &&
         dnnl_primitive_execute(reorder, context.stream, 2, args) == dnnl_success &&
         dnnl_stream_wait(context.stream) == dnnl_success;
  }
  if (reorder)
    dnnl_primitive_destroy(reorder);
  if (reorderPd)
    dnnl_primitive_desc_destroy(reorderPd);
  if (pd)
    dnnl_primitive_desc_destroy(pd);
  return ok ? std::move(packed) : nullptr;
}
} // namespace

dnnl::PackedWeightPtr dnnl::packWeight(const uint16_t *w, int64_t out, int64_t in) {
  return pack(w, dnnl_bf16, out, in);
}

dnnl::PackedWeightPtr dnnl::packWeight(const int8_t *w, int64_t out, int64_t in) {
  return pack(w, dnnl_s8, out, in);
}

dnnl::PackedWeightPtr dnnl::packWeight(const float *w, int64_t out, int64_t in) {
  return pack(w, dnnl_f32, out, in);
}

int64_t dnnl::packedElements(const PackedWeight &w) { return w.elements; }

const int8_t *dnnl::packedInt8(const PackedWeight &w) {
  return w.int8 ? reinterpret_cast<const int8_t *>(w.data.get()) : nullptr;
}

bool dnnl::matmulBf16(const uint16_t *x, int64_t rows, int64_t in, const uint16_t *w,
                      int64_t out, const Epilogue &epilogue, float *y) {
  return run(dnnl_bf16, 0, x, rows, in, w, out, epilogue, Layout::Transposed, y);
}

bool dnnl::matmulBf16(const uint16_t *x, int64_t rows, int64_t in, const PackedWeight &w,
                      const uint16_t *widened, int64_t out, const Epilogue &epilogue, float *y) {
  const void *weights = w.int8 ? static_cast<const void *>(widened) : w.data.get();
  return w.type == dnnl_bf16 && in == w.in && out == w.out && weights &&
         run(dnnl_bf16, 0, x, rows, in, weights, out, epilogue, Layout::Packed, y, &w.desc);
}

bool dnnl::matmulF32(const float *x, int64_t rows, int64_t in, const PackedWeight &w,
                     int64_t out, const Epilogue &epilogue, float *y) {
  return w.type == dnnl_f32 && in == w.in && out == w.out &&
         run(dnnl_f32, 0, x, rows, in, w.data.get(), out, epilogue, Layout::Packed, y,
             &w.desc);
}

bool dnnl::matmulF32(const float *x, int64_t rows, int64_t in, const float *w, int64_t out,
                     const Epilogue &epilogue, float *y) {
  return run(dnnl_f32, 0, x, rows, in, w, out, epilogue, Layout::Transposed, y);
}

bool dnnl::matmulInt8(const int8_t *x, int64_t rows, int64_t in, const int8_t *w, int64_t out,
                      int32_t *y) {
  return run(dnnl_s8, 0, x, rows, in, w, out, {}, Layout::Transposed, y);
}

bool dnnl::batchedMatmul(const uint16_t *a, const uint16_t *b, int64_t batch, int64_t m,
                         int64_t k, int64_t n, bool transposeB, float *c) {
  return batch > 0 && run(dnnl_bf16, batch, a, m, k, b, n, {},
                          transposeB ? Layout::Transposed : Layout::Plain, c);
}

bool dnnl::batchedMatmul(const float *a, const float *b, int64_t batch, int64_t m, int64_t k,
                         int64_t n, bool transposeB, float *c) {
  return batch > 0 && run(dnnl_f32, batch, a, m, k, b, n, {},
                          transposeB ? Layout::Transposed : Layout::Plain, c);
}
