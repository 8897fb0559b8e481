// RUN: megatron-opt %s -split-input-file -megatron-shard-tensor-parallel="tp=2" | FileCheck %s
// RUN: megatron-opt %s -split-input-file -megatron-shard-tensor-parallel="tp=2" \
// RUN:   -megatron-insert-kv-cache -megatron-lower-to-plan | FileCheck %s --check-prefix=PLAN
// RUN: not megatron-opt %s -split-input-file -megatron-shard-tensor-parallel="tp=3" \
// RUN:   -o /dev/null 2>&1 | FileCheck %s --check-prefix=NODIV
// NODIV: error: --tp 3 does not divide the model's attention heads (2)

// One pre-LN GPT-2 layer (fused QKV in [3, heads, dim] order, MLP), vocab-
// parallel embedding, tied LM head. Rank 0 and rank 1 differ only in their
// slices; each layer has exactly two all-reduces (attention output, MLP
// output), each followed by its bias.
// CHECK-LABEL: module attributes
// CHECK: shard.grid @tp(shape = 2)
// CHECK-LABEL: func.func @forward_rank0
// CHECK-SAME: megatron.rank = 0
// Vocab-parallel embedding: rows [0, 16) of 32, then the sum over ranks.
// CHECK: %[[WTE0:.*]] = megatron.slice %{{.*}} dim 0 start 0 size 16 : tensor<32x8xf32> -> tensor<16x8xf32>
// CHECK: %[[TOK:.*]] = megatron.embedding %[[WTE0]][%{{.*}}] {num_ids = 32 : i64}
// CHECK: shard.all_reduce %[[TOK]] on @tp grid_axes = [0] : tensor<?x?x8xf32>
// Column-parallel QKV: each of Q, K, V keeps its first head.
// CHECK: megatron.reshape %{{.*}} : tensor<24x8xf32> -> tensor<3x8x8xf32>
// CHECK: megatron.slice %{{.*}} dim 1 start 0 size 4 : tensor<3x8x8xf32> -> tensor<3x4x8xf32>
// CHECK: megatron.linear {{.*}} -> tensor<?x?x12xf32>
// CHECK: megatron.slice %{{.*}} dim 2 start 0 size 4 : tensor<?x?x12xf32> -> tensor<?x?x4xf32>
// CHECK: megatron.slice %{{.*}} dim 2 start 4 size 4
// CHECK: megatron.slice %{{.*}} dim 2 start 8 size 4
// CHECK: megatron.split_heads %{{.*}}, 1 : tensor<?x?x4xf32> -> tensor<?x1x?x4xf32>
// CHECK: megatron.softmax %{{.*}} : tensor<?x1x?x?xf32>
// CHECK: megatron.merge_heads %{{.*}} : tensor<?x1x?x4xf32> -> tensor<?x?x4xf32>
// Row-parallel output projection: columns [0, 4), no bias before the sum.
// CHECK: %[[PROJ_W:.*]] = megatron.slice %{{.*}} dim 1 start 0 size 4 : tensor<8x8xf32> -> tensor<8x4xf32>
// CHECK: %[[PROJ:.*]] = megatron.linear %{{.*}}, %[[PROJ_W]] : tensor<?x?x4xf32>, tensor<8x4xf32> -> tensor<?x?x8xf32>
// CHECK: %[[SUM:.*]] = shard.all_reduce %[[PROJ]] on @tp
// CHECK: megatron.add %[[SUM]], %{{.*}} : tensor<?x?x8xf32>, tensor<8xf32>
// MLP: fc1 columns, GELU on half the features, fc2 rows.
// CHECK: megatron.linear {{.*}} -> tensor<?x?x16xf32>
// CHECK: megatron.gelu tanh %{{.*}} : tensor<?x?x16xf32>
// CHECK: megatron.slice %{{.*}} dim 1 start 0 size 16 : tensor<8x32xf32> -> tensor<8x16xf32>
// CHECK: shard.all_reduce
// CHECK: megatron.layer_norm
// Tied LM head: this rank's vocabulary rows, then gathered along vocab.
// CHECK: %[[HEAD:.*]] = megatron.linear %{{.*}}, %{{.*}} : tensor<?x?x8xf32>, tensor<16x8xf32> -> tensor<?x?x16xf32>
// CHECK: shard.all_gather %[[HEAD]] on @tp grid_axes = [0] gather_axis = 2 : tensor<?x?x16xf32> -> tensor<?x?x32xf32>
// CHECK-LABEL: func.func @forward_rank1
// CHECK: megatron.slice %{{.*}} dim 0 start 16 size 16 : tensor<32x8xf32> -> tensor<16x8xf32>
// CHECK: megatron.embedding %{{.*}} {num_ids = 32 : i64, row_offset = 16 : i64}
// CHECK: megatron.slice %{{.*}} dim 1 start 4 size 4 : tensor<3x8x8xf32> -> tensor<3x4x8xf32>
// CHECK-NOT: func.func @forward(

// The plan: two ranks, each with its own weights and the collectives as
// steps (two all-reduces per layer plus the embedding's, one all-gather).
// PLAN-LABEL: module attributes
// PLAN: plan.rank 0
// PLAN: plan.entry @prefill
// PLAN-COUNT-4: all_reduce
// PLAN: all_gather {{.*}} ints [2]
// PLAN: plan.rank 1
// PLAN-NOT: shard.grid
module attributes {megatron.config = {model_type = "gpt2", task = "causal-lm", max_positions = 16 : i64,
                                      num_heads = 2 : i64, ffn_size = 32 : i64, padded_vocab_size = 32 : i64}} {
  func.func @forward(%ids: tensor<?x?xi64> {megatron.input = "input_ids"},
                     %mask: tensor<?x?xi64> {megatron.input = "attention_mask"})
      -> (tensor<?x?x32xf32> {megatron.output = "logits"}) {
    %wte = megatron.weight "wte" : tensor<32x8xf32>
    %wpe = megatron.weight "wpe" : tensor<16x8xf32>
    %g = megatron.weight "ln.weight" : tensor<8xf32>
    %bt = megatron.weight "ln.bias" : tensor<8xf32>
    %wqkv = megatron.weight "qkv.weight" : tensor<24x8xf32>
    %bqkv = megatron.weight "qkv.bias" : tensor<24xf32>
    %wo = megatron.weight "dense.weight" : tensor<8x8xf32>
    %bo = megatron.weight "dense.bias" : tensor<8xf32>
    %w1 = megatron.weight "fc1.weight" : tensor<32x8xf32>
    %b1 = megatron.weight "fc1.bias" : tensor<32xf32>
    %w2 = megatron.weight "fc2.weight" : tensor<8x32xf32>
    %b2 = megatron.weight "fc2.bias" : tensor<8xf32>
    %pos = megatron.positions %ids : tensor<?x?xi64>
    %tok = megatron.embedding %wte[%ids] : tensor<32x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %at = megatron.embedding %wpe[%pos] : tensor<16x8xf32>, tensor<?x?xi64> -> tensor<?x?x8xf32>
    %x = megatron.add %tok, %at : tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x8xf32>
    %n1 = megatron.layer_norm %x, %g, %bt {epsilon = 1.0e-05 : f64} : tensor<?x?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
    %qkv = megatron.linear %n1, %wqkv, %bqkv : tensor<?x?x8xf32>, tensor<24x8xf32>, tensor<24xf32> -> tensor<?x?x24xf32>
    %q = megatron.slice %qkv dim 2 start 0 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
    %k = megatron.slice %qkv dim 2 start 8 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
    %v = megatron.slice %qkv dim 2 start 16 size 8 : tensor<?x?x24xf32> -> tensor<?x?x8xf32>
    %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
    %sc = megatron.scale %s, 5.000000e-01 : tensor<?x2x?x?xf32>
    %m = megatron.attention_mask %sc, %mask {causal} : tensor<?x2x?x?xf32>, tensor<?x?xi64> -> tensor<?x2x?x?xf32>
    %p = megatron.softmax %m : tensor<?x2x?x?xf32>
    %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
    %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
    %proj = megatron.linear %o, %wo, %bo : tensor<?x?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
    %h = megatron.add %x, %proj : tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x8xf32>
    %n2 = megatron.layer_norm %h, %g, %bt {epsilon = 1.0e-05 : f64} : tensor<?x?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
    %f1 = megatron.linear %n2, %w1, %b1 : tensor<?x?x8xf32>, tensor<32x8xf32>, tensor<32xf32> -> tensor<?x?x32xf32>
    %ge = megatron.gelu tanh %f1 : tensor<?x?x32xf32>
    %f2 = megatron.linear %ge, %w2, %b2 : tensor<?x?x32xf32>, tensor<8x32xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
    %y = megatron.add %h, %f2 : tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x8xf32>
    %n3 = megatron.layer_norm %y, %g, %bt {epsilon = 1.0e-05 : f64} : tensor<?x?x8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
    %logits = megatron.linear %n3, %wte : tensor<?x?x8xf32>, tensor<32x8xf32> -> tensor<?x?x32xf32>
    return %logits : tensor<?x?x32xf32>
  }
}

// -----

// Separate Q, K, V projections (Hugging Face BERT) are column parallel each;
// a classification head on the pooled token stays replicated.
// CHECK-LABEL: module attributes
// CHECK-LABEL: func.func @forward_rank1
// CHECK: megatron.slice %{{.*}} dim 0 start 4 size 4 : tensor<8x8xf32> -> tensor<4x8xf32>
// CHECK: megatron.linear {{.*}} -> tensor<?x?x4xf32>
// CHECK: megatron.split_heads %{{.*}}, 1 : tensor<?x?x4xf32> -> tensor<?x1x?x4xf32>
// CHECK: shard.all_reduce
// CHECK: megatron.linear %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32> -> tensor<?x2xf32>
module attributes {megatron.config = {model_type = "bert", task = "sequence-classification", max_positions = 16 : i64,
                                      num_heads = 2 : i64, ffn_size = 32 : i64, padded_vocab_size = 32 : i64}} {
  func.func @forward(%x: tensor<?x?x8xf32> {megatron.input = "hidden"},
                     %mask: tensor<?x?xi64> {megatron.input = "attention_mask"})
      -> (tensor<?x2xf32> {megatron.output = "logits"}) {
    %wq = megatron.weight "q.weight" : tensor<8x8xf32>
    %wk = megatron.weight "k.weight" : tensor<8x8xf32>
    %wv = megatron.weight "v.weight" : tensor<8x8xf32>
    %wo = megatron.weight "o.weight" : tensor<8x8xf32>
    %wc = megatron.weight "classifier.weight" : tensor<2x8xf32>
    %bc = megatron.weight "classifier.bias" : tensor<2xf32>
    %q = megatron.linear %x, %wq : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
    %k = megatron.linear %x, %wk : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
    %v = megatron.linear %x, %wv : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
    %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
    %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
    %m = megatron.attention_mask %s, %mask : tensor<?x2x?x?xf32>, tensor<?x?xi64> -> tensor<?x2x?x?xf32>
    %p = megatron.softmax %m : tensor<?x2x?x?xf32>
    %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
    %o = megatron.merge_heads %c : tensor<?x2x?x4xf32> -> tensor<?x?x8xf32>
    %proj = megatron.linear %o, %wo : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
    %cls = megatron.slice %proj dim 1 start 0 size 1 : tensor<?x?x8xf32> -> tensor<?x1x8xf32>
    %c0 = arith.constant 0 : index
    %b = tensor.dim %proj, %c0 : tensor<?x?x8xf32>
    %pooled = megatron.reshape %cls[%b] : tensor<?x1x8xf32> -> tensor<?x8xf32>
    %logits = megatron.linear %pooled, %wc, %bc : tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32> -> tensor<?x2xf32>
    return %logits : tensor<?x2xf32>
  }
}
