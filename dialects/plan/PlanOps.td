//===- PlanOps.td - the executable-plan dialect ------------*- tablegen -*-===//
//
// What the runtime executes, one `plan.rank` per tensor-parallel rank:
// buffers (weights in the rank's weight region, everything else at planned
// offsets of one arena) and entries, each a list of steps over buffers. It
// mirrors runtime/schema/artifact.fbs one to one, so the artifact writer is a
// straight serialisation. Sizes that are only known at run time are
// symbolic dimensions such as "Batch*Sequence" or "4*Keys".
//
//===----------------------------------------------------------------------===//

#ifndef PLAN_OPS_TD
#define PLAN_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"

def Plan_Dialect : Dialect {
  let name = "plan";
  let cppNamespace = "::mlir::plan";
  let summary = "Buffers and steps of an executable artifact";
  let useDefaultAttributePrinterParser = 1;
}

class Plan_Op<string mnemonic, list<Trait> traits = []>
    : Op<Plan_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Enums (the numbering is the artifact's: keep them in step with artifact.fbs)
//===----------------------------------------------------------------------===//

def Plan_BufferKind : I32EnumAttr<"BufferKind", "where a buffer lives", [
    I32EnumAttrCase<"Activation", 1, "activation">,
    I32EnumAttrCase<"Input", 2, "input">,
    I32EnumAttrCase<"Output", 3, "output">,
    I32EnumAttrCase<"KVCache", 4, "kv_cache">
  ]> {
  let cppNamespace = "::mlir::plan";
  let genSpecializedAttr = 0;
}
def Plan_BufferKindAttr : EnumAttr<Plan_Dialect, Plan_BufferKind, "buffer_kind"> {
  let assemblyFormat = "$value";
}

def Plan_StepKind : I32EnumAttr<"StepKind", "what a step computes", [
    I32EnumAttrCase<"Embedding", 0, "embedding">,
    I32EnumAttrCase<"Positions", 1, "positions">,
    I32EnumAttrCase<"Add", 2, "add">,
    I32EnumAttrCase<"Linear", 3, "linear">,
    I32EnumAttrCase<"Matmul", 4, "matmul">,
    I32EnumAttrCase<"LayerNorm", 5, "layer_norm">,
    I32EnumAttrCase<"Gelu", 6, "gelu">,
    I32EnumAttrCase<"Tanh", 7, "tanh">,
    I32EnumAttrCase<"Scale", 8, "scale">,
    I32EnumAttrCase<"Softmax", 9, "softmax">,
    I32EnumAttrCase<"AttentionMask", 10, "attention_mask">,
    I32EnumAttrCase<"SwapMiddleAxes", 11, "swap_middle_axes">,
    I32EnumAttrCase<"Slice", 12, "slice">,
    I32EnumAttrCase<"Concat", 13, "concat">,
    I32EnumAttrCase<"Copy", 14, "copy">,
    I32EnumAttrCase<"AllReduce", 15, "all_reduce">,
    I32EnumAttrCase<"AllGather", 16, "all_gather">,
    I32EnumAttrCase<"CacheWrite", 17, "cache_write">,
    I32EnumAttrCase<"AddLayerNorm", 18, "add_layer_norm">,
    I32EnumAttrCase<"LinearAddLayerNorm", 19, "linear_add_layer_norm">,
    I32EnumAttrCase<"Attention", 20, "attention">
  ]> {
  let cppNamespace = "::mlir::plan";
  let genSpecializedAttr = 0;
}
def Plan_StepKindAttr : EnumAttr<Plan_Dialect, Plan_StepKind, "step_kind"> {
  let assemblyFormat = "$value";
}

//===----------------------------------------------------------------------===//
// Structure
//===----------------------------------------------------------------------===//

def Plan_RankOp : Plan_Op<"rank", [SymbolTable, NoTerminator, SingleBlock,
                                   IsolatedFromAbove, NoRegionArguments]> {
  let summary = "the buffers and entries of one tensor-parallel rank";
  let description = [{
    `arena_size` bytes hold every non-weight buffer; the planner has placed
    them so that buffers live at the same time never overlap.
  }];
  let arguments = (ins ConfinedAttr<I64Attr, [IntNonNegative]>:$rank,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$arena_size);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$rank `arena` $arena_size attr-dict-with-keyword $body";
  let hasVerifier = 1;
}

def Plan_BufferOp : Plan_Op<"buffer", [Symbol, HasParent<"RankOp">]> {
  let summary = "an activation, input, output or KV-cache buffer in the arena";
  let description = [{
    `shape` gives each dimension as a constant times run-time symbols
    (Batch, Sequence, Choices, Past, Keys); `size` is the bytes reserved at
    the artifact's maximum batch and sequence.

    ```mlir
    plan.buffer activation @t3 : f32 ["Batch", "Sequence", "64"] at 4096 size 65536
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, Plan_BufferKindAttr:$kind,
                       TypeAttr:$element_type, StrArrayAttr:$shape,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$size);
  let assemblyFormat = [{
    $kind $sym_name `:` $element_type $shape `at` $offset `size` $size attr-dict
  }];
  let hasVerifier = 1;
}

def Plan_WeightOp : Plan_Op<"weight", [Symbol, HasParent<"RankOp">,
                                       IsolatedFromAbove, SingleBlock]> {
  let summary = "a read-only tensor of the rank's weight region";
  let description = [{
    The body computes the value from checkpoint tensors (`megatron.weight`
    and its transforms) and yields it; the artifact writer evaluates it while
    streaming the checkpoint and stores it as `storage_type` at `offset` of
    the rank's weight region.

    ```mlir
    plan.weight @w0 : tensor<64x32xf32> as f16 at 0 size 4096 {
      %0 = megatron.weight "layers.0.mlp.dense_h_to_4h.weight" : tensor<64x32xf32>
      plan.yield %0 : tensor<64x32xf32>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttr:$type,
                       TypeAttr:$storage_type,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$offset,
                       ConfinedAttr<I64Attr, [IntNonNegative]>:$size);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $sym_name `:` $type `as` $storage_type `at` $offset `size` $size
    attr-dict-with-keyword $body
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The value the body yields.
    ::mlir::Value getValue();
  }];
}

def Plan_YieldOp : Plan_Op<"yield", [Terminator, HasParent<"WeightOp">]> {
  let summary = "the value of a weight";
  let arguments = (ins AnyRankedTensor:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

def Plan_EntryOp : Plan_Op<"entry", [Symbol, HasParent<"RankOp">,
                                     NoTerminator, SingleBlock,
                                     NoRegionArguments]> {
  let summary = "a function of the artifact: named inputs, steps, outputs";
  let description = [{
    `forward` for BERT; `prefill` and `decode` for GPT-2, which share the
    KV-cache buffers of their rank.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       FlatSymbolRefArrayAttr:$inputs,
                       FlatSymbolRefArrayAttr:$outputs);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $sym_name $inputs `->` $outputs attr-dict-with-keyword $body
  }];
  let hasVerifier = 1;
}

def Plan_StepOp : Plan_Op<"step", [HasParent<"EntryOp">]> {
  let summary = "one kernel, library call, copy or collective over buffers";
  let description = [{
    Reads `inputs` and writes `outputs` (buffers or weights of the rank).
    Run-time sizes come from the buffers' shapes; `ints` and `floats` carry
    the static parameters: gelu [approximation: 0 erf, 1 tanh],
    matmul [transpose_rhs], attention_mask [causal], slice [dim, start],
    layer_norm / scale (floats) [epsilon] / [factor].

    ```mlir
    plan.step layer_norm [@t0, @w1, @w2] -> [@t1] floats [1.0e-05]
    ```
  }];
  let arguments = (ins Plan_StepKindAttr:$kind,
                       FlatSymbolRefArrayAttr:$inputs,
                       FlatSymbolRefArrayAttr:$outputs,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{}">:$ints,
                       DefaultValuedAttr<DenseF64ArrayAttr, "{}">:$floats);
  let assemblyFormat = [{
    $kind $inputs `->` $outputs (`ints` $ints^)? (`floats` $floats^)? attr-dict
  }];
  let hasVerifier = 1;
}

#endif // PLAN_OPS_TD
