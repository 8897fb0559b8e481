//===- Tasks.cpp - text in, text out --------------------------------------===//

#include "megatron/runtime/Tasks.h"

#include "runtime/schema/artifact_generated.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

using namespace megatron::runtime;

namespace {

std::string str(int64_t v) { return std::to_string(v); }

/// Probabilities of logits[0, n) in double.
std::vector<double> softmax(const float *logits, int64_t n) {
  std::vector<double> p(static_cast<size_t>(n));
  double max = *std::max_element(logits, logits + n), sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += p[i] = std::exp(static_cast<double>(logits[i]) - max);
  for (double &v : p)
    v /= sum;
  return p;
}

/// Indices of the k largest, largest first (ties: lower index first).
std::vector<int64_t> topIndices(const std::vector<double> &p, int64_t k) {
  std::vector<int64_t> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int64_t>(k, static_cast<int64_t>(p.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return p[a] != p[b] ? p[a] > p[b] : a < b;
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

/// Bytes of `text` that end in whole UTF-8 characters.
size_t completeUtf8(const std::string &text) {
  size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80)
      continue; // a continuation byte: look further back
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

/// Texts without a second text of a pair.
std::vector<std::pair<std::string, std::string>>
singleTexts(const std::vector<std::string> &texts) {
  std::vector<std::pair<std::string, std::string>> inputs;
  for (const std::string &t : texts)
    inputs.emplace_back(t, "");
  return inputs;
}

} // namespace

Status TextModel::open(const std::string &path, const SessionOptions &options,
                       std::unique_ptr<TextModel> &out) {
  std::unique_ptr<TextModel> model(new TextModel());
  if (Status s = Artifact::open(path, model->artifact_); !s.ok())
    return s;
  if (Status s = model->artifact_->tokenizer(model->tokenizer_); !s.ok())
    return s;
  if (Status s = Session::create(*model->artifact_, options, model->session_); !s.ok())
    return s;
  if (const auto *labels = model->artifact_->root().model()->labels())
    for (const auto *name : *labels)
      model->labels_.push_back(name ? name->str() : "");
  out = std::move(model);
  return Status::success();
}

std::string TextModel::labelName(int64_t index) const {
  return index < static_cast<int64_t>(labels_.size()) ? labels_[index]
                                                       : "LABEL_" + str(index);
}

Status TextModel::requireHead(const std::string &command,
                              std::initializer_list<const char *> tasks) const {
  std::string wanted;
  for (const char *t : tasks) {
    if (artifact_->task() == t)
      return Status::success();
    wanted += (wanted.empty() ? "" : " or ") + std::string(t);
  }
  return Status::error(command + " needs a " + wanted + " artifact; this one was compiled "
                       "with the '" + artifact_->task() + "' head");
}

Status TextModel::requireOutput(const std::string &task,
                                const std::vector<std::string> &names,
                                std::string &found) const {
  std::vector<std::string> entries = session_->entries();
  std::string entry = std::find(entries.begin(), entries.end(), "forward") != entries.end()
                          ? "forward"
                          : "prefill";
  for (const std::string &have : session_->outputNames(entry))
    for (const std::string &want : names)
      if (have == want) {
        found = want;
        return Status::success();
      }
  return Status::error(task + " cannot run on this artifact: it was compiled with the '" +
                       artifact_->task() + "' head of " + artifact_->architecture() +
                       " (recompile with the matching --task)");
}

Status TextModel::encodeAll(const std::vector<std::pair<std::string, std::string>> &inputs,
                            bool pairs, std::vector<Encoding> &out) const {
  if (inputs.empty())
    return Status::error("no input text");
  out.clear();
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string where = inputs.size() > 1 ? "input " + str(i + 1) : "the input";
    const auto &[first, second] = inputs[i];
    Encoding e = pairs ? tokenizer_->encodePair(first, second) : tokenizer_->encode(first);
    size_t special = 0;
    for (bool s : e.special)
      special += s;
    bool addedOnly = special == e.ids.size();
    if (first.empty() || (pairs && second.empty()) || addedOnly)
      return Status::error(where + " is empty" +
                           (pairs ? " (both texts of a pair are needed)" : ""));
    if (static_cast<int64_t>(e.ids.size()) > session_->maxSequence())
      return Status::error(where + " is " + str(e.ids.size()) +
                           " tokens long, more than the " + str(session_->maxSequence()) +
                           " this artifact takes (its --max-seq); shorten it");
    out.push_back(std::move(e));
  }
  return Status::success();
}

Status TextModel::runBatch(const std::vector<Encoding> &encodings, size_t begin,
                           size_t end, Outputs &outputs) {
  int64_t batch = static_cast<int64_t>(end - begin), seq = 0;
  for (size_t i = begin; i < end; ++i)
    seq = std::max<int64_t>(seq, encodings[i].ids.size());
  int64_t pad = tokenizer_->padId().value_or(0);
  IdTensor ids{{batch, seq}, std::vector<int64_t>(batch * seq, pad)};
  IdTensor types{{batch, seq}, std::vector<int64_t>(batch * seq, 0)};
  IdTensor mask{{batch, seq}, std::vector<int64_t>(batch * seq, 0)};
  for (int64_t b = 0; b < batch; ++b) {
    const Encoding &e = encodings[begin + b];
    for (size_t t = 0; t < e.ids.size(); ++t) {
      ids.data[b * seq + t] = e.ids[t];
      types.data[b * seq + t] = e.typeIds[t];
      mask.data[b * seq + t] = 1;
    }
  }
  Inputs inputs{{"input_ids", ids}};
  std::vector<std::string> accepted = session_->inputNames("forward");
  auto takes = [&](const char *name) {
    return std::find(accepted.begin(), accepted.end(), name) != accepted.end();
  };
  if (takes("token_type_ids"))
    inputs["token_type_ids"] = types;
  if (takes("attention_mask"))
    inputs["attention_mask"] = mask;
  return session_->run("forward", inputs, outputs);
}

Status TextModel::forEachRow(
    const std::vector<Encoding> &encodings,
    const std::function<void(size_t, int64_t, const Outputs &)> &use) {
  for (size_t begin = 0; begin < encodings.size();) {
    size_t end = std::min(encodings.size(),
                          begin + static_cast<size_t>(session_->maxBatch()));
    Outputs outputs;
    if (Status s = runBatch(encodings, begin, end, outputs); !s.ok())
      return s;
    for (size_t index = begin; index < end; ++index)
      use(index, static_cast<int64_t>(index - begin), outputs);
    begin = end;
  }
  return Status::success();
}

Status TextModel::fillMask(const std::vector<std::string> &texts, int64_t topK,
                           std::vector<FillMaskResult> &out) {
  std::string logitsName;
  if (Status s = requireHead("fill-mask", {"masked-lm", "pretraining"}); !s.ok())
    return s;
  if (Status s = requireOutput("fill-mask", {"logits", "prediction_logits"}, logitsName); !s.ok())
    return s;
  std::optional<int64_t> maskId = tokenizer_->maskId();
  if (!maskId)
    return Status::error("the tokenizer has no mask token '" +
                         tokenizer_->spec().maskToken + "'");
  if (topK < 1)
    return Status::error("top-k must be at least 1, got " + str(topK));
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(singleTexts(texts), false, encodings); !s.ok())
    return s;
  for (size_t i = 0; i < encodings.size(); ++i)
    if (std::find(encodings[i].ids.begin(), encodings[i].ids.end(), *maskId) ==
        encodings[i].ids.end())
      return Status::error((texts.size() > 1 ? "input " + str(i + 1) : "the input") +
                           " has no " + tokenizer_->spec().maskToken + " token to fill");
  out.assign(texts.size(), FillMaskResult());
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &logits = outputs.at(logitsName);
    int64_t seq = logits.shape[1], width = logits.shape[2];
    // Megatron pads the vocabulary: rows past the tokenizer's are no words.
    int64_t vocab = std::min(width, tokenizer_->vocabSize());
    const Encoding &e = encodings[index];
    for (size_t t = 0; t < e.ids.size(); ++t) {
      if (e.ids[t] != *maskId)
        continue;
      std::vector<double> p =
          softmax(logits.data.data() + (row * seq + t) * width, vocab);
      std::vector<Candidate> &list = out[index].masks.emplace_back();
      for (int64_t id : topIndices(p, topK)) {
        Candidate c;
        c.id = id;
        c.score = p[id];
        (void)tokenizer_->decode({id}, false, c.token);
        std::vector<int64_t> filled = e.ids;
        filled[t] = id;
        (void)tokenizer_->decode(filled, true, c.sequence);
        list.push_back(std::move(c));
      }
    }
  });
}

Status TextModel::generate(const std::string &prompt, const GenerationOptions &options,
                           const std::function<void(const std::string &)> &onText,
                           GenerationResult &out) {
  if (Status s = requireHead("generate", {"causal-lm"}); !s.ok())
    return s;
  if (options.maxNewTokens < 1)
    return Status::error("max-new-tokens must be at least 1, got " + str(options.maxNewTokens));
  if (options.sample && !(options.temperature > 0))
    return Status::error("the temperature must be positive");
  if (options.sample && !(options.topP > 0 && options.topP <= 1))
    return Status::error("top-p must lie in (0, 1]");
  if (options.topK < 0)
    return Status::error("top-k must not be negative");
  for (const std::string &s : options.stop)
    if (s.empty())
      return Status::error("a stop text is empty");
  out = GenerationResult();
  std::vector<int64_t> ids = tokenizer_->encode(prompt, false).ids;
  if (ids.empty())
    return Status::error("the prompt is empty");
  std::vector<std::string> entries = session_->entries();
  bool cached = std::find(entries.begin(), entries.end(), "decode") != entries.end();
  int64_t context = cached ? session_->maxContext() : session_->maxSequence();
  out.promptTokens = static_cast<int64_t>(ids.size());
  if (static_cast<int64_t>(ids.size()) > session_->maxSequence() ||
      static_cast<int64_t>(ids.size()) >= context)
    return Status::error("the prompt is " + str(ids.size()) + " tokens long, which leaves no "
                         "room to generate: the context is " + str(context) +
                         " tokens and the artifact takes at most " +
                         str(session_->maxSequence()) + " at once");

  std::mt19937_64 rng(options.seed);
  auto choose = [&](const float *logits, int64_t width) {
    int64_t vocab = std::min(width, tokenizer_->vocabSize());
    if (!options.sample)
      return static_cast<int64_t>(std::max_element(logits, logits + vocab) - logits);
    std::vector<float> scaled(logits, logits + vocab);
    for (float &v : scaled)
      v = static_cast<float>(v / options.temperature);
    std::vector<double> p = softmax(scaled.data(), vocab);
    std::vector<int64_t> order = topIndices(p, options.topK > 0 ? options.topK : vocab);
    double kept = 0;
    size_t n = 0;
    while (n < order.size() && (n == 0 || kept < options.topP))
      kept += p[order[n++]];
    std::uniform_real_distribution<double> uniform(0.0, kept);
    double r = uniform(rng), acc = 0;
    for (size_t i = 0; i < n; ++i)
      if ((acc += p[order[i]]) >= r)
        return order[i];
    return order[n - 1];
  };

  size_t holdBack = 0; // a stop string's prefix may still be forming
  for (const std::string &s : options.stop)
    holdBack = std::max(holdBack, s.size() - 1);
  size_t emitted = 0;
  auto emit = [&](size_t upTo) {
    if (upTo > emitted && onText)
      onText(out.text.substr(emitted, upTo - emitted));
    emitted = std::max(emitted, upTo);
  };

  // prefill_last computes only the logits generation reads (artifacts from
  // before it have prefill alone).
  bool lastOnly = std::find(entries.begin(), entries.end(), "prefill_last") != entries.end();
  Outputs outputs;
  Inputs inputs{{"input_ids", IdTensor{{1, static_cast<int64_t>(ids.size())}, ids}}};
  if (Status s = session_->run(!cached ? "forward" : lastOnly ? "prefill_last" : "prefill",
                               inputs, outputs);
      !s.ok())
    return s;
  for (;;) {
    auto last = outputs.find("last_logits");
    const FloatTensor &logits = last != outputs.end() ? last->second : outputs.at("logits");
    int64_t width = logits.shape.back();
    int64_t next = choose(logits.data.data() + logits.data.size() - width, width);
    out.ids.push_back(next);
    ids.push_back(next);
    if (tokenizer_->eosId() && next == *tokenizer_->eosId()) {
      out.stopReason = "eos";
      break;
    }
    std::vector<int64_t> generated(out.ids.begin(), out.ids.end());
    (void)tokenizer_->decode(generated, true, out.text);
    size_t cut = std::string::npos;
    for (const std::string &s : options.stop)
      cut = std::min(cut, out.text.find(s));
    if (cut != std::string::npos) {
      out.text.resize(cut);
      out.stopReason = "stop";
      break;
    }
    size_t safe = completeUtf8(out.text);
    emit(safe > holdBack ? safe - holdBack : 0);
    if (static_cast<int64_t>(out.ids.size()) == options.maxNewTokens) {
      out.stopReason = "max-new-tokens";
      break;
    }
    if (static_cast<int64_t>(ids.size()) >= context ||
        (!cached && static_cast<int64_t>(ids.size()) >= session_->maxSequence())) {
      out.stopReason = "context";
      break;
    }
    Status s = cached
                   ? session_->run("decode", {{"input_ids", IdTensor{{1, 1}, {next}}}}, outputs)
                   : session_->run("forward",
                                   {{"input_ids", IdTensor{{1, static_cast<int64_t>(ids.size())}, ids}}},
                                   outputs);
    if (!s.ok())
      return s;
  }
  if (out.stopReason == "eos") {
    std::vector<int64_t> generated(out.ids.begin(), out.ids.end());
    (void)tokenizer_->decode(generated, true, out.text);
  }
  emit(out.text.size());
  return Status::success();
}

namespace {
Classification classification(const float *logits, int64_t n,
                              const std::function<std::string(int64_t)> &name) {
  Classification c;
  std::vector<double> p = softmax(logits, n);
  for (int64_t i = 0; i < n; ++i)
    c.scores.push_back({name(i), p[i]});
  c.best = c.scores[topIndices(p, 1)[0]];
  return c;
}
} // namespace

Status TextModel::classify(const std::vector<std::pair<std::string, std::string>> &inputs,
                           std::vector<Classification> &out) {
  std::string name;
  if (Status s = requireHead("classify", {"sequence-classification"}); !s.ok())
    return s;
  if (Status s = requireOutput("classify", {"logits"}, name); !s.ok())
    return s;
  // A batch is all single texts or all pairs.
  bool pairs = !inputs.empty() && !inputs.front().second.empty();
  for (const auto &in : inputs)
    if (in.second.empty() == pairs)
      return Status::error("classify: give every input a second text, or none");
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(inputs, pairs, encodings); !s.ok())
    return s;
  out.assign(inputs.size(), Classification());
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &logits = outputs.at(name);
    int64_t labels = logits.shape.back();
    out[index] = classification(logits.data.data() + row * labels, labels,
                                [&](int64_t i) { return labelName(i); });
  });
}

Status TextModel::nextSentence(const std::vector<std::pair<std::string, std::string>> &inputs,
                               std::vector<Classification> &out) {
  std::string name;
  if (Status s = requireHead("next-sentence", {"next-sentence", "pretraining"}); !s.ok())
    return s;
  if (Status s = requireOutput("next-sentence", {"seq_relationship_logits", "logits"}, name);
      !s.ok())
    return s;
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(inputs, true, encodings); !s.ok())
    return s;
  out.assign(inputs.size(), Classification());
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &logits = outputs.at(name);
    // BERT's NSP head: 0 = the second text follows the first.
    out[index] = classification(logits.data.data() + row * 2, 2, [](int64_t i) {
      return std::string(i == 0 ? "is_next" : "not_next");
    });
  });
}

Status TextModel::tokenClassify(const std::vector<std::string> &texts,
                                std::vector<std::vector<TokenLabel>> &out) {
  std::string name;
  if (Status s = requireHead("token-classify", {"token-classification"}); !s.ok())
    return s;
  if (Status s = requireOutput("token-classify", {"logits"}, name); !s.ok())
    return s;
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(singleTexts(texts), false, encodings); !s.ok())
    return s;
  out.assign(texts.size(), {});
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &logits = outputs.at(name);
    int64_t seq = logits.shape[1], labels = logits.shape[2];
    const Encoding &e = encodings[index];
    for (size_t t = 0; t < e.ids.size(); ++t) {
      if (e.special[t])
        continue;
      TokenLabel l;
      l.index = static_cast<int64_t>(t);
      l.token = tokenizer_->token(e.ids[t]);
      l.start = e.offsets[t].first;
      l.end = e.offsets[t].second;
      l.word = texts[index].substr(l.start, l.end - l.start);
      l.label = classification(logits.data.data() + (row * seq + t) * labels, labels,
                               [&](int64_t i) { return labelName(i); })
                    .best;
      out[index].push_back(std::move(l));
    }
  });
}

Status TextModel::answer(const std::vector<std::pair<std::string, std::string>> &questionContext,
                         int64_t maxAnswerTokens, std::vector<Answer> &out) {
  std::string name;
  if (Status s = requireHead("qa", {"question-answering"}); !s.ok())
    return s;
  if (Status s = requireOutput("qa", {"start_logits"}, name); !s.ok())
    return s;
  if (maxAnswerTokens < 1)
    return Status::error("the longest answer must be at least one token");
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(questionContext, true, encodings); !s.ok())
    return s;
  out.assign(questionContext.size(), Answer());
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &start = outputs.at("start_logits"), &end = outputs.at("end_logits");
    int64_t seq = start.shape[1];
    const Encoding &e = encodings[index];
    // Probabilities over the context's tokens only: an answer lies there.
    std::vector<int64_t> context;
    for (size_t t = 0; t < e.ids.size(); ++t)
      if (e.sources[t] == 1 && !e.special[t])
        context.push_back(static_cast<int64_t>(t));
    std::vector<float> s, f;
    for (int64_t t : context) {
      s.push_back(start.data[row * seq + t]);
      f.push_back(end.data[row * seq + t]);
    }
    std::vector<double> ps = softmax(s.data(), static_cast<int64_t>(s.size())),
                        pe = softmax(f.data(), static_cast<int64_t>(f.size()));
    double best = -1;
    size_t bi = 0, bj = 0;
    for (size_t i = 0; i < context.size(); ++i)
      for (size_t j = i; j < context.size() && static_cast<int64_t>(j - i) < maxAnswerTokens; ++j)
        if (ps[i] * pe[j] > best) {
          best = ps[i] * pe[j];
          bi = i;
          bj = j;
        }
    Answer &a = out[index];
    a.score = best;
    a.start = e.offsets[context[bi]].first;
    a.end = e.offsets[context[bj]].second;
    a.text = questionContext[index].second.substr(a.start, a.end - a.start);
  });
}

Status TextModel::embed(const std::vector<std::string> &texts, bool pooled,
                        std::vector<FloatTensor> &out) {
  std::string name;
  if (Status s = requireOutput("embed", {pooled ? "pooler_output" : "last_hidden_state"}, name);
      !s.ok())
    return s;
  std::vector<Encoding> encodings;
  if (Status s = encodeAll(singleTexts(texts), false, encodings); !s.ok())
    return s;
  out.assign(texts.size(), FloatTensor());
  return forEachRow(encodings, [&](size_t index, int64_t row, const Outputs &outputs) {
    const FloatTensor &t = outputs.at(name);
    int64_t hidden = t.shape.back();
    if (pooled) {
      out[index].shape = {hidden};
      out[index].data.assign(t.data.begin() + row * hidden, t.data.begin() + (row + 1) * hidden);
    } else {
      int64_t seq = t.shape[1], tokens = static_cast<int64_t>(encodings[index].ids.size());
      out[index].shape = {tokens, hidden};
      out[index].data.assign(t.data.begin() + row * seq * hidden,
                             t.data.begin() + (row * seq + tokens) * hidden);
    }
  });
}
