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

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace megatron::runtime;

namespace {

const char *const kUsage = R"(usage:
  megatron-run ARTIFACT forward --input-ids IDS [--token-type-ids IDS]
               [--attention-mask IDS] --output-dir DIR [--decode-last N]
               [--threads N] [--backend cpu]
  megatron-run ARTIFACT info [--json]
  megatron-run --help

forward   runs the artifact's `forward` entry (BERT) or `prefill` (GPT-2) and
          writes every output as DIR/<name>.npy (float32, C order).
info      lists the entries with their inputs and outputs, and the largest
          batch and sequence the artifact was planned for.

IDS       batch items separated by ';', values by ',': "101,2003,102;101,7592,102".
          Multiple choice: choices separated by '|': "1,2|3,4;5,6|7,8".
          Every row has the same length; pad short rows and mark the padding
          with 0 in --attention-mask.
--decode-last N   GPT-2: prefill all but the last N tokens of each row, then
          decode them one at a time; the outputs hold every token, as a
          plain forward's do.
--threads N       kernel and GEMM threads (0: all cores).
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

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos)
    return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r") - b + 1);
}

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (;;) {
    size_t end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end - begin));
    if (end == std::string::npos)
      return parts;
    begin = end + 1;
  }
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

int64_t parseInt(const std::string &flag, const std::string &text,
                 const std::string &where) {
  std::string t = trim(text);
  if (t.empty())
    fail(flag + (where.empty() ? "" : ": " + where) + " is empty");
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (*end != '\0')
    fail(flag + ": '" + t + "' " + (where.empty() ? "" : "(" + where + ") ") +
         "is not an integer");
  if (errno == ERANGE)
    fail(flag + ": '" + t + "' is out of range");
  return v;
}

/// "1,2;3,4" -> [2, 2]; "1,2|3,4;5,6|7,8" -> [2, 2, 2] (items, choices, seq).
/// Every row must have the same length: padding is the caller's, marked by
/// the attention mask, so no value is ever invented here.
IdTensor parseBatch(const std::string &flag, const std::string &text) {
  if (trim(text).empty())
    fail(flag + " is empty");
  bool choices = text.find('|') != std::string::npos;
  std::vector<std::string> items = split(text, ';');
  IdTensor out;
  size_t numChoices = 0, seq = 0;
  std::string firstRow;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<std::string> rows =
        choices ? split(items[i], '|') : std::vector<std::string>{items[i]};
    if (i == 0)
      numChoices = rows.size();
    else if (rows.size() != numChoices)
      fail(flag + ": item " + std::to_string(i + 1) + " has " +
           std::to_string(rows.size()) + " choices but item 1 has " +
           std::to_string(numChoices));
    for (size_t c = 0; c < rows.size(); ++c) {
      std::string row = choices ? "item " + std::to_string(i + 1) + " choice " +
                                      std::to_string(c + 1)
                                : "row " + std::to_string(i + 1);
      if (trim(rows[c]).empty())
        fail(flag + ": " + row + " is empty");
      std::vector<std::string> values = split(rows[c], ',');
      for (size_t k = 0; k < values.size(); ++k)
        out.data.push_back(
            parseInt(flag, values[k], row + ", value " + std::to_string(k + 1)));
      if (firstRow.empty()) {
        firstRow = row;
        seq = values.size();
      } else if (values.size() != seq) {
        fail(flag + ": " + row + " has " + std::to_string(values.size()) +
             " values but " + firstRow + " has " + std::to_string(seq) +
             "; every row needs the same length (pad short rows and mark the "
             "padding with 0 in --attention-mask)");
      }
    }
  }
  out.shape = {(int64_t)items.size()};
  if (choices)
    out.shape.push_back((int64_t)numChoices);
  out.shape.push_back((int64_t)seq);
  return out;
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

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (unsigned char c : s) {
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
  std::map<std::string, std::string> values; // --flag VALUE
  bool json = false;
};

// Flags that take a value, and the commands that accept each.
const std::map<std::string, std::set<std::string>> kValueFlags = {
    {"--input-ids", {"forward"}},      {"--token-type-ids", {"forward"}},
    {"--attention-mask", {"forward"}}, {"--output-dir", {"forward"}},
    {"--decode-last", {"forward"}},    {"--threads", {"forward", "info"}},
    {"--backend", {"forward", "info"}},
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
    if (!kValueFlags.count(name))
      fail("unknown option '" + name + "' (see --help)");
    if (!inlineValue) {
      if (i + 1 >= argc)
        fail(name + " needs a value");
      value = argv[++i];
    }
    if (!opts.values.emplace(name, value).second)
      fail(name + " given twice");
  }
  if (positional.size() < 2)
    fail("expected ARTIFACT COMMAND (see --help)");
  if (positional.size() > 2)
    fail("unexpected argument '" + positional[2] + "'");
  opts.artifact = positional[0];
  opts.command = positional[1];
  if (opts.command != "forward" && opts.command != "info")
    fail("unknown command '" + opts.command + "' (expected forward or info)");
  for (const auto &[name, value] : opts.values)
    if (!kValueFlags.at(name).count(opts.command))
      fail(name + " does not apply to '" + opts.command + "'");
  if (opts.json && opts.command != "info")
    fail("--json does not apply to '" + opts.command + "'");
  return opts;
}

std::unique_ptr<Session> openSession(const Options &opts,
                                     std::unique_ptr<Artifact> &artifact) {
  SessionOptions sessionOptions;
  auto threads = opts.values.find("--threads");
  if (threads != opts.values.end()) {
    int64_t n = parseInt("--threads", threads->second, "");
    if (n < 0 || n > 4096)
      fail("--threads must lie in [0, 4096], got " + std::to_string(n));
    sessionOptions.threads = (int)n;
  }
  auto backend = opts.values.find("--backend");
  if (backend != opts.values.end() && backend->second != "cpu")
    fail("backend '" + backend->second + "' is not available (this build has: cpu)");
  check(Artifact::open(opts.artifact, artifact));
  std::unique_ptr<Session> session;
  check(Session::create(*artifact, sessionOptions, session));
  return session;
}

bool has(const std::vector<std::string> &names, const std::string &name) {
  for (const std::string &n : names)
    if (n == name)
      return true;
  return false;
}

int runInfo(const Options &opts, Session &session) {
  std::vector<std::string> entries = session.entries();
  std::ostringstream os;
  if (opts.json) {
    os << "{\"artifact\": " << jsonString(opts.artifact)
       << ", \"max_batch\": " << session.maxBatch()
       << ", \"max_sequence\": " << session.maxSequence() << ", \"entries\": [";
    for (size_t i = 0; i < entries.size(); ++i)
      os << (i ? ", " : "") << "{\"name\": " << jsonString(entries[i])
         << ", \"inputs\": " << jsonList(session.inputNames(entries[i]))
         << ", \"outputs\": " << jsonList(session.outputNames(entries[i]))
         << "}";
    os << "]}\n";
  } else {
    os << "artifact: " << opts.artifact << "\nmax batch: " << session.maxBatch()
       << "\nmax sequence: " << session.maxSequence() << "\n";
    for (const std::string &e : entries)
      os << "entry " << e << "\n  inputs:  " << joined(session.inputNames(e))
         << "\n  outputs: " << joined(session.outputNames(e)) << "\n";
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
    IdTensor t = parseBatch(flag, it->second);
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
  std::vector<std::string> accepted = session.inputNames(entry);
  for (const auto &[name, tensor] : inputs)
    if (!has(accepted, name))
      fail("the artifact's " + entry + " entry takes no " + name +
           " (its inputs: " + joined(accepted) + ")");

  int64_t decodeLast = 0;
  if (v.count("--decode-last")) {
    decodeLast = parseInt("--decode-last", v.at("--decode-last"), "");
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

/// Exactly one line, whatever the message holds.
void printError(std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::cerr << "error: " << message << "\n";
}

} // namespace

int main(int argc, char **argv) {
  try {
    for (int i = 1; i < argc; ++i)
      if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
        std::cout << kUsage;
        return 0;
      }
    Options opts = parseArgs(argc, argv);
    std::unique_ptr<Artifact> artifact;
    std::unique_ptr<Session> session = openSession(opts, artifact);
    return opts.command == "info" ? runInfo(opts, *session)
                                  : runForward(opts, *session);
  } catch (const Failure &f) {
    printError(f.message);
  } catch (const std::exception &e) {
    printError(e.what());
  }
  return 1;
}
