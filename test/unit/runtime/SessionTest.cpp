//===- SessionTest.cpp - the public runtime API on compiled fixtures ------===//
//
// Artifacts of the tiny fixtures are compiled at build time; these tests use
// them as an embedding program would: open, create a session, run entries.
// Numerical agreement with the reference is the e2e test's job; here the
// API's promises are checked against the runtime itself.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Session.h"

#include "gtest/gtest.h"

#include <cmath>
#include <map>

using namespace megatron::runtime;

namespace {

class SessionTest : public ::testing::Test {
protected:
  void open(const std::string &name) {
    std::string path = std::string(MEGATRON_ARTIFACTS_DIR) + "/" + name;
    Status s = Artifact::open(path, artifact);
    ASSERT_TRUE(s.ok()) << s.message();
    s = Session::create(*artifact, {}, session);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  /// Runs `entry` and expects success.
  Outputs run(const std::string &entry, const Inputs &inputs) {
    Outputs out;
    Status s = session->run(entry, inputs, out);
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }
  std::string error(const std::string &entry, const Inputs &inputs) {
    Outputs out;
    Status s = session->run(entry, inputs, out);
    EXPECT_FALSE(s.ok());
    return s.message();
  }

  std::unique_ptr<Artifact> artifact;
  std::unique_ptr<Session> session;
};

float maxDifference(const FloatTensor &a, const FloatTensor &b) {
  EXPECT_EQ(a.shape, b.shape);
  float worst = 0;
  for (size_t i = 0; i < a.data.size() && i < b.data.size(); ++i)
    worst = std::max(worst, std::fabs(a.data[i] - b.data[i]));
  return worst;
}

TEST_F(SessionTest, BertDescribesItsEntry) {
  open("bert.mtc");
  EXPECT_EQ(session->entries(), std::vector<std::string>{"forward"});
  EXPECT_EQ(session->inputNames("forward"),
            (std::vector<std::string>{"input_ids", "token_type_ids", "attention_mask"}));
  EXPECT_EQ(session->outputNames("forward"),
            (std::vector<std::string>{"prediction_logits", "seq_relationship_logits"}));
  EXPECT_EQ(session->maxBatch(), 2);
  EXPECT_EQ(session->maxSequence(), 16);
}

TEST_F(SessionTest, OmittedInputsTakeHuggingFaceDefaults) {
  open("bert.mtc");
  Inputs explicitInputs = {{"input_ids", {{1, 3}, {5, 6, 7}}},
                           {"token_type_ids", {{1, 3}, {0, 0, 0}}},
                           {"attention_mask", {{1, 3}, {1, 1, 1}}}};
  Outputs full = run("forward", explicitInputs);
  Outputs implicit = run("forward", {{"input_ids", {{1, 3}, {5, 6, 7}}}});
  EXPECT_EQ(maxDifference(full["prediction_logits"], implicit["prediction_logits"]), 0);
  EXPECT_EQ(full["prediction_logits"].shape, (std::vector<int64_t>{1, 3, 128}));
}

TEST_F(SessionTest, PaddingDoesNotChangeTheRealTokens) {
  open("bert.mtc");
  Outputs alone = run("forward", {{"input_ids", {{1, 3}, {5, 6, 7}}}});
  Outputs padded = run("forward", {{"input_ids", {{1, 5}, {5, 6, 7, 0, 0}}},
                                   {"attention_mask", {{1, 5}, {1, 1, 1, 0, 0}}}});
  const FloatTensor &a = alone["prediction_logits"], &b = padded["prediction_logits"];
  int64_t vocab = a.shape[2];
  float worst = 0;
  for (int64_t i = 0; i < 3 * vocab; ++i)
    worst = std::max(worst, std::fabs(a.data[i] - b.data[i]));
  EXPECT_LT(worst, 1e-5);
}

// Outputs passed in again keep their storage, whatever they held: each
// output is overwritten whole (longer or shorter than before), and names
// the entry does not produce are dropped.
TEST_F(SessionTest, ReusedOutputsHoldOnlyThisCallsResults) {
  open("bert.mtc");
  const Inputs longer = {{"input_ids", {{2, 5}, {5, 6, 7, 8, 9, 1, 2, 3, 4, 5}}}};
  const Inputs shorter = {{"input_ids", {{1, 3}, {5, 6, 7}}}};
  Outputs reused;
  reused["stale"] = {{1}, {42.0f}};
  reused["prediction_logits"] = {{2}, {std::nanf(""), std::nanf("")}};
  for (const Inputs *inputs : {&longer, &shorter, &longer}) {
    ASSERT_TRUE(session->run("forward", *inputs, reused).ok());
    Outputs fresh = run("forward", *inputs);
    EXPECT_EQ(reused.size(), fresh.size());
    EXPECT_EQ(reused.count("stale"), 0u);
    for (const auto &[name, tensor] : fresh) {
      EXPECT_EQ(reused[name].data.size(), tensor.data.size()) << name;
      EXPECT_EQ(maxDifference(reused[name], tensor), 0) << name;
    }
  }
}

TEST_F(SessionTest, BadInputsAreErrorsAndLeaveTheSessionUsable) {
  open("bert.mtc");
  EXPECT_NE(error("forward", {{"input_ids", {{1, 2}, {5, 128}}}}).find("outside [0, 128)"),
            std::string::npos);
  EXPECT_NE(error("forward", {{"input_ids", {{3, 2}, {1, 2, 3, 4, 5, 6}}}}).find("batch of 3"),
            std::string::npos);
  EXPECT_NE(error("forward", {{"input_ids", {{1, 17}, std::vector<int64_t>(17, 1)}}})
                .find("sequence of 17 tokens exceeds the 16"),
            std::string::npos);
  EXPECT_NE(error("forward", {{"input_ids", {{1, 2}, {1, 2}}},
                              {"attention_mask", {{1, 3}, {1, 1, 1}}}})
                .find("attention_mask' has shape [1, 3], expected [1, 2]"),
            std::string::npos);
  EXPECT_NE(error("forward", {{"input_ids", {{1, 2}, {1, 2}}}, {"labels", {{1}, {0}}}})
                .find("no input 'labels'"),
            std::string::npos);
  EXPECT_NE(error("prefill", {{"input_ids", {{1, 2}, {1, 2}}}}).find("has no entry 'prefill'"),
            std::string::npos);
  run("forward", {{"input_ids", {{1, 2}, {1, 2}}}});
}

TEST_F(SessionTest, PrefillThenDecodeEqualsOneForward) {
  open("gpt2.mtc");
  std::vector<int64_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6};
  Outputs full = run("prefill", {{"input_ids", {{1, 8}, tokens}}});
  const FloatTensor &logits = full["logits"];
  int64_t vocab = logits.shape[2];

  // A prompt that only fills the cache: its logits are not copied out.
  Status s = session->run("prefill", {{"input_ids", {{1, 5}, {tokens.begin(), tokens.begin() + 5}}}});
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(session->cachedTokens(), 5);
  for (int64_t t = 5; t < 8; ++t) {
    Outputs step = run("decode", {{"input_ids", {{1, 1}, {tokens[t]}}}});
    float worst = 0;
    for (int64_t v = 0; v < vocab; ++v)
      worst = std::max(worst, std::fabs(step["logits"].data[v] - logits.data[t * vocab + v]));
    EXPECT_LT(worst, 1e-5) << "token " << t;
  }
  EXPECT_EQ(session->cachedTokens(), 8);
}

// prefill_last: prefill's logits at each row's last position, from a cache
// that decode continues as it does after prefill.
TEST_F(SessionTest, PrefillLastReturnsTheLastPositionAndFillsTheCache) {
  open("gpt2.mtc");
  EXPECT_EQ(session->entries(), (std::vector<std::string>{"prefill", "prefill_last", "decode"}));
  EXPECT_EQ(session->outputNames("prefill_last"), std::vector<std::string>{"last_logits"});
  Inputs prompt{{"input_ids", {{2, 6}, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}}}};
  Outputs full = run("prefill", prompt);
  Outputs next = run("decode", {{"input_ids", {{2, 1}, {7, 9}}}});
  Outputs last = run("prefill_last", prompt);
  const FloatTensor &logits = full["logits"], &lastLogits = last["last_logits"];
  int64_t vocab = logits.shape[2];
  ASSERT_EQ(lastLogits.shape, (std::vector<int64_t>{2, 1, vocab}));
  EXPECT_EQ(session->cachedTokens(), 6);
  for (int64_t row = 0; row < 2; ++row)
    for (int64_t v = 0; v < vocab; ++v)
      EXPECT_NEAR(lastLogits.data[row * vocab + v], logits.data[(row * 6 + 5) * vocab + v], 1e-5)
          << "row " << row << " logit " << v;
  EXPECT_LT(maxDifference(run("decode", {{"input_ids", {{2, 1}, {7, 9}}}})["logits"],
                          next["logits"]),
            1e-5);
  EXPECT_EQ(session->cachedTokens(), 7);
}

// SessionOptions::profile: every step of every call timed, per entry and
// step label (a linear's with its weight's type and shape); nothing
// without it, nothing after resetProfile().
TEST_F(SessionTest, ProfileTimesEveryStep) {
  open("gpt2.mtc");
  run("prefill", {{"input_ids", {{1, 3}, {3, 1, 4}}}});
  EXPECT_TRUE(session->profile().empty());
  SessionOptions options;
  options.profile = true;
  ASSERT_TRUE(Session::create(*artifact, options, session).ok());
  run("prefill", {{"input_ids", {{1, 3}, {3, 1, 4}}}});
  for (int64_t token : {1, 5})
    run("decode", {{"input_ids", {{1, 1}, {token}}}});
  std::map<std::string, int64_t> steps, calls;
  std::map<std::string, double> seconds;
  bool linearLabelled = false;
  for (const StepTime &t : session->profile()) {
    steps[t.entry] += t.count;
    calls[t.entry] = t.calls;
    seconds[t.entry] += t.seconds;
    EXPECT_GE(t.seconds, 0) << t.step;
    linearLabelled |= t.step.rfind("linear F32 [", 0) == 0;
  }
  EXPECT_TRUE(linearLabelled);
  for (auto [entry, callsOf] : std::map<std::string, int64_t>{{"prefill", 1}, {"decode", 2}}) {
    std::vector<StepTraffic> entrySteps;
    ASSERT_TRUE(session->traffic(entry, 1, 1, entrySteps).ok());
    EXPECT_EQ(calls[entry], callsOf) << entry;
    EXPECT_EQ(steps[entry], callsOf * int64_t(entrySteps.size())) << entry;
    EXPECT_GT(seconds[entry], 0) << entry;
  }
  session->resetProfile();
  EXPECT_TRUE(session->profile().empty());
}

TEST_F(SessionTest, DecodeChecksItsCache) {
  open("gpt2.mtc");
  EXPECT_NE(error("decode", {{"input_ids", {{1, 1}, {1}}}}).find("run prefill first"),
            std::string::npos);
  run("prefill", {{"input_ids", {{1, 60}, std::vector<int64_t>(60, 7)}}});
  EXPECT_NE(error("decode", {{"input_ids", {{2, 1}, {1, 2}}}}).find("cache holds 1"),
            std::string::npos);
  // A failed check leaves the cache as it was: decoding still continues.
  EXPECT_NE(error("decode", {{"input_ids", {{1, 1}, {999}}}}).find("outside"),
            std::string::npos);
  EXPECT_EQ(session->cachedTokens(), 60);
  for (int i = 0; i < 4; ++i)
    run("decode", {{"input_ids", {{1, 1}, {1}}}});
  EXPECT_NE(error("decode", {{"input_ids", {{1, 1}, {1}}}})
                .find("64 cached + 1 new tokens exceed the model's context of 64"),
            std::string::npos);
}

} // namespace
