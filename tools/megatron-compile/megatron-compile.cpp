//===- megatron-compile.cpp - checkpoint to artifact ----------------------===//
//
// Parses the command line of DESIGN.md section 8 and hands it to the driver.
//
//===----------------------------------------------------------------------===//

#include "compiler/Driver.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/WithColor.h"

namespace cl = llvm::cl;

static cl::opt<std::string> input(cl::Positional, cl::Required,
                                  cl::desc("<checkpoint file, directory or zip>"));
static cl::opt<std::string> output("o", cl::desc("output file ('-' for stdout)"),
                                   cl::value_desc("file"), cl::init("-"));
static cl::opt<std::string> modelType("model-type",
                                      cl::desc("bert | gpt2 (autodetected)"));
static cl::opt<std::string>
    task("task", cl::desc("bert: base | masked-lm (default) | pretraining | "
                          "next-sentence | sequence-classification | "
                          "multiple-choice | token-classification | "
                          "question-answering | causal-lm; gpt2: causal-lm"));
static cl::opt<std::string>
    configFile("config", cl::desc("Hugging Face config.json with overrides"),
               cl::value_desc("file"));
static cl::list<std::string>
    sets("set", cl::desc("override a Hugging Face config key"),
         cl::value_desc("KEY=VALUE"));
static cl::opt<int64_t>
    tensorParallel("tp", cl::desc("tensor-parallel ranks (default 1); must divide "
                                  "the heads, FFN size and padded vocabulary"),
                   cl::init(1));
static cl::opt<std::string>
    target("target", cl::desc("cpu (default) | cuda: also generate PTX for the GPU kernels"),
           cl::init("cpu"));
static cl::list<std::string>
    cudaArch("cuda-arch", cl::desc("GPU architectures for --target cuda (default sm_80,sm_90)"),
             cl::CommaSeparated, cl::value_desc("sm_XY,..."));
static cl::opt<std::string>
    cudaRoot("cuda-root", cl::desc("CUDA toolkit, for libdevice (default " MEGATRON_CUDA_ROOT_DEFAULT ")"),
             cl::init(MEGATRON_CUDA_ROOT_DEFAULT), cl::value_desc("dir"));
static cl::opt<bool>
    noFuse("no-fuse", cl::desc("keep the primitive graph (no fusion passes), for debugging"));
static cl::opt<std::string>
    compileTo("compile-to",
              cl::desc("print the IR after this phase: import | shard | fuse | "
                       "quantize | lower"),
              cl::value_desc("phase"));
static cl::opt<std::string>
    dtype("dtype", cl::desc("weight storage: f32 (default) | f16 | bf16"),
          cl::init("f32"));
static cl::opt<std::string>
    quantize("quantize",
             cl::desc("none (default) | int8: linear weights as int8 with symmetric "
                      "per-output-channel scales; activations keep --dtype"),
             cl::init("none"));
static cl::opt<int64_t>
    groupSize("group-size",
              cl::desc("with --quantize int8: one scale per G input columns of "
                       "each output channel instead of one per channel"),
              cl::value_desc("G"), cl::init(0));
static cl::opt<bool> quantizeEmbeddings(
    "quantize-embeddings",
    cl::desc("with --quantize int8: also the word embedding and the LM head tied to it"));
static cl::opt<bool> quantizeActivations(
    "quantize-activations",
    cl::desc("with --quantize int8: the linears also quantize their input to int8, per row "
             "at run time (dynamic W8A8, as PyTorch's dynamic quantization): int8 GEMMs, "
             "twice bf16's rate on CPUs with AVX512-VNNI, slightly less accurate"));
static cl::opt<std::string>
    vocab("vocab",
          cl::desc("tokenizer vocabulary to embed: vocab.txt (BERT), vocab.json or "
                   "encoder.json (GPT-2, with --merges), or tokenizer.json "
                   "(default: one found next to the checkpoint)"),
          cl::value_desc("file"));
static cl::opt<std::string>
    merges("merges", cl::desc("GPT-2 BPE merges: merges.txt or vocab.bpe"),
           cl::value_desc("file"));
static cl::opt<int64_t> maxBatch("max-batch",
                                 cl::desc("largest batch to plan for (default 8)"),
                                 cl::init(8));
static cl::opt<int64_t>
    maxSeq("max-seq",
           cl::desc("longest sequence to plan for (default: max positions)"),
           cl::init(0));
static cl::opt<int64_t>
    maxChoices("max-choices",
               cl::desc("most choices per multiple-choice item (default 4)"),
               cl::init(4));

static int fail(llvm::Error error) {
  llvm::handleAllErrors(std::move(error), [](const llvm::ErrorInfoBase &e) {
    llvm::WithColor::error(llvm::errs(), "") << e.message() << "\n";
  });
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  megatron::installOutOfMemoryHandler();
  cl::ParseCommandLineOptions(argc, argv,
                              "megatron-compile: Megatron checkpoint -> "
                              "megatron IR / artifact\n");
  megatron::CompileOptions options;
  options.input = input;
  options.output = output;
  options.configFile = configFile;
  options.sets = sets;
  options.vocabFile = vocab;
  options.mergesFile = merges;
  options.pipeline.maxBatch = maxBatch;
  options.pipeline.maxSequence = maxSeq;
  options.pipeline.maxChoices = maxChoices;
  if (tensorParallel < 1)
    return fail(llvm::createStringError("--tp must be at least 1, got " +
                                        std::to_string(tensorParallel)));
  options.pipeline.tensorParallel = tensorParallel;
  options.pipeline.fuse = !noFuse;
  if (target != "cpu" && target != "cuda")
    return fail(llvm::createStringError("unknown --target '" + target +
                                        "' (expected cpu or cuda)"));
  if (target != "cuda" && !cudaArch.empty())
    return fail(llvm::createStringError("--cuda-arch needs --target cuda"));
  options.target = target;
  options.cudaArchs.assign(cudaArch.begin(), cudaArch.end());
  if (options.cudaArchs.empty())
    options.cudaArchs = {"sm_80", "sm_90"};
  options.cudaRoot = cudaRoot;
  if (dtype != "f32" && dtype != "f16" && dtype != "bf16")
    return fail(llvm::createStringError("unknown --dtype '" + dtype +
                                        "' (expected f32, f16 or bf16)"));
  options.pipeline.weightType = dtype;
  if (quantize != "none" && quantize != "int8")
    return fail(llvm::createStringError("unknown --quantize '" + quantize +
                                        "' (expected none or int8)"));
  options.pipeline.quantizeInt8 = quantize == "int8";
  if ((groupSize.getNumOccurrences() || quantizeEmbeddings || quantizeActivations) &&
      !options.pipeline.quantizeInt8)
    return fail(llvm::createStringError(
        "--group-size, --quantize-embeddings and --quantize-activations need --quantize int8"));
  if (groupSize < 0 || (groupSize.getNumOccurrences() && groupSize == 0))
    return fail(llvm::createStringError("--group-size must be positive, got " +
                                        std::to_string(groupSize)));
  if (groupSize.getNumOccurrences() && quantizeActivations)
    return fail(llvm::createStringError(
        "--quantize-activations needs one weight scale per output channel (no --group-size)"));
  options.pipeline.groupSize = groupSize;
  options.pipeline.quantizeEmbeddings = quantizeEmbeddings;
  options.pipeline.quantizeActivations = quantizeActivations;
  if (!modelType.empty() &&
      !(options.modelType = megatron::parseModelType(modelType)))
    return fail(llvm::createStringError("unknown --model-type '" + modelType +
                                        "' (expected bert or gpt2)"));
  if (!task.empty() && !(options.task = megatron::parseTask(task)))
    return fail(llvm::createStringError("unknown --task '" + task + "'"));
  if (!compileTo.empty() &&
      !(options.compileTo = megatron::parsePhase(compileTo)))
    return fail(llvm::createStringError("unknown --compile-to phase '" +
                                        compileTo + "' (available: import, shard, fuse, quantize, lower)"));
  if (llvm::Error error = megatron::runCompile(options))
    return fail(std::move(error));
  return 0;
}
