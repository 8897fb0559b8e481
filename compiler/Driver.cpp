//===- Driver.cpp - what megatron-compile does, as a library --------------===//

#include "compiler/Driver.h"

#include "compiler/ArtifactWriter.h"
#include "compiler/Registration.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/ToolOutputFile.h"

#include <nlohmann/json.hpp>

using namespace megatron;
using llvm::createStringError;
using llvm::formatv;

/// The --set and --config layers, highest precedence first. Their keys are
/// the Hugging Face names of the model type, so that is settled first:
/// --model-type, a `model_type` key, or what the checkpoint looks like.
static llvm::Expected<std::vector<ConfigLayer>>
overrideLayers(const CompileOptions &options, const Checkpoint &checkpoint) {
  auto sets = parseOverrides(options.sets);
  if (!sets)
    return sets.takeError();
  nlohmann::json config = nlohmann::json::object();
  if (!options.configFile.empty()) {
    auto json = readJsonFile(options.configFile);
    if (!json)
      return createStringError(formatv("--config: {0}",
                                       llvm::toString(json.takeError())));
    config = std::move(*json);
  }
  std::optional<ModelType> type = options.modelType;
  for (const nlohmann::json *json : {&*sets, &config})
    if (auto it = json->find("model_type");
        !type && it != json->end() && it->is_string())
      type = parseModelType(it->get<std::string>());
  if (!type)
    type = detectModelType(checkpoint);

  std::vector<ConfigLayer> layers;
  if (!sets->empty()) {
    auto layer = parseHuggingFaceConfig(*sets, "--set", type, /*strict=*/true);
    if (!layer)
      return layer.takeError();
    layers.push_back(std::move(*layer));
  }
  if (!options.configFile.empty()) {
    auto layer = parseHuggingFaceConfig(config, options.configFile, type,
                                        /*strict=*/false);
    if (!layer)
      return layer.takeError();
    layers.push_back(std::move(*layer));
  }
  return layers;
}

llvm::Error megatron::runCompile(const CompileOptions &options) {
  if (!options.compileTo && options.output == "-")
    return createStringError(
        "an artifact is binary: name the file with -o FILE.mtc "
        "(or print IR with --compile-to=PHASE)");

  auto checkpoint = Checkpoint::open(options.input);
  if (!checkpoint)
    return checkpoint.takeError();

  ImportOptions importOptions;
  importOptions.modelType = options.modelType;
  importOptions.task = options.task;
  auto layers = overrideLayers(options, **checkpoint);
  if (!layers)
    return layers.takeError();
  importOptions.overrides = std::move(*layers);

  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  mlir::MLIRContext context(registry);
  auto module = importCheckpoint(context, **checkpoint, importOptions);
  if (!module)
    return module.takeError();

  mlir::PassManager pm(&context);
  buildPipeline(pm, options.compileTo.value_or(Phase::Lower), options.pipeline);
  std::string diagnostics;
  {
    // Pass failures arrive as diagnostics; keep the first for the error.
    mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
      if (diagnostics.empty())
        diagnostics = d.str();
      return mlir::success();
    });
    if (mlir::failed(pm.run(**module)))
      return createStringError(diagnostics.empty() ? "compilation failed"
                                                   : diagnostics);
  }
  if (!options.compileTo)
    return writeArtifact(**module, **checkpoint, options.output);

  std::string error;
  auto output = mlir::openOutputFile(options.output, &error);
  if (!output)
    return createStringError(error);
  (*module)->print(output->os());
  output->os() << "\n";
  output->keep();
  return llvm::Error::success();
}
