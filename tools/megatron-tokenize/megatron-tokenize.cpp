//===- megatron-tokenize.cpp - tokenizer files -> ids ---------------------===//
//
//   megatron-tokenize --vocab FILE [--merges FILE] [--cased|--uncased]
//                     (--lines FILE | TEXT...) [--time]
//
// Prints one JSON array of ids per input line (BERT: with [CLS]/[SEP];
// GPT-2: nothing added). Lines are split on '\n' only. --time reports
// {"lines", "tokens", "seconds", "tokens_per_s"} of the encoding loop on
// stderr: the tokenizer benchmark and agreement tests use this. Links the
// runtime's tokenizers and the file reader only (no MLIR).
//
//===----------------------------------------------------------------------===//

#include "frontends/tokenizer/TokenizerFiles.h"
#include "tools/support/CommandLine.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace megatron;

namespace {
const char *const kUsage =
    "usage: megatron-tokenize --vocab FILE [--merges FILE] [--cased|--uncased]\n"
    "                         (--lines FILE | TEXT...) [--time]\n";

int fail(const std::string &message) {
  std::cerr << "error: " << tools::oneLine(message) << "\n";
  return 1;
}
} // namespace

int main(int argc, char **argv) {
  TokenizerFiles files;
  std::string linesPath;
  std::vector<std::string> texts;
  bool time = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string &out) {
      if (i + 1 >= argc)
        return false;
      out = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--vocab") {
      if (!value(files.vocab))
        return fail("--vocab needs a file");
    } else if (arg == "--merges") {
      if (!value(files.merges))
        return fail("--merges needs a file");
    } else if (arg == "--lines") {
      if (!value(linesPath))
        return fail("--lines needs a file");
    } else if (arg == "--cased" || arg == "--uncased") {
      files.lowercase = arg == "--uncased";
    } else if (arg == "--time") {
      time = true;
    } else if (arg.rfind("--", 0) == 0) {
      return fail("unknown option " + arg + "\n" + kUsage);
    } else {
      texts.push_back(arg);
    }
  }
  if (files.vocab.empty())
    return fail("--vocab is required\n" + std::string(kUsage));
  if (!linesPath.empty() && !texts.empty())
    return fail("give --lines or TEXT, not both");
  if (!linesPath.empty()) {
    std::ifstream in(linesPath, std::ios::binary);
    if (!in)
      return fail("cannot open " + linesPath);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string all = ss.str();
    for (size_t begin = 0; begin < all.size();) {
      size_t end = all.find('\n', begin);
      if (end == std::string::npos)
        end = all.size();
      texts.push_back(all.substr(begin, end - begin));
      begin = end + 1;
    }
  }

  runtime::TokenizerSpec spec;
  if (runtime::Status s = readTokenizer(files, spec); !s.ok())
    return fail(s.message());
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  if (runtime::Status s = runtime::Tokenizer::create(std::move(spec), tokenizer); !s.ok())
    return fail(s.message());

  std::vector<std::vector<int64_t>> ids(texts.size());
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < texts.size(); ++i)
    ids[i] = tokenizer->encode(texts[i]).ids;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::string out;
  size_t tokens = 0;
  for (const std::vector<int64_t> &line : ids) {
    out += '[';
    for (size_t k = 0; k < line.size(); ++k)
      out += (k ? "," : "") + std::to_string(line[k]);
    out += "]\n";
    tokens += line.size();
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (time)
    std::fprintf(stderr,
                 "{\"lines\": %zu, \"tokens\": %zu, \"seconds\": %.6f, "
                 "\"tokens_per_s\": %.1f}\n",
                 texts.size(), tokens, seconds, seconds > 0 ? tokens / seconds : 0.0);
  return 0;
}
