// RUN: megatron-opt %s -split-input-file -megatron-insert-kv-cache \
// RUN:   -megatron-lower-to-plan="max-batch=2 weight-type=f16" | FileCheck %s
// RUN: not megatron-opt %s -split-input-file -megatron-lower-to-plan="max-seq=17" \
// RUN:   -o /dev/null 2>&1 | FileCheck %s --check-prefix=TOOLONG
// TOOLONG: error: --max-seq 17 must be in [1, 16] (the model's max positions)

// GPT-2: KV caches sit after the reusable arena; the same steps serve
// prefill and decode; the mask covers cached and new tokens (Keys).
// CHECK-LABEL: module attributes
// CHECK-SAME: plan.max_batch = 2
// CHECK-SAME: plan.max_sequence = 16
// CHECK: plan.rank 0 arena 11776
// CHECK: input @input_ids : i64 ["Batch", "Sequence"]
// CHECK: input @attention_mask : i64 ["Batch", "Keys"]
// CHECK: kv_cache @kv0 : f32 ["Batch", "2", "16", "4"] at 9728 size 1024
// CHECK: kv_cache @kv1 : f32 ["Batch", "2", "16", "4"] at 10752 size 1024
// CHECK: plan.weight @w0 : tensor<32x8xf32> as f16 at 0 size 512
// CHECK-NEXT: megatron.weight "wte"
// CHECK: plan.weight @w1 : tensor<16x8xf32> as f16 at 512 size 256
// CHECK: activation @[[SCORES:t[0-9]+]] : f32 ["Batch", "2", "Sequence", "Keys"]
// CHECK: output @hidden : f32 ["Batch", "Sequence", "8"]
// CHECK: plan.entry @prefill [@input_ids, @attention_mask] -> [@hidden]
// CHECK-NEXT: positions [@input_ids] -> [@[[POS:t[0-9]+]]]
// CHECK-NEXT: embedding [@w0, @input_ids] -> [@{{.*}}] ints [0, 32]
// CHECK-NEXT: embedding [@w1, @[[POS]]]
// CHECK-NEXT: add
// CHECK-NEXT: swap_middle_axes [@{{.*}}] -> [@[[HEADS:t[0-9]+]]]
// CHECK-NEXT: cache_write [@[[HEADS]]] -> [@kv0]
// CHECK-NEXT: matmul [@[[HEADS]], @kv0] -> [@[[SCORES]]] ints [1]
// CHECK-NEXT: attention_mask [@[[SCORES]], @attention_mask] -> [@{{.*}}] ints [1]
// CHECK-NEXT: softmax
// CHECK-NEXT: cache_write [@[[HEADS]]] -> [@kv1]
// CHECK-NEXT: matmul [@{{.*}}, @kv1] -> [@{{.*}}] ints [0]
// CHECK-NEXT: swap_middle_axes [@{{.*}}] -> [@hidden]
// CHECK-NEXT: }
// CHECK-NEXT: plan.entry @decode [@input_ids, @attention_mask] -> [@hidden]
// CHECK-NOT: func.func
module attributes {megatron.config = {model_type = "gpt2", task = "causal-lm", max_positions = 16 : i64}} {
  func.func @forward(%ids: tensor<?x?xi64> {megatron.input = "input_ids"},
                     %mask: tensor<?x?xi64> {megatron.input = "attention_mask"})
      -> (tensor<?x?x8xf32> {megatron.output = "hidden"}) {
    %wte = megatron.weight "wte" : tensor<32x8xf32>
    %wpe = megatron.weight "wpe" : tensor<16x8xf32>
    %pos = megatron.positions %ids : tensor<?x?xi64>
    %tok = megatron.embedding %wte[%ids] : tensor<32x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %at = megatron.embedding %wpe[%pos] : tensor<16x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %x = megatron.add %tok, %at : tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x8xf32>
    %h = megatron.split_heads %x, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %s = megatron.matmul %h, %h {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
    %m = megatron.attention_mask %s, %mask {causal} : tensor<?x2x?x?xf32>, tensor<?x?xi64> -> tensor<?x2x?x?xf32>
    %p = megatron.softmax %m : tensor<?x2x?x?xf32>
    %c = megatron.matmul %p, %h : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
    %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
    return %o : tensor<?x?x8xf32>
  }
}

// -----

// BERT: one `forward` entry, no caches; reshapes become copies.
// CHECK-LABEL: module attributes
// CHECK-NOT: kv_cache
// CHECK: plan.entry @forward [@input_ids, @attention_mask] -> [@hidden]
// CHECK-NOT: plan.entry
module attributes {megatron.config = {model_type = "bert", task = "base", max_positions = 16 : i64}} {
  func.func @forward(%ids: tensor<?x?xi64> {megatron.input = "input_ids"},
                     %mask: tensor<?x?xi64> {megatron.input = "attention_mask"})
      -> (tensor<?x?x8xf32> {megatron.output = "hidden"}) {
    %wte = megatron.weight "wte" : tensor<32x8xf32>
    %wpe = megatron.weight "wpe" : tensor<16x8xf32>
    %pos = megatron.positions %ids : tensor<?x?xi64>
    %tok = megatron.embedding %wte[%ids] : tensor<32x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %at = megatron.embedding %wpe[%pos] : tensor<16x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %x = megatron.add %tok, %at : tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x8xf32>
    %h = megatron.split_heads %x, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %s = megatron.matmul %h, %h {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
    %m = megatron.attention_mask %s, %mask {causal} : tensor<?x2x?x?xf32>, tensor<?x?xi64> -> tensor<?x2x?x?xf32>
    %p = megatron.softmax %m : tensor<?x2x?x?xf32>
    %c = megatron.matmul %p, %h : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
    %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
    return %o : tensor<?x?x8xf32>
  }
}

// -----

// int8 weights: the values are stored as i8 and their scales as f32 (not
// in the weight type), and a step reads them as two operands in a row,
// before the bias.
// CHECK-LABEL: module attributes
// CHECK: plan.weight @w0 : tensor<16x8xi8> as i8 at 0 size 128
// CHECK-NEXT: megatron.weight "fc.weight"
// CHECK-NEXT: %{{.*}}, %{{.*}} = megatron.quantize
// CHECK: plan.weight @w1 : tensor<16x2xf32> as f32 at 128 size 128
// CHECK: plan.weight @w2 : tensor<16xf32> as f16 at 256 size 32
// CHECK: linear [@x, @w0, @w1, @w2] -> [@y] ints [0, 0]
module attributes {megatron.config = {model_type = "bert", task = "base", max_positions = 16 : i64}} {
  func.func @forward(%x: tensor<?x8xf32> {megatron.input = "x"}) -> (tensor<?x16xf32> {megatron.output = "y"}) {
    %w = megatron.weight "fc.weight" : tensor<16x8xf32>
    %b = megatron.weight "fc.bias" : tensor<16xf32>
    %q, %s = megatron.quantize %w : tensor<16x8xf32> -> tensor<16x8xi8>, tensor<16x2xf32>
    %d = megatron.dequantize %q, %s : tensor<16x8xi8>, tensor<16x2xf32> -> tensor<16x8xf32>
    %y = megatron.linear %x, %d, %b : tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32> -> tensor<?x16xf32>
    return %y : tensor<?x16xf32>
  }
}

// -----

// A linear that quantizes its input says so in its second parameter.
// CHECK-LABEL: module attributes
// CHECK: linear [@x, @w0, @w1] -> [@y] ints [1, 1]
module attributes {megatron.config = {model_type = "bert", task = "base", max_positions = 16 : i64}} {
  func.func @forward(%x: tensor<?x8xf32> {megatron.input = "x"}) -> (tensor<?x16xf32> {megatron.output = "y"}) {
    %w = megatron.weight "fc.weight" : tensor<16x8xf32>
    %q, %s = megatron.quantize %w : tensor<16x8xf32> -> tensor<16x8xi8>, tensor<16x1xf32>
    %d = megatron.dequantize %q, %s : tensor<16x8xi8>, tensor<16x1xf32> -> tensor<16x8xf32>
    %y = megatron.linear %x, %d gelu erf int8_input : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x16xf32>
    return %y : tensor<?x16xf32>
  }
}
