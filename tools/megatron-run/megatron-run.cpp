//===- megatron-run.cpp - run a compiled .mtc artifact ---------------------===//
//
//   megatron-run ARTIFACT forward --input-ids 101,2003,102[;...] --output-dir DIR
//   megatron-run ARTIFACT info [--json]
//
// A thin main over the runtime library (DESIGN.md section 8). It links only
// MegatronRuntime, so no LLVM: arguments are parsed by hand. Every failure is
// one `error: ...` line on stderr and exit status 1.
//
//===----------------------------------------------------------------------===//

#include "megatron/runtime/Session.h"
#include "megatron/runtime/Tasks.h"
#include "tools/support/CommandLine.h"
#ifdef MEGATRON_HAVE_MPI
#include "megatron/runtime/MpiCommunicator.h"
#endif
#ifdef MEGATRON_HAVE_NCCL
#include "megatron/runtime/NcclCommunicator.h"
#endif

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace megatron::runtime;
using namespace megatron::tools;

namespace {

const char *const kUsage = R"(usage:
  megatron-run ARTIFACT forward --input-ids IDS [--token-type-ids IDS]
               [--attention-mask IDS] --output-dir DIR
               [--decode-last N | --last-logits]
  megatron-run ARTIFACT info [--json]
  megatron-run ARTIFACT tokenize TEXT [--pair TEXT] [--json]
  megatron-run ARTIFACT detokenize IDS [--keep-special] [--json]
  megatron-run ARTIFACT fill-mask TEXT... [--top-k 5] [--json]
  megatron-run ARTIFACT generate PROMPT [--max-new-tokens 50]
               [--greedy | --temperature T --top-k K --top-p P --seed S]
               [--stop TEXT]... [--json]
  megatron-run ARTIFACT classify TEXT [TEXT_PAIR] [--json]
  megatron-run ARTIFACT token-classify TEXT... [--json]
  megatron-run ARTIFACT qa --question Q --context C [--max-answer-tokens 15] [--json]
  megatron-run ARTIFACT next-sentence A B [--json]
  megatron-run ARTIFACT embed TEXT... [--last-hidden] [--json]
  common: [--threads N] [--backend cpu|cuda[:N]] [--collectives threads|mpi|nccl]
          [--collective-timeout SECONDS]; --help

forward   runs the artifact's `forward` entry (BERT) or `prefill` (GPT-2) and
          writes every output as DIR/<name>.npy (float32, C order).
info      lists the entries with their inputs, outputs and linear layers
          (int8 weights, int8 inputs), and the largest batch and sequence
          the artifact was planned for.
tokenize  the ids the model sees, with the tokenizer embedded in the artifact
          (BERT: with [CLS]/[SEP]; GPT-2: none added).
Text tasks (the artifact's head must serve them: fill-mask needs masked-lm or
pretraining, generate causal-lm, classify sequence-classification, ...):
          human-readable output, or JSON with --json. --input-file FILE reads
          one input per line instead (pairs: "first<TAB>second"), run as
          batches padded and masked. generate streams its text as it comes
          and says on stderr why it stopped (end of text, --stop text,
          --max-new-tokens, or the context is full); it is greedy unless a
          sampling option is given.

IDS       batch items separated by ';', values by ',': "101,2003,102;101,7592,102".
          Multiple choice: choices separated by '|': "1,2|3,4;5,6|7,8".
          Every row has the same length; pad short rows and mark the padding
          with 0 in --attention-mask.
--decode-last N   GPT-2: prefill all but the last N tokens of each row, then
          decode them one at a time; the outputs hold every token, as a
          plain forward's do.
--last-logits     GPT-2: run `prefill_last`, which computes only the last
          position's logits of each row (what the next token needs; the LM
          head's work shrinks by the sequence length): DIR/last_logits.npy,
          [batch, 1, vocab].
--threads N       kernel and GEMM threads (0: all cores).
--backend         where the steps run: cpu (the default) or cuda[:N], CUDA
          device N (default 0) for an artifact compiled with --target cuda.
          A tensor-parallel artifact's ranks take devices N, N+1, ...
          (wrapping around: one GPU can run them all; so too the
          processes under mpirun), with --collectives nccl one each.
--collectives     how the ranks of a tensor-parallel artifact (--tp N) talk:
          threads (all ranks in this process; the default), mpi (one
          process per rank: mpirun -np N megatron-run ...; the default
          under mpirun), nccl (one CUDA device per rank, in this process or
          one per MPI process, the NCCL id shared over MPI).
--collective-timeout  seconds a rank waits in a collective for the others
          before it fails with an error (default 60): a rank that hangs or
          dies ends the run instead of hanging it.
)";

/// A command-line or run-time failure: becomes `error: <message>`.
struct Failure {
  std::string message;
};

[[noreturn]] void fail(std::string message) { throw Failure{std::move(message)}; }

void check(Status s) {
  if (s)
    fail(s.message());
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string joined(const std::vector<std::string> &names) {
  std::string out;
  for (const std::string &n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

/// Columns [begin, end) of a [batch, seq] tensor.
IdTensor sliceSeq(const IdTensor &t, int64_t begin, int64_t end) {
  IdTensor out{{t.shape[0], end - begin}, {}};
  for (int64_t b = 0; b < t.shape[0]; ++b)
    out.data.insert(out.data.end(), t.data.begin() + b * t.shape[1] + begin,
                    t.data.begin() + b * t.shape[1] + end);
  return out;
}

/// An output whose data does not fill its shape would be read out of bounds.
void checkSize(const std::string &name, const FloatTensor &t) {
  int64_t n = 1;
  for (int64_t d : t.shape)
    n *= d;
  if ((int64_t)t.data.size() != n)
    fail("output " + name + " has " + std::to_string(t.data.size()) +
         " values for shape " + shapeString(t.shape));
}

/// Concatenates [batch, s_i, ...] tensors along axis 1.
FloatTensor concatSeq(const std::string &name,
                      const std::vector<FloatTensor> &parts) {
  for (const FloatTensor &p : parts)
    checkSize(name, p);
  FloatTensor out = parts.front();
  if (out.shape.size() < 2)
    fail("output " + name + " of shape " + shapeString(out.shape) +
         " has no sequence axis to append decoded tokens to");
  int64_t batch = out.shape[0], inner = 1;
  for (size_t d = 2; d < out.shape.size(); ++d)
    inner *= out.shape[d];
  out.shape[1] = 0;
  for (const FloatTensor &p : parts) {
    std::vector<int64_t> expect = out.shape;
    expect[1] = p.shape.size() > 1 ? p.shape[1] : -1;
    if (p.shape != expect)
      fail("output " + name + ": decode gave shape " + shapeString(p.shape) +
           ", which does not continue prefill's " +
           shapeString(parts.front().shape));
    out.shape[1] += p.shape[1];
  }
  out.data.assign(batch * out.shape[1] * inner, 0.0f);
  int64_t offset = 0; // sequence positions written so far
  for (const FloatTensor &p : parts) {
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(p.data.begin() + b * p.shape[1] * inner, p.shape[1] * inner,
                  out.data.begin() + (b * out.shape[1] + offset) * inner);
    offset += p.shape[1];
  }
  return out;
}

/// NumPy .npy format 1.0: magic, version, header length (u16 LE), a Python
/// dict literal padded with spaces to a 64-byte boundary, then the data.
void writeNpy(const std::filesystem::path &path, const FloatTensor &t) {
  std::string dims;
  for (int64_t d : t.shape)
    dims += std::to_string(d) + (t.shape.size() == 1 ? "," : ", ");
  if (t.shape.size() > 1)
    dims.resize(dims.size() - 2);
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY\x01";
  bytes += '\0';
  bytes += char(header.size() & 0xff);
  bytes += char(header.size() >> 8);
  bytes += header;
  for (float f : t.data) { // little-endian whatever the host
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i)
      bytes += char((u >> (8 * i)) & 0xff);
  }
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), (std::streamsize)bytes.size());
  out.close();
  if (!out)
    fail("cannot write " + path.string() + ": " + std::strerror(errno));
}

/// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid.
size_t utf8Length(const std::string &s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size())
    return 0;
  uint32_t cp = n == 1 ? c : c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

/// A JSON string; bytes that are not UTF-8 (a generated token may end
/// inside a character) become U+FFFD, so the output stays valid JSON.
std::string jsonString(const std::string &s) {
  std::string valid;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8Length(s, i);
    valid.append(n ? s.substr(i, n) : "\xEF\xBF\xBD");
    i += n ? n : 1;
  }
  std::string out = "\"";
  for (unsigned char c : valid) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string jsonList(const std::vector<std::string> &names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i)
    out += (i ? ", " : "") + jsonString(names[i]);
  return out + "]";
}

struct Options {
  std::string artifact, command;
  std::vector<std::string> args;             // the command's own arguments
  std::map<std::string, std::string> values; // --flag VALUE
  std::vector<std::string> stops;            // --stop, repeatable
  std::set<std::string> switches;            // --json, --greedy, ...
  bool json = false;
};

const std::set<std::string> kTextCommands = {
    "tokenize", "detokenize", "fill-mask", "generate", "classify",
    "token-classify", "qa", "next-sentence", "embed"};

// Flags that take a value, and the commands that accept each.
const std::map<std::string, std::set<std::string>> kValueFlags = {
    {"--input-ids", {"forward"}},      {"--token-type-ids", {"forward"}},
    {"--attention-mask", {"forward"}}, {"--output-dir", {"forward"}},
    {"--decode-last", {"forward"}},    {"--pair", {"tokenize"}},
    {"--top-k", {"fill-mask", "generate"}},
    {"--max-new-tokens", {"generate"}}, {"--temperature", {"generate"}},
    {"--top-p", {"generate"}},         {"--seed", {"generate"}},
    {"--stop", {"generate"}},          {"--question", {"qa"}},
    {"--context", {"qa"}},             {"--max-answer-tokens", {"qa"}},
    {"--batch", {"info"}},             {"--seq", {"info"}},
    {"--dump-ptx", {"info"}},
    {"--input-file", {"fill-mask", "generate", "classify", "token-classify",
                      "qa", "next-sentence", "embed"}},
};
// Flags without a value.
const std::map<std::string, std::set<std::string>> kSwitches = {
    {"--steps", {"info"}},
    {"--last-logits", {"forward"}},
    {"--greedy", {"generate"}},
    {"--last-hidden", {"embed"}},
    {"--keep-special", {"detokenize"}},
};

Options parseArgs(int argc, char **argv) {
  Options opts;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg, value;
    size_t eq = arg.find('=');
    bool inlineValue = eq != std::string::npos;
    if (inlineValue) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name == "--json" && !inlineValue) {
      opts.json = true;
      continue;
    }
    if (kSwitches.count(name) && !inlineValue) {
      opts.switches.insert(name);
      continue;
    }
    bool common = name == "--threads" || name == "--backend" || name == "--collectives" ||
                  name == "--collective-timeout";
    if (!kValueFlags.count(name) && !common)
      fail("unknown option '" + name + "' (see --help)");
    if (!inlineValue) {
      if (i + 1 >= argc)
        fail(name + " needs a value");
      value = argv[++i];
    }
    if (name == "--stop")
      opts.stops.push_back(value);
    else if (!opts.values.emplace(name, value).second)
      fail(name + " given twice");
  }
  if (positional.size() < 2)
    fail("expected ARTIFACT COMMAND (see --help)");
  opts.artifact = positional[0];
  opts.command = positional[1];
  opts.args.assign(positional.begin() + 2, positional.end());
  bool text = kTextCommands.count(opts.command) > 0;
  if (opts.command != "forward" && opts.command != "info" && !text)
    fail("unknown command '" + opts.command + "' (see --help)");
  if (!text && !opts.args.empty())
    fail("unexpected argument '" + opts.args.front() + "'");
  auto applies = [&](const std::map<std::string, std::set<std::string>> &table,
                     const std::string &name) {
    auto it = table.find(name);
    return it == table.end() || it->second.count(opts.command) > 0;
  };
  for (const auto &[name, value] : opts.values)
    if (!applies(kValueFlags, name))
      fail(name + " does not apply to '" + opts.command + "'");
  if (!opts.stops.empty() && !applies(kValueFlags, "--stop"))
    fail("--stop does not apply to '" + opts.command + "'");
  for (const std::string &name : opts.switches)
    if (!applies(kSwitches, name))
      fail(name + " does not apply to '" + opts.command + "'");
  if (opts.json && opts.command == "forward")
    fail("--json does not apply to 'forward'");
  return opts;
}

/// Set when megatron-run is one process of an MPI job: it runs one rank,
/// and only rank 0 prints or writes results.
struct MpiJob {
  std::shared_ptr<Communicator> communicator;
  int rank = 0, localRank = 0, localRanks = 1;
} gMpi;

/// --collectives: how tensor-parallel ranks talk. threads (in-process, the
/// default), mpi (one process per rank, the default under mpirun), nccl
/// (CUDA devices: one per rank, in this process or one per MPI process).
std::string collectivesOf(const Options &opts) {
  auto it = opts.values.find("--collectives");
  std::string kind = it != opts.values.end() ? it->second : "";
  bool underMpi = false;
#ifdef MEGATRON_HAVE_MPI
  underMpi = mpi::launchedByMpi();
#endif
  if (kind.empty())
    return underMpi ? "mpi" : "threads";
  if (kind != "threads" && kind != "mpi" && kind != "nccl")
    fail("unknown --collectives '" + kind + "' (expected threads, mpi or nccl)");
  if (kind == "mpi" && !underMpi)
    fail("--collectives mpi needs one process per rank: run it with mpirun -np N"
#ifndef MEGATRON_HAVE_MPI
         " (and a megatron-run built with MPI)"
#endif
    );
  if (kind == "threads" && underMpi)
    fail("--collectives threads runs every rank in one process; under mpirun use mpi or nccl");
#ifndef MEGATRON_HAVE_NCCL
  if (kind == "nccl")
    fail("this megatron-run was built without NCCL (it needs the CUDA toolkit with NCCL)");
#endif
  return kind;
}

double doubleFlag(const Options &opts, const std::string &flag, double fallback) {
  auto it = opts.values.find(flag);
  if (it == opts.values.end())
    return fallback;
  char *end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0' || !std::isfinite(v))
    fail(flag + ": '" + it->second + "' is not a number");
  return v;
}

/// --collective-timeout: how long a rank waits in a collective for the
/// others before it fails (a hung or dead rank must not hang the rest).
double collectiveTimeout(const Options &opts) {
  double seconds = doubleFlag(opts, "--collective-timeout",
                              SessionOptions().collectiveTimeoutSeconds);
  if (!(seconds > 0))
    fail("--collective-timeout must be positive, got " +
         opts.values.at("--collective-timeout"));
  return seconds;
}

/// Under mpirun: joins the job, with MPI or NCCL collectives.
void joinMpiJob(int &argc, char **&argv, const Options &opts) {
#ifdef MEGATRON_HAVE_MPI
  if (!mpi::launchedByMpi())
    return;
  check(mpi::join(argc, argv, collectiveTimeout(opts), gMpi.communicator, gMpi.rank,
                  gMpi.localRank, gMpi.localRanks));
  if (gMpi.rank != 0) // rank 0 prints the results
    std::cout.setstate(std::ios::failbit);
#ifdef MEGATRON_HAVE_NCCL
  if (collectivesOf(opts) == "nccl") {
    // NCCL's unique id travels over MPI; each process takes the device of
    // its index on the host.
    nccl::UniqueId id{};
    if (gMpi.rank == 0)
      check(nccl::uniqueId(id));
    check(mpi::broadcast(id.data(), id.size(), 0));
    std::shared_ptr<Communicator> comm;
    check(nccl::joinRank(gMpi.communicator->size(), gMpi.rank, gMpi.localRank, id, comm));
    gMpi.communicator = comm;
  }
#endif
#endif
}

SessionOptions sessionOptions(const Options &opts) {
  SessionOptions sessionOptions;
  sessionOptions.collectiveTimeoutSeconds = collectiveTimeout(opts);
  std::string collectives = collectivesOf(opts);
#ifdef MEGATRON_HAVE_NCCL
  if (collectives == "nccl" && !gMpi.communicator) {
    // Every rank of the artifact in this process, one device each.
    std::unique_ptr<Artifact> artifact;
    check(Artifact::open(opts.artifact, artifact));
    check(nccl::joinLocal(artifact->ranks(), sessionOptions.communicator));
  }
#endif
  if (gMpi.communicator) {
    sessionOptions.communicator = gMpi.communicator;
    sessionOptions.rank = gMpi.rank;
    sessionOptions.localRank = gMpi.localRank; // picks its GPU
    // Processes on one host share its cores.
    sessionOptions.threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / gMpi.localRanks);
  }
  auto threads = opts.values.find("--threads");
  if (threads != opts.values.end()) {
    int64_t n = parseInteger("--threads", threads->second);
    if (n < 0 || n > 4096)
      fail("--threads must lie in [0, 4096], got " + std::to_string(n));
    sessionOptions.threads = (int)n;
  }
  auto backend = opts.values.find("--backend");
  if (backend != opts.values.end() && backend->second != "cpu") {
    // cuda or cuda:N (device N).
    const std::string &b = backend->second;
    if (b.rfind("cuda", 0) != 0 || (b.size() > 4 && b[4] != ':'))
      fail("--backend takes cpu, cuda or cuda:N, got '" + b + "'");
    sessionOptions.backend = SessionOptions::Backend::Cuda;
    if (b.size() > 4) {
      int64_t device = parseInteger("--backend cuda:N", b.substr(5));
      if (device < 0 || device > 1024)
        fail("--backend cuda:N needs a device number, got '" + b.substr(5) + "'");
      sessionOptions.device = static_cast<int>(device);
    }
  }
  return sessionOptions;
}

std::unique_ptr<Session> openSession(const Options &opts,
                                     std::unique_ptr<Artifact> &artifact) {
  check(Artifact::open(opts.artifact, artifact));
  std::unique_ptr<Session> session;
  check(Session::create(*artifact, sessionOptions(opts), session));
  return session;
}

bool has(const std::vector<std::string> &names, const std::string &name) {
  for (const std::string &n : names)
    if (n == name)
      return true;
  return false;
}

int runSteps(const Options &opts, Session &session);

/// info --dump-ptx DIR: each PTX module the artifact carries as
/// DIR/<arch>.ptx (to assemble with ptxas, or load by hand).
int dumpPtx(const Options &opts, const Artifact &artifact) {
  std::filesystem::path dir = opts.values.at("--dump-ptx");
  std::vector<KernelModuleInfo> modules = artifact.kernelModules();
  if (modules.empty())
    fail(opts.artifact + " carries no GPU code (compile it with --target cuda)");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    fail("cannot create " + dir.string() + ": " + ec.message());
  for (const KernelModuleInfo &m : modules) {
    if (m.arch.empty() || m.arch.find('/') != std::string::npos || m.arch[0] == '.')
      fail("the artifact names an architecture '" + m.arch + "', not a file name");
    std::filesystem::path path = dir / (m.arch + ".ptx");
    std::ofstream out(path, std::ios::binary);
    out.write(m.ptx.data(), static_cast<std::streamsize>(m.ptx.size()));
    out.close();
    if (!out)
      fail("cannot write " + path.string());
    std::cout << "wrote " << path.string() << " (" << m.kernels.size() << " kernels)\n";
  }
  return 0;
}

int runInfo(const Options &opts, Session &session, const Artifact &artifact) {
  if (opts.switches.count("--steps"))
    return runSteps(opts, session);
  if (opts.values.count("--dump-ptx"))
    return dumpPtx(opts, artifact);
  std::vector<std::string> entries = session.entries();
  std::map<std::string, uint64_t> weightBytes = artifact.weightBytes();
  uint64_t totalWeightBytes = 0;
  for (const auto &[dtype, bytes] : weightBytes)
    totalWeightBytes += bytes;
  std::ostringstream os;
  if (opts.json) {
    os << "{\"artifact\": " << jsonString(opts.artifact)
       << ", \"max_batch\": " << session.maxBatch()
       << ", \"max_sequence\": " << session.maxSequence()
       << ", \"tensor_parallel\": " << session.ranks()
       << ", \"weight_bytes\": " << totalWeightBytes << ", \"weight_bytes_by_dtype\": {";
    for (auto it = weightBytes.begin(); it != weightBytes.end(); ++it)
      os << (it == weightBytes.begin() ? "" : ", ") << jsonString(it->first) << ": "
         << it->second;
    os << "}, \"entries\": [";
    for (size_t i = 0; i < entries.size(); ++i) {
      Session::LinearCounts linears = session.linearCounts(entries[i]);
      os << (i ? ", " : "") << "{\"name\": " << jsonString(entries[i])
         << ", \"inputs\": " << jsonList(session.inputNames(entries[i]))
         << ", \"outputs\": " << jsonList(session.outputNames(entries[i]))
         << ", \"linears\": " << linears.linears
         << ", \"int8_weight_linears\": " << linears.int8Weights
         << ", \"int8_input_linears\": " << linears.int8Inputs << "}";
    }
    os << "]}\n";
  } else {
    os << "artifact: " << opts.artifact << "\nmax batch: " << session.maxBatch()
       << "\nmax sequence: " << session.maxSequence()
       << "\ntensor-parallel ranks: " << session.ranks() << "\nweights: "
       << totalWeightBytes << " bytes (";
    for (auto it = weightBytes.begin(); it != weightBytes.end(); ++it)
      os << (it == weightBytes.begin() ? "" : ", ") << it->first << " " << it->second;
    os << ")\n";
    for (const KernelModuleInfo &m : artifact.kernelModules())
      os << "GPU code: " << m.arch << " PTX, " << m.ptx.size() << " bytes, "
         << m.kernels.size() << " kernels\n";
    for (const std::string &e : entries) {
      Session::LinearCounts linears = session.linearCounts(e);
      os << "entry " << e << "\n  inputs:  " << joined(session.inputNames(e))
         << "\n  outputs: " << joined(session.outputNames(e)) << "\n  linears: " << linears.linears;
      if (linears.int8Weights)
        os << " (" << linears.int8Weights << " with int8 weights, " << linears.int8Inputs
           << " of them with int8 inputs)";
      os << "\n";
    }
  }
  std::cout << os.str();
  return 0;
}

int runForward(const Options &opts, Session &session) {
  const std::map<std::string, std::string> &v = opts.values;
  if (!v.count("--input-ids"))
    fail("forward needs --input-ids");
  if (!v.count("--output-dir"))
    fail("forward needs --output-dir");

  // Command-line flag -> the runtime's input name.
  const std::pair<const char *, const char *> kInputs[] = {
      {"--input-ids", "input_ids"},
      {"--token-type-ids", "token_type_ids"},
      {"--attention-mask", "attention_mask"}};
  Inputs inputs;
  for (const auto &[flag, name] : kInputs) {
    auto it = v.find(flag);
    if (it == v.end())
      continue;
    IdTensor t = parseIdBatch(flag, it->second);
    if (!inputs.empty() && t.shape != inputs["input_ids"].shape)
      fail(std::string(flag) + " has shape " + shapeString(t.shape) +
           " but --input-ids has " + shapeString(inputs["input_ids"].shape));
    inputs[name] = std::move(t);
  }

  std::vector<std::string> entries = session.entries();
  std::string entry = has(entries, "forward")   ? "forward"
                      : has(entries, "prefill") ? "prefill"
                                                : "";
  if (entry.empty())
    fail("the artifact has neither a forward nor a prefill entry (it has: " +
         joined(entries) + ")");
  if (opts.switches.count("--last-logits")) {
    if (!has(entries, "prefill_last"))
      fail("--last-logits needs a GPT-2 artifact with a prefill_last entry (one compiled "
           "since it came); this one has: " + joined(entries));
    if (v.count("--decode-last"))
      fail("--last-logits and --decode-last do not combine: the first returns one position, "
           "the second every one");
    entry = "prefill_last";
  }
  std::vector<std::string> accepted = session.inputNames(entry);
  for (const auto &[name, tensor] : inputs)
    if (!has(accepted, name))
      fail("the artifact's " + entry + " entry takes no " + name +
           " (its inputs: " + joined(accepted) + ")");

  int64_t decodeLast = 0;
  if (v.count("--decode-last")) {
    decodeLast = parseInteger("--decode-last", v.at("--decode-last"));
    if (entry != "prefill" || !has(entries, "decode"))
      fail("--decode-last needs a GPT-2 artifact with prefill and decode "
           "entries; this one has: " + joined(entries));
    const IdTensor &ids = inputs["input_ids"];
    if (ids.shape.size() != 2)
      fail("--decode-last needs [batch, seq] inputs, got " + shapeString(ids.shape));
    if (decodeLast < 1)
      fail("--decode-last must be at least 1, got " + std::to_string(decodeLast));
    if (decodeLast >= ids.shape[1])
      fail("--decode-last " + std::to_string(decodeLast) +
           " leaves no token to prefill: the rows have " +
           std::to_string(ids.shape[1]) + " tokens");
  }

  Outputs outputs;
  if (decodeLast == 0) {
    check(session.run(entry, inputs, outputs));
  } else {
    // Prefill the prefix, then one decode step per remaining token; the
    // attention mask of a step covers every token so far.
    int64_t seq = inputs["input_ids"].shape[1], prefix = seq - decodeLast;
    Inputs step;
    for (const auto &[name, t] : inputs)
      step[name] = sliceSeq(t, 0, prefix);
    check(session.run("prefill", step, outputs));
    std::map<std::string, std::vector<FloatTensor>> parts;
    for (auto &[name, t] : outputs)
      parts[name].push_back(std::move(t));
    for (int64_t pos = prefix; pos < seq; ++pos) {
      for (const auto &[name, t] : inputs)
        step[name] = sliceSeq(t, name == "attention_mask" ? 0 : pos, pos + 1);
      Outputs decoded;
      check(session.run("decode", step, decoded));
      for (auto &[name, list] : parts) {
        auto it = decoded.find(name);
        if (it == decoded.end())
          fail("decode produced no " + name + " output (prefill did)");
        list.push_back(std::move(it->second));
      }
    }
    outputs.clear();
    for (const auto &[name, list] : parts)
      outputs[name] = concatSeq(name, list);
  }

  if (gMpi.rank != 0)
    return 0; // rank 0 writes the (replicated) outputs
  std::filesystem::path dir = v.at("--output-dir");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    fail("cannot create " + dir.string() + ": " + ec.message());
  for (const auto &[name, tensor] : outputs) {
    // Names come from the artifact: keep them inside DIR.
    if (name.empty() || name.find('/') != std::string::npos || name == "." ||
        name == "..")
      fail("the artifact names an output '" + name + "', not a file name");
    checkSize(name, tensor);
    writeNpy(dir / (name + ".npy"), tensor);
    std::cout << "wrote " << (dir / (name + ".npy")).string() << " "
              << shapeString(tensor.shape) << "\n";
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// Text commands
//===----------------------------------------------------------------------===//

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string idList(const std::vector<int64_t> &ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i)
    out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

/// The inputs of a text command: its TEXT arguments, or the lines of
/// --input-file (blank lines skipped; a pair is "first<TAB>second").
std::vector<std::pair<std::string, std::string>>
textInputs(const Options &opts, size_t perInput, const std::string &what) {
  std::vector<std::pair<std::string, std::string>> inputs;
  auto file = opts.values.find("--input-file");
  if (file != opts.values.end()) {
    if (!opts.args.empty())
      fail("give " + what + " as arguments or with --input-file, not both");
    std::ifstream in(file->second, std::ios::binary);
    if (!in)
      fail("cannot open --input-file " + file->second + ": " + std::strerror(errno));
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (trim(line).empty())
        continue;
      size_t tab = line.find('\t');
      if (perInput == 2 && tab == std::string::npos)
        fail(file->second + ":" + std::to_string(n) +
             ": expected two texts separated by a tab");
      if (perInput == 1 || tab == std::string::npos)
        inputs.emplace_back(line, "");
      else
        inputs.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    }
    if (inputs.empty())
      fail("--input-file " + file->second + " has no input");
    return inputs;
  }
  if (opts.args.empty())
    fail(opts.command + " needs " + what + " (see --help)");
  if (perInput == 2) {
    if (opts.args.size() != 2)
      fail(opts.command + " takes two texts, got " + std::to_string(opts.args.size()));
    inputs.emplace_back(opts.args[0], opts.args[1]);
  } else {
    for (const std::string &a : opts.args)
      inputs.emplace_back(a, "");
  }
  return inputs;
}

int64_t intFlag(const Options &opts, const std::string &flag, int64_t fallback) {
  auto it = opts.values.find(flag);
  return it == opts.values.end() ? fallback : parseInteger(flag, it->second);
}

/// info --steps: each entry's steps and activation traffic at one batch and
/// sequence, in all and per transformer layer: the span from one layer's
/// attention to the next (one attention, or one softmax unfused, each).
int runSteps(const Options &opts, Session &session) {
  int64_t batch = intFlag(opts, "--batch", 1);
  int64_t seq = intFlag(opts, "--seq", std::min<int64_t>(128, session.maxSequence()));
  std::ostringstream os;
  os << (opts.json ? "[" : "");
  bool first = true;
  for (const std::string &entry : session.entries()) {
    if (entry == "decode")
      continue; // the same steps as prefill
    std::vector<StepTraffic> steps;
    check(session.traffic(entry, batch, seq, steps));
    std::map<std::string, int> kinds;
    uint64_t read = 0, written = 0, layerBytes = 0;
    std::vector<size_t> starts; // each layer's attention (or softmax)
    for (size_t i = 0; i < steps.size(); ++i) {
      const StepTraffic &t = steps[i];
      ++kinds[t.kind];
      read += t.bytesRead;
      written += t.bytesWritten;
      if (t.kind == "attention" || t.kind == "softmax")
        starts.push_back(i);
    }
    int layers = static_cast<int>(starts.size());
    double perLayer = 0, perLayerBytes = 0;
    if (layers >= 2) {
      for (size_t i = starts.front(); i < starts.back(); ++i)
        layerBytes += steps[i].bytesRead + steps[i].bytesWritten;
      perLayer = double(starts.back() - starts.front()) / (layers - 1);
      perLayerBytes = double(layerBytes) / (layers - 1);
    }
    auto mib = [](double b) { return b / (1024.0 * 1024.0); };
    if (opts.json) {
      os << (first ? "" : ", ") << "{\"entry\": " << jsonString(entry) << ", \"batch\": " << batch
         << ", \"sequence\": " << seq << ", \"steps\": " << steps.size()
         << ", \"layers\": " << layers << ", \"steps_per_layer\": " << number(perLayer)
         << ", \"bytes_read\": " << read << ", \"bytes_written\": " << written
         << ", \"bytes_per_layer\": " << number(perLayerBytes)
         << ", \"kinds\": {";
      bool k0 = true;
      for (const auto &[kind, count] : kinds) {
        os << (k0 ? "" : ", ") << jsonString(kind) << ": " << count;
        k0 = false;
      }
      os << "}}";
    } else {
      char line[256];
      std::snprintf(line, sizeof line,
                    "entry %s, batch %lld x sequence %lld: %zu steps, %d layers, %.2f steps "
                    "per layer\n  activation traffic: %.1f MiB read + %.1f MiB written "
                    "(%.2f MiB per layer)\n  steps:",
                    entry.c_str(), (long long)batch, (long long)seq, steps.size(), layers,
                    perLayer, mib(read), mib(written), mib(perLayerBytes));
      os << line;
      for (const auto &[kind, count] : kinds)
        os << " " << kind << " " << count;
      os << "\n";
    }
    first = false;
  }
  os << (opts.json ? "]\n" : "");
  std::cout << os.str();
  return 0;
}

int runTokenize(const Options &opts, const Tokenizer &tok) {
  if (opts.args.size() != 1)
    fail("tokenize takes one TEXT (and --pair TEXT for a second one)");
  auto pair = opts.values.find("--pair");
  Encoding e = pair == opts.values.end() ? tok.encode(opts.args[0])
                                         : tok.encodePair(opts.args[0], pair->second);
  std::vector<std::string> tokens;
  for (int64_t id : e.ids)
    tokens.push_back(tok.token(id));
  if (opts.json) {
    std::cout << "{\"ids\": " << idList(e.ids) << ", \"tokens\": " << jsonList(tokens)
              << ", \"token_type_ids\": " << idList(e.typeIds) << "}\n";
    return 0;
  }
  for (size_t i = 0; i < e.ids.size(); ++i)
    std::cout << e.ids[i] << "\t" << tokens[i]
              << (pair != opts.values.end() ? "\t" + std::to_string(e.typeIds[i]) : "")
              << "\n";
  return 0;
}

int runDetokenize(const Options &opts, const Tokenizer &tok) {
  if (opts.args.size() != 1)
    fail("detokenize takes one list of ids, e.g. 101,7592,102");
  IdTensor ids = parseIdBatch("ids", opts.args[0]);
  if (ids.shape.size() != 2 || ids.shape[0] != 1)
    fail("detokenize takes one list of ids, e.g. 101,7592,102");
  std::string text;
  check(tok.decode(ids.data, !opts.switches.count("--keep-special"), text));
  std::cout << (opts.json ? "{\"text\": " + jsonString(text) + "}" : text) << "\n";
  return 0;
}

int runFillMask(const Options &opts, TextModel &model) {
  std::vector<std::string> texts;
  for (auto &[text, unused] : textInputs(opts, 1, "TEXT with [MASK]"))
    texts.push_back(text);
  std::vector<FillMaskResult> results;
  check(model.fillMask(texts, intFlag(opts, "--top-k", 5), results));
  std::ostringstream os;
  if (opts.json)
    os << "[";
  for (size_t i = 0; i < results.size(); ++i) {
    if (opts.json) {
      os << (i ? ", " : "") << "{\"text\": " << jsonString(texts[i]) << ", \"masks\": [";
      for (size_t m = 0; m < results[i].masks.size(); ++m) {
        os << (m ? ", " : "") << "[";
        for (size_t k = 0; k < results[i].masks[m].size(); ++k) {
          const Candidate &c = results[i].masks[m][k];
          os << (k ? ", " : "") << "{\"score\": " << number(c.score)
             << ", \"token\": " << c.id << ", \"token_str\": " << jsonString(c.token)
             << ", \"sequence\": " << jsonString(c.sequence) << "}";
        }
        os << "]";
      }
      os << "]}";
      continue;
    }
    if (results.size() > 1)
      os << (i ? "\n" : "") << texts[i] << "\n";
    for (size_t m = 0; m < results[i].masks.size(); ++m) {
      if (results[i].masks.size() > 1)
        os << "mask " << m + 1 << ":\n";
      for (const Candidate &c : results[i].masks[m]) {
        char score[16];
        std::snprintf(score, sizeof score, "%.4f", c.score);
        os << score << "  " << c.token << "  " << c.sequence << "\n";
      }
    }
  }
  if (opts.json)
    os << "]\n";
  std::cout << os.str();
  return 0;
}

int runGenerate(const Options &opts, TextModel &model) {
  GenerationOptions g;
  g.maxNewTokens = intFlag(opts, "--max-new-tokens", 50);
  bool sampling = opts.values.count("--temperature") || opts.values.count("--top-k") ||
                  opts.values.count("--top-p") || opts.values.count("--seed");
  if (sampling && opts.switches.count("--greedy"))
    fail("--greedy excludes --temperature, --top-k, --top-p and --seed");
  g.sample = sampling;
  g.temperature = doubleFlag(opts, "--temperature", 1.0);
  g.topK = intFlag(opts, "--top-k", 0);
  g.topP = doubleFlag(opts, "--top-p", 1.0);
  int64_t seed = intFlag(opts, "--seed", 0);
  if (seed < 0)
    fail("--seed must not be negative");
  g.seed = static_cast<uint64_t>(seed);
  g.stop = opts.stops;
  auto prompts = textInputs(opts, 1, "a PROMPT");
  if (opts.json)
    std::cout << "[";
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string &prompt = prompts[i].first;
    GenerationResult r;
    if (opts.json) {
      check(model.generate(prompt, g, nullptr, r));
      std::cout << (i ? ", " : "") << "{\"prompt\": " << jsonString(prompt)
                << ", \"generated_text\": " << jsonString(r.text)
                << ", \"ids\": " << idList(r.ids) << ", \"prompt_tokens\": " << r.promptTokens
                << ", \"stop_reason\": " << jsonString(r.stopReason) << "}";
      continue;
    }
    std::cout << prompt << std::flush;
    check(model.generate(prompt, g, [](const std::string &piece) {
      std::cout << piece << std::flush;
    }, r));
    std::cout << "\n";
    std::string why = r.stopReason == "eos" ? "end of text"
                      : r.stopReason == "stop" ? "stop text"
                      : r.stopReason == "context"
                          ? "the context is full (" +
                                std::to_string(r.promptTokens + r.ids.size()) + " tokens)"
                          : "--max-new-tokens";
    std::cerr << "[" << r.ids.size() << " new tokens; stopped: " << why << "]\n";
  }
  if (opts.json)
    std::cout << "]\n";
  return 0;
}

void printClassifications(const Options &opts,
                          const std::vector<std::pair<std::string, std::string>> &inputs,
                          const std::vector<Classification> &results) {
  std::ostringstream os;
  if (opts.json)
    os << "[";
  for (size_t i = 0; i < results.size(); ++i) {
    const Classification &c = results[i];
    if (opts.json) {
      os << (i ? ", " : "") << "{\"text\": " << jsonString(inputs[i].first);
      if (!inputs[i].second.empty())
        os << ", \"text_pair\": " << jsonString(inputs[i].second);
      os << ", \"label\": " << jsonString(c.best.label) << ", \"score\": " << number(c.best.score)
         << ", \"scores\": {";
      for (size_t k = 0; k < c.scores.size(); ++k)
        os << (k ? ", " : "") << jsonString(c.scores[k].label) << ": " << number(c.scores[k].score);
      os << "}}";
      continue;
    }
    char score[16];
    std::snprintf(score, sizeof score, "%.4f", c.best.score);
    os << c.best.label << "\t" << score << "\t" << inputs[i].first
       << (inputs[i].second.empty() ? "" : " | " + inputs[i].second) << "\n";
  }
  if (opts.json)
    os << "]\n";
  std::cout << os.str();
}

int runClassify(const Options &opts, TextModel &model) {
  std::vector<std::pair<std::string, std::string>> inputs;
  if (opts.values.count("--input-file")) {
    inputs = textInputs(opts, 0, "TEXT");
  } else {
    if (opts.args.empty() || opts.args.size() > 2)
      fail("classify takes TEXT [TEXT_PAIR]");
    inputs.emplace_back(opts.args[0], opts.args.size() == 2 ? opts.args[1] : "");
  }
  std::vector<Classification> results;
  check(model.classify(inputs, results));
  printClassifications(opts, inputs, results);
  return 0;
}

int runNextSentence(const Options &opts, TextModel &model) {
  auto inputs = textInputs(opts, 2, "two sentences A B");
  std::vector<Classification> results;
  check(model.nextSentence(inputs, results));
  printClassifications(opts, inputs, results);
  return 0;
}

int runTokenClassify(const Options &opts, TextModel &model) {
  std::vector<std::string> texts;
  for (auto &[text, unused] : textInputs(opts, 1, "TEXT"))
    texts.push_back(text);
  std::vector<std::vector<TokenLabel>> results;
  check(model.tokenClassify(texts, results));
  std::ostringstream os;
  if (opts.json)
    os << "[";
  for (size_t i = 0; i < results.size(); ++i) {
    if (opts.json) {
      os << (i ? ", " : "") << "[";
      for (size_t k = 0; k < results[i].size(); ++k) {
        const TokenLabel &t = results[i][k];
        os << (k ? ", " : "") << "{\"entity\": " << jsonString(t.label.label)
           << ", \"score\": " << number(t.label.score) << ", \"index\": " << t.index
           << ", \"word\": " << jsonString(t.token) << ", \"text\": " << jsonString(t.word)
           << ", \"start\": " << t.start << ", \"end\": " << t.end << "}";
      }
      os << "]";
      continue;
    }
    if (results.size() > 1)
      os << (i ? "\n" : "") << texts[i] << "\n";
    for (const TokenLabel &t : results[i]) {
      char score[16];
      std::snprintf(score, sizeof score, "%.4f", t.label.score);
      os << t.word << "\t" << t.token << "\t" << t.label.label << "\t" << score << "\n";
    }
  }
  if (opts.json)
    os << "]\n";
  std::cout << os.str();
  return 0;
}

int runQa(const Options &opts, TextModel &model) {
  std::vector<std::pair<std::string, std::string>> inputs;
  if (opts.values.count("--input-file")) {
    if (opts.values.count("--question") || opts.values.count("--context"))
      fail("give --question/--context or --input-file, not both");
    inputs = textInputs(opts, 2, "questions and contexts");
  } else {
    if (!opts.values.count("--question") || !opts.values.count("--context"))
      fail("qa needs --question Q --context C (or --input-file)");
    if (!opts.args.empty())
      fail("unexpected argument '" + opts.args.front() + "'");
    inputs.emplace_back(opts.values.at("--question"), opts.values.at("--context"));
  }
  std::vector<Answer> answers;
  check(model.answer(inputs, intFlag(opts, "--max-answer-tokens", 15), answers));
  std::ostringstream os;
  if (opts.json)
    os << "[";
  for (size_t i = 0; i < answers.size(); ++i) {
    const Answer &a = answers[i];
    if (opts.json) {
      os << (i ? ", " : "") << "{\"answer\": " << jsonString(a.text) << ", \"score\": "
         << number(a.score) << ", \"start\": " << a.start << ", \"end\": " << a.end << "}";
      continue;
    }
    char score[16];
    std::snprintf(score, sizeof score, "%.4f", a.score);
    os << a.text << "\t" << score << "\n";
  }
  if (opts.json)
    os << "]\n";
  std::cout << os.str();
  return 0;
}

int runEmbed(const Options &opts, TextModel &model) {
  std::vector<std::string> texts;
  for (auto &[text, unused] : textInputs(opts, 1, "TEXT"))
    texts.push_back(text);
  std::vector<FloatTensor> vectors;
  bool pooled = !opts.switches.count("--last-hidden");
  check(model.embed(texts, pooled, vectors));
  std::ostringstream os;
  auto row = [&](const float *v, int64_t n) {
    os << "[";
    for (int64_t k = 0; k < n; ++k)
      os << (k ? ", " : "") << number(v[k]);
    os << "]";
  };
  os << (opts.json || texts.size() > 1 ? "[" : "");
  for (size_t i = 0; i < vectors.size(); ++i) {
    const FloatTensor &t = vectors[i];
    os << (i ? ", " : "");
    if (t.shape.size() == 1) {
      row(t.data.data(), t.shape[0]);
    } else {
      os << "[";
      for (int64_t r = 0; r < t.shape[0]; ++r) {
        os << (r ? ", " : "");
        row(t.data.data() + r * t.shape[1], t.shape[1]);
      }
      os << "]";
    }
  }
  os << (opts.json || texts.size() > 1 ? "]" : "") << "\n";
  std::cout << os.str();
  return 0;
}

int runText(const Options &opts) {
  const std::string &c = opts.command;
  if (c == "tokenize" || c == "detokenize") {
    std::unique_ptr<Artifact> artifact;
    check(Artifact::open(opts.artifact, artifact));
    std::unique_ptr<Tokenizer> tok;
    check(artifact->tokenizer(tok));
    return c == "tokenize" ? runTokenize(opts, *tok) : runDetokenize(opts, *tok);
  }
  std::unique_ptr<TextModel> model;
  check(TextModel::open(opts.artifact, sessionOptions(opts), model));
  if (c == "fill-mask")
    return runFillMask(opts, *model);
  if (c == "generate")
    return runGenerate(opts, *model);
  if (c == "classify")
    return runClassify(opts, *model);
  if (c == "next-sentence")
    return runNextSentence(opts, *model);
  if (c == "token-classify")
    return runTokenClassify(opts, *model);
  if (c == "qa")
    return runQa(opts, *model);
  return runEmbed(opts, *model);
}

/// Exactly one line, whatever the message holds.
void printError(const std::string &message) {
  std::cerr << "error: " << oneLine(message) << "\n";
}

int run(int argc, char **argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << kUsage;
      return 0;
    }
  Options opts = parseArgs(argc, argv);
  joinMpiJob(argc, argv, opts);
  if (kTextCommands.count(opts.command))
    return runText(opts);
  std::unique_ptr<Artifact> artifact;
  std::unique_ptr<Session> session = openSession(opts, artifact);
  return opts.command == "info" ? runInfo(opts, *session, *artifact)
                                : runForward(opts, *session);
}

} // namespace

int main(int argc, char **argv) {
  int status = 1;
  try {
    status = run(argc, argv);
  } catch (const Failure &f) {
    printError((gMpi.rank ? "rank " + std::to_string(gMpi.rank) + ": " : "") + f.message);
  } catch (const std::bad_alloc &) {
    printError("out of memory: raise the memory limit (ulimit -v), or compile the artifact "
               "with a smaller --max-batch / --max-seq or with --quantize int8");
  } catch (const std::exception &e) {
    printError(e.what());
  }
#ifdef MEGATRON_HAVE_MPI
  // A failed rank leaves without MPI_Finalize: mpirun then ends the
  // others, which may be waiting on it in a collective.
  if (gMpi.communicator && status == 0)
    mpi::finish();
#endif
  return status;
}
