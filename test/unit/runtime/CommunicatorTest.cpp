//===- CommunicatorTest.cpp - in-process collectives ----------------------===//

#include "megatron/runtime/Communicator.h"

#include "gtest/gtest.h"

#include <chrono>
#include <thread>
#include <vector>

using namespace megatron::runtime;

namespace {

/// Runs body(rank) on `ranks` threads and returns their statuses.
template <typename Body> std::vector<Status> onRanks(int ranks, Body body) {
  std::vector<Status> results(ranks, Status::success());
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] { results[r] = body(r); });
  for (std::thread &t : threads)
    t.join();
  return results;
}

TEST(InProcessCommunicator, AllReduceAndAllGatherOverManyCalls) {
  const int ranks = 3;
  auto comm = makeInProcessCommunicator(ranks);
  auto results = onRanks(ranks, [&](int r) {
    for (int call = 0; call < 200; ++call) {
      std::vector<float> x = {float(r), float(10 * r + call)};
      if (Status s = comm->allReduceSum(r, x.data(), x.data(), 2); !s.ok())
        return s;
      EXPECT_EQ(x, (std::vector<float>{0 + 1 + 2, float(30 + 3 * call)}));
      // Two rows of two values per rank -> rows of six, rank-major.
      std::vector<float> in = {float(r), float(r), float(10 + r), float(10 + r)}, out(12);
      if (Status s = comm->allGather(r, in.data(), 2, 2, out.data()); !s.ok())
        return s;
      EXPECT_EQ(out, (std::vector<float>{0, 0, 1, 1, 2, 2, 10, 10, 11, 11, 12, 12}));
    }
    return Status::success();
  });
  for (const Status &s : results)
    EXPECT_TRUE(s.ok()) << s.message();
}

TEST(InProcessCommunicator, AMissingRankTimesOut) {
  auto comm = makeInProcessCommunicator(2, /*timeoutSeconds=*/0.2);
  float x = 1;
  auto start = std::chrono::steady_clock::now();
  Status s = comm->allReduceSum(0, &x, &x, 1); // rank 1 never comes
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // Later calls fail at once until a reset.
  EXPECT_FALSE(comm->allReduceSum(0, &x, &x, 1).ok());
  comm->reset();
  auto results = onRanks(2, [&](int r) {
    float v = 1;
    return comm->allReduceSum(r, &v, &v, 1);
  });
  EXPECT_TRUE(results[0].ok() && results[1].ok());
}

TEST(InProcessCommunicator, AFailedRankWakesTheOthers) {
  auto comm = makeInProcessCommunicator(3, /*timeoutSeconds=*/60);
  auto start = std::chrono::steady_clock::now();
  auto results = onRanks(3, [&](int r) {
    if (r == 2) { // fails before its collective
      comm->abort("rank 2 failed: out of memory");
      return Status::error("out of memory");
    }
    float v = 1;
    return comm->allReduceSum(r, &v, &v, 1);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  for (int r = 0; r < 2; ++r) {
    ASSERT_FALSE(results[r].ok());
    EXPECT_EQ(results[r].message(), "rank 2 failed: out of memory");
  }
}

} // namespace
