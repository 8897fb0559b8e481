// RUN: megatron-opt %s --split-input-file | FileCheck %s
// Round trip: printing and re-parsing gives the same IR.
// RUN: megatron-opt %s --split-input-file | megatron-opt --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @embeddings
// CHECK-SAME: {megatron.input = "input_ids"}
// CHECK-SAME: -> (tensor<?x?x32xf32> {megatron.output = "hidden"})
// CHECK: megatron.weight "word" : tensor<128x32xf32>
// CHECK: megatron.positions %{{.*}} : tensor<?x?xi64>
// CHECK: megatron.embedding %{{.*}}[%{{.*}}] : tensor<128x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
// CHECK: megatron.add %{{.*}}, %{{.*}} : tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x32xf32>
func.func @embeddings(%ids: tensor<?x?xi64> {megatron.input = "input_ids"})
    -> (tensor<?x?x32xf32> {megatron.output = "hidden"}) {
  %word = megatron.weight "word" : tensor<128x32xf32>
  %pos_table = megatron.weight "pos" : tensor<64x32xf32>
  %pos = megatron.positions %ids : tensor<?x?xi64>
  %w = megatron.embedding %word[%ids] : tensor<128x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  %p = megatron.embedding %pos_table[%pos] : tensor<64x32xf32>, tensor<?x?xi64> -> tensor<?x?x32xf32>
  %sum = megatron.add %w, %p : tensor<?x?x32xf32>, tensor<?x?x32xf32> -> tensor<?x?x32xf32>
  return %sum : tensor<?x?x32xf32>
}

// -----

// CHECK-LABEL: func.func @attention
// CHECK: megatron.layer_norm %{{.*}} {epsilon = 1.000000e-05 : f64}
// CHECK: megatron.linear %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x?x32xf32>, tensor<96x32xf32>, tensor<96xf32> -> tensor<?x?x96xf32>
// CHECK: megatron.slice %{{.*}} dim 2 start 32 size 32
// CHECK: megatron.split_heads %{{.*}}, 4 : tensor<?x?x32xf32> -> tensor<?x4x?x8xf32>
// CHECK: megatron.matmul %{{.*}}, %{{.*}} {transpose_rhs}
// CHECK: megatron.scale %{{.*}}, 0.35355339059327379
// CHECK: megatron.attention_mask %{{.*}}, %{{.*}} {causal}
// CHECK: megatron.softmax
// CHECK: megatron.merge_heads %{{.*}} : tensor<?x4x?x8xf32> -> tensor<?x?x32xf32>
func.func @attention(%x: tensor<?x?x32xf32>, %mask: tensor<?x?xi64>) -> tensor<?x?x32xf32> {
  %g = megatron.weight "ln.weight" : tensor<32xf32>
  %b = megatron.weight "ln.bias" : tensor<32xf32>
  %ln = megatron.layer_norm %x, %g, %b {epsilon = 1.0e-5 : f64} : tensor<?x?x32xf32>, tensor<32xf32>, tensor<32xf32> -> tensor<?x?x32xf32>
  %wqkv = megatron.weight "qkv.weight" : tensor<96x32xf32>
  %bqkv = megatron.weight "qkv.bias" : tensor<96xf32>
  %qkv = megatron.linear %ln, %wqkv, %bqkv : tensor<?x?x32xf32>, tensor<96x32xf32>, tensor<96xf32> -> tensor<?x?x96xf32>
  %q = megatron.slice %qkv dim 2 start 0 size 32 : tensor<?x?x96xf32> -> tensor<?x?x32xf32>
  %k = megatron.slice %qkv dim 2 start 32 size 32 : tensor<?x?x96xf32> -> tensor<?x?x32xf32>
  %v = megatron.slice %qkv dim 2 start 64 size 32 : tensor<?x?x96xf32> -> tensor<?x?x32xf32>
  %qh = megatron.split_heads %q, 4 : tensor<?x?x32xf32> -> tensor<?x4x?x8xf32>
  %kh = megatron.split_heads %k, 4 : tensor<?x?x32xf32> -> tensor<?x4x?x8xf32>
  %vh = megatron.split_heads %v, 4 : tensor<?x?x32xf32> -> tensor<?x4x?x8xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32> -> tensor<?x4x?x?xf32>
  %ss = megatron.scale %s, 0.35355339059327379 : tensor<?x4x?x?xf32>
  %m = megatron.attention_mask %ss, %mask {causal} : tensor<?x4x?x?xf32>, tensor<?x?xi64> -> tensor<?x4x?x?xf32>
  %p = megatron.softmax %m : tensor<?x4x?x?xf32>
  %o = megatron.matmul %p, %vh : tensor<?x4x?x?xf32>, tensor<?x4x?x8xf32> -> tensor<?x4x?x8xf32>
  %merged = megatron.merge_heads %o : tensor<?x4x?x8xf32> -> tensor<?x?x32xf32>
  return %merged : tensor<?x?x32xf32>
}

// -----

// CHECK-LABEL: func.func @weight_transforms
// CHECK: megatron.reshape %{{.*}} : tensor<96x32xf32> -> tensor<4x3x8x32xf32>
// CHECK: megatron.transpose %{{.*}} [1, 0, 2, 3] : tensor<4x3x8x32xf32> -> tensor<3x4x8x32xf32>
// CHECK: megatron.concat %{{.*}}, %{{.*}} dim 0 : (tensor<96x32xf32>, tensor<32x32xf32>) -> tensor<128x32xf32>
func.func @weight_transforms() -> tensor<128x32xf32> {
  %w = megatron.weight "qkv" : tensor<96x32xf32>
  %r = megatron.reshape %w : tensor<96x32xf32> -> tensor<4x3x8x32xf32>
  %t = megatron.transpose %r [1, 0, 2, 3] : tensor<4x3x8x32xf32> -> tensor<3x4x8x32xf32>
  %back = megatron.reshape %t : tensor<3x4x8x32xf32> -> tensor<96x32xf32>
  %x = megatron.weight "extra" : tensor<32x32xf32>
  %c = megatron.concat %back, %x dim 0 : (tensor<96x32xf32>, tensor<32x32xf32>) -> tensor<128x32xf32>
  return %c : tensor<128x32xf32>
}

// -----

// CHECK-LABEL: func.func @heads
// CHECK: megatron.gelu erf %{{.*}} : tensor<?x?x128xf32>
// CHECK: megatron.gelu tanh %{{.*}} : tensor<?x?x128xf32>
// CHECK: megatron.tanh %{{.*}} : tensor<?x32xf32>
// CHECK: megatron.reshape %{{.*}}[%{{.*}}, %{{.*}}] : tensor<?x1xf32> -> tensor<?x?xf32>
func.func @heads(%x: tensor<?x?x128xf32>, %pooled: tensor<?x32xf32>, %scores: tensor<?x1xf32>, %b: index, %c: index)
    -> (tensor<?x?x128xf32>, tensor<?x?x128xf32>, tensor<?x32xf32>, tensor<?x?xf32>) {
  %e = megatron.gelu erf %x : tensor<?x?x128xf32>
  %t = megatron.gelu tanh %x : tensor<?x?x128xf32>
  %p = megatron.tanh %pooled : tensor<?x32xf32>
  %r = megatron.reshape %scores [%b, %c] : tensor<?x1xf32> -> tensor<?x?xf32>
  return %e, %t, %p, %r : tensor<?x?x128xf32>, tensor<?x?x128xf32>, tensor<?x32xf32>, tensor<?x?xf32>
}

// -----

// CHECK: module attributes {megatron.config = {model_type = "gpt2", task = "causal-lm"}}
module attributes {megatron.config = {model_type = "gpt2", task = "causal-lm"}} {
}

// -----

// CHECK-LABEL: func.func @quantized_linear
// CHECK: %[[Q:.*]], %[[S:.*]] = megatron.quantize %{{.*}} : tensor<96x32xf32> -> tensor<96x32xi8>, tensor<96x4xf32>
// CHECK: megatron.dequantize %[[Q]], %[[S]] : tensor<96x32xi8>, tensor<96x4xf32> -> tensor<96x32xf32>
func.func @quantized_linear(%x: tensor<?x32xf32>) -> tensor<?x96xf32> {
  %w = megatron.weight "qkv" : tensor<96x32xf32>
  %q, %s = megatron.quantize %w : tensor<96x32xf32> -> tensor<96x32xi8>, tensor<96x4xf32>
  %d = megatron.dequantize %q, %s : tensor<96x32xi8>, tensor<96x4xf32> -> tensor<96x32xf32>
  %y = megatron.linear %x, %d : tensor<?x32xf32>, tensor<96x32xf32> -> tensor<?x96xf32>
  return %y : tensor<?x96xf32>
}
