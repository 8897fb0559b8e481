//===- TokenizerFiles.cpp - read tokenizer files into a spec --------------===//

#include "frontends/tokenizer/TokenizerFiles.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace megatron;
using runtime::Status;
using runtime::TokenizerSpec;
namespace fs = std::filesystem;

namespace {

Status readText(const std::string &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error("cannot open tokenizer file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad())
    return Status::error("cannot read tokenizer file " + path);
  out = ss.str();
  return Status::success();
}

Status readJson(const std::string &path, nlohmann::json &out) {
  std::string text;
  if (Status s = readText(path, text); !s.ok())
    return s;
  out = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded())
    return Status::error(path + " is not valid JSON");
  return Status::success();
}

/// Lines without their \n or \r\n.
std::vector<std::string> lines(const std::string &text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    out.push_back(std::move(line));
  }
  return out;
}

/// {token: id} with ids exactly 0..n-1.
Status vocabFromObject(const nlohmann::json &object, const std::string &where,
                       std::vector<std::string> &vocab) {
  if (!object.is_object())
    return Status::error(where + ": the vocabulary must be a JSON object of token -> id");
  vocab.assign(object.size(), std::string());
  std::vector<bool> seen(object.size(), false);
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (!it.value().is_number_integer())
      return Status::error(where + ": the id of token '" + it.key() + "' is not an integer");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(vocab.size()) || seen[id])
      return Status::error(where + ": token '" + it.key() + "' has id " +
                           std::to_string(id) + ", but the " +
                           std::to_string(vocab.size()) +
                           " tokens must have the distinct ids 0.." +
                           std::to_string(vocab.size() - 1));
    seen[id] = true;
    vocab[id] = it.key();
  }
  return Status::success();
}

Status readMerges(const std::string &path, std::vector<std::string> &merges) {
  std::string text;
  if (Status s = readText(path, text); !s.ok())
    return s;
  std::vector<std::string> all = lines(text);
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string &line = all[i];
    if (line.empty() || (i == 0 && line.rfind("#version", 0) == 0))
      continue;
    size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size())
      return Status::error(path + ":" + std::to_string(i + 1) +
                           ": expected two tokens separated by a space, got '" +
                           line + "'");
    merges.push_back(line);
  }
  return Status::success();
}

/// tokenizer_config.json's do_lower_case next to `vocab`, if any.
std::optional<bool> configuredLowercase(const std::string &vocab) {
  fs::path config = fs::path(vocab).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec))
    return std::nullopt;
  nlohmann::json json;
  if (!readJson(config.string(), json).ok() || !json.is_object())
    return std::nullopt;
  auto it = json.find("do_lower_case");
  if (it == json.end() || !it->is_boolean())
    return std::nullopt;
  return it->get<bool>();
}

/// An uncased vocabulary has no token with an upper-case ASCII letter
/// besides the bracketed special tokens.
bool looksUncased(const std::vector<std::string> &vocab) {
  for (const std::string &t : vocab) {
    if (t.size() > 2 && t.front() == '[' && t.back() == ']')
      continue;
    if (std::any_of(t.begin(), t.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
      return false;
  }
  return true;
}

Status fromTokenizerJson(const std::string &path, TokenizerSpec &spec) {
  nlohmann::json json;
  if (Status s = readJson(path, json); !s.ok())
    return s;
  auto model = json.find("model");
  if (!json.is_object() || model == json.end() || !model->is_object())
    return Status::error(path + ": no \"model\" object");
  std::string type = model->value("type", "");
  if (type == "WordPiece") {
    spec.kind = TokenizerSpec::Kind::WordPiece;
    if (model->value("continuing_subword_prefix", "##") != "##")
      return Status::error(path + ": only the \"##\" continuation prefix is supported");
    spec.unkToken = model->value("unk_token", "[UNK]");
    spec.maxCharsPerWord = model->value("max_input_chars_per_word", 100);
    auto normalizer = json.find("normalizer");
    if (normalizer != json.end() && normalizer->is_object()) {
      if (normalizer->value("type", "") != "BertNormalizer")
        return Status::error(path + ": WordPiece with a " +
                             normalizer->value("type", std::string("?")) +
                             " normalizer is not supported (expected BertNormalizer)");
      spec.lowercase = normalizer->value("lowercase", true);
      auto strip = normalizer->find("strip_accents");
      spec.stripAccents = strip != normalizer->end() && strip->is_boolean()
                              ? strip->get<bool>()
                              : spec.lowercase;
    }
  } else if (type == "BPE") {
    spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
    auto pre = json.find("pre_tokenizer");
    if (pre == json.end() || !pre->is_object() || pre->value("type", "") != "ByteLevel")
      return Status::error(path + ": only byte-level BPE (GPT-2) is supported");
    if (pre->value("add_prefix_space", false))
      return Status::error(path + ": add_prefix_space is not supported (GPT-2 has none)");
    auto merges = model->find("merges");
    if (merges == model->end() || !merges->is_array())
      return Status::error(path + ": the BPE model has no merges list");
    for (const nlohmann::json &m : *merges) {
      if (m.is_string())
        spec.merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      else
        return Status::error(path + ": merge " + std::to_string(spec.merges.size() + 1) +
                             " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  } else {
    return Status::error(path + ": tokenizer model '" + type +
                         "' is not supported (WordPiece or BPE)");
  }
  auto vocab = model->find("vocab");
  if (vocab == model->end())
    return Status::error(path + ": the model has no vocab");
  if (Status s = vocabFromObject(*vocab, path, spec.vocab); !s.ok())
    return s;
  // Added tokens beyond the model's vocabulary (e.g. <|endoftext|>).
  if (auto added = json.find("added_tokens"); added != json.end() && added->is_array())
    for (const nlohmann::json &t : *added) {
      int64_t id = t.value("id", int64_t(-1));
      std::string content = t.value("content", "");
      if (id < 0 || content.empty())
        return Status::error(path + ": an added token lacks its id or content");
      if (id >= static_cast<int64_t>(spec.vocab.size()))
        spec.vocab.resize(id + 1);
      if (!spec.vocab[id].empty() && spec.vocab[id] != content)
        return Status::error(path + ": added token '" + content + "' takes id " +
                             std::to_string(id) + ", which is '" + spec.vocab[id] + "'");
      spec.vocab[id] = content;
    }
  for (size_t i = 0; i < spec.vocab.size(); ++i)
    if (spec.vocab[i].empty())
      return Status::error(path + ": no token has id " + std::to_string(i));
  return Status::success();
}

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

} // namespace

Status megatron::readTokenizer(const TokenizerFiles &files, TokenizerSpec &spec) {
  spec = TokenizerSpec();
  std::string name = fs::path(files.vocab).filename().string();
  if (endsWith(name, "tokenizer.json")) {
    if (!files.merges.empty())
      return Status::error(files.vocab + " holds its merges; do not give a merges file too");
    Status status = Status::success();
    try { // a field of the wrong JSON type throws
      status = fromTokenizerJson(files.vocab, spec);
    } catch (const nlohmann::json::exception &e) {
      status = Status::error(files.vocab + ": " + e.what());
    }
    if (!status.ok())
      return status;
  } else if (endsWith(name, ".json")) {
    spec.kind = TokenizerSpec::Kind::ByteLevelBpe;
    if (files.merges.empty())
      return Status::error(files.vocab + " is a BPE vocabulary: its merges file "
                           "(merges.txt or vocab.bpe) is needed too");
    nlohmann::json json;
    if (Status s = readJson(files.vocab, json); !s.ok())
      return s;
    if (Status s = vocabFromObject(json, files.vocab, spec.vocab); !s.ok())
      return s;
    if (Status s = readMerges(files.merges, spec.merges); !s.ok())
      return s;
  } else {
    spec.kind = TokenizerSpec::Kind::WordPiece;
    if (!files.merges.empty())
      return Status::error(files.vocab + " is a WordPiece vocabulary, which has no merges");
    std::string text;
    if (Status s = readText(files.vocab, text); !s.ok())
      return s;
    spec.vocab = lines(text);
    while (!spec.vocab.empty() && spec.vocab.back().empty())
      spec.vocab.pop_back(); // a trailing blank line is no token
  }
  if (spec.kind == TokenizerSpec::Kind::WordPiece) {
    // tokenizer.json's normaliser already says; plain vocab files do not.
    std::optional<bool> lower = files.lowercase;
    if (!lower && !endsWith(name, "tokenizer.json"))
      lower = configuredLowercase(files.vocab);
    if (!lower && !endsWith(name, "tokenizer.json"))
      lower = looksUncased(spec.vocab);
    if (lower) {
      spec.lowercase = *lower;
      spec.stripAccents = *lower;
    }
  }
  std::unique_ptr<runtime::Tokenizer> check;
  if (Status s = runtime::Tokenizer::create(spec, check); !s.ok())
    return Status::error(files.vocab + ": " + s.message());
  return Status::success();
}

std::optional<TokenizerFiles> megatron::findTokenizerFiles(const std::string &dir) {
  std::error_code ec;
  auto has = [&](const char *name) {
    return fs::is_regular_file(fs::path(dir) / name, ec);
  };
  auto at = [&](const char *name) { return (fs::path(dir) / name).string(); };
  if (has("tokenizer.json"))
    return TokenizerFiles{at("tokenizer.json"), "", std::nullopt};
  if (has("vocab.txt"))
    return TokenizerFiles{at("vocab.txt"), "", std::nullopt};
  for (const char *vocab : {"vocab.json", "encoder.json"})
    for (const char *merges : {"merges.txt", "vocab.bpe"})
      if (has(vocab) && has(merges))
        return TokenizerFiles{at(vocab), at(merges), std::nullopt};
  return std::nullopt;
}
