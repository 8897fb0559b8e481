//===- megatron-bench.cpp - time a compiled .mtc artifact -----------------===//
//
//   megatron-bench MODEL.mtc forward [--batch 1] [--seq 128] [--warmup 3]
//                  [--iters 20] [--threads N] [--seed S] [--vocab V]
//   megatron-bench MODEL.mtc decode [--batch 1] [--prompt 32] [--new-tokens 64]
//                  [--warmup 1] [--iters 3] [--threads N] [--seed S] [--vocab V]
//   megatron-bench bandwidth [--threads N]
//
// Prints one JSON line with the same keys as bench/torch_peer.py, so
// bench/e2e.sh can put the two side by side. Input ids are random but
// reproducible: the splitmix64 stream torch_peer.py draws too, modulo the
// vocabulary (the width of the `logits` output unless --vocab is given).
// Links only MegatronRuntime (no LLVM), so arguments are parsed by hand;
// failures are one `error: ...` line and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "bench/MemoryBandwidth.h"
#include "megatron/runtime/Session.h"
#include "tools/support/CommandLine.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace megatron::runtime;

namespace {

const char *const kUsage = R"(usage:
  megatron-bench MODEL.mtc forward [--batch 1] [--seq 128] [--warmup 3] [--iters 20]
                 [--threads N] [--seed S] [--vocab V] [--cuda-device N] [--profile 0]
  megatron-bench MODEL.mtc decode [--batch 1] [--prompt 32] [--new-tokens 64] [--warmup 1]
                 [--iters 3] [--threads N] [--seed S] [--vocab V] [--cuda-device N]
                 [--cuda-graphs 1] [--profile 0] [--all-logits 0]
  megatron-bench bandwidth [--threads N]

forward   times the `forward` entry (BERT) on random ids [batch, seq]; reports
          the median, min and max latency of the timed runs.
decode    per run: `prefill_last` (`prefill` in artifacts without it) of
          random prompts [batch, prompt], then new-tokens greedy `decode`
          steps of one token per row (argmax of the last logits); reports
          the median prefill and decode times, tokens/s of the decode
          steps (all rows), and the tokens the first timed run generated
          for row 0.
bandwidth the machine's streaming read rate on the runtime's threads (the
          best of five passes over 1 GiB), which bounds memory-bound decode.
--threads N   kernel and GEMM threads (0, the default: all cores).
--vocab V     draw ids below V instead of below the width of `logits`.
--cuda-device N   run on CUDA device N (an artifact compiled with --target
              cuda); times include copying inputs to it and outputs back
              (forward also reports its median with the outputs left on
              the device).
--all-logits 1    decode: prefill with `prefill`, which computes every
              position's logits, as artifacts before `prefill_last` did.
--cuda-graphs 0   launch each decode step's kernels one by one instead of
              replaying the step as a CUDA graph.
--profile 1   also time each step of the timed runs (on the GPU between
              events around its launches, decode steps without graphs, so
              a step whose launches take longer than its kernels shows
              their time): a table on stderr per entry, by step kind (a
              linear's with its weight's type and shape), and "profile" in
              the JSON line.
)";

[[noreturn]] void fail(const std::string &message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  std::exit(1);
}

void check(const Status &status) {
  if (status)
    fail(status.message());
}

struct Options {
  std::string artifact, mode;
  int64_t batch = 1, seq = 128, prompt = 32, newTokens = 64;
  int64_t warmup = -1, iters = -1; // -1: the mode's default
  int64_t threads = 0, vocab = 0;
  int64_t cudaDevice = -1; // the CPU
  int64_t cudaGraphs = 1;
  int64_t profile = 0;
  int64_t allLogits = 0;
  uint64_t seed = 0;
};

/// A non-negative integer flag value.
int64_t parseCount(const std::string &flag, const std::string &text) {
  int64_t value = 0;
  try {
    value = megatron::tools::parseInteger(flag, text);
  } catch (const megatron::tools::CommandLineError &e) {
    fail(e.what());
  }
  if (value < 0)
    fail(flag + " expects an integer >= 0, got '" + text + "'");
  return value;
}

Options parseArgs(int argc, char **argv) {
  Options opts;
  std::map<std::string, int64_t *> flags = {
      {"--batch", &opts.batch},     {"--seq", &opts.seq},
      {"--prompt", &opts.prompt},   {"--new-tokens", &opts.newTokens},
      {"--warmup", &opts.warmup},   {"--iters", &opts.iters},
      {"--threads", &opts.threads}, {"--vocab", &opts.vocab},
      {"--cuda-device", &opts.cudaDevice}, {"--cuda-graphs", &opts.cudaGraphs},
      {"--profile", &opts.profile}, {"--all-logits", &opts.allLogits}};
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    if (i + 1 == argc)
      fail(arg + " needs a value");
    std::string value = argv[++i];
    if (arg == "--seed") {
      opts.seed = static_cast<uint64_t>(parseCount(arg, value));
      continue;
    }
    auto it = flags.find(arg);
    if (it == flags.end())
      fail("unknown option " + arg + " (see --help)");
    *it->second = parseCount(arg, value);
  }
  if (positional.size() == 1 && positional[0] == "bandwidth") {
    opts.mode = positional[0];
    return opts;
  }
  if (positional.size() != 2)
    fail("expected MODEL.mtc and forward|decode, or bandwidth (see --help)");
  opts.artifact = positional[0];
  opts.mode = positional[1];
  if (opts.mode != "forward" && opts.mode != "decode")
    fail("unknown mode '" + opts.mode + "' (expected forward or decode)");
  bool forward = opts.mode == "forward";
  if (opts.warmup < 0)
    opts.warmup = forward ? 3 : 1;
  if (opts.iters < 0)
    opts.iters = forward ? 20 : 3;
  for (auto [name, value] :
       std::initializer_list<std::pair<const char *, int64_t>>{
           {"--iters", opts.iters},
           {"--batch", opts.batch},
           {"--seq", opts.seq},
           {"--prompt", opts.prompt}})
    if (value < 1)
      fail(std::string(name) + " must be at least 1");
  return opts;
}

/// splitmix64 modulo `vocab`: the stream bench/torch_peer.py draws too.
std::vector<int64_t> randomIds(int64_t count, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> ids(count);
  uint64_t state = seed;
  for (int64_t &id : ids) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    id = static_cast<int64_t>((z ^ (z >> 31)) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

IdTensor idTensor(int64_t batch, std::vector<int64_t> ids) {
  int64_t seq = static_cast<int64_t>(ids.size()) / batch;
  return IdTensor{{batch, seq}, std::move(ids)};
}

const FloatTensor &logitsOf(const Outputs &outputs) {
  auto it = outputs.find("last_logits"); // prefill_last's
  if (it == outputs.end())
    it = outputs.find("logits");
  if (it == outputs.end() || it->second.shape.empty())
    fail("the artifact has no `logits` output to take the vocabulary or the "
         "next token from (pass --vocab for a model without one)");
  return it->second;
}

/// Greedy choice per row: argmax of each row's last-position logits.
std::vector<int64_t> lastArgmax(const Outputs &outputs, int64_t batch) {
  const FloatTensor &logits = logitsOf(outputs);
  auto width = static_cast<size_t>(logits.shape.back());
  size_t rowValues = logits.data.size() / static_cast<size_t>(batch);
  if (width == 0 || rowValues < width || rowValues * batch != logits.data.size())
    fail("the `logits` output does not hold " + std::to_string(batch) + " rows");
  std::vector<int64_t> next;
  for (int64_t b = 0; b < batch; ++b) {
    auto end = logits.data.begin() + (b + 1) * rowValues, begin = end - width;
    next.push_back(std::max_element(begin, end) - begin);
  }
  return next;
}

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void requireEntries(Session &session, const std::vector<std::string> &names) {
  std::vector<std::string> have = session.entries();
  for (const std::string &name : names)
    if (std::find(have.begin(), have.end(), name) == have.end()) {
      std::string list;
      for (const std::string &h : have)
        list += (list.empty() ? "" : ", ") + h;
      fail("the artifact has no `" + name + "` entry (it has: " + list + ")");
    }
}

/// The `"key": value` fields of the JSON line that follow impl/mode/threads.
using Fields = std::vector<std::pair<std::string, std::string>>;

std::string number(double v) {
  std::ostringstream os;
  os.precision(6);
  os << std::fixed << v;
  return os.str();
}

/// The session's step times per call of each entry, the longest first: a
/// table on stderr, and a JSON list. Empty without profiling.
std::string profileOf(const Session &session) {
  std::vector<StepTime> times = session.profile();
  std::map<std::string, double> perCall; // ms per call of each entry
  for (const StepTime &t : times)
    perCall[t.entry] += t.seconds * 1e3 / double(std::max<int64_t>(t.calls, 1));
  std::string json;
  for (const StepTime &t : times) {
    double calls = double(std::max<int64_t>(t.calls, 1)), ms = t.seconds * 1e3 / calls;
    std::fprintf(stderr, "profile %-8s %-34s %4.0f x %10.4f ms %5.1f%%\n", t.entry.c_str(),
                 t.step.c_str(), double(t.count) / calls, ms, 100 * ms / perCall[t.entry]);
    json += std::string(json.empty() ? "" : ", ") + "{\"entry\": \"" + t.entry +
            "\", \"step\": \"" + t.step + "\", \"steps_per_call\": " +
            number(double(t.count) / calls) + ", \"ms_per_call\": " + number(ms) + "}";
  }
  return "[" + json + "]";
}

Fields benchForward(Session &session, const Options &opts) {
  requireEntries(session, {"forward"});
  Inputs in;
  Outputs out;
  int64_t vocab = opts.vocab;
  if (vocab == 0) { // the probe run doubles as the first warm-up
    in["input_ids"] =
        idTensor(opts.batch, std::vector<int64_t>(opts.batch * opts.seq, 0));
    check(session.run("forward", in, out));
    vocab = logitsOf(out).shape.back();
  }
  in["input_ids"] =
      idTensor(opts.batch, randomIds(opts.batch * opts.seq, vocab, opts.seed));
  std::vector<double> times;
  uint64_t bytesBefore = session.collectiveBytes();
  for (int64_t i = 0; i < opts.warmup + opts.iters; ++i) {
    if (i == opts.warmup)
      session.resetProfile();
    auto start = std::chrono::steady_clock::now();
    check(session.run("forward", in, out));
    if (i >= opts.warmup)
      times.push_back(msSince(start));
  }
  std::string profile = profileOf(session);
  double perCall = double(session.collectiveBytes() - bytesBefore) /
                   double(opts.warmup + opts.iters);
  Fields fields = {{"batch", std::to_string(opts.batch)},
                   {"seq", std::to_string(opts.seq)},
                   {"vocab", std::to_string(vocab)},
                   {"median_ms", number(median(times))},
                   {"min_ms", number(*std::min_element(times.begin(), times.end()))},
                   {"max_ms", number(*std::max_element(times.begin(), times.end()))},
                   {"ranks", std::to_string(session.ranks())},
                   {"collective_bytes_per_token",
                    number(perCall / double(opts.batch * opts.seq))}};
  if (opts.profile)
    fields.emplace_back("profile", profile);
  if (opts.cudaDevice >= 0) {
    // The device's work alone, the logits left there (as a PyTorch model's
    // stay on its device).
    std::vector<double> deviceTimes;
    for (int64_t i = 0; i < opts.iters; ++i) {
      auto start = std::chrono::steady_clock::now();
      check(session.run("forward", in));
      deviceTimes.push_back(msSince(start));
    }
    fields.emplace_back("median_outputs_on_device_ms", number(median(deviceTimes)));
  }
  return fields;
}

struct Generation {
  double prefillMs = 0, decodeMs = 0;
  uint64_t decodeBytes = 0; ///< into collectives, all decode steps
  std::vector<int64_t> tokens; ///< row 0's
};

/// The prefill generation runs: prefill_last where the artifact has it
/// (only the last position's logits) unless --all-logits, else prefill.
std::string prefillEntry(const Session &session, const Options &opts) {
  std::vector<std::string> have = session.entries();
  bool last = !opts.allLogits && std::find(have.begin(), have.end(), "prefill_last") != have.end();
  return last ? "prefill_last" : "prefill";
}

/// Greedy generation: prefill (which restarts the KV cache), then
/// `--new-tokens` decode steps of one token per row.
Generation generate(Session &session, const Options &opts, const IdTensor &prompt) {
  Generation g;
  int64_t batch = prompt.shape[0];
  Inputs in{{"input_ids", prompt}};
  uint64_t bytesBefore = 0;
  Outputs out;
  auto start = std::chrono::steady_clock::now();
  check(session.run(prefillEntry(session, opts), in, out));
  std::vector<int64_t> next = lastArgmax(out, batch);
  g.tokens.push_back(next[0]);
  g.prefillMs = msSince(start);
  bytesBefore = session.collectiveBytes();
  start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < opts.newTokens; ++i) {
    in["input_ids"] = IdTensor{{batch, 1}, next};
    check(session.run("decode", in, out));
    next = lastArgmax(out, batch);
    g.tokens.push_back(next[0]);
  }
  g.decodeMs = msSince(start);
  g.decodeBytes = session.collectiveBytes() - bytesBefore;
  return g;
}

Fields benchDecode(Session &session, const Options &opts) {
  requireEntries(session, {"prefill", "decode"});
  if (opts.prompt + opts.newTokens > session.maxSequence())
    fail("prompt + new tokens (" +
         std::to_string(opts.prompt + opts.newTokens) +
         ") exceed the artifact's maximum sequence " +
         std::to_string(session.maxSequence()));
  int64_t vocab = opts.vocab;
  if (vocab == 0) {
    Inputs in{{"input_ids", idTensor(opts.batch, std::vector<int64_t>(opts.batch * opts.prompt, 0))}};
    Outputs out;
    check(session.run(prefillEntry(session, opts), in, out));
    vocab = logitsOf(out).shape.back();
  }
  IdTensor prompt =
      idTensor(opts.batch, randomIds(opts.batch * opts.prompt, vocab, opts.seed));
  std::vector<Generation> runs;
  for (int64_t i = 0; i < opts.warmup + opts.iters; ++i) {
    if (i == opts.warmup)
      session.resetProfile();
    Generation g = generate(session, opts, prompt);
    if (i >= opts.warmup)
      runs.push_back(std::move(g));
  }
  std::vector<double> prefill, decode, rate;
  for (const Generation &g : runs) {
    prefill.push_back(g.prefillMs);
    decode.push_back(g.decodeMs);
    rate.push_back(opts.batch * opts.newTokens * 1e3 / g.decodeMs);
  }
  std::string tokens;
  for (int64_t t : runs.front().tokens)
    tokens += (tokens.empty() ? "" : ", ") + std::to_string(t);
  std::string profile = profileOf(session);
  Fields fields = {{"batch", std::to_string(opts.batch)},
          {"prompt", std::to_string(opts.prompt)},
          {"new_tokens", std::to_string(opts.newTokens)},
          {"vocab", std::to_string(vocab)},
          {"prefill_entry", "\"" + prefillEntry(session, opts) + "\""},
          {"prefill_ms", number(median(prefill))},
          {"decode_ms", number(median(decode))},
          {"tokens_per_s", number(median(rate))},
          {"weight_bytes", std::to_string(session.weightBytes())},
          {"ranks", std::to_string(session.ranks())},
          {"collective_bytes_per_token",
           number(double(runs.front().decodeBytes) / double(opts.batch * opts.newTokens))},
          {"tokens", "[" + tokens + "]"}};
  if (opts.profile)
    fields.emplace_back("profile", profile);
  return fields;
}

} // namespace

int main(int argc, char **argv) {
  Options opts = parseArgs(argc, argv);
  // Report what "all cores" resolved to, as torch_peer.py does.
  long long threads =
      opts.threads ? opts.threads : std::thread::hardware_concurrency();
  if (opts.mode == "bandwidth") {
    cpu::setThreads(static_cast<int>(opts.threads));
    std::printf("{\"impl\": \"megatron\", \"mode\": \"bandwidth\", \"threads\": %lld, "
                "\"read_bytes_per_s\": %.0f}\n",
                threads, megatron::bench::readBandwidth());
    return 0;
  }
  std::unique_ptr<Artifact> artifact;
  check(Artifact::open(opts.artifact, artifact));
  SessionOptions sessionOptions;
  sessionOptions.threads = static_cast<int>(opts.threads);
  if (opts.cudaDevice >= 0) {
    sessionOptions.backend = SessionOptions::Backend::Cuda;
    sessionOptions.device = static_cast<int>(opts.cudaDevice);
    sessionOptions.cudaGraphs = opts.cudaGraphs != 0;
  }
  sessionOptions.profile = opts.profile != 0;
  std::unique_ptr<Session> session;
  check(Session::create(*artifact, sessionOptions, session));

  Fields fields = opts.mode == "forward" ? benchForward(*session, opts)
                                         : benchDecode(*session, opts);
  std::printf("{\"impl\": \"megatron\", \"mode\": \"%s\", \"backend\": \"%s\", "
              "\"cuda_graphs\": %s, \"threads\": %lld, \"warmup\": %lld, \"iters\": %lld",
              opts.mode.c_str(), opts.cudaDevice >= 0 ? "cuda" : "cpu",
              opts.cudaDevice >= 0 && opts.cudaGraphs && !opts.profile ? "true" : "false", threads,
              static_cast<long long>(opts.warmup), static_cast<long long>(opts.iters));
  for (const auto &[key, value] : fields)
    std::printf(", \"%s\": %s", key.c_str(), value.c_str());
  std::printf("}\n");
  return 0;
}
