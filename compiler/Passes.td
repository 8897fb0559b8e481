//===- Passes.td - megatron-compiler passes ----------------*- tablegen -*-===//

#ifndef MEGATRON_COMPILER_PASSES_TD
#define MEGATRON_COMPILER_PASSES_TD

include "mlir/Pass/PassBase.td"

def InsertKVCache : Pass<"megatron-insert-kv-cache", "::mlir::ModuleOp"> {
  let summary = "make a GPT-2 forward incremental with a KV cache";
  let description = [{
    For causal language models: the keys and values of every attention go
    through `megatron.kv_cache` (one slot each, in layer order) and positions
    count on from the cached tokens, so the same graph serves prefill (an
    empty cache) and decode (one new token against the cache). Other models
    are left alone.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
}

def LowerToPlan : Pass<"megatron-lower-to-plan", "::mlir::ModuleOp"> {
  let summary = "turn the megatron forward function into plan buffers and steps";
  let description = [{
    Gives every weight (with its transforms) a slot of the weight region,
    every activation an arena offset from the liveness planner, and every op
    one step. GPT-2 modules with a KV cache get `prefill` and `decode`
    entries over the same steps; other models get `forward`.
  }];
  let dependentDialects = ["::mlir::plan::PlanDialect"];
  let options = [
    Option<"maxBatch", "max-batch", "int64_t", /*default=*/"8",
           "largest batch the artifact is planned for">,
    Option<"maxSequence", "max-seq", "int64_t", /*default=*/"0",
           "longest sequence (0: the model's max positions)">,
    Option<"maxChoices", "max-choices", "int64_t", /*default=*/"4",
           "most choices per multiple-choice question">,
    Option<"weightType", "weight-type", "std::string", /*default=*/"\"f32\"",
           "how weights are stored: f32, f16 or bf16">,
  ];
}

#endif // MEGATRON_COMPILER_PASSES_TD
