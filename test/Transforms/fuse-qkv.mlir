// RUN: megatron-opt %s -split-input-file -megatron-fuse-qkv | FileCheck %s

// Separate Q, K, V projections of one input (Hugging Face BERT): one GEMM
// over the concatenated weights, then the Q, K, V slices.
// CHECK-LABEL: func.func @separate
// CHECK: %[[W:.*]] = megatron.concat %{{.*}}, %{{.*}}, %{{.*}} dim 0 : {{.*}} -> tensor<24x8xf32>
// CHECK: %[[B:.*]] = megatron.concat %{{.*}}, %{{.*}}, %{{.*}} dim 0 : {{.*}} -> tensor<24xf32>
// CHECK: %[[QKV:.*]] = megatron.linear %arg0, %[[W]], %[[B]] : {{.*}} -> tensor<?x?x24xf32>
// CHECK: megatron.slice %[[QKV]] dim 2 start 0 size 8
// CHECK: megatron.slice %[[QKV]] dim 2 start 8 size 8
// CHECK: megatron.slice %[[QKV]] dim 2 start 16 size 8
// CHECK-NOT: megatron.linear
func.func @separate(%x: tensor<?x?x8xf32>) -> tensor<?x2x?x4xf32> {
  %wq = megatron.weight "q.weight" : tensor<8x8xf32>
  %bq = megatron.weight "q.bias" : tensor<8xf32>
  %wk = megatron.weight "k.weight" : tensor<8x8xf32>
  %bk = megatron.weight "k.bias" : tensor<8xf32>
  %wv = megatron.weight "v.weight" : tensor<8x8xf32>
  %bv = megatron.weight "v.bias" : tensor<8xf32>
  %q = megatron.linear %x, %wq, %bq : tensor<?x?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
  %k = megatron.linear %x, %wk, %bk : tensor<?x?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
  %v = megatron.linear %x, %wv, %bv : tensor<?x?x8xf32>, tensor<8x8xf32>, tensor<8xf32> -> tensor<?x?x8xf32>
  %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
  %p = megatron.softmax %s : tensor<?x2x?x?xf32>
  %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
  return %c : tensor<?x2x?x4xf32>
}

// -----

// Negative: the keys come from another input (cross attention).
// CHECK-LABEL: func.func @different_inputs
// CHECK-COUNT-3: megatron.linear
// CHECK-NOT: megatron.concat
func.func @different_inputs(%x: tensor<?x?x8xf32>, %y: tensor<?x?x8xf32>) -> tensor<?x2x?x4xf32> {
  %w = megatron.weight "w" : tensor<8x8xf32>
  %q = megatron.linear %x, %w : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
  %k = megatron.linear %y, %w : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
  %v = megatron.linear %x, %w : tensor<?x?x8xf32>, tensor<8x8xf32> -> tensor<?x?x8xf32>
  %qh = megatron.split_heads %q, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %kh = megatron.split_heads %k, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %vh = megatron.split_heads %v, 2 : tensor<?x?x8xf32> -> tensor<?x2x?x4xf32>
  %s = megatron.matmul %qh, %kh {transpose_rhs} : tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x?xf32>
  %p = megatron.softmax %s : tensor<?x2x?x?xf32>
  %c = megatron.matmul %p, %vh : tensor<?x2x?x?xf32>, tensor<?x2x?x4xf32> -> tensor<?x2x?x4xf32>
  return %c : tensor<?x2x?x4xf32>
}
