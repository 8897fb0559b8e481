// Hugging Face config.json text and --set KEY=VALUE lines: parse errors are
// values, and whatever parses holds only what the importer may rely on.
#include "frontends/ModelConfig.h"

#include "llvm/ADT/StringRef.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

using namespace megatron;

namespace {
void checkLayer(const ConfigLayer &layer) {
  for (const Sourced<int64_t> *field :
       {&layer.hiddenSize, &layer.numLayers, &layer.numHeads, &layer.ffnSize,
        &layer.maxPositions, &layer.vocabSize, &layer.numLabels,
        &layer.typeVocabSize})
    if (*field && **field <= 0)
      std::abort();
  if (layer.layerNormEps && !(*layer.layerNormEps > 0))
    std::abort();
  if (layer.labels && (*layer.labels).empty())
    std::abort();
}

void parseAll(const nlohmann::json &json, llvm::StringRef source) {
  for (std::optional<ModelType> type :
       {std::optional<ModelType>(), std::optional<ModelType>(ModelType::Bert),
        std::optional<ModelType>(ModelType::GPT2)})
    for (bool strict : {false, true}) {
      auto layer = parseHuggingFaceConfig(json, source, type, strict);
      if (!layer) {
        llvm::consumeError(layer.takeError());
        continue;
      }
      checkLayer(*layer);
      ConfigLayer merged;
      merged.inheritFrom(*layer);
      checkLayer(merged);
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  if (auto json = parseJson(text, "config.json"))
    parseAll(*json, "config.json");
  else
    llvm::consumeError(json.takeError());

  // The same bytes as command-line overrides, one per line.
  llvm::SmallVector<llvm::StringRef> lines;
  text.split(lines, '\n');
  std::vector<std::string> assignments(lines.begin(), lines.end());
  if (auto json = parseOverrides(assignments))
    parseAll(*json, "--set");
  else
    llvm::consumeError(json.takeError());
  return 0;
}
