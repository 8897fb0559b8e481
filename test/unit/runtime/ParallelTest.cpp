//===- ParallelTest.cpp - the CPU backend's row splitter ------------------===//

#include "runtime/cpu/Parallel.h"

#include "gtest/gtest.h"

#include <atomic>
#include <vector>

using namespace megatron::runtime;

// Every index is visited exactly once, over many back-to-back jobs (the
// pattern of a forward: one short job after another).
TEST(Parallel, EveryIndexOnceAcrossManyJobs) {
  for (int threads : {1, 2, 3, 8}) {
    cpu::setThreads(threads);
    EXPECT_EQ(cpu::threads(), threads);
    for (int64_t count : {0, 1, 2, 7, 1000}) {
      for (int repeat = 0; repeat < 100; ++repeat) {
        std::vector<std::atomic<int>> seen(count);
        cpu::parallelFor(count, 1, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)
            seen[i].fetch_add(1);
        });
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(seen[i].load(), 1) << "threads " << threads << " count "
                                       << count << " index " << i;
      }
    }
  }
}

// No range is shorter than the grain unless it is the only one.
TEST(Parallel, GrainBoundsTheNumberOfRanges) {
  cpu::setThreads(4);
  std::atomic<int> calls{0};
  cpu::parallelFor(10, 100, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
    ++calls;
  });
  EXPECT_EQ(calls.load(), 1);
  calls = 0;
  cpu::parallelFor(10, 5, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(end - begin, 5);
    ++calls;
  });
  EXPECT_EQ(calls.load(), 2);
}
