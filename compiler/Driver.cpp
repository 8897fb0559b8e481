//===- Driver.cpp - what megatron-compile does, as a library --------------===//

#include "compiler/Driver.h"

#include "compiler/ArtifactWriter.h"
#include "compiler/Registration.h"
#include "dialects/megatron/MegatronOps.h"
#include "frontends/tokenizer/TokenizerFiles.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"

#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/ToolOutputFile.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

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

/// The tokenizer to embed: --vocab/--merges, else the files found next to
/// the checkpoint, else none. It must suit the model: WordPiece for BERT,
/// byte-level BPE for GPT-2, no more tokens than the embedding has rows.
static llvm::Expected<std::optional<runtime::TokenizerSpec>>
resolveTokenizer(const CompileOptions &options, const Checkpoint &checkpoint,
                 mlir::ModuleOp module) {
  std::optional<TokenizerFiles> files;
  if (!options.vocabFile.empty()) {
    files = TokenizerFiles{options.vocabFile, options.mergesFile, std::nullopt};
  } else if (!options.mergesFile.empty()) {
    return createStringError("--merges needs --vocab (the BPE vocabulary, "
                             "vocab.json or encoder.json)");
  } else {
    std::error_code ec;
    std::filesystem::path dir(options.input);
    if (!std::filesystem::is_directory(dir, ec))
      dir = dir.parent_path();
    files = findTokenizerFiles(dir.empty() ? "." : dir.string());
    if (!files)
      return std::nullopt;
  }
  // Megatron's args name the tokenizer it trained with, cased or not.
  if (checkpoint.tokenizerType() == "BertWordPieceLowerCase")
    files->lowercase = true;
  else if (checkpoint.tokenizerType() == "BertWordPieceCase")
    files->lowercase = false;
  runtime::TokenizerSpec spec;
  if (runtime::Status s = readTokenizer(*files, spec); !s.ok())
    return createStringError(s.message());

  auto config = module->getAttrOfType<mlir::DictionaryAttr>(
      mlir::megatron::MegatronDialect::kConfigAttrName);
  auto type = config ? config.getAs<mlir::StringAttr>("model_type") : nullptr;
  auto rows = config ? config.getAs<mlir::IntegerAttr>("padded_vocab_size") : nullptr;
  if (!type || !rows)
    return createStringError("the imported module has no model configuration");
  bool wordPiece = spec.kind == runtime::TokenizerSpec::Kind::WordPiece;
  if (wordPiece != (type.getValue() == "bert"))
    return createStringError(formatv(
        "{0} is a {1} tokenizer, but the model is {2}, which needs {3}",
        files->vocab, wordPiece ? "WordPiece" : "byte-level BPE",
        type.getValue(), wordPiece ? "GPT-2's byte-level BPE" : "BERT's WordPiece"));
  if (static_cast<int64_t>(spec.vocab.size()) > rows.getInt())
    return createStringError(formatv(
        "{0} has {1} tokens, but the model's word embedding has only {2} rows",
        files->vocab, spec.vocab.size(), rows.getInt()));
  return spec;
}

void megatron::installOutOfMemoryHandler() {
  // Failed `new`s go to LLVM's bad-alloc handler too.
  llvm::install_out_of_memory_new_handler();
  llvm::install_bad_alloc_error_handler([](void *, const char *reason, bool) {
    llvm::sys::RunInterruptHandlers(); // removes the files registered for removal
    // Only async-signal-safe calls: the heap is exhausted.
    const char prefix[] = "error: out of memory (";
    const char suffix[] = "); raise the memory limit (ulimit -v) or compile with --tp or a "
                          "smaller --max-seq / --max-batch\n";
    (void)!::write(2, prefix, sizeof(prefix) - 1);
    (void)!::write(2, reason, std::strlen(reason));
    (void)!::write(2, suffix, sizeof(suffix) - 1);
    std::_Exit(1);
  });
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
  if (!options.compileTo) {
    auto tokenizer = resolveTokenizer(options, **checkpoint, **module);
    if (!tokenizer)
      return tokenizer.takeError();
    std::vector<PtxModule> kernels;
    if (options.target == "cuda") {
      auto ptx = generateCudaKernels(options.cudaArchs,
                                     options.cudaRoot + "/nvvm/libdevice/libdevice.10.bc");
      if (!ptx)
        return ptx.takeError();
      kernels = std::move(*ptx);
    }
    return writeArtifact(**module, **checkpoint, *tokenizer ? &**tokenizer : nullptr,
                         kernels, options.output);
  }

  std::string error;
  auto output = mlir::openOutputFile(options.output, &error);
  if (!output)
    return createStringError(error);
  (*module)->print(output->os());
  output->os() << "\n";
  output->keep();
  return llvm::Error::success();
}
