//===- ModelConfig.h - model configuration and where it came from -*- C++ -*-===//
//
// A model's configuration is assembled from layers, highest precedence first:
// command-line overrides, a --config JSON, the Hugging Face config.json, the
// Megatron checkpoint's `args`, and the published 345M defaults. Each value
// remembers which layer gave it, so a clash with the weights can be reported
// against its source. Shape-determined values (hidden size, layers, vocab,
// positions, ffn) are then checked against, or taken from, the weights.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_FRONTENDS_MODELCONFIG_H
#define MEGATRON_FRONTENDS_MODELCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace megatron {

enum class ModelType { Bert, GPT2 };
enum class GeluKind { Erf, Tanh };

llvm::StringRef toString(ModelType type);
std::optional<ModelType> parseModelType(llvm::StringRef text);

/// A value plus the name of the layer it came from ("--set", "config.json",
/// "checkpoint args", ...).
template <typename T> struct Sourced {
  std::optional<T> value;
  std::string source;

  explicit operator bool() const { return value.has_value(); }
  const T &operator*() const { return *value; }
  void setIfUnset(T v, llvm::StringRef from) {
    if (!value) {
      value = std::move(v);
      source = from.str();
    }
  }
};

/// One layer of configuration; unset fields defer to lower layers.
struct ConfigLayer {
  Sourced<ModelType> modelType;
  Sourced<int64_t> hiddenSize, numLayers, numHeads, ffnSize, maxPositions,
      vocabSize, paddedVocabSize, typeVocabSize, numLabels;
  Sourced<double> layerNormEps, checkpointVersion;
  /// Megatron's MLP uses the fused tanh GELU by default while its BERT LM head
  /// calls the erf one, so the two are configured separately.
  Sourced<GeluKind> gelu, headGelu;
  Sourced<bool> causal; ///< BERT used as a decoder (is_decoder).
  /// Class names by label index (Hugging Face's id2label).
  Sourced<std::vector<std::string>> labels;

  /// Fills every field still unset from `lower`.
  void inheritFrom(const ConfigLayer &lower);
};

/// Reads Hugging Face config keys (MegatronBertConfig or GPT2Config, chosen
/// by `model_type` in the JSON or by `type`) into a layer named `source`.
/// With `strict`, unknown keys are errors (for --set, where they are typos);
/// a config.json legitimately holds many keys that do not concern us.
llvm::Expected<ConfigLayer>
parseHuggingFaceConfig(const nlohmann::json &json, llvm::StringRef source,
                       std::optional<ModelType> type, bool strict);

/// Parses JSON text; errors name `source`.
llvm::Expected<nlohmann::json> parseJson(llvm::StringRef text,
                                         llvm::StringRef source);

/// Reads and parses a JSON file; errors name the file.
llvm::Expected<nlohmann::json> readJsonFile(llvm::StringRef path);

/// Parses `KEY=VALUE` overrides (Hugging Face key names) into a JSON object.
llvm::Expected<nlohmann::json>
parseOverrides(llvm::ArrayRef<std::string> assignments);

/// The resolved configuration of one model.
struct ModelConfig {
  ModelType modelType = ModelType::Bert;
  int64_t hiddenSize = 0, numLayers = 0, numHeads = 0, ffnSize = 0,
          maxPositions = 0;
  int64_t paddedVocabSize = 0; ///< rows of the word embedding
  int64_t vocabSize = 0;       ///< logits width (<= paddedVocabSize)
  int64_t typeVocabSize = 0;   ///< BERT token types; 0 for GPT-2
  int64_t numLabels = 2;
  double layerNormEps = 1e-5;
  GeluKind gelu = GeluKind::Tanh;
  GeluKind headGelu = GeluKind::Erf;
  double checkpointVersion = 0;
  bool causal = false;
  std::vector<std::string> labels; ///< empty: LABEL_0, LABEL_1, ...

  int64_t headDim() const { return hiddenSize / numHeads; }
};

} // namespace megatron

#endif // MEGATRON_FRONTENDS_MODELCONFIG_H
