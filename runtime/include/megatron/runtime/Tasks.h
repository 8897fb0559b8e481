//===- Tasks.h - text in, text out ------------------------------*- C++ -*-===//
//
// What Hugging Face's pipelines do for these models, over an artifact and
// its embedded tokenizer:
//
//   std::unique_ptr<TextModel> model;
//   if (Status s = TextModel::open("bert.mtc", {}, model)) ... s.message()
//   std::vector<FillMaskResult> results;
//   model->fillMask({"The capital of France is [MASK]."}, 5, results);
//   results[0].masks[0][0].token, .score, .sequence
//
// Several texts are one batch (split at the artifact's --max-batch), padded
// with [PAD] and masked. A task the artifact's head cannot serve, empty
// text, or a text longer than the artifact's --max-seq is an error naming
// the problem; nothing is truncated silently.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_RUNTIME_TASKS_H
#define MEGATRON_RUNTIME_TASKS_H

#include "megatron/runtime/Artifact.h"
#include "megatron/runtime/Session.h"
#include "megatron/runtime/Tokenizer.h"

#include <functional>
#include <initializer_list>

namespace megatron::runtime {

struct Candidate {
  int64_t id = 0;
  std::string token;  ///< the token as text
  double score = 0;   ///< probability
  std::string sequence; ///< the input with this token in the mask's place
};

struct FillMaskResult {
  /// Per [MASK] of the text, in order: the top-k candidates, best first.
  std::vector<std::vector<Candidate>> masks;
};

struct GenerationOptions {
  int64_t maxNewTokens = 50;
  /// Greedy (argmax) unless `sample`; sampling applies the temperature,
  /// then keeps the top-k tokens (0: all), then the smallest set whose
  /// probability reaches top-p.
  bool sample = false;
  double temperature = 1.0;
  int64_t topK = 0;
  double topP = 1.0;
  uint64_t seed = 0;
  /// Generation stops when the text produced contains one of these (which
  /// is then cut off).
  std::vector<std::string> stop;
};

struct GenerationResult {
  std::vector<int64_t> ids; ///< the new tokens
  std::string text;         ///< their text (without a stop string)
  /// "eos", "max-new-tokens", "stop" or "context" (the model's positions
  /// or the artifact's --max-seq are used up).
  std::string stopReason;
  int64_t promptTokens = 0;
};

struct LabelScore {
  std::string label;
  double score = 0;
};

struct Classification {
  LabelScore best;
  std::vector<LabelScore> scores; ///< every label, in label order
};

struct TokenLabel {
  std::string word;       ///< the token's text in the input
  std::string token;      ///< the vocabulary's token
  LabelScore label;
  size_t start = 0, end = 0; ///< byte offsets in the input
  int64_t index = 0;      ///< position in the encoded sequence
};

struct Answer {
  std::string text;
  double score = 0;
  size_t start = 0, end = 0; ///< byte offsets in the context
};

class TextModel {
public:
  static Status open(const std::string &path, const SessionOptions &options,
                     std::unique_ptr<TextModel> &out);

  const Artifact &artifact() const { return *artifact_; }
  Session &session() { return *session_; }
  const Tokenizer &tokenizer() const { return *tokenizer_; }

  /// Masked-LM (or pretraining) artifacts.
  Status fillMask(const std::vector<std::string> &texts, int64_t topK,
                  std::vector<FillMaskResult> &out);
  /// Causal-LM artifacts. `onText` receives the text as it is produced
  /// (whole UTF-8 characters, never a prefix of a stop string).
  Status generate(const std::string &prompt, const GenerationOptions &options,
                  const std::function<void(const std::string &)> &onText,
                  GenerationResult &out);
  /// Sequence-classification artifacts: one text or a pair each.
  Status classify(const std::vector<std::pair<std::string, std::string>> &inputs,
                  std::vector<Classification> &out);
  /// Next-sentence (or pretraining) artifacts: "is next" / "not next".
  Status nextSentence(const std::vector<std::pair<std::string, std::string>> &inputs,
                      std::vector<Classification> &out);
  /// Token-classification artifacts: a label per token (special tokens
  /// excluded).
  Status tokenClassify(const std::vector<std::string> &texts,
                       std::vector<std::vector<TokenLabel>> &out);
  /// Question-answering artifacts: the best span of the context, at most
  /// `maxAnswerTokens` long.
  Status answer(const std::vector<std::pair<std::string, std::string>> &questionContext,
                int64_t maxAnswerTokens, std::vector<Answer> &out);
  /// `pooler_output` ([hidden] per text) when `pooled`, else
  /// `last_hidden_state` ([tokens, hidden] per text, padding dropped).
  Status embed(const std::vector<std::string> &texts, bool pooled,
               std::vector<FloatTensor> &out);

private:
  TextModel() = default;
  /// The artifact's head is one of `tasks`, or an error naming it.
  Status requireHead(const std::string &command,
                     std::initializer_list<const char *> tasks) const;
  /// The first of `names` the artifact outputs.
  Status requireOutput(const std::string &task, const std::vector<std::string> &names,
                       std::string &found) const;
  Status encodeAll(const std::vector<std::pair<std::string, std::string>> &inputs,
                   bool pairs, std::vector<Encoding> &out) const;
  /// Runs `forward` on encodings [begin, end), padded to their longest.
  Status runBatch(const std::vector<Encoding> &encodings, size_t begin, size_t end,
                  Outputs &outputs);
  /// Runs `forward` over all encodings, in batches of the artifact's
  /// maximum, and calls use(index, outputs of its batch, row in the batch).
  Status forEachRow(const std::vector<Encoding> &encodings,
                    const std::function<void(size_t, int64_t, const Outputs &)> &use);
  std::string labelName(int64_t index) const;

  std::unique_ptr<Artifact> artifact_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::string> labels_;
};

} // namespace megatron::runtime

#endif // MEGATRON_RUNTIME_TASKS_H
