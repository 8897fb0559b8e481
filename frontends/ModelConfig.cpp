//===- ModelConfig.cpp - configuration layers -----------------------------===//

#include "frontends/ModelConfig.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

#include <nlohmann/json.hpp>

#include <set>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;

llvm::StringRef megatron::toString(ModelType type) {
  return type == ModelType::Bert ? "bert" : "gpt2";
}

std::optional<ModelType> megatron::parseModelType(llvm::StringRef text) {
  return llvm::StringSwitch<std::optional<ModelType>>(text)
      .Cases({"bert", "megatron-bert", "megatron_bert"}, ModelType::Bert)
      .Cases({"gpt2", "gpt-2", "megatron-gpt2"}, ModelType::GPT2)
      .Default(std::nullopt);
}

void ConfigLayer::inheritFrom(const ConfigLayer &lower) {
  auto take = [](auto &mine, const auto &theirs) {
    if (!mine && theirs)
      mine = theirs;
  };
  take(modelType, lower.modelType);
  take(hiddenSize, lower.hiddenSize);
  take(numLayers, lower.numLayers);
  take(numHeads, lower.numHeads);
  take(ffnSize, lower.ffnSize);
  take(maxPositions, lower.maxPositions);
  take(vocabSize, lower.vocabSize);
  take(paddedVocabSize, lower.paddedVocabSize);
  take(typeVocabSize, lower.typeVocabSize);
  take(numLabels, lower.numLabels);
  take(layerNormEps, lower.layerNormEps);
  take(checkpointVersion, lower.checkpointVersion);
  take(gelu, lower.gelu);
  take(headGelu, lower.headGelu);
  take(causal, lower.causal);
  take(labels, lower.labels);
}

namespace {
/// A JSON value for an error message. --set values are unchecked bytes, and
/// nlohmann's default dump throws on invalid UTF-8.
std::string describe(const nlohmann::json &value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Hugging Face `hidden_act` / `activation_function` values we can compute.
std::optional<GeluKind> parseActivation(llvm::StringRef name) {
  return llvm::StringSwitch<std::optional<GeluKind>>(name)
      .Case("gelu", GeluKind::Erf)
      .Cases({"gelu_new", "gelu_fast", "gelu_pytorch_tanh"}, GeluKind::Tanh)
      .Default(std::nullopt);
}

/// The HF key spellings of each field; GPT2Config also answers to the
/// generic names through its attribute_map.
struct KeyNames {
  std::vector<const char *> hidden, layers, heads, ffn, positions, eps, act;
};

const KeyNames &keyNames(ModelType type) {
  static const KeyNames bert{{"hidden_size"},
                             {"num_hidden_layers"},
                             {"num_attention_heads"},
                             {"intermediate_size"},
                             {"max_position_embeddings"},
                             {"layer_norm_eps"},
                             {"hidden_act"}};
  static const KeyNames gpt2{{"n_embd", "hidden_size"},
                             {"n_layer", "num_hidden_layers"},
                             {"n_head", "num_attention_heads"},
                             {"n_inner"},
                             {"n_positions", "max_position_embeddings"},
                             {"layer_norm_epsilon"},
                             {"activation_function"}};
  return type == ModelType::Bert ? bert : gpt2;
}
} // namespace

llvm::Expected<ConfigLayer>
megatron::parseHuggingFaceConfig(const nlohmann::json &json,
                                 llvm::StringRef source,
                                 std::optional<ModelType> type, bool strict) {
  if (!json.is_object())
    return createStringError(formatv("{0}: expected a JSON object", source));
  ConfigLayer layer;
  if (auto it = json.find("model_type"); it != json.end()) {
    if (!it->is_string() || !parseModelType(it->get<std::string>()))
      return createStringError(
          formatv("{0}: model_type {1} is not a Megatron-BERT or GPT-2 model",
                  source, describe(*it)));
    layer.modelType.setIfUnset(*parseModelType(it->get<std::string>()),
                               source);
  }
  if (!type && layer.modelType)
    type = *layer.modelType;
  if (!type) // Key spellings decide: GPT2Config's are unmistakable.
    type = json.contains("n_embd") || json.contains("n_layer")
               ? ModelType::GPT2
               : ModelType::Bert;
  const KeyNames &keys = keyNames(*type);

  std::set<std::string> used{"model_type"};
  auto positive = [&](const std::vector<const char *> &names,
                      Sourced<int64_t> &field) -> llvm::Error {
    for (const char *name : names) {
      auto it = json.find(name);
      if (it == json.end())
        continue;
      used.insert(name);
      if (it->is_null())
        continue; // e.g. GPT-2's n_inner: null means 4 * hidden.
      if (!it->is_number_integer() || it->get<int64_t>() <= 0)
        return createStringError(formatv(
            "{0}: '{1}' must be a positive integer, got {2}", source, name,
            describe(*it)));
      field.setIfUnset(it->get<int64_t>(), source);
    }
    return llvm::Error::success();
  };
  if (auto err = positive(keys.hidden, layer.hiddenSize))
    return std::move(err);
  if (auto err = positive(keys.layers, layer.numLayers))
    return std::move(err);
  if (auto err = positive(keys.heads, layer.numHeads))
    return std::move(err);
  if (auto err = positive(keys.ffn, layer.ffnSize))
    return std::move(err);
  if (auto err = positive(keys.positions, layer.maxPositions))
    return std::move(err);
  if (auto err = positive({"vocab_size"}, layer.vocabSize))
    return std::move(err);
  if (auto err = positive({"num_labels"}, layer.numLabels))
    return std::move(err);
  if (*type == ModelType::Bert)
    if (auto err = positive({"type_vocab_size"}, layer.typeVocabSize))
      return std::move(err);

  if (auto it = json.find("id2label"); it != json.end()) {
    used.insert("id2label");
    if (!it->is_object() || it->empty())
      return createStringError(
          formatv("{0}: 'id2label' must be a non-empty object", source));
    // Keys are the label indices "0".."n-1" (JSON keys are strings).
    std::vector<std::string> names(it->size());
    std::vector<bool> seen(it->size(), false);
    for (auto item = it->begin(); item != it->end(); ++item) {
      size_t index = 0;
      bool number = !item.key().empty() &&
                    item.key().find_first_not_of("0123456789") == std::string::npos &&
                    item.key().size() < 10;
      if (number)
        index = std::stoul(item.key());
      if (!number || index >= names.size() || seen[index] || !item.value().is_string())
        return createStringError(formatv(
            "{0}: 'id2label' must map the indices 0..{1} to names, got \"{2}\": {3}",
            source, names.size() - 1, item.key(), describe(item.value())));
      seen[index] = true;
      names[index] = item.value().get<std::string>();
    }
    layer.numLabels.setIfUnset(static_cast<int64_t>(names.size()), source);
    layer.labels.setIfUnset(std::move(names), source);
  }
  if (auto it = json.find("label2id"); it != json.end())
    used.insert("label2id");
  for (const char *name : keys.eps) {
    auto it = json.find(name);
    if (it == json.end())
      continue;
    used.insert(name);
    if (!it->is_number() || !(it->get<double>() > 0))
      return createStringError(formatv(
          "{0}: '{1}' must be a positive number, got {2}", source, name,
          describe(*it)));
    layer.layerNormEps.setIfUnset(it->get<double>(), source);
  }
  for (const char *name : keys.act) {
    auto it = json.find(name);
    if (it == json.end())
      continue;
    used.insert(name);
    std::optional<GeluKind> gelu =
        it->is_string() ? parseActivation(it->get<std::string>())
                        : std::nullopt;
    if (!gelu)
      return createStringError(formatv(
          "{0}: activation {1} is not supported (expected \"gelu\", "
          "\"gelu_new\", \"gelu_fast\" or \"gelu_pytorch_tanh\")",
          source, describe(*it)));
    layer.gelu.setIfUnset(*gelu, source);
    layer.headGelu.setIfUnset(*gelu, source);
  }
  if (auto it = json.find("is_decoder"); it != json.end()) {
    used.insert("is_decoder");
    if (!it->is_boolean())
      return createStringError(
          formatv("{0}: 'is_decoder' must be true or false", source));
    layer.causal.setIfUnset(it->get<bool>(), source);
  }
  if (auto it = json.find("checkpoint_version"); it != json.end()) {
    used.insert("checkpoint_version");
    if (!it->is_number())
      return createStringError(
          formatv("{0}: 'checkpoint_version' must be a number", source));
    layer.checkpointVersion.setIfUnset(it->get<double>(), source);
  }
  // Architectural variants the importer cannot express must not be ignored.
  if (auto it = json.find("position_embedding_type");
      it != json.end() && *it != "absolute")
    return createStringError(formatv(
        "{0}: position_embedding_type {1} is not supported (only \"absolute\")",
        source, describe(*it)));
  used.insert("position_embedding_type");

  if (strict)
    for (const auto &item : json.items())
      if (!used.count(item.key()))
        return createStringError(
            formatv("{0}: unknown {1} configuration key '{2}'", source,
                    toString(*type), item.key()));
  return layer;
}

llvm::Expected<nlohmann::json>
megatron::parseOverrides(llvm::ArrayRef<std::string> assignments) {
  nlohmann::json json = nlohmann::json::object();
  for (const std::string &assignment : assignments) {
    auto [key, text] = llvm::StringRef(assignment).split('=');
    if (key.empty() || text.empty())
      return createStringError(
          formatv("--set expects KEY=VALUE, got '{0}'", assignment));
    // Values are JSON where they parse as JSON (numbers, true, null), and
    // plain strings otherwise (gelu_new).
    nlohmann::json value =
        nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded())
      value = text.str();
    json[key.str()] = std::move(value);
  }
  return json;
}

llvm::Expected<nlohmann::json> megatron::parseJson(llvm::StringRef text,
                                                   llvm::StringRef source) {
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded())
    return createStringError(formatv("'{0}' is not valid JSON", source));
  return json;
}

llvm::Expected<nlohmann::json> megatron::readJsonFile(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return createStringError(formatv("cannot read '{0}': {1}", path,
                                     buffer.getError().message()));
  return parseJson((*buffer)->getBuffer(), path);
}
