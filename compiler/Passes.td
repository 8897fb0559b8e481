//===- Passes.td - megatron-compiler passes ----------------*- tablegen -*-===//

#ifndef MEGATRON_COMPILER_PASSES_TD
#define MEGATRON_COMPILER_PASSES_TD

include "mlir/Pass/PassBase.td"

def ShardTensorParallel : Pass<"megatron-shard-tensor-parallel", "::mlir::ModuleOp"> {
  let summary = "split the model across tensor-parallel ranks, as Megatron does";
  let description = [{
    With `tp` > 1, the forward function becomes one function per rank
    (`megatron.rank` = r) with local shapes and the weight slices of that
    rank, on a `shard.grid @tp`:
      - the attention projections and the MLP's first linear are column
        parallel (whole heads per rank; a fused QKV is split per Q/K/V
        block), the attention output and the MLP's second linear row
        parallel: one `shard.all_reduce` each, the bias added after it;
      - the word embedding is vocab parallel (each rank looks up its rows,
        zeros elsewhere, then an all-reduce); the tied LM head computes the
        rank's slice of the logits, then `shard.all_gather` along vocab;
      - everything else (layer norms, position and token-type embeddings,
        pooler, classification heads) is replicated.
    Which linear plays which part follows from the graph (a linear feeding
    split_heads, or GELU then another linear), so Megatron-LM and Hugging
    Face checkpoints shard alike. `tp` must divide the heads, the FFN size
    and the (padded) vocabulary.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect",
                           "::mlir::shard::ShardDialect"];
  let options = [
    Option<"tp", "tp", "int64_t", /*default=*/"1",
           "tensor-parallel degree (ranks)">,
  ];
}

def FuseQKV : Pass<"megatron-fuse-qkv", "::mlir::ModuleOp"> {
  let summary = "merge separate Q, K, V projections into one GEMM";
  let description = [{
    Three linears of one input whose outputs are an attention's queries,
    keys and values (split into heads, Q K^T, then softmax(...) V) become
    one linear with concatenated weights, sliced into Q, K and V: the
    layout Megatron's fused query_key_value already has.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
}

def FuseAttention : Pass<"megatron-fuse-attention", "::mlir::ModuleOp"> {
  let summary = "split heads, Q K^T, scale, mask, softmax, A V, merge heads -> one op";
  let description = [{
    The attention core over a fused QKV tensor becomes `megatron.attention`,
    whose kernels never hold the [heads, seq, seq] scores.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
}

def FuseBiasGelu : Pass<"megatron-fuse-bias-gelu", "::mlir::ModuleOp"> {
  let summary = "GELU of a linear -> the linear's epilogue";
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
}

def FuseResidualLayerNorm : Pass<"megatron-fuse-residual-layer-norm", "::mlir::ModuleOp"> {
  let summary = "residual add + LayerNorm -> one op with both results";
  let description = [{
    layer_norm(add(a, b)) becomes `megatron.add_layer_norm` (the sum stays
    available as the next residual), or `megatron.linear_add_layer_norm`
    when one side is a linear used only there: projection, residual and
    LayerNorm in one step.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
}

def QuantizeWeights : Pass<"megatron-quantize-weights", "::mlir::ModuleOp"> {
  let summary = "int8 weight-only quantization of the linear layers";
  let description = [{
    The weight of every linear (QKV, attention output, MLP, pooler, heads)
    becomes `megatron.dequantize(megatron.quantize(w))`: int8 values with
    symmetric scales per output channel, or per `group-size` columns of it.
    Activations keep their type. The word embedding and the LM head tied to
    it are left alone unless `embeddings` is set; then both read one int8
    table (per-row scales serve the lookup and the head's output channels).
    With `activations`, those linears also quantize their input per row at
    run time (`int8_input`, dynamic W8A8: int8 GEMMs); that needs one scale
    per output channel. Runs after sharding, so each rank quantizes its own
    shard.
  }];
  let dependentDialects = ["::mlir::megatron::MegatronDialect"];
  let options = [
    Option<"groupSize", "group-size", "int64_t", /*default=*/"0",
           "columns per scale (0: one scale per output channel)">,
    Option<"embeddings", "embeddings", "bool", /*default=*/"false",
           "also quantize the word embedding and the LM head tied to it">,
    Option<"activations", "activations", "bool", /*default=*/"false",
           "quantized linears also quantize their input per row at run time">,
  ];
}

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

def AddPrefillLast : Pass<"megatron-add-prefill-last", "::mlir::ModuleOp"> {
  let summary = "a prefill entry that returns the last position's logits only";
  let description = [{
    Clones each rank's `prefill` entry as `prefill_last`, which slices the
    final hidden states to their last position before the LM head (and its
    tensor-parallel all-gather): what generation reads, at a fraction of
    the LM head's work. Its output is `last_logits`, [Batch, 1, vocab].
  }];
}

#endif // MEGATRON_COMPILER_PASSES_TD
