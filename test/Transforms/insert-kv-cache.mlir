// RUN: megatron-opt %s -split-input-file -megatron-insert-kv-cache | FileCheck %s

// GPT-2: both attention operands that come from earlier tokens (keys and
// values) go through the cache, one slot each, and positions count on.
// CHECK-LABEL: func.func @forward
// CHECK: megatron.positions %{{.*}} {after_cache}
// CHECK: %[[H:.*]] = megatron.split_heads
// CHECK: %[[K:.*]] = megatron.kv_cache %[[H]] slot 0
// CHECK: megatron.matmul %[[H]], %[[K]] {transpose_rhs}
// CHECK: %[[V:.*]] = megatron.kv_cache %[[H]] slot 1
// CHECK: megatron.matmul %{{.*}}, %[[V]] :
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

// BERT has no incremental decoding: nothing changes.
// CHECK-LABEL: func.func @forward
// CHECK-NOT: kv_cache
// CHECK-NOT: after_cache
// CHECK: return
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
