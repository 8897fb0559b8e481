//===- MegatronOps.td - the model-level graph dialect ------*- tablegen -*-===//
//
// The import target: a Megatron-BERT or Megatron-GPT2 forward pass written in
// primitive tensor ops. Weights are symbolic (`megatron.weight`); transforms on
// them (transpose, reshape, slice, concat) are ordinary ops on weight values
// that the artifact writer evaluates while streaming the checkpoint.
//
// Batch and sequence dimensions are dynamic (`?`); model dimensions are
// static. Every verifier checks exactly what can be checked statically.
//
//===----------------------------------------------------------------------===//

#ifndef MEGATRON_OPS_TD
#define MEGATRON_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Dialect
//===----------------------------------------------------------------------===//

def Megatron_Dialect : Dialect {
  let name = "megatron";
  let cppNamespace = "::mlir::megatron";
  let summary = "Model-level graph of Megatron-BERT / Megatron-GPT2";
  let description = [{
    Primitive tensor ops for transformer encoders and decoders, the target of
    the checkpoint importer. Function arguments and results carry their
    Hugging Face names in `megatron.input` / `megatron.output` attributes; the
    module carries the model configuration in `megatron.config`.
  }];
  let useDefaultAttributePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let dependentDialects = ["::mlir::tensor::TensorDialect",
                           "::mlir::arith::ArithDialect"];
  let extraClassDeclaration = [{
    static constexpr llvm::StringLiteral kConfigAttrName = "megatron.config";
    static constexpr llvm::StringLiteral kInputAttrName = "megatron.input";
    /// The tensor-parallel rank a function computes (after sharding).
    static constexpr llvm::StringLiteral kRankAttrName = "megatron.rank";
    static constexpr llvm::StringLiteral kOutputAttrName = "megatron.output";
  }];
}

class Megatron_Op<string mnemonic, list<Trait> traits = []>
    : Op<Megatron_Dialect, mnemonic, !listconcat(traits, [Pure])>;

//===----------------------------------------------------------------------===//
// Types and attributes
//===----------------------------------------------------------------------===//

def Megatron_Float : AnyTypeOf<[F32, F16, BF16]>;
def Megatron_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def Megatron_IdTensor : RankedTensorOf<[I32, I64]>;

def Megatron_GeluApproximation : I32EnumAttr<"GeluApproximation",
    "how GELU is computed", [
      I32EnumAttrCase<"Erf", 0, "erf">,
      I32EnumAttrCase<"Tanh", 1, "tanh">
    ]> {
  let cppNamespace = "::mlir::megatron";
  let genSpecializedAttr = 0;
}

def Megatron_GeluApproximationAttr
    : EnumAttr<Megatron_Dialect, Megatron_GeluApproximation, "gelu"> {
  let assemblyFormat = "$value";
}

//===----------------------------------------------------------------------===//
// Weights and embeddings
//===----------------------------------------------------------------------===//

def Megatron_WeightOp : Megatron_Op<"weight"> {
  let summary = "a named tensor of the checkpoint";
  let description = [{
    Refers to the checkpoint tensor `name` (its name after nested state dicts
    are flattened with '.' and tensor-parallel shards are merged). The result
    type is the type the graph computes in; the artifact writer converts the
    stored dtype. Never holds data.

    ```mlir
    %w = megatron.weight "language_model.encoder.final_norm.weight" : tensor<1024xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Megatron_QuantizeOp : Megatron_Op<"quantize"> {
  let summary = "symmetric int8 weight quantization with per-group scales";
  let description = [{
    A weight transform: `input` [rows, cols] becomes int8 values q and f32
    scales [rows, groups], one per group of cols / groups consecutive
    columns (groups = 1: one per row, i.e. per output channel of a linear
    weight). scale = max |w| / 127 over the group (1 where the group is all
    zeros) and q = round(w / scale), so w ~ q * scale with q in [-127, 127].

    ```mlir
    %q, %s = megatron.quantize %w : tensor<64x32xf32> -> tensor<64x32xi8>, tensor<64x1xf32>
    ```
  }];
  let arguments = (ins Megatron_FloatTensor:$input);
  let results = (outs TensorOf<[I8]>:$values, TensorOf<[F32]>:$scales);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type(results)";
  let hasVerifier = 1;
}

def Megatron_DequantizeOp : Megatron_Op<"dequantize"> {
  let summary = "int8 values times their group scales";
  let description = [{
    The inverse of `megatron.quantize`: result[r, c] = values[r, c] *
    scales[r, c / (cols / groups)]. Linear and embedding steps read the int8
    values and scales of a dequantized weight directly, a block at a time,
    so the full-precision matrix never exists at run time.
  }];
  let arguments = (ins TensorOf<[I8]>:$values, TensorOf<[F32]>:$scales);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $values `,` $scales attr-dict `:` type($values) `,` type($scales) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_EmbeddingOp : Megatron_Op<"embedding"> {
  let summary = "row lookup: result[..., :] = table[ids[...], :]";
  let description = [{
    `table` is [rows, width]; the result has the shape of `ids` with `width`
    appended. Ids outside [0, rows) are an error at run time.

    A vocab-parallel shard holds rows [row_offset, row_offset + rows) of a
    table of `num_ids` rows: ids in that range look up their row, other
    valid ids give zero rows (an all-reduce over the ranks completes the
    lookup), ids outside [0, num_ids) are an error.
    ```mlir
    %e = megatron.embedding %t[%ids] {row_offset = 64 : i64, num_ids = 128 : i64}
        : tensor<64x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
    ```
  }];
  let arguments = (ins Megatron_FloatTensor:$table, Megatron_IdTensor:$ids,
                       DefaultValuedAttr<I64Attr, "0">:$row_offset,
                       OptionalAttr<I64Attr>:$num_ids);
  let builders = [
    // A whole table.
    OpBuilder<(ins "Type":$result, "Value":$table, "Value":$ids), [{
      build($_builder, $_state, result, table, ids, 0, nullptr);
    }]>
  ];
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $table `[` $ids `]` attr-dict `:` type($table) `,` type($ids) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_PositionsOp : Megatron_Op<"positions", [SameOperandsAndResultType]> {
  let summary = "position ids: result[..., j] = j (+ cached tokens)";
  let description = [{
    The learned-position index of each token of `ids` (which only gives the
    shape): counting from 0 along the last (sequence) dimension, or, with
    `after_cache`, from the number of tokens the KV cache already holds.
  }];
  let arguments = (ins Megatron_IdTensor:$ids, UnitAttr:$after_cache);
  let results = (outs Megatron_IdTensor:$result);
  let assemblyFormat = "$ids attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

def Megatron_AddOp : Megatron_Op<"add"> {
  let summary = "elementwise sum with trailing-dimension broadcasting";
  let description = [{
    NumPy broadcasting: shapes are aligned at the last dimension and a
    dimension of size 1 (or a missing leading one) stretches.
  }];
  let arguments = (ins Megatron_FloatTensor:$lhs, Megatron_FloatTensor:$rhs);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_GeluOp : Megatron_Op<"gelu", [SameOperandsAndResultType]> {
  let summary = "Gaussian error linear unit";
  let description = [{
    `erf`: x * 0.5 * (1 + erf(x / sqrt(2))). `tanh`: the approximation
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) that Megatron's
    fused bias-GELU and OpenAI's GPT-2 use.
  }];
  let arguments = (ins Megatron_FloatTensor:$input,
                       Megatron_GeluApproximationAttr:$approximation);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$approximation $input attr-dict `:` type($result)";
}

def Megatron_TanhOp : Megatron_Op<"tanh", [SameOperandsAndResultType]> {
  let summary = "elementwise hyperbolic tangent";
  let arguments = (ins Megatron_FloatTensor:$input);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Megatron_ScaleOp : Megatron_Op<"scale", [SameOperandsAndResultType]> {
  let summary = "multiply by a constant";
  let arguments = (ins Megatron_FloatTensor:$input, F64Attr:$factor);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input `,` $factor attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Contractions
//===----------------------------------------------------------------------===//

def Megatron_LinearOp : Megatron_Op<"linear"> {
  let summary = "x W^T + b, as torch.nn.Linear";
  let arguments = (ins Megatron_FloatTensor:$input,
                       Megatron_FloatTensor:$weight,
                       Optional<Megatron_FloatTensor>:$bias,
                       OptionalAttr<Megatron_GeluApproximationAttr>:$gelu,
                       UnitAttr:$int8_input);
  let results = (outs Megatron_FloatTensor:$result);
  let builders = [
    // Without an epilogue.
    OpBuilder<(ins "Type":$result, "Value":$input, "Value":$weight, "Value":$bias), [{
      build($_builder, $_state, result, input, weight, bias, nullptr, nullptr);
    }]>
  ];
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? (`gelu` $gelu^)? (`int8_input` $int8_input^)? attr-dict
    `:` type(operands) `->` type($result)
  }];
  let hasVerifier = 1;
  let description = [{
    `input` is [..., in], `weight` is [out, in], optional `bias` is [out];
    the result is [..., out]. With `gelu` (after fusion) the GELU of that
    is the result: the bias and activation are the GEMM's epilogue. With
    `int8_input` (set by quantization) each row of the input is quantized
    to int8 at run time (symmetric, its own scale), for an int8 weight with
    per-channel scales: dynamic W8A8.
  }];
}

//===----------------------------------------------------------------------===//
// Fused ops (the fuse phase makes them; the kernels do one pass each)
//===----------------------------------------------------------------------===//

def Megatron_AddLayerNormOp : Megatron_Op<"add_layer_norm"> {
  let summary = "sum = lhs + rhs and layer_norm(sum), in one pass";
  let description = [{
    A residual connection and the LayerNorm after it: both results, since
    the sum is the next residual.
  }];
  let arguments = (ins Megatron_FloatTensor:$lhs, Megatron_FloatTensor:$rhs,
                       Megatron_FloatTensor:$gamma, Megatron_FloatTensor:$beta,
                       F64Attr:$epsilon);
  let results = (outs Megatron_FloatTensor:$sum, Megatron_FloatTensor:$normalized);
  let assemblyFormat = [{
    $lhs `,` $rhs `,` $gamma `,` $beta attr-dict `:` type(operands) `->` type(results)
  }];
  let hasVerifier = 1;
}

def Megatron_LinearAddLayerNormOp : Megatron_Op<"linear_add_layer_norm"> {
  let summary = "sum = x W^T + b + residual and layer_norm(sum), in one step";
  let description = [{
    An output projection, the residual connection and the next LayerNorm:
    the GEMM writes into the residual's copy, then one pass normalises.
    `int8_input` as for linear.
  }];
  let arguments = (ins Megatron_FloatTensor:$input, Megatron_FloatTensor:$weight,
                       Optional<Megatron_FloatTensor>:$bias,
                       Megatron_FloatTensor:$residual,
                       Megatron_FloatTensor:$gamma, Megatron_FloatTensor:$beta,
                       F64Attr:$epsilon, UnitAttr:$int8_input);
  let results = (outs Megatron_FloatTensor:$sum, Megatron_FloatTensor:$normalized);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? `residual` $residual `norm` $gamma `,` $beta
    (`int8_input` $int8_input^)? attr-dict `:` type(operands) `->` type(results)
  }];
  let hasVerifier = 1;
}

// Not Pure: with a kv_slot it appends to a cache.
def Megatron_AttentionOp : Op<Megatron_Dialect, "attention"> {
  let summary = "multi-head attention from a fused QKV projection";
  let description = [{
    `qkv` is [batch, seq, 3 * heads * dim] with Q, K and V blocks (each
    heads x dim); the result is [batch, seq, heads * dim]:
    softmax(Q K^T * scale + mask) V per head, heads merged. `mask`
    ([batch, keys], 1 = attend) and `causal` mask as attention_mask does.
    With `kv_slot` (set when a KV cache is inserted) the keys and values of
    the new tokens are appended to cache slot `kv_slot` and the queries
    attend to every cached token. Kernels work on blocks of keys with an
    online softmax, never holding [heads, seq, seq] scores.
  }];
  let arguments = (ins Megatron_FloatTensor:$qkv, Optional<Megatron_IdTensor>:$mask,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                       F64Attr:$scale, UnitAttr:$causal,
                       OptionalAttr<I64Attr>:$kv_slot);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $qkv (`mask` $mask^)? `heads` $num_heads `scale` $scale attr-dict
    `:` type(operands) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_MatmulOp : Megatron_Op<"matmul"> {
  let summary = "batched matrix product over the last two dimensions";
  let description = [{
    `lhs` is [batch..., M, K]; `rhs` is [batch..., K, N], or [batch..., N, K]
    with `transpose_rhs`. Batch dimensions must be equal. Attention uses it
    for Q K^T and for P V.
  }];
  let arguments = (ins Megatron_FloatTensor:$lhs, Megatron_FloatTensor:$rhs,
                       UnitAttr:$transpose_rhs);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Normalisation and attention pieces
//===----------------------------------------------------------------------===//

def Megatron_LayerNormOp : Megatron_Op<"layer_norm"> {
  let summary = "layer normalisation over the last dimension";
  let description = [{
    (x - mean) / sqrt(var + epsilon) * gamma + beta, with the biased
    variance, over the last dimension of `input`; `gamma` and `beta` have
    that dimension's size.
  }];
  let arguments = (ins Megatron_FloatTensor:$input,
                       Megatron_FloatTensor:$gamma,
                       Megatron_FloatTensor:$beta,
                       F64Attr:$epsilon);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gamma `,` $beta attr-dict `:` type(operands) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_SoftmaxOp : Megatron_Op<"softmax", [SameOperandsAndResultType]> {
  let summary = "softmax over the last dimension";
  let arguments = (ins Megatron_FloatTensor:$input);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Megatron_AttentionMaskOp : Megatron_Op<"attention_mask"> {
  let summary = "mask attention scores: padding, causal, or both";
  let description = [{
    `scores` is [batch, heads, query, key]. A score is masked when
    `padding_mask[b, key]` is 0 (the Hugging Face `attention_mask`), or, with
    `causal`, when key > query + (keys - queries) (so a query sees itself and
    everything before it). Masked scores become the most negative finite
    value of the element type, so a softmax gives them no weight.
  }];
  let arguments = (ins Megatron_FloatTensor:$scores,
                       Optional<Megatron_IdTensor>:$padding_mask,
                       UnitAttr:$causal);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $scores (`,` $padding_mask^)? attr-dict `:` type(operands) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_KVCacheOp : Op<Megatron_Dialect, "kv_cache",
    [SameOperandsAndResultType,
     MemoryEffects<[MemRead<DefaultResource>, MemWrite<DefaultResource>]>]> {
  let summary = "append keys or values to a cache kept between calls";
  let description = [{
    `input` holds the new tokens' keys (or values) as
    [batch, heads, seq, head_dim]. They are appended to cache `slot`, which
    outlives the call, and the result is every cached token:
    [batch, heads, past + seq, head_dim]. Incremental decoding calls the
    graph again with only the next token and the earlier ones come from here.

    ```mlir
    %keys = megatron.kv_cache %k slot 0 : tensor<?x4x?x8xf32>
    ```
  }];
  let arguments = (ins Megatron_FloatTensor:$input,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$slot);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input `slot` $slot attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

def Megatron_SplitHeadsOp : Megatron_Op<"split_heads"> {
  let summary = "[batch, seq, heads*dim] -> [batch, heads, seq, dim]";
  let arguments = (ins Megatron_FloatTensor:$input,
                       ConfinedAttr<I64Attr, [IntPositive]>:$num_heads);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input `,` $num_heads attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Megatron_MergeHeadsOp : Megatron_Op<"merge_heads"> {
  let summary = "[batch, heads, seq, dim] -> [batch, seq, heads*dim]";
  let arguments = (ins Megatron_FloatTensor:$input);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Megatron_TransposeOp : Megatron_Op<"transpose"> {
  let summary = "permute dimensions: result dim i = input dim permutation[i]";
  let arguments = (ins Megatron_FloatTensor:$input,
                       DenseI64ArrayAttr:$permutation);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = "$input $permutation attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def Megatron_ReshapeOp : Megatron_Op<"reshape"> {
  let summary = "same elements in row-major order, new shape";
  let description = [{
    Each dynamic dimension of the result takes its size from one of
    `dynamic_sizes`, in order (as `tensor.empty` does). When both shapes are
    static their element counts must agree.

    ```mlir
    %r = megatron.reshape %x [%n] : tensor<?x1xf32> -> tensor<?xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, Variadic<Index>:$dynamic_sizes);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $input (`[` $dynamic_sizes^ `]`)? attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_SliceOp : Megatron_Op<"slice"> {
  let summary = "the elements [start, start + size) along one dimension";
  let arguments = (ins Megatron_FloatTensor:$input,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$dim,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$start,
                       ConfinedAttr<I64Attr, [IntPositive]>:$size);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $input `dim` $dim `start` $start `size` $size attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Megatron_ConcatOp : Megatron_Op<"concat"> {
  let summary = "join tensors along one dimension";
  let arguments = (ins Variadic<Megatron_FloatTensor>:$inputs,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$dim);
  let results = (outs Megatron_FloatTensor:$result);
  let assemblyFormat = [{
    $inputs `dim` $dim attr-dict `:` `(` type($inputs) `)` `->` type($result)
  }];
  let hasVerifier = 1;
}

#endif // MEGATRON_OPS_TD
