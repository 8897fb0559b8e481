//===- InProcessCommunicator.cpp - collectives between threads ------------===//
//
// Every rank publishes its input, waits for the others, computes its own
// output from all inputs, and waits again so no input is overwritten while
// another rank still reads it. Two barriers per collective; the sums read
// memory the other ranks' caches hold, which is the whole cost for the
// small activations of a layer.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Communicator.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

using namespace megatron::runtime;

Communicator::~Communicator() = default;
DeviceCollectives::~DeviceCollectives() = default;

namespace {

class InProcessCommunicator final : public Communicator {
public:
  InProcessCommunicator(int size, double timeoutSeconds)
      : size_(size), timeout_(timeoutSeconds), inputs_(size, nullptr) {}

  int size() const override { return size_; }
  std::string kind() const override { return "in-process"; }

  Status allReduceSum(int rank, const float *in, float *out, int64_t n) override {
    return exchange(rank, in, "all-reduce", [&] {
      // Sum in rank order on every rank, so all ranks get identical bits.
      std::vector<float> sum(inputs_[0], inputs_[0] + n);
      for (int r = 1; r < size_; ++r)
        for (int64_t i = 0; i < n; ++i)
          sum[i] += inputs_[r][i];
      return sum;
    }, out, n);
  }

  Status allGather(int rank, const float *in, int64_t outer, int64_t inner,
                   float *out) override {
    return exchange(rank, in, "all-gather", [&] {
      std::vector<float> all(outer * inner * size_);
      for (int r = 0; r < size_; ++r)
        for (int64_t o = 0; o < outer; ++o)
          std::memcpy(all.data() + (o * size_ + r) * inner, inputs_[r] + o * inner,
                      inner * sizeof(float));
      return all;
    }, out, outer * inner * size_);
  }

  void abort(const std::string &why) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_.empty())
      aborted_ = why;
    changed_.notify_all();
  }

  void reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_.clear();
    arrived_ = 0;
  }

private:
  /// Waits until all ranks have arrived at this barrier.
  Status barrier(std::unique_lock<std::mutex> &lock, int rank, const char *what) {
    if (!aborted_.empty())
      return Status::error(aborted_);
    uint64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return Status::success();
    }
    bool done = changed_.wait_for(
        lock, std::chrono::duration<double>(timeout_),
        [&] { return generation_ != generation || !aborted_.empty(); });
    if (!aborted_.empty())
      return Status::error(aborted_);
    if (!done) {
      aborted_ = "rank " + std::to_string(rank) + ": " + what + " timed out after " +
                 std::to_string(static_cast<int>(timeout_)) +
                 " s waiting for the other ranks";
      changed_.notify_all();
      return Status::error(aborted_);
    }
    return Status::success();
  }

  template <typename Compute>
  Status exchange(int rank, const float *in, const char *what, Compute compute,
                  float *out, int64_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    inputs_[rank] = in;
    if (Status s = barrier(lock, rank, what); !s.ok())
      return s;
    lock.unlock();
    std::vector<float> result = compute();
    lock.lock();
    // Nobody may overwrite an input (in == out for an in-place reduce)
    // before every rank has read them all.
    if (Status s = barrier(lock, rank, what); !s.ok())
      return s;
    lock.unlock();
    std::memcpy(out, result.data(), count * sizeof(float));
    return Status::success();
  }

  int size_;
  double timeout_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<const float *> inputs_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::string aborted_;
};

} // namespace

std::shared_ptr<Communicator> megatron::runtime::makeInProcessCommunicator(
    int size, double timeoutSeconds) {
  return std::make_shared<InProcessCommunicator>(size, timeoutSeconds);
}
