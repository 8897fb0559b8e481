//===- CublasLt.cpp - GEMMs through cuBLASLt, loaded at run time ----------===//

#include "runtime/cuda/CublasLt.h"

#include <cublasLt.h>
#include <dlfcn.h>

#include <string>

using namespace megatron::runtime;
using namespace megatron::runtime::cuda;

struct CublasLt::Api {
  void *library = nullptr;
  cublasLtHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
#define MEGATRON_CUBLASLT_FUNCTIONS(X)                                         \
  X(cublasLtCreate)                                                            \
  X(cublasLtDestroy)                                                           \
  X(cublasLtMatmulDescCreate)                                                  \
  X(cublasLtMatmulDescDestroy)                                                 \
  X(cublasLtMatmulDescSetAttribute)                                            \
  X(cublasLtMatrixLayoutCreate)                                                \
  X(cublasLtMatrixLayoutDestroy)                                               \
  X(cublasLtMatmulPreferenceCreate)                                            \
  X(cublasLtMatmulPreferenceDestroy)                                           \
  X(cublasLtMatmulPreferenceSetAttribute)                                      \
  X(cublasLtMatmulAlgoGetHeuristic)                                            \
  X(cublasLtMatmul)                                                            \
  X(cublasLtGetStatusString)
#define MEGATRON_CUBLASLT_POINTER(name) decltype(&::name) name = nullptr;
  MEGATRON_CUBLASLT_FUNCTIONS(MEGATRON_CUBLASLT_POINTER)
#undef MEGATRON_CUBLASLT_POINTER

  Status check(cublasStatus_t code, const char *what) const {
    if (code == CUBLAS_STATUS_SUCCESS)
      return Status::success();
    return Status::error(std::string("cuBLASLt: ") + what + ": " +
                         (cublasLtGetStatusString ? cublasLtGetStatusString(code)
                                                  : "status " + std::to_string(int(code))));
  }
};

CublasLt::~CublasLt() {
  if (!api_)
    return;
  plans_.clear();
  if (api_->handle)
    api_->cublasLtDestroy(api_->handle);
  if (api_->library)
    dlclose(api_->library);
}

Status CublasLt::open(void *stream, std::unique_ptr<CublasLt> &out) {
  std::unique_ptr<CublasLt> lt(new CublasLt());
  lt->api_ = std::make_unique<Api>();
  Api &api = *lt->api_;
  api.stream = static_cast<cudaStream_t>(stream);
  // The loader's path first, then the toolkit this runtime was built with.
  std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  api.library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!api.library)
    api.library = dlopen((std::string(MEGATRON_CUDA_LIB_DIR) + "/" + soname).c_str(),
                         RTLD_NOW | RTLD_LOCAL);
  if (!api.library)
    return Status::error("cannot load " + soname + " (the CUDA toolkit's cuBLASLt): " +
                         dlerror());
#define MEGATRON_CUBLASLT_RESOLVE(name)                                        \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(api.library, #name));  \
  if (!api.name)                                                               \
    return Status::error(soname + " lacks " #name);
  MEGATRON_CUBLASLT_FUNCTIONS(MEGATRON_CUBLASLT_RESOLVE)
#undef MEGATRON_CUBLASLT_RESOLVE
  if (Status s = api.check(api.cublasLtCreate(&api.handle), "cublasLtCreate"); !s.ok())
    return s;
  out = std::move(lt);
  return Status::success();
}

/// A linear's descriptors and algorithm, made once per shape: building
/// them and asking the heuristic costs more host time than a small GEMM
/// (decode's) takes on the device.
struct CublasLt::Plan {
  const Api &api;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t weight = nullptr, input = nullptr, result = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic = {};
  explicit Plan(const Api &api) : api(api) {}
  ~Plan() {
    if (preference)
      api.cublasLtMatmulPreferenceDestroy(preference);
    for (cublasLtMatrixLayout_t layout : {weight, input, result})
      if (layout)
        api.cublasLtMatrixLayoutDestroy(layout);
    if (desc)
      api.cublasLtMatmulDescDestroy(desc);
  }
};

CublasLt::CublasLt() = default;

Status CublasLt::plan(int64_t rows, int64_t in, int64_t out, bool bias, Operands operands,
                      uint32_t alignment, uint64_t workspaceBytes, Plan *&found) {
  std::array<int64_t, 6> key = {rows, in, out, bias, int64_t(operands), alignment};
  std::unique_ptr<Plan> &slot = plans_[key];
  if (slot) {
    found = slot.get();
    return Status::success();
  }
  const Api &api = *api_;
  auto d = std::make_unique<Plan>(api);
  // cuBLASLt is column-major: row-major y[rows, out] is column-major
  // y^T[out, rows] = w (column-major [in, out], transposed) x^T ([in, rows]).
  cublasOperation_t transpose = CUBLAS_OP_T;
  cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  uint64_t workspaceLimit = workspaceBytes;
  // Each call only after the ones before it succeeded.
  Status s = api.check(api.cublasLtMatmulDescCreate(&d->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                       "cublasLtMatmulDescCreate");
  if (s.ok())
    s = api.check(api.cublasLtMatmulDescSetAttribute(d->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                     &transpose, sizeof(transpose)),
                  "setting TRANSA");
  if (s.ok())
    s = api.check(api.cublasLtMatmulDescSetAttribute(d->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                     &epilogue, sizeof(epilogue)),
                  "setting the epilogue");
  cudaDataType type = operands == Operands::BF16  ? CUDA_R_16BF
                      : operands == Operands::F16 ? CUDA_R_16F
                                                  : CUDA_R_32F;
  if (s.ok())
    s = api.check(api.cublasLtMatrixLayoutCreate(&d->weight, type, in, out, in),
                  "the weight's layout");
  if (s.ok())
    s = api.check(api.cublasLtMatrixLayoutCreate(&d->input, type, in, rows, in),
                  "the input's layout");
  if (s.ok())
    s = api.check(api.cublasLtMatrixLayoutCreate(&d->result, CUDA_R_32F, out, rows, out),
                  "the result's layout");
  if (s.ok())
    s = api.check(api.cublasLtMatmulPreferenceCreate(&d->preference), "a preference");
  if (s.ok())
    s = api.check(api.cublasLtMatmulPreferenceSetAttribute(
                      d->preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspaceLimit,
                      sizeof(workspaceLimit)),
                  "the workspace limit");
  // cuBLASLt otherwise assumes 256-byte aligned matrices; arena buffers
  // are 64-byte aligned.
  for (cublasLtMatmulPreferenceAttributes_t matrix :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (s.ok())
      s = api.check(api.cublasLtMatmulPreferenceSetAttribute(d->preference, matrix, &alignment,
                                                             sizeof(alignment)),
                    "the matrices' alignment");
  int count = 0;
  if (s.ok())
    s = api.check(api.cublasLtMatmulAlgoGetHeuristic(api.handle, d->desc, d->weight, d->input,
                                                     d->result, d->result, d->preference, 1,
                                                     &d->heuristic, &count),
                  "choosing an algorithm");
  if (s.ok() && count == 0)
    s = Status::error("cuBLASLt has no algorithm for a " + std::to_string(rows) + " x " +
                      std::to_string(in) + " x " + std::to_string(out) +
                      (operands == Operands::BF16  ? " bf16"
                       : operands == Operands::F16 ? " f16"
                                                   : " f32") +
                      " linear");
  if (!s.ok()) {
    plans_.erase(key);
    return s;
  }
  slot = std::move(d);
  found = slot.get();
  return Status::success();
}

Status CublasLt::linear(uint64_t x, uint64_t w, uint64_t bias, uint64_t addend, uint64_t y,
                        int64_t rows, int64_t in, int64_t out, Operands operands,
                        uint64_t workspace, uint64_t workspaceBytes) {
  const Api &api = *api_;
  // The largest power of two, up to 256, that every matrix's address is a
  // multiple of.
  uint64_t addresses = x | w | y | addend | 256;
  auto alignment = static_cast<uint32_t>(addresses & (~addresses + 1));
  Plan *p = nullptr;
  if (Status s = plan(rows, in, out, bias != 0, operands, alignment, workspaceBytes, p); !s.ok())
    return s;
  if (bias) {
    const void *biasPointer = reinterpret_cast<const void *>(bias);
    if (Status s = api.check(api.cublasLtMatmulDescSetAttribute(
                                 p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &biasPointer,
                                 sizeof(biasPointer)),
                             "setting the bias");
        !s.ok())
      return s;
  }
  float alpha = 1.0f, beta = addend ? 1.0f : 0.0f;
  return api.check(
      api.cublasLtMatmul(api.handle, p->desc, &alpha, reinterpret_cast<const void *>(w),
                         p->weight, reinterpret_cast<const void *>(x), p->input, &beta,
                         reinterpret_cast<const void *>(addend ? addend : y), p->result,
                         reinterpret_cast<void *>(y), p->result, &p->heuristic.algo,
                         reinterpret_cast<void *>(workspace), workspaceBytes, api.stream),
      "cublasLtMatmul");
}
