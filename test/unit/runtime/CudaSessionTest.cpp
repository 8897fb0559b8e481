//===- CudaSessionTest.cpp - whole models on the CUDA backend -------------===//
//
// The same artifact run by a CPU session and a CUDA session must agree to
// 1e-4 relative (f32): BERT with padding and both heads, GPT-2's prefill
// and decode steps through the KV cache. Without a GPU (CI) the CUDA
// session must fail to start with a clear error, and the rest is skipped.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Session.h"
#ifdef MEGATRON_HAVE_NCCL
#include "megatron/runtime/NcclCommunicator.h"
#endif
#include "test/unit/runtime/CudaTestArtifacts.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

using namespace megatron::runtime;

namespace {

class CudaSession : public ::testing::Test {
protected:
  /// Opens `name` on the CPU and, with `options`, on the GPU; skips where
  /// there is no GPU (the caller returns then).
  void open(const std::string &name, SessionOptions options = {}) {
    Status s = Artifact::open(cudaTestArtifact(name), artifact);
    ASSERT_TRUE(s.ok()) << s.message();
    s = Session::create(*artifact, {}, cpu);
    ASSERT_TRUE(s.ok()) << s.message();
    options.backend = SessionOptions::Backend::Cuda;
    s = Session::create(*artifact, options, gpu);
    if (!s.ok() && s.message().find("CUDA driver") != std::string::npos)
      GTEST_SKIP() << "no GPU here: " << s.message();
    ASSERT_TRUE(s.ok()) << s.message();
  }

  /// Runs `entry` on both and compares every output: element by element
  /// (f32), or with a 16-bit artifact's `tolerance` of the largest |output|
  /// (the e2e suite's measure).
  void expectSame(const std::string &entry, const Inputs &inputs, float tolerance = 0) {
    Outputs want, got;
    Status s = cpu->run(entry, inputs, want);
    ASSERT_TRUE(s.ok()) << s.message();
    s = gpu->run(entry, inputs, got);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(want.size(), got.size());
    for (const auto &[name, w] : want) {
      const FloatTensor &g = got.at(name);
      ASSERT_EQ(w.shape, g.shape) << name;
      if (tolerance > 0) {
        double error = 0, largest = 1e-6;
        for (size_t i = 0; i < w.data.size(); ++i) {
          error = std::max(error, std::fabs(double(g.data[i]) - w.data[i]));
          largest = std::max(largest, std::fabs(double(w.data[i])));
        }
        std::printf("%s %s: max error %.2e of the largest |output|\n", entry.c_str(),
                    name.c_str(), error / largest);
        EXPECT_LE(error / largest, tolerance) << entry << " " << name;
        continue;
      }
      for (size_t i = 0; i < w.data.size(); ++i)
        ASSERT_NEAR(g.data[i], w.data[i], 1e-4f * (1 + std::fabs(w.data[i])))
            << entry << " " << name << " at " << i;
    }
  }

  /// BERT with padding in its second row, both heads.
  void bertWithPadding() {
    expectSame("forward", {{"input_ids", {{2, 7}, {2, 5, 9, 3, 4, 8, 3, 2, 7, 7, 3, 0, 0, 0}}},
                           {"token_type_ids", {{2, 7}, {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0}}},
                           {"attention_mask", {{2, 7}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}}}});
  }

  /// A batch of two prompts (their last positions' logits, then all), then
  /// `steps` decode steps through the cache (`tolerance` as expectSame's).
  void prefillAndDecode(int64_t steps, float tolerance = 0) {
    Inputs prompt{{"input_ids", {{2, 5}, {1, 7, 3, 9, 4, 2, 2, 8, 6, 5}}}};
    expectSame("prefill_last", prompt, tolerance);
    expectSame("prefill", prompt, tolerance);
    for (int64_t t = 0; t < steps && !HasFatalFailure(); ++t)
      expectSame("decode", {{"input_ids", {{2, 1}, {3 + t, 11 - t}}}}, tolerance);
  }

  std::unique_ptr<Artifact> artifact;
  std::unique_ptr<Session> cpu, gpu;
};

// With or without a GPU: a device that is not there is a clear error.
TEST(CudaBackend, AMissingDeviceSaysWhy) {
  std::unique_ptr<Artifact> artifact;
  ASSERT_TRUE(Artifact::open(cudaTestArtifact("gpt2-cuda.mtc"), artifact).ok());
  SessionOptions options;
  options.backend = SessionOptions::Backend::Cuda;
  options.device = 4096; // no machine has it
  std::unique_ptr<Session> session;
  Status s = Session::create(*artifact, options, session);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.message().find("CUDA") != std::string::npos) << s.message();
}

// The compiler records each kernel's launch parameters (a memref is five),
// which the executor checks every launch against.
TEST(CudaBackend, TheArtifactRecordsEachKernelsParameters) {
  std::unique_ptr<Artifact> artifact;
  ASSERT_TRUE(Artifact::open(cudaTestArtifact("gpt2-cuda.mtc"), artifact).ok());
  std::vector<KernelModuleInfo> modules = artifact->kernelModules();
  ASSERT_EQ(modules.size(), 2u); // sm_80, sm_90
  for (const KernelModuleInfo &m : modules) {
    ASSERT_EQ(m.parameters.size(), m.kernels.size()) << m.arch;
    std::map<std::string, uint32_t> count;
    for (size_t k = 0; k < m.kernels.size(); ++k)
      count[m.kernels[k]] = m.parameters[k];
    EXPECT_EQ(count["gelu"], 3 * 5 + 1 + 1 + 1u);      // x, y, y16, n, tanh, half
    // table, q, scales, ids, out; width, rows, offset, group; int8
    EXPECT_EQ(count["embedding"], 5 * 5 + 4 + 1u);
    // qkv, keys, values, mask, out, past; 6 sizes, scale, 2 flags, warps
    EXPECT_EQ(count["attention"], 6 * 5 + 6 + 1 + 2 + 1u);
    EXPECT_EQ(count["linear_int8"], 6 * 5 + 4 + 2u);
    EXPECT_EQ(count["layer_norm"], 5 * 5 + 1 + 1 + 1u); // x, gamma, beta, out, out16; cols, eps, half
    EXPECT_EQ(count["decode_attention"], 7 * 5 + 6 + 1 + 3 + 1u);
    EXPECT_EQ(count["quantize_rows"], 2 * 5 + 1u);          // x, y; cols
    EXPECT_EQ(count["batched_matmul"], 3 * 5 + 5 + 1u);     // a, b, y; 5 sizes; transpose
    EXPECT_EQ(count["scale"], 2 * 5 + 1 + 1u);              // x, y; n, factor
    EXPECT_EQ(count["softmax"], 2 * 5 + 1u);                // x, y; cols
    EXPECT_EQ(count["attention_mask"], 3 * 5 + 4 + 2u);     // x, y, mask; 4 sizes; 2 flags
    EXPECT_EQ(count["swap_middle_axes"], 2 * 5 + 4u);       // x, y; 4 sizes
    EXPECT_EQ(count["cache_write"], 2 * 5 + 4 + 5u);        // x, cache; 4 sizes; past
  }
}

TEST_F(CudaSession, AnArtifactWithoutGpuCodeIsAClearError) {
  std::unique_ptr<Artifact> cpuOnly;
  ASSERT_TRUE(Artifact::open(cudaTestArtifact("gpt2.mtc"), cpuOnly).ok()); // --target cpu
  SessionOptions options;
  options.backend = SessionOptions::Backend::Cuda;
  std::unique_ptr<Session> session;
  Status s = Session::create(*cpuOnly, options, session);
  if (!s.ok() && s.message().find("CUDA driver") != std::string::npos)
    GTEST_SKIP() << "no GPU here: " << s.message();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("carries no GPU code: compile it with --target cuda"),
            std::string::npos)
      << s.message();
}

TEST_F(CudaSession, BertWithPaddingMatchesTheCpu) {
  open("bert-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  bertWithPadding();
}

// Two tensor-parallel ranks as threads, on one GPU or on two: their
// all-reduces and the LM head's all-gather go through host memory (no
// CUDA graphs then); the CPU runs the same sharded artifact.
TEST_F(CudaSession, TensorParallelRanksMatchTheCpu) {
  open("gpt2-tp2-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3);
  open("bert-tp2-cuda.mtc");
  if (HasFatalFailure())
    return;
  bertWithPadding();
}

#ifdef MEGATRON_HAVE_NCCL
// The same over NCCL, one device per rank, the collectives queued on the
// executors' streams (no graphs: two ranks in one process).
TEST_F(CudaSession, NcclCollectivesOnTheDevicesMatchTheCpu) {
  SessionOptions options;
  Status s = nccl::joinLocal(2, options.communicator);
  // Fewer than two devices, or none, or no NCCL.
  if (!s.ok() && (s.message().find("CUDA devices") != std::string::npos ||
                  s.message().find("cannot be loaded") != std::string::npos))
    GTEST_SKIP() << s.message();
  ASSERT_TRUE(s.ok()) << s.message();
  open("gpt2-tp2-cuda.mtc", options);
  if (HasFatalFailure())
    return;
  prefillAndDecode(3);
  open("bert-tp2-cuda.mtc", options);
  if (HasFatalFailure())
    return;
  bertWithPadding();
}
#endif

// Decode steps replay a CUDA graph: the first step of each batch size runs
// as it comes, the second records it, the others replay it with the cache
// grown by a token.
TEST_F(CudaSession, Gpt2PrefillAndDecodeMatchTheCpu) {
  open("gpt2-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(4);
  // A new prefill starts over.
  expectSame("prefill", {{"input_ids", {{1, 3}, {4, 4, 4}}}});
  expectSame("decode", {{"input_ids", {{1, 1}, {9}}}});
  expectSame("decode", {{"input_ids", {{1, 1}, {2}}}});
  expectSame("decode", {{"input_ids", {{1, 1}, {6}}}});
  // And the graph of batch 2 again, after it.
  prefillAndDecode(2);
}

// Profiling on the GPU: events around each step's launches (decode steps
// then run without graphs), and the same results.
TEST_F(CudaSession, ProfileTimesEachStepOnTheDevice) {
  SessionOptions options;
  options.profile = true;
  open("gpt2-cuda.mtc", options);
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3);
  std::vector<StepTraffic> steps;
  ASSERT_TRUE(gpu->traffic("decode", 2, 1, steps).ok());
  int64_t timed = 0;
  double seconds = 0;
  for (const StepTime &t : gpu->profile())
    if (t.entry == "decode") {
      EXPECT_EQ(t.calls, 3) << t.step;
      timed += t.count;
      seconds += t.seconds;
    }
  EXPECT_EQ(timed, 3 * int64_t(steps.size()));
  EXPECT_GT(seconds, 0);
}

// A prompt run without its outputs (they stay on the device) still fills
// the cache the decode steps read.
TEST_F(CudaSession, PrefillWithoutOutputsFillsTheCache) {
  open("gpt2-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  Inputs prompt = {{"input_ids", {{2, 4}, {5, 1, 7, 3, 2, 9, 9, 4}}}};
  for (Session *session : {cpu.get(), gpu.get()}) {
    Status s = session->run("prefill", prompt);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  EXPECT_EQ(gpu->cachedTokens(), 4);
  expectSame("decode", {{"input_ids", {{2, 1}, {6, 8}}}});
}

// The same steps launched one by one.
TEST_F(CudaSession, Gpt2DecodeWithoutGraphsMatchesTheCpu) {
  SessionOptions eager;
  eager.cudaGraphs = false;
  open("gpt2-cuda.mtc", eager);
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3);
}

// int8 weights in groups: the prefill's 10 rows widen them for cuBLASLt,
// the decode steps' 2 rows go through the GEMV kernel. Both sides multiply
// the same dequantized values in f32.
TEST_F(CudaSession, Gpt2Int8MatchesTheCpu) {
  open("gpt2-int8-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3);
}

// An unfused graph (--no-fuse): batched matmuls over the KV cache, scale,
// mask, softmax, head swaps and cache writes, the decode steps without
// graphs (their launches change with the cached tokens).
TEST_F(CudaSession, UnfusedGraphMatchesTheCpu) {
  open("gpt2-unfused-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3);
}

// Dynamic W8A8: each linear's input quantized per row as on the CPU, then
// multiplied in f32 (the CPU sums the int8 products exactly). A value
// within float rounding of a rounding tie may quantize one step apart on
// the two (their LayerNorms sum in other orders): that moves an output by
// about 1 / (127 sqrt(in)) of the largest, hence the tolerance.
TEST_F(CudaSession, Gpt2W8A8MatchesTheCpu) {
  open("gpt2-w8a8-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  prefillAndDecode(3, 5e-3f);
}

// 16-bit models with heads of 64 dimensions: their prefill and BERT
// attention runs the tensor-core kernel (Q, K, V and the probabilities in
// the artifact's type), decode steps the SIMT one; the CPU runs the same
// artifact. Within the e2e suite's 16-bit tolerances (bf16 3e-2, f16 5e-3).
// 150 tokens: three query tiles, the last partial; padding in BERT.
TEST_F(CudaSession, SixteenBitModelsMatchTheCpu) {
  auto tokens = [](int64_t rows, int64_t seq, int64_t salt) {
    std::vector<int64_t> ids(rows * seq);
    for (size_t i = 0; i < ids.size(); ++i)
      ids[i] = int64_t((i * 37 + salt) % 120 + 1);
    return ids;
  };
  open("gpt2-wide-bf16-cuda.mtc");
  if (IsSkipped() || HasFatalFailure())
    return;
  expectSame("prefill", {{"input_ids", {{2, 150}, tokens(2, 150, 5)}}}, 3e-2f);
  expectSame("decode", {{"input_ids", {{2, 1}, {7, 9}}}}, 3e-2f);
  open("bert-wide-f16-cuda.mtc");
  if (HasFatalFailure())
    return;
  std::vector<int64_t> mask(2 * 150, 1);
  std::fill(mask.begin() + 150 + 120, mask.end(), 0); // row two: 120 tokens
  expectSame("forward", {{"input_ids", {{2, 150}, tokens(2, 150, 11)}},
                         {"token_type_ids", {{2, 150}, std::vector<int64_t>(2 * 150, 0)}},
                         {"attention_mask", {{2, 150}, mask}}},
             5e-3f);
  // int8 weights in a bf16 model: a prefill's 24 rows take the tensor-core
  // kernel that widens them in registers, 300 rows widen them to bf16 for
  // cuBLASLt, the decode steps' 2 take the GEMV kernel.
  open("gpt2-wide-int8-bf16-cuda.mtc");
  if (HasFatalFailure())
    return;
  for (int64_t seq : {12, 150}) {
    expectSame("prefill", {{"input_ids", {{2, seq}, tokens(2, seq, 3)}}}, 3e-2f);
    expectSame("decode", {{"input_ids", {{2, 1}, {4, 8}}}}, 3e-2f);
  }
}

} // namespace
