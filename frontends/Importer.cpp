//===- Importer.cpp - checkpoint -> megatron dialect ----------------------===//
//
// Two steps: find and shape-check every weight the model and head need
// (turning each into a `megatron.weight`, plus the transforms that bring it to
// the canonical form the graph uses), then build the forward graph from those
// values. The canonical forms are: linear weights [out, in]; the fused QKV
// projection with rows ordered [3 (q, k, v), heads, head_dim].
//
//===----------------------------------------------------------------------===//

#include "frontends/Importer.h"

#include "dialects/megatron/MegatronOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <map>
#include <set>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;
using mlir::Value;

namespace mm = mlir::megatron;

llvm::StringRef megatron::toString(Task task) {
  switch (task) {
  case Task::Base: return "base";
  case Task::MaskedLM: return "masked-lm";
  case Task::Pretraining: return "pretraining";
  case Task::NextSentence: return "next-sentence";
  case Task::SequenceClassification: return "sequence-classification";
  case Task::MultipleChoice: return "multiple-choice";
  case Task::TokenClassification: return "token-classification";
  case Task::QuestionAnswering: return "question-answering";
  case Task::CausalLM: return "causal-lm";
  }
  llvm_unreachable("unknown task");
}

std::optional<Task> megatron::parseTask(llvm::StringRef text) {
  return llvm::StringSwitch<std::optional<Task>>(text)
      .Case("base", Task::Base)
      .Case("masked-lm", Task::MaskedLM)
      .Case("pretraining", Task::Pretraining)
      .Case("next-sentence", Task::NextSentence)
      .Case("sequence-classification", Task::SequenceClassification)
      .Case("multiple-choice", Task::MultipleChoice)
      .Case("token-classification", Task::TokenClassification)
      .Case("question-answering", Task::QuestionAnswering)
      .Case("causal-lm", Task::CausalLM)
      .Default(std::nullopt);
}

namespace {

std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (auto [i, d] : llvm::enumerate(shape))
    text += (i ? ", " : "") + std::to_string(d);
  return text + "]";
}

//===----------------------------------------------------------------------===//
// Where weights live
//===----------------------------------------------------------------------===//

enum class LayoutKind { Megatron, HfBert, HfGpt2 };

/// Candidate names for each role, per checkpoint layout. Megatron-LM renamed
/// modules over the years; every spelling is listed and the first present
/// wins.
struct Layout {
  LayoutKind kind;
  std::string root;  ///< prefix of the language model
  std::string block; ///< prefix of the transformer layers

  std::vector<std::string> wordEmbedding() const {
    switch (kind) {
    case LayoutKind::Megatron: return {root + "embedding.word_embeddings.weight"};
    case LayoutKind::HfBert: return {root + "embeddings.word_embeddings.weight"};
    case LayoutKind::HfGpt2: return {root + "wte.weight"};
    }
    llvm_unreachable("layout");
  }
  std::vector<std::string> positionEmbedding() const {
    switch (kind) {
    case LayoutKind::Megatron: return {root + "embedding.position_embeddings.weight"};
    case LayoutKind::HfBert: return {root + "embeddings.position_embeddings.weight"};
    case LayoutKind::HfGpt2: return {root + "wpe.weight"};
    }
    llvm_unreachable("layout");
  }
  std::vector<std::string> tokenTypeEmbedding() const {
    switch (kind) {
    case LayoutKind::Megatron: return {root + "embedding.tokentype_embeddings.weight"};
    case LayoutKind::HfBert: return {root + "embeddings.token_type_embeddings.weight"};
    case LayoutKind::HfGpt2: return {};
    }
    llvm_unreachable("layout");
  }
  /// Prefix of layer `i`, and the text the layer index is found after.
  std::string layerPrefix(int64_t i) const {
    std::string index = std::to_string(i) + ".";
    switch (kind) {
    case LayoutKind::Megatron: return block + "layers." + index;
    case LayoutKind::HfBert: return block + "layer." + index;
    case LayoutKind::HfGpt2: return block + "h." + index;
    }
    llvm_unreachable("layout");
  }
  std::string layerCountPrefix() const {
    std::string p = layerPrefix(0);
    return p.substr(0, p.size() - 2);
  }
  std::vector<std::string> finalNorm() const {
    switch (kind) {
    case LayoutKind::Megatron: return {block + "final_layernorm", block + "final_norm"};
    case LayoutKind::HfBert: return {block + "ln"};
    case LayoutKind::HfGpt2: return {root + "ln_f"};
    }
    llvm_unreachable("layout");
  }
};

/// Module names inside one transformer layer, per layout.
struct LayerNames {
  std::vector<std::string> ln1, qkv, q, k, v, proj, ln2, fc1, fc2;
};

LayerNames layerNames(LayoutKind kind, const std::string &p) {
  switch (kind) {
  case LayoutKind::Megatron:
    return {{p + "input_layernorm", p + "input_norm"},
            {p + "self_attention.query_key_value", p + "attention.query_key_value"},
            {}, {}, {},
            {p + "self_attention.dense", p + "attention.dense"},
            {p + "post_attention_layernorm", p + "post_attention_norm"},
            {p + "mlp.dense_h_to_4h"},
            {p + "mlp.dense_4h_to_h"}};
  case LayoutKind::HfBert:
    return {{p + "attention.ln"}, {},
            {p + "attention.self.query"}, {p + "attention.self.key"},
            {p + "attention.self.value"}, {p + "attention.output.dense"},
            {p + "ln"}, {p + "intermediate.dense"}, {p + "output.dense"}};
  case LayoutKind::HfGpt2:
    return {{p + "ln_1"}, {p + "attn.c_attn"}, {}, {}, {}, {p + "attn.c_proj"},
            {p + "ln_2"}, {p + "mlp.c_fc"}, {p + "mlp.c_proj"}};
  }
  llvm_unreachable("layout");
}

bool hasPrefix(const Checkpoint &ckpt, llvm::StringRef prefix) {
  return llvm::any_of(ckpt.names(), [&](const std::string &name) {
    return llvm::StringRef(name).starts_with(prefix);
  });
}

Layout detectLayout(const Checkpoint &ckpt, ModelType type) {
  if (ckpt.format() == Checkpoint::Format::MegatronLM) {
    std::string root = "language_model.";
    // Megatron-LM called the layer stack `transformer` before `encoder`.
    std::string block = hasPrefix(ckpt, root + "encoder.") ? root + "encoder."
                                                           : root + "transformer.";
    return {LayoutKind::Megatron, root, block};
  }
  if (type == ModelType::Bert) {
    // MegatronBertModel saves without the `bert.` prefix its heads add.
    std::string root = hasPrefix(ckpt, "bert.embeddings.") ? "bert." : "";
    return {LayoutKind::HfBert, root, root + "encoder."};
  }
  std::string root = hasPrefix(ckpt, "transformer.wte.") ? "transformer." : "";
  return {LayoutKind::HfGpt2, root, root};
}

//===----------------------------------------------------------------------===//
// Configuration
//===----------------------------------------------------------------------===//

} // namespace

std::optional<ModelType> megatron::detectModelType(const Checkpoint &ckpt) {
  if (ckpt.storedConfig().modelType)
    return *ckpt.storedConfig().modelType;
  for (const std::string &arch : ckpt.architectures()) {
    if (llvm::StringRef(arch).starts_with("MegatronBert"))
      return ModelType::Bert;
    if (llvm::StringRef(arch).starts_with("GPT2"))
      return ModelType::GPT2;
  }
  llvm::StringRef tokenizer = ckpt.tokenizerType();
  if (tokenizer.contains("Bert"))
    return ModelType::Bert;
  if (tokenizer.contains("GPT2"))
    return ModelType::GPT2;
  if (hasPrefix(ckpt, "transformer.wte.") || hasPrefix(ckpt, "wte."))
    return ModelType::GPT2;
  if (hasPrefix(ckpt, "bert.embeddings.") || hasPrefix(ckpt, "embeddings.word_embeddings."))
    return ModelType::Bert;
  // Megatron BERT has token types and heads that GPT lacks.
  if (hasPrefix(ckpt, "language_model.embedding.tokentype_embeddings.") ||
      hasPrefix(ckpt, "lm_head.") || hasPrefix(ckpt, "binary_head."))
    return ModelType::Bert;
  if (hasPrefix(ckpt, "language_model.embedding.word_embeddings."))
    return ModelType::GPT2;
  return std::nullopt;
}

namespace {
/// What each format assumes when neither the checkpoint nor the user says:
/// Megatron-LM's argument defaults, or the Hugging Face config classes'.
ConfigLayer formatDefaults(Checkpoint::Format format, ModelType type) {
  ConfigLayer d;
  if (format == Checkpoint::Format::MegatronLM) {
    const char *src = "Megatron-LM defaults";
    d.layerNormEps.setIfUnset(1e-5, src);
    d.gelu.setIfUnset(GeluKind::Tanh, src); // bias_gelu_fusion defaults on
    d.headGelu.setIfUnset(GeluKind::Erf, src);
    d.checkpointVersion.setIfUnset(0, src);
    return d;
  }
  const char *src = type == ModelType::Bert ? "MegatronBertConfig defaults"
                                            : "GPT2Config defaults";
  bool bert = type == ModelType::Bert;
  d.layerNormEps.setIfUnset(bert ? 1e-12 : 1e-5, src);
  d.gelu.setIfUnset(bert ? GeluKind::Erf : GeluKind::Tanh, src);
  d.headGelu.setIfUnset(*d.gelu, src);
  d.numHeads.setIfUnset(bert ? 16 : 12, src);
  d.numLabels.setIfUnset(2, src);
  return d;
}

/// Values the weights determine. A configured value that disagrees is an
/// error naming both sources; an unconfigured one is taken from the weights.
struct ShapeFacts {
  const Checkpoint &ckpt;
  llvm::Error check(const Sourced<int64_t> &configured, int64_t actual,
                    llvm::StringRef what, llvm::StringRef tensor) const {
    if (configured && *configured != actual)
      return createStringError(formatv(
          "{0} says {1} = {2}, but checkpoint tensor '{3}' has shape {4}",
          configured.source, what, *configured, tensor,
          formatShape(ckpt.find(tensor)->shape)));
    return llvm::Error::success();
  }
};

llvm::Expected<std::string> pickName(const Checkpoint &ckpt,
                                     llvm::ArrayRef<std::string> candidates,
                                     llvm::StringRef role) {
  for (const std::string &name : candidates)
    if (ckpt.find(name))
      return name;
  std::string tried;
  for (const std::string &name : candidates)
    tried += (tried.empty() ? "'" : " or '") + name + "'";
  return createStringError(
      formatv("checkpoint '{0}' has no {1} (looked for {2})", ckpt.path(),
              role, tried));
}

int64_t countLayers(const Checkpoint &ckpt, const Layout &layout,
                    std::set<int64_t> &indices) {
  std::string prefix = layout.layerCountPrefix();
  for (const std::string &name : ckpt.names()) {
    llvm::StringRef rest(name);
    if (!rest.consume_front(prefix))
      continue;
    int64_t index;
    if (!rest.consumeInteger(10, index) && rest.starts_with("."))
      indices.insert(index);
  }
  return static_cast<int64_t>(indices.size());
}
} // namespace

llvm::Expected<ModelConfig>
megatron::resolveConfig(const Checkpoint &ckpt, const ImportOptions &options) {
  ConfigLayer merged;
  if (options.modelType)
    merged.modelType.setIfUnset(*options.modelType, "--model-type");
  for (const ConfigLayer &layer : options.overrides)
    merged.inheritFrom(layer);
  merged.inheritFrom(ckpt.storedConfig());
  if (!merged.modelType)
    if (std::optional<ModelType> detected = detectModelType(ckpt))
      merged.modelType.setIfUnset(*detected, "autodetected");
  if (!merged.modelType)
    return createStringError(formatv(
        "cannot tell whether '{0}' is a BERT or GPT-2 model; pass "
        "--model-type bert|gpt2",
        ckpt.path()));
  ModelType type = *merged.modelType;
  merged.inheritFrom(formatDefaults(ckpt.format(), type));

  ModelConfig config;
  config.modelType = type;
  Layout layout = detectLayout(ckpt, type);
  ShapeFacts facts{ckpt};

  auto word = pickName(ckpt, layout.wordEmbedding(), "word embedding");
  if (!word)
    return word.takeError();
  auto pos = pickName(ckpt, layout.positionEmbedding(), "position embedding");
  if (!pos)
    return pos.takeError();
  const TensorInfo &wordInfo = *ckpt.find(*word);
  const TensorInfo &posInfo = *ckpt.find(*pos);
  if (wordInfo.shape.size() != 2 || posInfo.shape.size() != 2 ||
      wordInfo.shape[1] != posInfo.shape[1])
    return createStringError(formatv(
        "word embedding '{0}' {1} and position embedding '{2}' {3} must be "
        "[rows, hidden] with the same hidden size",
        *word, formatShape(wordInfo.shape), *pos, formatShape(posInfo.shape)));
  config.hiddenSize = wordInfo.shape[1];
  config.paddedVocabSize = wordInfo.shape[0];
  config.maxPositions = posInfo.shape[0];
  if (auto err = facts.check(merged.hiddenSize, config.hiddenSize,
                             "hidden size", *word))
    return std::move(err);
  if (auto err = facts.check(merged.paddedVocabSize, config.paddedVocabSize,
                             "padded vocabulary size", *word))
    return std::move(err);
  if (auto err = facts.check(merged.maxPositions, config.maxPositions,
                             "max positions", *pos))
    return std::move(err);

  std::set<int64_t> indices;
  config.numLayers = countLayers(ckpt, layout, indices);
  if (config.numLayers == 0)
    return createStringError(formatv("checkpoint '{0}' has no transformer "
                                     "layers (no tensors under '{1}N.')",
                                     ckpt.path(), layout.layerCountPrefix()));
  if (*indices.rbegin() != config.numLayers - 1)
    return createStringError(formatv(
        "checkpoint '{0}' has {1} transformer layers numbered up to {2}; "
        "layers are missing",
        ckpt.path(), config.numLayers, *indices.rbegin()));
  if (merged.numLayers && *merged.numLayers != config.numLayers)
    return createStringError(formatv(
        "{0} says {1} layers, but checkpoint '{2}' has {3}",
        merged.numLayers.source, *merged.numLayers, ckpt.path(),
        config.numLayers));

  LayerNames first = layerNames(layout.kind, layout.layerPrefix(0));
  auto fc1 = pickName(ckpt, {first.fc1[0] + ".weight"}, "MLP input weight");
  if (!fc1)
    return fc1.takeError();
  const TensorInfo &fc1Info = *ckpt.find(*fc1);
  // GPT-2's Conv1D stores [in, out]; the others [out, in].
  bool conv1d = layout.kind == LayoutKind::HfGpt2;
  if (fc1Info.shape.size() != 2)
    return createStringError(formatv("'{0}' must be a matrix, has shape {1}",
                                     *fc1, formatShape(fc1Info.shape)));
  config.ffnSize = fc1Info.shape[conv1d ? 1 : 0];
  if (auto err = facts.check(merged.ffnSize, config.ffnSize, "ffn size", *fc1))
    return std::move(err);

  if (type == ModelType::Bert) {
    if (auto tt = pickName(ckpt, layout.tokenTypeEmbedding(), "")) {
      config.typeVocabSize = ckpt.find(*tt)->shape[0];
      if (auto err = facts.check(merged.typeVocabSize, config.typeVocabSize,
                                 "token type vocabulary size", *tt))
        return std::move(err);
    } else {
      llvm::consumeError(tt.takeError());
    }
  }

  if (merged.numHeads) {
    config.numHeads = *merged.numHeads;
  } else if (config.hiddenSize == 1024) {
    config.numHeads = 16; // the published 345M models
  } else {
    return createStringError(formatv(
        "checkpoint '{0}' does not record the number of attention heads; pass "
        "--set {1}=N or --config",
        ckpt.path(),
        type == ModelType::Bert ? "num_attention_heads" : "n_head"));
  }
  if (config.hiddenSize % config.numHeads != 0)
    return createStringError(formatv(
        "{0}: {1} attention heads do not divide hidden size {2}",
        merged.numHeads ? merged.numHeads.source : "345M defaults",
        config.numHeads, config.hiddenSize));

  config.vocabSize = config.paddedVocabSize;
  if (merged.vocabSize) {
    if (*merged.vocabSize > config.paddedVocabSize)
      return createStringError(formatv(
          "{0} says vocab_size = {1}, but the word embedding '{2}' has only "
          "{3} rows",
          merged.vocabSize.source, *merged.vocabSize, *word,
          config.paddedVocabSize));
    config.vocabSize = *merged.vocabSize;
  } else if (type == ModelType::GPT2 &&
             ckpt.format() == Checkpoint::Format::MegatronLM &&
             config.paddedVocabSize == 50304 &&
             (ckpt.tokenizerType().empty() ||
              ckpt.tokenizerType() == "GPT2BPETokenizer")) {
    // Megatron pads GPT-2's BPE vocabulary of 50257 to 50304 rows; the
    // padding rows are never valid outputs.
    config.vocabSize = 50257;
  }

  config.layerNormEps = *merged.layerNormEps;
  config.gelu = *merged.gelu;
  config.headGelu = *merged.headGelu;
  config.checkpointVersion = *merged.checkpointVersion;
  if (merged.numLabels)
    config.numLabels = *merged.numLabels;
  if (merged.labels) {
    if (static_cast<int64_t>((*merged.labels).size()) != config.numLabels)
      return createStringError(formatv(
          "{0} names {1} labels (id2label), but num_labels is {2} ({3})",
          merged.labels.source, (*merged.labels).size(), config.numLabels,
          merged.numLabels.source));
    config.labels = *merged.labels;
  }
  config.causal = merged.causal ? *merged.causal : false;
  return config;
}

namespace {

//===----------------------------------------------------------------------===//
// Weights of the model
//===----------------------------------------------------------------------===//

struct Linear {
  Value weight; ///< [out, in]
  Value bias;   ///< [out] or null
};
struct Norm {
  Value gamma, beta;
};
struct LayerWeights {
  Norm ln1, ln2;
  /// One fused projection with rows [3, heads, head_dim], or separate q, k, v.
  llvm::SmallVector<Linear, 3> qkv;
  Linear proj, fc1, fc2;
};
struct ModelWeights {
  Value word, position, tokenType;
  std::vector<LayerWeights> layers;
  Norm finalNorm;
  // Heads; null where the task does not use them.
  std::optional<Linear> pooler, lmTransform, nsp, classifier, qa;
  std::optional<Norm> lmNorm;
  Value lmDecoder; ///< [vocab, hidden]
  Value lmBias;    ///< [vocab] or null
};

class WeightCollector {
public:
  WeightCollector(mlir::OpBuilder &b, const Checkpoint &ckpt,
                  const ModelConfig &config, const Layout &layout)
      : b(b), ckpt(ckpt), config(config), layout(layout),
        loc(b.getUnknownLoc()), f32(b.getF32Type()) {}

  llvm::Expected<ModelWeights> collect(Task task);

private:
  /// A `megatron.weight` for `name`, which must have `shape`. One op per
  /// name, so tied weights are one value.
  llvm::Expected<Value> weight(const std::string &name,
                               llvm::ArrayRef<int64_t> shape) {
    const TensorInfo *info = ckpt.find(name);
    if (!info)
      return createStringError(formatv("checkpoint '{0}' has no tensor '{1}'",
                                       ckpt.path(), name));
    if (llvm::ArrayRef<int64_t>(info->shape) != shape)
      return createStringError(formatv(
          "checkpoint tensor '{0}' has shape {1}, but the configuration "
          "(hidden {2}, ffn {3}, heads {4}) needs {5}",
          name, formatShape(info->shape), config.hiddenSize, config.ffnSize,
          config.numHeads, formatShape(shape)));
    auto it = cache.find(name);
    if (it != cache.end())
      return it->second;
    Value v = mm::WeightOp::create(b, loc, type(shape), name);
    cache[name] = v;
    return v;
  }

  mlir::RankedTensorType type(llvm::ArrayRef<int64_t> shape) {
    return mlir::RankedTensorType::get(shape, f32);
  }

  llvm::Expected<Value> named(llvm::ArrayRef<std::string> candidates,
                              llvm::StringRef role,
                              llvm::ArrayRef<int64_t> shape) {
    auto name = pickName(ckpt, candidates, role);
    if (!name)
      return name.takeError();
    return weight(*name, shape);
  }

  /// `module.weight` [out, in] (stored [in, out] for Conv1D) and, when
  /// present or required, `module.bias` [out].
  llvm::Expected<Linear> linear(llvm::ArrayRef<std::string> modules,
                                llvm::StringRef role, int64_t out, int64_t in,
                                bool conv1d = false) {
    auto module = pickName(ckpt, suffixed(modules, ".weight"), role);
    if (!module)
      return module.takeError();
    std::string base = module->substr(0, module->size() - strlen(".weight"));
    Linear l;
    auto w = weight(*module, conv1d ? llvm::ArrayRef<int64_t>{in, out}
                                    : llvm::ArrayRef<int64_t>{out, in});
    if (!w)
      return w.takeError();
    l.weight = conv1d ? transpose(*w, {1, 0}) : *w;
    if (ckpt.find(base + ".bias")) {
      auto bias = weight(base + ".bias", {out});
      if (!bias)
        return bias.takeError();
      l.bias = *bias;
    }
    return l;
  }

  llvm::Expected<Norm> norm(llvm::ArrayRef<std::string> modules,
                            llvm::StringRef role) {
    auto module = pickName(ckpt, suffixed(modules, ".weight"), role);
    if (!module)
      return module.takeError();
    std::string base = module->substr(0, module->size() - strlen(".weight"));
    auto gamma = weight(*module, {config.hiddenSize});
    if (!gamma)
      return gamma.takeError();
    auto beta = weight(base + ".bias", {config.hiddenSize});
    if (!beta)
      return beta.takeError();
    return Norm{*gamma, *beta};
  }

  static std::vector<std::string> suffixed(llvm::ArrayRef<std::string> names,
                                           llvm::StringRef suffix) {
    std::vector<std::string> out;
    for (const std::string &name : names)
      out.push_back(name + suffix.str());
    return out;
  }

  Value transpose(Value v, llvm::ArrayRef<int64_t> perm) {
    auto shape = mlir::cast<mlir::RankedTensorType>(v.getType()).getShape();
    llvm::SmallVector<int64_t> result;
    for (int64_t p : perm)
      result.push_back(shape[p]);
    return mm::TransposeOp::create(b, loc, type(result), v,
                                   b.getDenseI64ArrayAttr(perm));
  }

  Value reshape(Value v, llvm::ArrayRef<int64_t> shape) {
    return mm::ReshapeOp::create(b, loc, type(shape), v, mlir::ValueRange{});
  }

  /// Brings a Megatron query_key_value weight or bias (rows first) from the
  /// checkpoint version's row order to [3, heads, head_dim].
  Value canonicalQkvRows(Value v) {
    auto shape = mlir::cast<mlir::RankedTensorType>(v.getType()).getShape();
    llvm::SmallVector<int64_t> rest(shape.drop_front());
    int64_t heads = config.numHeads, dim = config.headDim();
    llvm::SmallVector<int64_t> split, perm;
    if (config.checkpointVersion == 0)
      return v; // already [3, heads, head_dim]
    if (config.checkpointVersion == 1.0) {
      split = {heads, dim, 3};
      perm = {2, 0, 1};
    } else {
      split = {heads, 3, dim};
      perm = {1, 0, 2};
    }
    split.append(rest);
    for (size_t i = 3; i < split.size(); ++i)
      perm.push_back(i);
    return reshape(transpose(reshape(v, split), perm), shape);
  }

  llvm::Expected<LayerWeights> layer(int64_t i);
  llvm::Error head(Task task, ModelWeights &w);

  mlir::OpBuilder &b;
  const Checkpoint &ckpt;
  const ModelConfig &config;
  const Layout &layout;
  mlir::Location loc;
  mlir::Type f32;
  std::map<std::string, Value> cache;
};

llvm::Expected<LayerWeights> WeightCollector::layer(int64_t i) {
  LayerNames n = layerNames(layout.kind, layout.layerPrefix(i));
  int64_t h = config.hiddenSize, ffn = config.ffnSize;
  bool conv1d = layout.kind == LayoutKind::HfGpt2;
  std::string where = "layer " + std::to_string(i) + " ";
  LayerWeights lw;
  auto ln1 = norm(n.ln1, where + "input layernorm");
  if (!ln1)
    return ln1.takeError();
  lw.ln1 = *ln1;
  if (!n.qkv.empty()) {
    auto qkv = linear(n.qkv, where + "QKV projection", 3 * h, h, conv1d);
    if (!qkv)
      return qkv.takeError();
    if (layout.kind == LayoutKind::Megatron) {
      qkv->weight = canonicalQkvRows(qkv->weight);
      if (qkv->bias)
        qkv->bias = canonicalQkvRows(qkv->bias);
    }
    lw.qkv.push_back(*qkv);
  } else {
    for (const auto &[names, what] :
         {std::pair{&n.q, "query"}, {&n.k, "key"}, {&n.v, "value"}}) {
      auto proj = linear(*names, where + what + " projection", h, h);
      if (!proj)
        return proj.takeError();
      lw.qkv.push_back(*proj);
    }
  }
  auto proj = linear(n.proj, where + "attention output", h, h, conv1d);
  if (!proj)
    return proj.takeError();
  lw.proj = *proj;
  auto ln2 = norm(n.ln2, where + "post-attention layernorm");
  if (!ln2)
    return ln2.takeError();
  lw.ln2 = *ln2;
  auto fc1 = linear(n.fc1, where + "MLP input", ffn, h, conv1d);
  if (!fc1)
    return fc1.takeError();
  lw.fc1 = *fc1;
  auto fc2 = linear(n.fc2, where + "MLP output", h, ffn, conv1d);
  if (!fc2)
    return fc2.takeError();
  lw.fc2 = *fc2;
  return lw;
}

bool needsPooler(Task task) {
  return task == Task::Base || task == Task::Pretraining ||
         task == Task::NextSentence || task == Task::SequenceClassification ||
         task == Task::MultipleChoice;
}

bool needsLmHead(Task task) {
  return task == Task::MaskedLM || task == Task::Pretraining ||
         task == Task::CausalLM;
}

llvm::Error WeightCollector::head(Task task, ModelWeights &w) {
  int64_t h = config.hiddenSize;
  bool megatron = layout.kind == LayoutKind::Megatron;
  std::string root = layout.root;
  auto assign = [](std::optional<Linear> &slot,
                   llvm::Expected<Linear> l) -> llvm::Error {
    if (!l)
      return l.takeError();
    slot = *l;
    return llvm::Error::success();
  };

  if (needsPooler(task)) {
    std::vector<std::string> names = {root + "pooler.dense"};
    // The base model's pooled output is optional (add_pooling_layer=False).
    if (task != Task::Base || ckpt.find(names[0] + ".weight"))
      if (auto err = assign(w.pooler, linear(names, "pooler", h, h)))
        return err;
  }

  if (needsLmHead(task)) {
    if (config.modelType == ModelType::Bert) {
      std::vector<std::string> dense = {"lm_head.dense",
                                        "cls.predictions.transform.dense"};
      if (auto err = assign(w.lmTransform,
                            linear(dense, "masked-LM head transform", h, h)))
        return err;
      auto n = norm({"lm_head.layernorm", "lm_head.norm",
                     "cls.predictions.transform.LayerNorm"},
                    "masked-LM head layernorm");
      if (!n)
        return n.takeError();
      w.lmNorm = *n;
      auto bias = named({"lm_head.bias", "cls.predictions.bias"},
                        "masked-LM output bias", {config.paddedVocabSize});
      if (!bias)
        return bias.takeError();
      w.lmBias = *bias;
    }
    // Logits come from the (tied) word embedding unless the checkpoint
    // keeps an untied output layer.
    std::string untied = root + "output_layer.weight";
    if (megatron && ckpt.find(untied)) {
      auto out = weight(untied, {config.paddedVocabSize, h});
      if (!out)
        return out.takeError();
      w.lmDecoder = *out;
    } else {
      w.lmDecoder = w.word;
    }
    if (config.vocabSize < config.paddedVocabSize) {
      auto slice = [&](Value v, llvm::SmallVector<int64_t> shape) -> Value {
        shape[0] = config.vocabSize;
        return mm::SliceOp::create(b, loc, type(shape), v, 0, 0,
                                   config.vocabSize);
      };
      w.lmDecoder = slice(w.lmDecoder, {config.paddedVocabSize, h});
      if (w.lmBias)
        w.lmBias = slice(w.lmBias, {config.paddedVocabSize});
    }
  }

  switch (task) {
  case Task::Pretraining:
  case Task::NextSentence:
    return assign(w.nsp, linear({"binary_head", "cls.seq_relationship"},
                                "next-sentence head", 2, h));
  case Task::SequenceClassification:
    return assign(w.classifier,
                  linear({"classification_head", "classifier"},
                         "sequence-classification head", config.numLabels, h));
  case Task::MultipleChoice:
    return assign(w.classifier, linear({"multichoice_head", "classifier"},
                                       "multiple-choice head", 1, h));
  case Task::TokenClassification:
    return assign(w.classifier, linear({"classifier"},
                                       "token-classification head",
                                       config.numLabels, h));
  case Task::QuestionAnswering:
    return assign(w.qa, linear({"qa_outputs"}, "question-answering head", 2, h));
  default:
    return llvm::Error::success();
  }
}

llvm::Expected<ModelWeights> WeightCollector::collect(Task task) {
  ModelWeights w;
  int64_t h = config.hiddenSize;
  auto word = named(layout.wordEmbedding(), "word embedding",
                    {config.paddedVocabSize, h});
  if (!word)
    return word.takeError();
  w.word = *word;
  auto pos = named(layout.positionEmbedding(), "position embedding",
                   {config.maxPositions, h});
  if (!pos)
    return pos.takeError();
  w.position = *pos;
  if (config.typeVocabSize > 0) {
    auto tt = named(layout.tokenTypeEmbedding(), "token type embedding",
                    {config.typeVocabSize, h});
    if (!tt)
      return tt.takeError();
    w.tokenType = *tt;
  }
  for (int64_t i = 0; i < config.numLayers; ++i) {
    auto lw = layer(i);
    if (!lw)
      return lw.takeError();
    w.layers.push_back(std::move(*lw));
  }
  auto fin = norm(layout.finalNorm(), "final layernorm");
  if (!fin)
    return fin.takeError();
  w.finalNorm = *fin;
  if (auto err = head(task, w))
    return std::move(err);
  return w;
}

//===----------------------------------------------------------------------===//
// The forward graph
//===----------------------------------------------------------------------===//

class GraphBuilder {
public:
  GraphBuilder(mlir::OpBuilder &b, const ModelConfig &config)
      : b(b), config(config), loc(b.getUnknownLoc()), f32(b.getF32Type()) {}

  /// Fills `func` (whose arguments are the inputs) and returns its outputs.
  llvm::SmallVector<std::pair<std::string, Value>>
  build(Task task, const ModelWeights &w, Value ids, Value tokenTypes,
        Value mask);

private:
  static constexpr int64_t kDyn = mlir::ShapedType::kDynamic;

  mlir::RankedTensorType type(llvm::ArrayRef<int64_t> shape) {
    return mlir::RankedTensorType::get(shape, f32);
  }
  static llvm::ArrayRef<int64_t> shapeOf(Value v) {
    return mlir::cast<mlir::RankedTensorType>(v.getType()).getShape();
  }
  llvm::SmallVector<int64_t> withLast(Value v, int64_t last) {
    llvm::SmallVector<int64_t> shape(shapeOf(v));
    shape.back() = last;
    return shape;
  }
  Value dim(Value v, int64_t d) {
    return mlir::tensor::DimOp::create(b, loc, v, d);
  }

  Value linear(Value x, const Linear &l) {
    int64_t out = shapeOf(l.weight)[0];
    return mm::LinearOp::create(b, loc, type(withLast(x, out)), x, l.weight,
                                l.bias);
  }
  Value norm(Value x, const Norm &n) {
    return mm::LayerNormOp::create(b, loc, x.getType(), x, n.gamma, n.beta,
                                   b.getF64FloatAttr(config.layerNormEps));
  }
  Value add(Value a, Value c) {
    return mm::AddOp::create(b, loc, a.getType(), a, c);
  }
  Value gelu(Value x, GeluKind kind) {
    auto approx = kind == GeluKind::Erf ? mm::GeluApproximation::Erf
                                        : mm::GeluApproximation::Tanh;
    return mm::GeluOp::create(
        b, loc, x, mm::GeluApproximationAttr::get(b.getContext(), approx));
  }
  Value embed(Value table, Value ids) {
    llvm::SmallVector<int64_t> shape(shapeOf(ids));
    shape.push_back(shapeOf(table)[1]);
    return mm::EmbeddingOp::create(b, loc, type(shape), table, ids);
  }
  /// The slice [start, start + size) of the last dimension.
  Value sliceLast(Value x, int64_t start, int64_t size) {
    return mm::SliceOp::create(b, loc, type(withLast(x, size)), x,
                               shapeOf(x).size() - 1, start, size);
  }

  Value attention(Value x, const LayerWeights &lw, Value mask);
  Value layer(Value x, const LayerWeights &lw, Value mask);
  /// x[:, 0] of a [batch, seq, hidden] tensor.
  Value firstToken(Value x);
  /// Drops a trailing dimension of size 1.
  Value squeezeLast(Value x);

  mlir::OpBuilder &b;
  const ModelConfig &config;
  mlir::Location loc;
  mlir::Type f32;
};

Value GraphBuilder::attention(Value x, const LayerWeights &lw, Value mask) {
  int64_t h = config.hiddenSize, heads = config.numHeads;
  Value q, k, v;
  if (lw.qkv.size() == 1) {
    Value qkv = linear(x, lw.qkv[0]);
    q = sliceLast(qkv, 0, h);
    k = sliceLast(qkv, h, h);
    v = sliceLast(qkv, 2 * h, h);
  } else {
    q = linear(x, lw.qkv[0]);
    k = linear(x, lw.qkv[1]);
    v = linear(x, lw.qkv[2]);
  }
  auto headsType = type({kDyn, heads, kDyn, config.headDim()});
  auto split = [&](Value t) {
    return mm::SplitHeadsOp::create(b, loc, headsType, t, heads);
  };
  Value qh = split(q), kh = split(k), vh = split(v);
  auto scoresType = type({kDyn, heads, kDyn, kDyn});
  Value scores = mm::MatmulOp::create(b, loc, scoresType, qh, kh,
                                      /*transpose_rhs=*/true);
  scores = mm::ScaleOp::create(
      b, loc, scores,
      b.getF64FloatAttr(1.0 / std::sqrt(double(config.headDim()))));
  scores = mm::AttentionMaskOp::create(b, loc, scoresType, scores, mask,
                                       config.causal);
  Value probs = mm::SoftmaxOp::create(b, loc, scores);
  Value context = mm::MatmulOp::create(b, loc, headsType, probs, vh,
                                       /*transpose_rhs=*/false);
  Value merged =
      mm::MergeHeadsOp::create(b, loc, type({kDyn, kDyn, h}), context);
  return linear(merged, lw.proj);
}

Value GraphBuilder::layer(Value x, const LayerWeights &lw, Value mask) {
  // Pre-LayerNorm: the residual stream bypasses both norms.
  Value h = add(x, attention(norm(x, lw.ln1), lw, mask));
  Value mlp = linear(gelu(linear(norm(h, lw.ln2), lw.fc1), config.gelu), lw.fc2);
  return add(h, mlp);
}

Value GraphBuilder::firstToken(Value x) {
  int64_t h = shapeOf(x).back();
  Value token = mm::SliceOp::create(b, loc, type({kDyn, 1, h}), x, 1, 0, 1);
  return mm::ReshapeOp::create(b, loc, type({kDyn, h}), token,
                               mlir::ValueRange{dim(x, 0)});
}

Value GraphBuilder::squeezeLast(Value x) {
  llvm::ArrayRef<int64_t> shape = shapeOf(x);
  llvm::SmallVector<Value> sizes;
  for (auto [i, d] : llvm::enumerate(shape.drop_back()))
    if (d == kDyn)
      sizes.push_back(dim(x, i));
  return mm::ReshapeOp::create(b, loc, type(shape.drop_back()), x, sizes);
}

llvm::SmallVector<std::pair<std::string, Value>>
GraphBuilder::build(Task task, const ModelWeights &w, Value ids,
                    Value tokenTypes, Value mask) {
  // Multiple choice runs [batch, choices, seq] as [batch * choices, seq].
  Value choiceIds = ids;
  auto flatten = [&](Value v) -> Value {
    if (!v || task != Task::MultipleChoice)
      return v;
    Value rows = mlir::arith::MulIOp::create(b, loc, dim(v, 0), dim(v, 1));
    auto idType = mlir::cast<mlir::RankedTensorType>(v.getType());
    return mm::ReshapeOp::create(
        b, loc,
        mlir::RankedTensorType::get({kDyn, kDyn}, idType.getElementType()), v,
        mlir::ValueRange{rows, dim(v, 2)});
  };
  ids = flatten(ids);
  tokenTypes = flatten(tokenTypes);
  mask = flatten(mask);

  Value positions = mm::PositionsOp::create(b, loc, ids);
  Value words = embed(w.word, ids);
  Value x = add(words, embed(w.position, positions));
  if (w.tokenType)
    x = add(x, embed(w.tokenType, tokenTypes));
  for (const LayerWeights &lw : w.layers)
    x = layer(x, lw, mask);
  Value sequence = norm(x, w.finalNorm);

  Value pooled;
  if (w.pooler)
    pooled = mm::TanhOp::create(b, loc, linear(firstToken(sequence), *w.pooler));
  auto lmLogits = [&]() {
    Value hidden = sequence;
    if (w.lmTransform)
      hidden = norm(gelu(linear(sequence, *w.lmTransform), config.headGelu),
                    *w.lmNorm);
    return linear(hidden, Linear{w.lmDecoder, w.lmBias});
  };

  switch (task) {
  case Task::Base:
    if (pooled)
      return {{"last_hidden_state", sequence}, {"pooler_output", pooled}};
    return {{"last_hidden_state", sequence}};
  case Task::MaskedLM:
  case Task::CausalLM:
    return {{"logits", lmLogits()}};
  case Task::Pretraining:
    return {{"prediction_logits", lmLogits()},
            {"seq_relationship_logits", linear(pooled, *w.nsp)}};
  case Task::NextSentence:
    return {{"logits", linear(pooled, *w.nsp)}};
  case Task::SequenceClassification:
    return {{"logits", linear(pooled, *w.classifier)}};
  case Task::MultipleChoice: {
    Value scores = linear(pooled, *w.classifier); // [batch * choices, 1]
    Value logits = mm::ReshapeOp::create(
        b, loc, type({kDyn, kDyn}), scores,
        mlir::ValueRange{dim(choiceIds, 0), dim(choiceIds, 1)});
    return {{"logits", logits}};
  }
  case Task::TokenClassification:
    return {{"logits", linear(sequence, *w.classifier)}};
  case Task::QuestionAnswering: {
    Value spans = linear(sequence, *w.qa); // [batch, seq, 2]
    return {{"start_logits", squeezeLast(sliceLast(spans, 0, 1))},
            {"end_logits", squeezeLast(sliceLast(spans, 1, 1))}};
  }
  }
  llvm_unreachable("unknown task");
}

/// The head a Hugging Face `architectures` entry names.
std::optional<Task> taskFromArchitecture(llvm::StringRef arch) {
  return llvm::StringSwitch<std::optional<Task>>(arch)
      .Case("MegatronBertModel", Task::Base)
      .Case("MegatronBertForMaskedLM", Task::MaskedLM)
      .Case("MegatronBertForPreTraining", Task::Pretraining)
      .Case("MegatronBertForNextSentencePrediction", Task::NextSentence)
      .Case("MegatronBertForSequenceClassification",
            Task::SequenceClassification)
      .Case("MegatronBertForMultipleChoice", Task::MultipleChoice)
      .Case("MegatronBertForTokenClassification", Task::TokenClassification)
      .Case("MegatronBertForQuestionAnswering", Task::QuestionAnswering)
      .Case("MegatronBertForCausalLM", Task::CausalLM)
      .Case("GPT2LMHeadModel", Task::CausalLM)
      .Default(std::nullopt);
}

mlir::DictionaryAttr configAttr(mlir::Builder &b, const ModelConfig &c,
                                Task task) {
  llvm::SmallVector<mlir::NamedAttribute> items = {
      b.getNamedAttr("model_type", b.getStringAttr(toString(c.modelType))),
      b.getNamedAttr("task", b.getStringAttr(toString(task))),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(c.hiddenSize)),
      b.getNamedAttr("num_layers", b.getI64IntegerAttr(c.numLayers)),
      b.getNamedAttr("num_heads", b.getI64IntegerAttr(c.numHeads)),
      b.getNamedAttr("ffn_size", b.getI64IntegerAttr(c.ffnSize)),
      b.getNamedAttr("max_positions", b.getI64IntegerAttr(c.maxPositions)),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(c.vocabSize)),
      b.getNamedAttr("padded_vocab_size",
                     b.getI64IntegerAttr(c.paddedVocabSize)),
      b.getNamedAttr("type_vocab_size", b.getI64IntegerAttr(c.typeVocabSize)),
      b.getNamedAttr("layer_norm_eps", b.getF64FloatAttr(c.layerNormEps)),
      b.getNamedAttr("causal", b.getBoolAttr(c.causal)),
  };
  if (!c.labels.empty()) {
    llvm::SmallVector<mlir::Attribute> names;
    for (const std::string &name : c.labels)
      names.push_back(b.getStringAttr(name));
    items.push_back(b.getNamedAttr("labels", b.getArrayAttr(names)));
  }
  return b.getDictionaryAttr(items);
}
} // namespace

llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
megatron::importCheckpoint(mlir::MLIRContext &context, const Checkpoint &ckpt,
                           const ImportOptions &options) {
  context.loadDialect<mm::MegatronDialect, mlir::func::FuncDialect,
                      mlir::arith::ArithDialect, mlir::tensor::TensorDialect>();
  auto resolved = resolveConfig(ckpt, options);
  if (!resolved)
    return resolved.takeError();
  ModelConfig config = *resolved;

  std::optional<Task> task = options.task;
  if (!task)
    for (const std::string &arch : ckpt.architectures())
      if ((task = taskFromArchitecture(arch)))
        break;
  if (!task)
    task = config.modelType == ModelType::Bert ? Task::MaskedLM : Task::CausalLM;
  if (config.modelType == ModelType::GPT2 && *task != Task::CausalLM)
    return createStringError(formatv(
        "task '{0}' is not available for GPT-2 models (only causal-lm)",
        toString(*task)));
  // A causal LM attends causally whatever the configuration says.
  if (*task == Task::CausalLM)
    config.causal = true;

  mlir::OpBuilder b(&context);
  mlir::Location loc = mlir::FileLineColLoc::get(&context, ckpt.path(), 0, 0);
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::ModuleOp::create(loc);
  module->getOperation()->setAttr(mm::MegatronDialect::kConfigAttrName,
                                  configAttr(b, config, *task));

  // Inputs: [batch, seq] ids (with a choices dimension for multiple choice).
  bool bert = config.modelType == ModelType::Bert;
  int64_t rank = *task == Task::MultipleChoice ? 3 : 2;
  auto idType = mlir::RankedTensorType::get(
      llvm::SmallVector<int64_t>(rank, mlir::ShapedType::kDynamic),
      b.getI64Type());
  llvm::SmallVector<std::string> inputNames = {"input_ids"};
  if (bert && config.typeVocabSize > 0)
    inputNames.push_back("token_type_ids");
  inputNames.push_back("attention_mask");

  auto func = mlir::func::FuncOp::create(
      b, loc, "forward",
      b.getFunctionType(
          llvm::SmallVector<mlir::Type>(inputNames.size(), idType), {}));
  module->push_back(func);
  mlir::Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);

  Layout layout = detectLayout(ckpt, config.modelType);
  WeightCollector collector(b, ckpt, config, layout);
  auto weights = collector.collect(*task);
  if (!weights)
    return weights.takeError();

  Value ids = entry->getArgument(0);
  Value tokenTypes = inputNames.size() == 3 ? entry->getArgument(1) : Value();
  Value mask = entry->getArguments().back();
  GraphBuilder graph(b, config);
  auto outputs = graph.build(*task, *weights, ids, tokenTypes, mask);

  llvm::SmallVector<Value> results;
  for (auto &[name, value] : outputs)
    results.push_back(value);
  mlir::func::ReturnOp::create(b, loc, results);
  func.setType(b.getFunctionType(func.getArgumentTypes(),
                                 mlir::ValueRange(results).getTypes()));
  for (auto [i, name] : llvm::enumerate(inputNames))
    func.setArgAttr(i, mm::MegatronDialect::kInputAttrName,
                    b.getStringAttr(name));
  for (auto [i, output] : llvm::enumerate(outputs))
    func.setResultAttr(i, mm::MegatronDialect::kOutputAttrName,
                       b.getStringAttr(output.first));

  if (mlir::failed(mlir::verify(*module)))
    return createStringError(
        "internal error: the imported module does not verify");
  return module;
}
